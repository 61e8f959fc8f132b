import { parseArgs } from 'node:util';
import { loadConfig } from '../config/load.js';
import { createLogger } from '../log.js';
import { createNotifier } from '../notify/sd-notify.js';
import { statePaths } from '../paths.js';
import { ControlServer } from './control-server.js';
import { hostSocketPath } from './protocol.js';
import { RuntimeHost } from './runtime-host.js';

// `modeld host`: the runtime host (runtime-host.ts). Started by systemd (modeld-host.service) or,
// with serving.hostStart: agent, by the agent, detached: its life is apart from the agent's.

export async function runHost(opts: { configPath?: string }): Promise<void> {
  const config = loadConfig({ path: opts.configPath });
  const log = createLogger({ level: config.log.level }).child({ part: 'host' });
  const notifier = createNotifier({ log });
  const paths = statePaths(config.stateDir);
  const host = new RuntimeHost({ config, paths, log });
  let stopping = false;
  const stop = async (why: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ why }, 'runtime host stopping');
    notifier.close();
    await notifier.stopping('stopping');
    await control.close();
    await host.close();
    process.exit(0);
  };
  const control = new ControlServer(host, { socketPath: hostSocketPath(paths.runDir), log, onShutdown: () => void stop('shutdown requested') });
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('uncaughtException', (err) => log.error({ err: err.stack }, 'uncaught exception (the host goes on)'));
  process.on('unhandledRejection', (err) => log.error({ err: (err as Error)?.stack ?? String(err) }, 'unhandled rejection (the host goes on)'));
  // The endpoint first: whoever sees the control socket answer may use the endpoint's port.
  await host.start();
  await control.listen();
  log.info({ pid: process.pid, endpoint: `${config.gateway.bind}:${host.gateway.port}` }, 'runtime host started');
  await host.whenRestored();
  await notifier.ready(`${host.state().routes.length} models`);
  notifier.startWatchdog(() => `${host.state().routes.length} models`);
}

const self = new URL(import.meta.url).pathname;
if (process.argv[1] && process.argv[1].replace(/\.[jt]s$/, '') === self.replace(/\.[jt]s$/, '')) {
  const { values } = parseArgs({ args: process.argv.slice(2), options: { config: { type: 'string', short: 'c' } }, strict: true });
  runHost({ configPath: values.config }).catch((err: unknown) => {
    process.stderr.write(`modeld host: ${(err as Error)?.message ?? err}\n`);
    process.exit((err as { code?: string }).code === 'ConfigInvalid' ? 78 : 1);
  });
}
