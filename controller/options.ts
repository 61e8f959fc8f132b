import { isIP } from 'node:net';
import { hostname } from 'node:os';
import { DEFAULT_STATUS_TOPIC, DEFAULT_TOPIC_PREFIX } from '../shared/index.js';
import { DEFAULT_EDGE_LABEL } from './placement.js';

// Every controller option with its default; the CLI (main.ts) and docs/controller.md follow this.

export interface CliOptions {
  kubeconfig?: string;
  transport: 'mqtt' | 'kubeedge';
  brokerUrl: string;
  brokerUsername?: string;
  /** A file holding the password (a mounted Secret); never the password itself on the command line. */
  brokerPasswordFile?: string;
  brokerCa?: string;
  brokerCert?: string;
  brokerKey?: string;
  brokerReconnectMs: number;
  brokerReconnectMaxMs: number;
  topicPrefix: string;
  statusTopic: string;
  routerUrl: string;
  ruleNamespace: string;
  receiverPort: number;
  edgeLabel: string;
  syncInterval: number;
  statusInterval: number;
  requireDigest: boolean;
  metricsPort: number;
  metricsBind: string;
  leaseName: string;
  leaseNamespace: string;
  identity: string;
  leaderElect: boolean;
  logLevel: string;
  /** PEM file of the Ed25519 private key every message to a node is signed with (a mounted Secret). */
  signingKeyFile?: string;
}

export const DEFAULTS: CliOptions = {
  transport: 'mqtt',
  brokerUrl: 'mqtt://127.0.0.1:1883',
  brokerReconnectMs: 1000,
  brokerReconnectMaxMs: 30_000,
  topicPrefix: DEFAULT_TOPIC_PREFIX,
  statusTopic: DEFAULT_STATUS_TOPIC,
  routerUrl: 'http://cloudcore-router.kubeedge.svc:9443',
  ruleNamespace: 'default',
  receiverPort: 8080,
  edgeLabel: DEFAULT_EDGE_LABEL,
  syncInterval: 300,
  statusInterval: 500,
  requireDigest: false,
  metricsPort: 9090,
  // All interfaces, not loopback: in a pod, kubelet's probes and Prometheus come in on the pod IP.
  metricsBind: '0.0.0.0',
  leaseName: 'modeld-controller',
  leaseNamespace: 'kubeedge',
  identity: process.env.POD_NAME || hostname(),
  leaderElect: true,
  logLevel: 'info',
};

export class OptionError extends Error {}

export function checkOptions(o: CliOptions): CliOptions {
  if (o.transport !== 'mqtt' && o.transport !== 'kubeedge') throw new OptionError(`--transport must be mqtt or kubeedge, not "${o.transport}"`);
  if (!/^[^#+]*[^/#+]$/.test(o.topicPrefix)) throw new OptionError('--topic-prefix must not contain "#" or "+" nor end with "/"');
  if (!o.statusTopic.includes('{node}') || /[#+]/.test(o.statusTopic)) throw new OptionError('--status-topic must contain {node} and no "#" or "+"');
  for (const [flag, v, min] of [
    ['--sync-interval', o.syncInterval, 0.01],
    ['--status-interval', o.statusInterval, 0],
    ['--receiver-port', o.receiverPort, 0],
    ['--metrics-port', o.metricsPort, 0],
    ['--broker-reconnect-ms', o.brokerReconnectMs, 10],
    ['--broker-reconnect-max-ms', o.brokerReconnectMaxMs, 10],
  ] as const) {
    if (!Number.isFinite(v) || v < min) throw new OptionError(`${flag} must be a number >= ${min}`);
  }
  if (!o.brokerCert !== !o.brokerKey) throw new OptionError('--broker-cert and --broker-key go together (mutual TLS needs both)');
  if (!isIP(o.metricsBind) && !/^[A-Za-z0-9.-]+$/.test(o.metricsBind)) throw new OptionError(`--metrics-bind must be an IP address or a host name, not "${o.metricsBind}"`);
  try {
    new URL(o.transport === 'mqtt' ? o.brokerUrl : o.routerUrl);
  } catch {
    throw new OptionError(o.transport === 'mqtt' ? `--broker-url is not a URL: ${o.brokerUrl}` : `--router-url is not a URL: ${o.routerUrl}`);
  }
  return o;
}
