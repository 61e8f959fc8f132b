import { hostname } from 'node:os';
import { z } from 'zod';
import { DEFAULT_STATUS_TOPIC, DEFAULT_TOPIC_PREFIX, DeployLayer, ModelName, NodeName } from '../../shared/index.js';
import { credentialProblem } from '../fetch/credentials.js';
import { prefixProblem } from '../fetch/mirrors.js';
import { ONNX_BACKEND_CHOICES } from '../runtime/ort-backend.js';
import { Size } from './size.js';

// The node's configuration: every key with its default. README's configuration table follows
// this file; keep them together.

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;

const defaultNodeName = () => hostname().toLowerCase().replace(/[^a-z0-9.-]/g, '-').replace(/^[-.]+|[-.]+$/g, '') || 'node';

/** An external runtime: argv with placeholders, never through a shell. */
export const RuntimeEntry = z.strictObject({
  command: z.array(z.string().min(1)).min(1),
  env: z.record(z.string(), z.string()).default({}),
  readyPath: z.string().startsWith('/').default('/v2/health/ready'),
  startTimeoutMs: z.number().int().positive().optional(),
});
export type RuntimeEntry = z.infer<typeof RuntimeEntry>;

export const ConfigSchema = z.strictObject({
  node: z
    .strictObject({
      name: NodeName.default(defaultNodeName),
      labels: z.record(z.string(), z.string()).default({}),
      layer: DeployLayer.default('edge'),
      /** Address put in status.url; detected from the network interfaces when empty. */
      address: z.string().default(''),
    })
    .prefault({}),
  broker: z
    .strictObject({
      url: z.string().regex(/^(mqtts?|wss?|tcp|ssl):\/\//, 'must be an mqtt://, mqtts://, tcp://, ssl://, ws:// or wss:// URL').default('mqtt://127.0.0.1:1883'),
      username: z.string().optional(),
      password: z.string().optional(),
      clientId: z.string().optional(),
      keepaliveSec: z.number().int().min(5).max(3600).default(30),
      reconnectMs: z.number().int().min(100).default(2000),
      /** The delay between attempts doubles from reconnectMs up to this. */
      reconnectMaxMs: z.number().int().min(100).default(60_000),
      ackTimeoutMs: z.number().int().min(100).default(30_000),
      ackMaxDelayMs: z.number().int().min(100).default(600_000),
      tls: z
        .strictObject({
          ca: z.string().optional(),
          cert: z.string().optional(),
          key: z.string().optional(),
          rejectUnauthorized: z.boolean().default(true),
        })
        .prefault({}),
    })
    .prefault({}),
  topics: z
    .strictObject({
      prefix: z.string().min(1).regex(/^[^#+]*[^/#+]$/, 'must not contain "#" or "+" nor end with "/"').default(DEFAULT_TOPIC_PREFIX),
      status: z.string().min(1).regex(/^[^#+]*$/, 'must not contain "#" or "+"').default(DEFAULT_STATUS_TOPIC),
    })
    .prefault({}),
  stateDir: z.string().min(1).default('/var/lib/modeld'),
  limits: z
    .strictObject({
      messageBytes: Size.default(MiB),
      archiveBytes: Size.default(8 * GiB),
      unpackedBytes: Size.default(16 * GiB),
      entries: z.number().int().positive().default(100_000),
      /** A .tar.gz may inflate at most this many times its size (past 64 MiB inflated): model weights inflate 1-3:1, a gzip bomb 1000:1. */
      compressionRatio: z.number().min(1).default(100),
      /** Node-wide: downloads, installs (unpacking) and runtime starts in progress at once, over all models. */
      fetches: z.number().int().min(1).max(64).default(2),
      installs: z.number().int().min(1).max(64).default(1),
      starts: z.number().int().min(1).max(64).default(1),
    })
    .prefault({}),
  fetch: z
    .strictObject({
      attempts: z.number().int().min(1).max(100).default(6),
      backoffBaseMs: z.number().int().min(1).default(1000),
      backoffMaxMs: z.number().int().min(1).default(60_000),
      connectTimeoutMs: z.number().int().min(1).default(15_000),
      stallTimeoutMs: z.number().int().min(1).default(30_000),
      /** Slower than this on average over lowSpeedWindowMs is Stalled too (a trickle never trips stallTimeoutMs); 0: off. */
      lowSpeedBytesPerSec: Size.default(1024),
      lowSpeedWindowMs: z.number().int().min(1).default(60_000),
      /** Bytes per second for the whole node (every download shares it); 0 means no cap. */
      bandwidth: Size.default(0),
      /** Free space to keep on the state directory's disk beyond the archive itself. */
      reserveBytes: Size.default(64 * MiB),
      allowedSchemes: z.array(z.enum(['https', 'http', 'file'])).default(['https', 'http']),
      /** Hostnames (exact, or "*.example.com"); empty allows any host. */
      allowedHosts: z.array(z.string()).default([]),
      /** host -> files with what the node presents to a private store (never from the spec). */
      credentials: z
        .record(
          z.string(),
          z.strictObject({
            bearerTokenFile: z.string().optional(),
            basicAuthFile: z.string().optional(),
            clientCertFile: z.string().optional(),
            clientKeyFile: z.string().optional(),
            caFile: z.string().optional(),
          }),
        )
        .default({})
        .superRefine((map, ctx) => {
          for (const [host, c] of Object.entries(map)) {
            const problem = credentialProblem(host, c);
            if (problem) ctx.addIssue({ code: 'custom', path: [host], message: problem });
          }
        }),
      /** URL prefix -> mirror prefix; the spec's URL is checked first, the digest always. */
      mirrors: z
        .record(z.string(), z.string())
        .default({})
        .superRefine((map, ctx) => {
          for (const [from, to] of Object.entries(map)) {
            for (const [what, value, path] of [['prefix', from, [from]], ['mirror', to, [from]]] as const) {
              const problem = prefixProblem(value);
              if (problem) ctx.addIssue({ code: 'custom', path: [...path], message: `${what} ${JSON.stringify(value)} ${problem}` });
            }
          }
        }),
      progressIntervalMs: z.number().int().min(0).default(1000),
    })
    .prefault({}),
  store: z.strictObject({ capBytes: Size.default(20 * GiB) }).prefault({}),
  allowUnverified: z.boolean().default(false),
  security: z
    .strictObject({
      /** PEM files of the Ed25519 public keys whose signatures the node accepts (two at once while a key rotates). */
      trustedKeys: z.array(z.string().min(1)).max(16).default([]),
      /** With trusted keys: whether local specs (`modeld apply`) are still accepted. */
      allowLocalApply: z.boolean().default(false),
    })
    .prefault({}),
  gateway: z
    .strictObject({
      bind: z.string().default('0.0.0.0'),
      port: z.number().int().min(0).max(65535).default(8000),
      maxBodyBytes: Size.default(64 * MiB),
      /** HTTPS with this certificate and key (PEM files on the node); both or neither. */
      tls: z
        .strictObject({ cert: z.string().min(1).optional(), key: z.string().min(1).optional() })
        .refine((t) => !t.cert === !t.key, 'cert and key go together (both or neither)')
        .prefault({}),
      /** A file holding the bearer token every request but the health probes must carry. */
      tokenFile: z.string().min(1).optional(),
    })
    .prefault({}),
  serving: z
    .strictObject({
      startTimeoutMs: z.number().int().min(100).default(60_000),
      drainTimeoutMs: z.number().int().min(0).default(30_000),
      stopGraceMs: z.number().int().min(0).default(10_000),
      crashLoopRestarts: z.number().int().min(1).default(3),
      restartBackoffMs: z.number().int().min(10).default(1000),
      /** Instances listen on loopback ports from here up. 0 lets the OS choose. */
      basePort: z.number().int().min(0).max(65535).default(0),
      /** Tries a version gets to become ready (each up to its start timeout) before it is Failed NotReady. */
      startAttempts: z.number().int().min(1).max(20).default(3),
      /** Longest wait before the second try (a random wait up to this, doubling for each further try), ms. */
      startBackoffMs: z.number().int().min(0).default(10_000),
      /** host: built-in onnx versions are sessions in the one runtime host; process: each instance its own process. */
      isolation: z.enum(['host', 'process']).default('host'),
      /** Models ("<namespace>/<name>") served in processes of their own whatever `isolation` says. */
      isolateModels: z.array(z.string().regex(/^[a-z0-9][a-z0-9.-]*\/[a-z0-9][a-z0-9.-]*$/, 'must be "<namespace>/<name>"')).default([]),
      /** agent: the agent starts the runtime host (and restarts it); systemd: modeld-host.service does. */
      hostStart: z.enum(['agent', 'systemd']).default('agent'),
      /** onnxruntime intra-op threads of each session in the host. */
      sessionThreads: z.number().int().min(1).max(64).default(1),
      /** A session run (or load) blocking the host longer than this restarts the host, every model restored. */
      sessionHangMs: z.number().int().min(100).default(60_000),
      /** How often every serving instance and session is probed. */
      probeIntervalMs: z.number().int().min(50).default(5000),
      /** A probe not answered within this fails. */
      probeTimeoutMs: z.number().int().min(10).default(2000),
      /** Failed probes in a row before an instance leaves the route and is restarted. */
      probeFailures: z.number().int().min(1).max(100).default(3),
      /** onnxruntime for the built-in runtime: auto = onnxruntime-node, else onnxruntime-web's WASM build. */
      onnxBackend: z.enum(ONNX_BACKEND_CHOICES).default('auto'),
    })
    .prefault({}),
  /** frameworkType -> runtime. `onnx` is built in; others are commands. */
  runtimes: z.record(ModelName, RuntimeEntry).default({}),
  /** Local holds on a model's switch (`modeld defer`). */
  deferral: z.strictObject({ maxSeconds: z.number().int().min(1).default(86_400) }).prefault({}),
  admin: z
    .strictObject({
      socket: z.string().default('/run/modeld/modeld.sock'),
      /** The admin socket is 0660 with this group when the group exists (operators in it need no sudo); else 0600. '' for owner-only. */
      socketGroup: z.string().default('modeld'),
      metricsBind: z.string().default('127.0.0.1'),
      metricsPort: z.number().int().min(0).max(65535).default(9464),
    })
    .prefault({}),
  log: z.strictObject({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info') }).prefault({}),
});

export type Config = z.output<typeof ConfigSchema>;
export type ConfigInput = z.input<typeof ConfigSchema>;
