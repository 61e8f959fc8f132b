import { ConfigSchema } from '../agent/config/schema.js';

// Every configuration key with its default, type, environment variable and meaning, walked from
// agent/config/schema.ts (the one source of the defaults). Renders the commented config template
// (systemd/config.example.yaml) and the table in docs/operations.md; scripts/gen-config-doc.ts
// writes both and test/agent/install-script.test.ts checks they are current.

export interface ConfigKey {
  path: string;
  type: string;
  /** The default as YAML would write it, or undefined when the key has none (optional). */
  default?: unknown;
  env: string;
  help: string;
}

const HELP: Record<string, string> = {
  'node.name': 'Node name: in topics and statuses; must match the Kubernetes node. Default: from edgecore.yaml (modules.edged.hostnameOverride), else the hostname, lower-cased.',
  'node.labels': 'Labels matched against a spec\'s nodeSelector.',
  'node.layer': 'Layer this node serves: edge or cloud (specs with another deployToLayer are refused).',
  'node.address': 'Address put in status.url; empty: the first non-loopback IPv4 address.',
  'broker.url': 'MQTT broker (edgecore\'s EventBus broker). Default: from edgecore.yaml (modules.eventBus.mqttServerExternal), else this.',
  'broker.username': 'MQTT user name (from edgecore.yaml mqttUsername when set there).',
  'broker.password': 'MQTT password. Keep the config file mode 0640 root:modeld.',
  'broker.clientId': 'MQTT client id; default modeld-<node.name> (persistent session).',
  'broker.keepaliveSec': 'MQTT keepalive, seconds.',
  'broker.reconnectMs': 'First delay between reconnect attempts, ms (it doubles for each failed attempt, and starts again here once connected).',
  'broker.reconnectMaxMs': 'Longest delay between reconnect attempts, ms.',
  'broker.ackTimeoutMs': 'A status stays in the outbox until the controller acks its msg_id; with no ack this long after it went out, it is published again (doubling each time), ms.',
  'broker.ackMaxDelayMs': 'Upper bound of that doubling delay, ms: an old controller that never acks gets at most one resend per model this often.',
  'broker.tls.ca': 'CA file for mqtts:// or ssl:// brokers.',
  'broker.tls.cert': 'Client certificate file.',
  'broker.tls.key': 'Client key file.',
  'broker.tls.rejectUnauthorized': 'Verify the broker\'s certificate.',
  'topics.prefix': 'Topic prefix of specs: <prefix>/<node>/<namespace>/<name>.',
  'topics.status': 'Status topic; {node} is replaced by node.name. Must match the controller (and the KubeEdge Rule).',
  stateDir: 'State directory: SQLite store, blobs, unpacked models. systemd\'s StateDirectory=modeld.',
  'limits.messageBytes': 'Largest MQTT message accepted; bigger ones are dropped with a log line.',
  'limits.archiveBytes': 'Largest archive downloaded.',
  'limits.unpackedBytes': 'Largest total size of an unpacked archive (ArchiveTooLarge); also at most what the disk has beyond fetch.reserveBytes (NoSpace).',
  'limits.entries': 'Most entries in one archive.',
  'limits.compressionRatio': 'Most a .tar.gz may inflate per compressed byte, once past 64 MiB inflated (ArchiveTooLarge): weights inflate 1-3:1, a gzip bomb about 1000:1.',
  'limits.fetches': 'Downloads in progress at once on the node, over all models; the others wait (status: "waiting for a download slot").',
  'limits.installs': 'Installs (unpacking an archive after its download) at once on the node; an archive unpacked while it downloads counts as its download.',
  'limits.starts': 'Runtime versions starting at once on the node (spawn until ready); a slot is freed once the version takes traffic.',
  'fetch.attempts': 'Download attempts before a version is reported Failed.',
  'fetch.backoffBaseMs': 'First retry delay (doubles each attempt, with jitter), ms.',
  'fetch.backoffMaxMs': 'Longest retry delay, ms.',
  'fetch.connectTimeoutMs': 'TCP/TLS connect timeout of a download, ms.',
  'fetch.stallTimeoutMs': 'A download receiving nothing for this long is cut and resumed, ms.',
  'fetch.lowSpeedBytesPerSec': 'A download averaging less than this over fetch.lowSpeedWindowMs (a trickle) is cut and resumed as Stalled; 0: off. Kept under half of fetch.bandwidth.',
  'fetch.lowSpeedWindowMs': 'The window of fetch.lowSpeedBytesPerSec, ms.',
  'fetch.bandwidth': 'Download bandwidth cap of the whole node in bytes per second, shared by all downloads in progress (sizes like "2MiB" work); 0: no cap.',
  'fetch.reserveBytes': 'Free space kept on the state directory\'s disk beyond the archive and its unpacked content.',
  'fetch.allowedSchemes': 'URL schemes allowed in manifests: https, http, file.',
  'fetch.allowedHosts': 'Hosts allowed in manifests (exact or "*.example.com"); empty: any host.',
  'fetch.credentials':
    'host ("name", "name:port" or "*.domain") -> files the node presents to a private store: {bearerTokenFile | basicAuthFile ("user:password"), clientCertFile + clientKeyFile, caFile}. https only; never from the spec; read at each download.',
  'fetch.mirrors':
    'URL prefix -> site mirror prefix, e.g. {"https://models.example.com/": "http://cache.site.lan/models/"}: downloads of matching URLs come from the mirror (the spec URL is checked against allowedHosts first; the digest always).',
  'fetch.progressIntervalMs': 'Least time between two progress statuses, ms.',
  'store.capBytes': 'Garbage collection keeps blobs and versions under this size (never the serving or rollback version).',
  'deferral.maxSeconds': 'Longest a local hold (`modeld defer`, POST /v1/defer) may keep a downloaded version from switching, counted from when the hold was first placed (an extension does not restart it), s. A longer request is refused (DeferralTooLong).',
  allowUnverified: 'Accept manifest entries without sha256sum (not recommended).',
  'security.trustedKeys': 'PEM files of the Ed25519 public keys (modeld-controller keygen: public.pem) whose signatures this node accepts. Set: every message from the cloud must be signed by one of them, addressed to this node, and newer than the last accepted; two keys while a key rotates. Empty: messages are not checked (modeld doctor warns).',
  'security.allowLocalApply': 'With trustedKeys set: whether local specs (modeld apply) are still accepted. Without trustedKeys local specs are always accepted.',
  'gateway.bind': 'Address of the inference gateway (OIP v2 HTTP).',
  'gateway.port': 'Port of the inference gateway (Triton\'s default). Below 1024 needs CAP_NET_BIND_SERVICE.',
  'gateway.maxBodyBytes': 'Largest request body through the gateway.',
  'gateway.tls.cert': 'PEM certificate file: the endpoint speaks HTTPS only (plain HTTP is refused) and status.url says https://. With gateway.tls.key.',
  'gateway.tls.key': 'PEM private key file of gateway.tls.cert (mode 0640 root:modeld).',
  'gateway.tokenFile': 'File holding a bearer token (one line): every request but /v2/health/live and /v2/health/ready must carry "Authorization: Bearer <token>", else 401 with WWW-Authenticate. Compared in constant time, never logged; a changed file is read again within a second.',
  'serving.startTimeoutMs': 'A version whose instances are not all ready within this is stopped and tried again (serving.startAttempts), ms.',
  'serving.drainTimeoutMs': 'Wait for requests in flight on the old version after a switch, ms.',
  'serving.stopGraceMs': 'SIGTERM to SIGKILL delay when stopping a runtime, ms.',
  'serving.crashLoopRestarts': 'Restarts in a row before an instance is declared CrashLoop.',
  'serving.restartBackoffMs': 'First restart delay of a crashed instance (doubles), ms.',
  'serving.basePort': 'Runtime instances listen on loopback ports from here up; 0: the OS picks.',
  'serving.startAttempts': 'Tries a version gets to become ready, each up to its start timeout, before it is Failed NotReady (and not tried again until the spec changes); the old version serves meanwhile.',
  'serving.startBackoffMs': 'Longest wait before the second try of a version that was not ready (a random wait up to this, doubling for each further try), ms.',
  'serving.isolation': '`host`: every built-in `onnx` version is a session in the one runtime host (`modeld host`), answered on the node endpoint without a second hop; `process`: each instance is a process of its own behind the host (as external runtimes are).',
  'serving.isolateModels': 'Models (`<namespace>/<name>`) served in processes of their own whatever `serving.isolation` says.',
  'serving.hostStart': '`agent`: the agent starts the runtime host detached when its socket does not answer, and starts it again when it dies; `systemd`: `modeld-host.service` does (the agent only connects).',
  'serving.sessionThreads': 'onnxruntime intra-op threads of each session in the runtime host.',
  'serving.sessionHangMs': 'A session run or load blocking the runtime host longer than this makes the host restart, every model restored (requests in flight on every model fail), ms.',
  'serving.probeIntervalMs': 'How often every serving instance (an HTTP GET of its ready path) and session (a warm-up inference) is probed, ms.',
  'serving.probeTimeoutMs': 'A probe not answered within this fails, ms.',
  'serving.probeFailures': 'Failed probes in a row before an instance leaves the route and is restarted (a session is replaced at its first).',
  'serving.onnxBackend': 'onnxruntime of the built-in onnx runtime: auto (onnxruntime-node, or onnxruntime-web\'s WASM build where no native binary loads, e.g. armv7), native, or wasm.',
  runtimes: 'frameworkType -> runtime: {command: [argv with {port} {modelDir} {modelName} {version}], env, readyPath, startTimeoutMs}. onnx is built in (on armv7 through the WASM backend).',
  'admin.socket': 'Unix socket of the local admin API (the CLI talks to the daemon through it); systemd\'s RuntimeDirectory=modeld.',
  'admin.socketGroup': 'Group that may use the admin socket: it is made 0660 with this group when the group exists (install.sh creates modeld; operators in it need no sudo for `modeld status`), else 0600 (owner and root only). Empty: always owner-only.',
  'admin.metricsBind': 'Address of /metrics (Prometheus). Loopback by default.',
  'admin.metricsPort': 'Port of /metrics; 0: the OS picks.',
  'log.level': 'trace, debug, info, warn, error or fatal. JSON lines on stdout (journald).',
};

