import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { controllerLogger } from '../../controller/log.js';
import { buildProgram } from '../../controller/main.js';
import { DEFAULTS, OptionError, checkOptions, type CliOptions } from '../../controller/options.js';
import { mqttTransport } from '../../controller/transport/mqtt.js';
import { startMosquitto } from '../helpers/mosquitto.js';
import { WAIT_MS, waitFor } from '../helpers/wait.js';

const sink = () => {
  const lines: string[] = [];
  const out = new Writable({
    write(chunk, _e, cb) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      cb();
    },
  });
  return { out, lines };
};

async function parse(args: string[]): Promise<CliOptions> {
  let got: CliOptions | undefined;
  await buildProgram(async (o) => ((got = o), 0)).parseAsync(['node', 'modeld-controller', ...args]);
  return got!;
}

describe('controller options and logs', () => {
  it('--metrics-bind: all interfaces by default (probes and Prometheus reach the pod IP), loopback on request, nonsense refused', async () => {
    expect((await parse([])).metricsBind).toBe('0.0.0.0');
    expect((await parse(['--metrics-bind', '127.0.0.1'])).metricsBind).toBe('127.0.0.1');
    expect(() => checkOptions({ ...DEFAULTS, metricsBind: 'a b/c' })).toThrow(OptionError);
  });

  it('logs JSON lines, or readable text when asked (a terminal)', () => {
    const json = sink();
    controllerLogger('info', { destination: json.out, pretty: false }).warn({ node: 'n1' }, 'send failed');
    expect(JSON.parse(json.lines[0])).toMatchObject({ msg: 'send failed', node: 'n1', level: 40 });
    const text = sink();
    controllerLogger('info', { destination: text.out, pretty: true }).warn({ node: 'n1' }, 'send failed');
    expect(text.lines[0]).toMatch(/WARN +send failed node=n1$/);
  });

  it('warns once per broker outage, not once per reconnect attempt', async () => {
    const broker = await startMosquitto();
    const { out, lines } = sink();
    const log = pino({ level: 'debug' }, out);
    const t = mqttTransport({ brokerUrl: broker.url, clientId: `ctl-warn-${process.pid}`, topicPrefix: 'ai/inferencemodel', statusTopic: 'default/ai/inferencemodel-status/{node}', log });
    try {
      await t.start(() => {});
      await broker.stop();
      const records = () => lines.map((l) => JSON.parse(l));
      // Reconnects are a second apart: wait for a few failed ones.
      await waitFor(() => records().filter((r) => r.level === 20 && /broker error/.test(r.msg)).length >= 2, WAIT_MS, 'several failed reconnects');
      expect(records().filter((r) => r.level === 40).length).toBe(1);
      await broker.start();
      await waitFor(() => t.connected(), WAIT_MS, 'reconnected');
      await broker.stop();
      await waitFor(() => records().filter((r) => r.level === 40).length === 2, WAIT_MS, 'a second outage warned once more');
    } finally {
      await t.stop();
      await broker.close();
    }
  });
});
