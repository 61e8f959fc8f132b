import type { Command } from 'commander';
import { exitCodesHelp } from './exit-codes.js';
import { userName } from '../accounts.js';
import { detectEdgecore, unreadableEdgecore } from '../config/edgecore.js';
import { explainConfig } from '../config/explain.js';
import { CrashGuard } from '../crash-guard.js';
import { createLogger } from '../log.js';
import { startAgent } from '../main.js';
import { AgentMetrics, startMetricsServer, type MetricsServer } from '../metrics/index.js';
import { createNotifier } from '../notify/sd-notify.js';
import { AGENT_VERSION } from '../version.js';

export function registerRun(program: Command): void {
  program
    .command('run')
    .description('run the modeld daemon (what systemd starts)')
    .option('--no-serve', 'deliver models only: no runtimes, no gateway')
    .addHelpText('after', exitCodesHelp('run'))
    .action(async (opts: { serve: boolean }) => {
      // edgecore's node name and EventBus broker, as defaults under the config file and environment.
      const edgecore = detectEdgecore();
      // Kept with where each value came from, for `modeld config view`.
      const { config, view: configView } = explainConfig({ path: program.opts().config, edgecore });
      const log = createLogger({ level: config.log.level });
      const guard = new CrashGuard(log);
      guard.install();
      // Unreadable (the service user shut out of it): the node would run under another name and broker; worth a warning.
      if (edgecore.unreadable) {
        log.warn({ edgecore: edgecore.path, error: edgecore.unreadable, nodeName: config.node.name, broker: config.broker.url }, unreadableEdgecore(edgecore, userName(process.getuid?.() ?? 0)));
      } else if (edgecore.found) {
        const level = edgecore.problems.length ? 'warn' : 'info';
        log[level]({ edgecore: edgecore.path, nodeName: edgecore.nodeName, brokerUrl: edgecore.brokerUrl, problems: edgecore.problems }, 'edgecore detected');
      }
      // Before anything is spawned: it takes NOTIFY_SOCKET out of the environment runtimes inherit.
      const notifier = createNotifier({ log });
      const metrics = new AgentMetrics({ agentVersion: AGENT_VERSION, node: config.node.name });
      // The state directory's lock first: a second daemon stops on StateLocked, not on the port
      // the first one holds.
      const agent = await startAgent(config, log, { serve: opts.serve, metrics, configView });
      // /metrics is not worth failing the node for: a busy port is logged and the agent goes on.
      const metricsServer: MetricsServer | undefined = await startMetricsServer({ registry: metrics.registry, text: () => metrics.text(), bind: config.admin.metricsBind, port: config.admin.metricsPort, log }).catch((err: Error) => {
        log.error({ err: err.message }, 'metrics not available');
        return undefined;
      });
      guard.attach({ events: agent.store.events, onEscape: (origin) => metrics.onEscapedError(origin) });
      let stopping = false;
      const stop = async (signal: string) => {
        if (stopping) return;
        stopping = true;
        log.info({ signal }, 'stopping');
        notifier.close();
        await notifier.stopping('stopping');
        await agent.stop();
        await metricsServer?.close();
        process.exit(0);
      };
      process.on('SIGTERM', () => void stop('SIGTERM'));
      process.on('SIGINT', () => void stop('SIGINT'));
      // Said once a stop is handled: whoever waits for this line may stop it at once.
      log.info({ node: config.node.name, stateDir: config.stateDir, broker: config.broker.url }, 'modeld started');
      // Started = local models kicked and the gateway listening (startAgent returns after both).
      // After the handlers: a stop may come as soon as the manager has READY.
      await notifier.ready(`node ${config.node.name}: ${agent.store.models.list().length} models, broker ${config.broker.url}`);
      if (!stopping) {
        notifier.startWatchdog(() => `${agent.serving?.served().length ?? 0} models serving, broker ${agent.link.connected ? 'connected' : 'unreachable'}`);
      }
    });
}