/** camelCase -> CAMEL_CASE, as envOverrides reads it back. */
const envPart = (k: string) => k.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();
export const envName = (path: string) => `MODELD_${path.split('.').map(envPart).join('__')}`;

// zod 4 internals: walk wrappers (default/prefault/optional) down to objects and leaves.
type Def = { type: string; innerType?: Z; shape?: Record<string, Z>; options?: Z[]; element?: Z; entries?: Record<string, string> };
type Z = { _zod: { def: Def } };

function typeName(s: Z): string {
  const d = s._zod.def;
  if (d.type === 'default' || d.type === 'prefault' || d.type === 'optional') return typeName(d.innerType!);
  if (d.type === 'union') return 'size';
  if (d.type === 'enum') return Object.values(d.entries ?? {}).join(' \\| ');
  if (d.type === 'array') return `list of ${typeName(d.element!)}`;
  if (d.type === 'record') return 'map';
  return d.type;
}

/** Every key, in schema order; `runtimes` and maps are leaves. */
export function configKeys(): ConfigKey[] {
  const defaults = ConfigSchema.parse({ node: { name: 'hostname' } }) as Record<string, unknown>;
  const out: ConfigKey[] = [];
  const walk = (s: Z, path: string[]) => {
    const d = s._zod.def;
    if (d.type === 'default' || d.type === 'prefault' || d.type === 'optional') return walk(d.innerType!, path);
    if (d.type === 'object' && path[0] !== 'runtimes') {
      for (const [k, v] of Object.entries(d.shape!)) walk(v, [...path, k]);
      return;
    }
    const p = path.join('.');
    let value: unknown = defaults;
    for (const k of path) value = (value as Record<string, unknown> | undefined)?.[k];
    if (p === 'node.name') value = '<hostname>';
    if (!(p in HELP)) throw new Error(`config key ${p} has no description in scripts/config-doc.ts`);
    out.push({ path: p, type: typeName(s), default: value, env: envName(p), help: HELP[p] });
  };
  walk(ConfigSchema as unknown as Z, []);
  return out;
}

