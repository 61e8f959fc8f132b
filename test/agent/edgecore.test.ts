import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { detectEdgecore } from '../../agent/config/edgecore.js';
import { loadConfig } from '../../agent/config/load.js';

// edgecore.yaml (EdgeCoreConfig v1alpha2) gives the node name and the EventBus broker as defaults;
// the config file and the environment still win.

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'modeld-edgecore-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const EDGECORE = `apiVersion: edgecore.config.kubeedge.io/v1alpha2
kind: EdgeCore
database:
  dataSource: /var/lib/kubeedge/edgecore.db
modules:
  edged:
    enable: true
    hostnameOverride: rpi-042
    tailoredKubeletConfig:
      address: 127.0.0.1
  edgeHub:
    enable: true
    httpServer: https://10.0.0.1:10002
  eventBus:
    enable: true
    mqttMode: 2
    mqttQOS: 0
    mqttRetain: false
    mqttServerExternal: tcp://127.0.0.1:1885
    mqttServerInternal: tcp://127.0.0.1:1884
    mqttSubClientID: ""
    mqttPubClientID: ""
    mqttUsername: ""
    mqttPassword: ""
`;

function write(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}
const noConfig = (over: Record<string, string> = {}) => ({ path: write('modeld.yaml', ''), env: { ...over } });

describe('edgecore detection', () => {
  it('takes the node name and the external EventBus broker from edgecore.yaml', () => {
    const d = detectEdgecore(write('edgecore.yaml', EDGECORE));
    expect(d).toMatchObject({ found: true, problems: [], nodeName: 'rpi-042', brokerUrl: 'tcp://127.0.0.1:1885' });
    const config = loadConfig({ ...noConfig(), defaults: d.defaults });
    expect(config.node.name).toBe('rpi-042');
    expect(config.broker.url).toBe('tcp://127.0.0.1:1885');
  });

  it('keeps what the config file or the environment set explicitly', () => {
    const d = detectEdgecore(write('edgecore.yaml', EDGECORE));
    const fromFile = loadConfig({ path: write('c.yaml', 'node:\n  name: mine\nbroker:\n  url: mqtt://10.1.1.1:1883\n'), env: {}, defaults: d.defaults });
    expect(fromFile.node.name).toBe('mine');
    expect(fromFile.broker.url).toBe('mqtt://10.1.1.1:1883');
    const fromEnv = loadConfig({ ...noConfig({ MODELD_NODE__NAME: 'env-node', MODELD_BROKER__URL: 'mqtt://10.2.2.2:1883' }), defaults: d.defaults });
    expect(fromEnv.node.name).toBe('env-node');
    expect(fromEnv.broker.url).toBe('mqtt://10.2.2.2:1883');
    // Only one of the two set: the other still comes from edgecore.
    const mixed = loadConfig({ path: write('m.yaml', 'node:\n  labels: {zone: a}\n'), env: { MODELD_BROKER__USERNAME: 'u' }, defaults: d.defaults });
    expect(mixed.node).toMatchObject({ name: 'rpi-042', labels: { zone: 'a' } });
    expect(mixed.broker).toMatchObject({ url: 'tcp://127.0.0.1:1885', username: 'u' });
  });

  it('uses the internal broker in mqttMode 0 and KubeEdge defaults for missing URLs', () => {
    expect(detectEdgecore(write('a.yaml', EDGECORE.replace('mqttMode: 2', 'mqttMode: 0'))).brokerUrl).toBe('tcp://127.0.0.1:1884');
    expect(detectEdgecore(write('b.yaml', 'modules:\n  eventBus:\n    enable: true\n')).brokerUrl).toBe('tcp://127.0.0.1:1883');
    expect(detectEdgecore(write('c.yaml', 'modules:\n  eventBus:\n    enable: false\n    mqttServerExternal: tcp://1.2.3.4:1883\n')).brokerUrl).toBeUndefined();
  });

  it('carries EventBus credentials and TLS files', () => {
    const text = EDGECORE.replace('mqttUsername: ""', 'mqttUsername: edge').replace('mqttPassword: ""', 'mqttPassword: s3cret') +
      '    eventBusTLS:\n      enable: true\n      tlsMqttCAFile: /etc/kubeedge/ca/rootCA.crt\n      tlsMqttCertFile: /etc/kubeedge/certs/server.crt\n      tlsMqttPrivateKeyFile: /etc/kubeedge/certs/server.key\n';
    const d = detectEdgecore(write('tls.yaml', text));
    expect(d.defaults).toEqual({
      node: { name: 'rpi-042' },
      broker: {
        url: 'ssl://127.0.0.1:1885',
        username: 'edge',
        password: 's3cret',
        tls: { ca: '/etc/kubeedge/ca/rootCA.crt', cert: '/etc/kubeedge/certs/server.crt', key: '/etc/kubeedge/certs/server.key' },
      },
    });
    expect(loadConfig({ ...noConfig(), defaults: d.defaults }).broker.tls.ca).toBe('/etc/kubeedge/ca/rootCA.crt');
  });

  it('no edgecore.yaml: nothing found, no problem, no defaults', () => {
    expect(detectEdgecore(join(dir, 'absent.yaml'))).toEqual({ path: join(dir, 'absent.yaml'), found: false, problems: [], defaults: {} });
  });

  it('a broken or hostile edgecore.yaml is reported and ignored, never fatal', () => {
    const bad = detectEdgecore(write('bad.yaml', 'modules: [unclosed'));
    expect(bad.found).toBe(true);
    expect(bad.problems[0]).toMatch(/not valid YAML/);
    expect(bad.defaults).toEqual({});

    const weird = detectEdgecore(write('weird.yaml', 'modules:\n  edged:\n    hostnameOverride: "Bad Name/../x"\n  eventBus:\n    mqttServerExternal: "not a url"\n'));
    expect(weird.problems).toHaveLength(2);
    expect(weird.problems.join('\n')).toMatch(/hostnameOverride.*not a valid node name/);
    expect(weird.problems.join('\n')).toMatch(/mqttServerExternal.*not a broker URL/);
    expect(weird.defaults).toEqual({});
    // The agent still loads its config on its own defaults.
    expect(loadConfig({ ...noConfig(), defaults: weird.defaults }).broker.url).toBe('mqtt://127.0.0.1:1883');

    expect(detectEdgecore(write('scalar.yaml', '42')).defaults).toEqual({});
    const big = detectEdgecore(write('big.yaml', `a: "${'x'.repeat(1024 * 1024 + 10)}"`));
    expect(big.problems[0]).toMatch(/larger than/);

    const asDir = join(dir, 'dir.yaml');
    mkdirSync(asDir);
    expect(detectEdgecore(asDir).problems[0]).toMatch(/not a regular file/);

    if (process.getuid?.() !== 0) {
      const locked = write('locked.yaml', EDGECORE);
      chmodSync(locked, 0);
      expect(detectEdgecore(locked).problems[0]).toMatch(/cannot read/);
    }
  });
});
