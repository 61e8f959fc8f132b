#!/usr/bin/env node
import './node-check.js';
import type { KeyObject } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, Option } from 'commander';
import type { Logger } from 'pino';
import { readBrokerSecrets, type BrokerSecrets } from './broker-files.js';
import { Controller } from './controller.js';
import { startHealthServer } from './http.js';
import { loadKubeConfig } from './kube/config.js';
import { controllerLogger } from './log.js';
import { LeaderElector } from './kube/lease.js';
import { kubeRest } from './kube/rest.js';
import { createMetrics } from './metrics.js';
import { DEFAULTS, OptionError, checkOptions, type CliOptions } from './options.js';
import { kubeedgeTransport } from './transport/kubeedge.js';
import { mqttTransport } from './transport/mqtt.js';
import type { Transport } from './transport/types.js';
import { SigningKeyError, envelopeSigner, loadSigningKey } from './signer.js';
import { generateSigningKey } from '../shared/signing.js';

// modeld-controller: one process; it serves /healthz and /metrics at once, waits to lead (Lease),
// then runs the controller until SIGTERM/SIGINT or until leadership is lost (exit 1, so the
// Deployment restarts it as a standby).

export function buildProgram(run: (o: CliOptions) => Promise<number>): Command {
  const num = (v: string) => Number(v);
  const program = new Command('modeld-controller')
    .description('Watches InferenceModel resources and delivers them to modeld agents on KubeEdge nodes')
    .option('--kubeconfig <path>', 'kubeconfig file (default: in-cluster service account, else $KUBECONFIG / ~/.kube/config)')
    .addOption(new Option('--transport <kind>', 'how messages reach nodes').choices(['mqtt', 'kubeedge']).default(DEFAULTS.transport))
    .option('--broker-url <url>', 'mqtt: the broker the nodes share or are bridged to', DEFAULTS.brokerUrl)
    .option('--broker-username <name>', 'mqtt: user name (or $MODELD_BROKER_USERNAME)', process.env.MODELD_BROKER_USERNAME)
    .option('--broker-password-file <path>', 'mqtt: file holding the password (a mounted Secret; else $MODELD_BROKER_PASSWORD). Never the password itself on the command line')
    .option('--broker-ca <path>', 'mqtt: PEM file of the CA that signed the broker\'s certificate (mqtts://); default: the system CAs')
    .option('--broker-cert <path>', 'mqtt: PEM client certificate for mutual TLS (with --broker-key)')
    .option('--broker-key <path>', 'mqtt: PEM private key of --broker-cert (a mounted Secret)')
    .option('--broker-reconnect-ms <ms>', 'mqtt: first delay before reconnecting, doubling after each failed attempt', num, DEFAULTS.brokerReconnectMs)
    .option('--broker-reconnect-max-ms <ms>', 'mqtt: longest delay between reconnect attempts', num, DEFAULTS.brokerReconnectMaxMs)
    .option('--topic-prefix <prefix>', 'prefix of the spec topics', DEFAULTS.topicPrefix)
    .option('--status-topic <template>', 'status topic template; {node} is the node name', DEFAULTS.statusTopic)
    .option('--router-url <url>', 'kubeedge: the cloudcore Router (port 9443; deploy/kubeedge/cloudcore-router.yaml adds the Service a stock cloudcore lacks)', DEFAULTS.routerUrl)
    .option('--rule-namespace <ns>', 'kubeedge: namespace of the RuleEndpoints/Rules', DEFAULTS.ruleNamespace)
    .option('--receiver-port <port>', 'kubeedge: port of the HTTP receiver the Router posts status to', num, DEFAULTS.receiverPort)
    .option('--edge-label <label>', 'label that marks edge nodes (cloud nodes lack it)', DEFAULTS.edgeLabel)
    .option('--sync-interval <seconds>', 'full sync to every node this often', num, DEFAULTS.syncInterval)
    .option('--status-interval <ms>', 'at most one status write per resource this often', num, DEFAULTS.statusInterval)
    .option('--require-digest', 'hold back (Degraded) any version without sha256sum', DEFAULTS.requireDigest)
    .option('--metrics-port <port>', 'port of /healthz, /readyz and /metrics', num, DEFAULTS.metricsPort)
    .option('--metrics-bind <address>', 'address /healthz, /readyz and /metrics listen on (all interfaces: kubelet probes and Prometheus reach the pod IP; 127.0.0.1 when run by hand)', DEFAULTS.metricsBind)
    .option('--lease-name <name>', 'leader election Lease name', DEFAULTS.leaseName)
    .option('--lease-namespace <ns>', 'leader election Lease namespace', DEFAULTS.leaseNamespace)
    .option('--identity <id>', 'this replica in the Lease (default $POD_NAME or the host name)', DEFAULTS.identity)
    .option('--no-leader-elect', 'run without a Lease (a single replica only)')
    .option('--log-level <level>', 'trace, debug, info, warn, error (logs go to stderr: JSON, or text when stderr is a terminal)', DEFAULTS.logLevel)
    .option(
      '--signing-key-file <path>',
      'Ed25519 private key (PKCS#8 PEM) every message to a node is signed with, e.g. a mounted Secret (or $MODELD_SIGNING_KEY_FILE); unset: messages go unsigned',
      process.env.MODELD_SIGNING_KEY_FILE || undefined,
    )
    .action(async (o: CliOptions) => {
      process.exitCode = await run(o);
    });
  program
    .command('keygen')
    .description('Writes a new Ed25519 signing key pair: <dir>/private.pem (0600, for the controller) and <dir>/public.pem (for each node\'s security.trustedKeys); prints the keyId')
    .requiredOption('--out <dir>', 'directory to write private.pem and public.pem in (created if missing; existing files are not overwritten)')
    .addHelpText('after', '\nSame as: openssl genpkey -algorithm ed25519 -out private.pem && openssl pkey -in private.pem -pubout -out public.pem\n\nExit codes:\n  0  written\n  1  the files exist already or cannot be written')
    .action((o: { out: string }) => {
      process.exitCode = keygen(o.out);
    });
  return program;
}