const yamlValue = (v: unknown) => (v === undefined ? '' : typeof v === 'string' ? (v === '' ? '""' : /^[\w./:<>-]+$/.test(v) ? v : JSON.stringify(v)) : JSON.stringify(v));

/** The commented template: every key commented out at its default, so the file parses to {}. */
export function renderTemplate(keys = configKeys()): string {
  const lines = [
    '# /etc/modeld/config.yaml: modeld configuration (generated by scripts/gen-config-doc.ts from',
    '# agent/config/schema.ts). Every key is shown commented out at its default: uncomment a key and',
    '# its section line to change it. Environment variables override this file: MODELD_ + the key path',
    '# in UPPER_SNAKE_CASE with __ between levels (MODELD_BROKER__URL, MODELD_STATE_DIR).',
    '# Where /etc/kubeedge/config/edgecore.yaml exists, node.name and broker.* default to its values.',
    '# Check a file with: modeld --config FILE doctor',
  ];
  let section: string[] = [];
  for (const k of keys) {
    const parts = k.path.split('.');
    const parents = parts.slice(0, -1);
    // Open the sections that differ from the previous key's.
    let common = 0;
    while (common < parents.length && common < section.length && parents[common] === section[common]) common++;
    if (common === 0 && parents.length === 0) lines.push('');
    for (let i = common; i < parents.length; i++) {
      if (i === 0) lines.push('');
      lines.push(`# ${'  '.repeat(i)}${parents[i]}:`);
    }
    section = parents;
    const indent = '  '.repeat(parents.length);
    lines.push(`#${indent} # ${k.help}`);
    const value = k.default === undefined ? '' : ` ${yamlValue(k.default)}`;
    lines.push(`#${indent} ${parts.at(-1)}:${value}${k.default === undefined ? '   # (no default)' : ''}`);
  }
  if (keys.some((k) => k.path === 'runtimes')) {
    lines.push('#', '# Example of a command runtime (Triton for frameworkType "tensorrt"):', '# runtimes:', '#   tensorrt:', '#     command: [/opt/tritonserver/bin/tritonserver, --model-repository, "{modelDir}", --http-port, "{port}"]', '#     readyPath: /v2/health/ready');
  }
  return lines.join('\n') + '\n';
}

const mdCell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

export function renderTable(keys = configKeys()): string {
  const rows = keys.map((k) => {
    const def = k.default === undefined ? '—' : `\`${JSON.stringify(k.default)}\``;
    return `| \`${k.path}\` | ${k.type} | ${mdCell(def)} | \`${k.env}\` | ${mdCell(k.help)} |`;
  });
  return ['| key | type | default | environment | meaning |', '|---|---|---|---|---|', ...rows].join('\n') + '\n';
}

export const TABLE_START = '<!-- config-table:start (generated by scripts/gen-config-doc.ts) -->';
export const TABLE_END = '<!-- config-table:end -->';

/** `doc` with the region between the markers replaced by the current table. */
export function withTable(doc: string, keys = configKeys()): string {
  const a = doc.indexOf(TABLE_START);
  const b = doc.indexOf(TABLE_END);
  if (a < 0 || b < a) throw new Error('docs/operations.md has no config-table markers');
  return `${doc.slice(0, a + TABLE_START.length)}\n${renderTable(keys)}${doc.slice(b)}`;
}