/** `modeld-controller keygen --out <dir>`: 0 when written, 1 otherwise (said on stderr). */
export function keygen(dir: string, out: (line: string) => void = (l) => console.log(l), err: (line: string) => void = (l) => console.error(l)): number {
  const key = generateSigningKey();
  try {
    mkdirSync(dir, { recursive: true });
    // wx: never overwrite a key in use; the private key is the owner's alone from its first byte.
    writeFileSync(join(dir, 'private.pem'), key.privatePem, { mode: 0o600, flag: 'wx' });
    writeFileSync(join(dir, 'public.pem'), key.publicPem, { mode: 0o644, flag: 'wx' });
  } catch (e) {
    err(`keygen: ${(e as Error).message}`);
    return 1;
  }
  out(`keyId ${key.keyId}`);
  out(`private key: ${join(dir, 'private.pem')} (controller: --signing-key-file, from a Secret)`);
  out(`public key:  ${join(dir, 'public.pem')} (nodes: security.trustedKeys)`);
  return 0;
}

export async function runController(o: CliOptions, log: Logger = controllerLogger(o.logLevel)): Promise<number> {
  let secrets: BrokerSecrets = {};
  try {
    checkOptions(o);
    if (o.transport === 'mqtt') secrets = readBrokerSecrets(o);
  } catch (err) {
    if (err instanceof OptionError) {
      log.fatal(err.message);
      return 2;
    }
    throw err;
  }
  let signingKey: KeyObject | undefined;
  try {
    signingKey = o.signingKeyFile ? loadSigningKey(o.signingKeyFile) : undefined;
  } catch (err) {
    if (err instanceof SigningKeyError) {
      log.fatal(err.message);
      return 2;
    }
    throw err;
  }
  if (signingKey) log.info({ keyId: envelopeSigner(signingKey).keyId, file: o.signingKeyFile }, 'messages to nodes are signed');
  else log.warn('no --signing-key-file: messages to nodes go unsigned (any publisher on a node broker can command that node); see docs/security.md');
  const kc = loadKubeConfig(o.kubeconfig);
  const rest = kubeRest(kc);
  const metrics = createMetrics();
  const transport: Transport =
    o.transport === 'mqtt'
      ? mqttTransport({ brokerUrl: o.brokerUrl, clientId: `modeld-controller-${o.identity}`.slice(0, 64), topicPrefix: o.topicPrefix, statusTopic: o.statusTopic, username: o.brokerUsername, password: secrets.password, tls: secrets.tls, reconnectMs: o.brokerReconnectMs, reconnectMaxMs: o.brokerReconnectMaxMs, log })
      : kubeedgeTransport({ routerUrl: o.routerUrl, ruleNamespace: o.ruleNamespace, receiverPort: o.receiverPort, log });
  const controller = new Controller(
    { topicPrefix: o.topicPrefix, statusTopic: o.statusTopic, edgeLabel: o.edgeLabel, requireDigest: o.requireDigest, syncIntervalMs: o.syncInterval * 1000, statusIntervalMs: o.statusInterval, signingKey },
    { kc, rest, transport, log, metrics },
  );
  const elector = new LeaderElector({ rest, namespace: o.leaseNamespace, name: o.leaseName, identity: o.identity, log });
  const stop = new AbortController();
  let started = false;
  const health = await startHealthServer({
    port: o.metricsPort,
    host: o.metricsBind,
    registry: metrics.registry,
    ready: () => controller.ready() && (elector.isLeader() || !o.leaderElect),
    nodeDetail: (key) => controller.nodeDetail(key),
    healthy: () => ({ ok: !stop.signal.aborted, detail: { leader: elector.isLeader() || !o.leaderElect, running: controller.ready(), transport: transport.connected(), ...(transport.problem?.() ? { transportProblem: transport.problem() } : {}) } }),
  });
  log.info({ port: health.port, bind: o.metricsBind, transport: o.transport }, 'modeld-controller up');
  const onSignal = (sig: string) => {
    log.info({ signal: sig }, 'shutting down');
    stop.abort();
  };
  process.once('SIGTERM', () => onSignal('SIGTERM'));
  process.once('SIGINT', () => onSignal('SIGINT'));

  let code = 0;
  const startController = () => {
    started = true;
    metrics.leader.set(1);
    controller.start().catch((err) => {
      // A SIGTERM while the first list is under way aborts the start: that is a clean stop
      // (a pod deleted right after it started), not a failure to start.
      if (stop.signal.aborted) return;
      log.fatal({ err: (err as Error).message }, 'controller failed to start');
      code = 1;
      stop.abort();
    });
  };
  if (o.leaderElect) {
    const outcome = await elector.run(stop.signal, startController);
    if (outcome === 'lost') {
      log.error('leadership lost: exiting so that a fresh standby takes over');
      code = 1;
    }
  } else {
    startController();
    await new Promise((r) => stop.signal.addEventListener('abort', r, { once: true }));
  }
  metrics.leader.set(0);
  if (started) await controller.stop();
  await elector.release();
  await health.close();
  log.info('stopped');
  return code;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  buildProgram((o) => runController(o)).parseAsync(process.argv).catch((err) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
