import { get as httpGet } from 'node:http';
import { get as httpsGet } from 'node:https';
import { randomBytes } from 'node:crypto';
import { accessSync, constants, existsSync, lstatSync, readdirSync, readFileSync, statfsSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { delimiter, dirname, isAbsolute, join } from 'node:path';
import mqtt, { type IClientOptions } from 'mqtt';
import { userName } from '../accounts.js';
import { unreadableEdgecore, type EdgecoreDetection } from '../config/edgecore.js';
import type { Config } from '../config/schema.js';
import { probeOrtBackend } from '../runtime/ort-backend.js';

// The checks behind `modeld doctor`: each answers one question about this node with ok, warn or
// fail and one line of reason. Read-only, except a probe file created and removed in stateDir.

export type CheckStatus = 'ok' | 'warn' | 'fail';
export interface CheckResult {
  name: string;
  status: CheckStatus;
  message: string;
}

const GiB = 1024 ** 3;
const fmtBytes = (n: number) => (n >= GiB ? `${(n / GiB).toFixed(1)} GiB` : `${(n / 1024 ** 2).toFixed(0)} MiB`);
const errText = (err: unknown) => ((err as NodeJS.ErrnoException).code ?? (err as Error).message ?? String(err));

/** Who the checks run as: the daemon's user is what counts (root's CLI switched to it; service-user.ts). */
export function checkUser(config: Config, switched: { name: string; uid: number } | undefined): CheckResult {
  const uid = process.getuid?.() ?? 0;
  const me = `${userName(uid)} (uid ${uid})`;
  if (switched) return { name: 'user', status: 'ok', message: `checks run as ${switched.name} (uid ${switched.uid}), the owner of ${config.stateDir}, as the daemon runs` };
  let owner: number | undefined;
  try {
    owner = statSync(config.stateDir).uid;
  } catch {
    /* not there yet */
  }
  if (owner === undefined || owner === uid) return { name: 'user', status: 'ok', message: `checks run as ${me}` };
  return { name: 'user', status: 'warn', message: `checks run as ${me}, but ${config.stateDir} belongs to ${userName(owner)}: run doctor as that user or with sudo to check as the daemon` };
}

export function checkEdgecore(d: EdgecoreDetection): CheckResult {
  if (d.unreadable) return { name: 'edgecore', status: 'warn', message: unreadableEdgecore(d, userName(process.getuid?.() ?? 0)) };
  if (!d.found) return { name: 'edgecore', status: 'warn', message: `not found at ${d.path} (fine on a node without KubeEdge)` };
  if (d.problems.length) return { name: 'edgecore', status: 'warn', message: d.problems.join('; ') };
  const used = [d.nodeName && `node name ${d.nodeName}`, d.brokerUrl && `broker ${d.brokerUrl}`].filter(Boolean).join(', ');
  return { name: 'edgecore', status: 'ok', message: `${d.path}${used ? `: ${used} (unless set in the config)` : ''}` };
}

/** The nearest existing ancestor of `path` (the state dir may not exist before the first start). */
function existingAncestor(path: string): string {
  let p = path;
  while (!existsSync(p) && dirname(p) !== p) p = dirname(p);
  return p;
}

export function checkStateDir(config: Config): CheckResult {
  const dir = config.stateDir;
  if (!existsSync(dir)) {
    const parent = existingAncestor(dir);
    try {
      accessSync(parent, constants.W_OK);
      return { name: 'state-dir', status: 'warn', message: `${dir} does not exist yet; it will be created under ${parent}` };
    } catch {
      return { name: 'state-dir', status: 'fail', message: `${dir} does not exist and ${parent} is not writable by ${who()}` };
    }
  }
  try {
    if (!statSync(dir).isDirectory()) return { name: 'state-dir', status: 'fail', message: `${dir} is not a directory` };
    const probe = join(dir, `.doctor-${process.pid}-${randomBytes(4).toString('hex')}`);
    writeFileSync(probe, 'probe');
    unlinkSync(probe);
  } catch (err) {
    return { name: 'state-dir', status: 'fail', message: `${dir} is not writable by ${who()}: ${errText(err)}` };
  }
  // Files another user left (a root CLI of an older release): the daemon cannot change or remove them.
  const uid = process.getuid?.() ?? 0;
  const foreign = uid === 0 ? [] : othersFiles(dir, uid);
  if (foreign.length) {
    return {
      name: 'state-dir',
      status: 'fail',
      message: `${dir} is writable by ${who()}, but ${foreign.length >= FOREIGN_MAX ? `${FOREIGN_MAX}+` : foreign.length} entries in it are another user's (${foreign[0].path}: ${userName(foreign[0].uid)}): the daemon cannot change them; chown -R ${userName(uid)}: ${dir}`,
    };
  }
  return { name: 'state-dir', status: 'ok', message: `${dir} is writable by ${userName(uid)}` };
}

const who = () => `${userName(process.getuid?.() ?? 0)} (uid ${process.getuid?.()})`;
const FOREIGN_MAX = 100;
const WALK_MAX = 20_000;

/** Entries under `dir` not owned by `uid` (bounded: a store may hold many files). */
function othersFiles(dir: string, uid: number): Array<{ path: string; uid: number }> {
  const out: Array<{ path: string; uid: number }> = [];
  const stack = [dir];
  let seen = 0;
  while (stack.length && out.length < FOREIGN_MAX && seen < WALK_MAX) {
    const d = stack.pop()!;
    let names: string[];
    try {
      names = readdirSync(d);
    } catch {
      continue;
    }
    for (const n of names) {
      const p = join(d, n);
      seen++;
      try {
        const st = lstatSync(p);
        if (st.uid !== uid) out.push({ path: p, uid: st.uid });
        if (st.isDirectory()) stack.push(p);
      } catch {
        /* gone meanwhile */
      }
    }
  }
  return out;
}

export function checkDiskSpace(config: Config): CheckResult {
  const at = existingAncestor(config.stateDir);
  try {
    const s = statfsSync(at);
    const free = s.bavail * s.bsize;
    const total = s.blocks * s.bsize;
    const reserve = config.fetch.reserveBytes;
    const msg = `${fmtBytes(free)} free of ${fmtBytes(total)} on ${at} (store cap ${fmtBytes(config.store.capBytes)}, reserve ${fmtBytes(reserve)})`;
    if (free < reserve) return { name: 'disk-space', status: 'fail', message: `${msg}: below fetch.reserveBytes, no download can start` };
    if (free < Math.min(GiB, config.store.capBytes)) return { name: 'disk-space', status: 'warn', message: `${msg}: little room for new versions` };
    return { name: 'disk-space', status: 'ok', message: msg };
  } catch (err) {
    return { name: 'disk-space', status: 'fail', message: `cannot stat ${at}: ${errText(err)}` };
  }
}

/** Connects with the agent's settings (but its own client id: the daemon's session stays untouched). */
export async function checkBroker(config: Config, timeoutMs: number): Promise<CheckResult> {
  const b = config.broker;
  const url = b.url.replace(/^tcp:/, 'mqtt:').replace(/^ssl:/, 'mqtts:');
  let opts: IClientOptions;
  try {
    opts = {
      clientId: `modeld-doctor-${randomBytes(4).toString('hex')}`,
      clean: true,
      reconnectPeriod: 0,
      connectTimeout: timeoutMs,
      username: b.username,
      password: b.password,
      rejectUnauthorized: b.tls.rejectUnauthorized,
      ...(b.tls.ca ? { ca: readFileSync(b.tls.ca) } : {}),
      ...(b.tls.cert ? { cert: readFileSync(b.tls.cert) } : {}),
      ...(b.tls.key ? { key: readFileSync(b.tls.key) } : {}),
    };
  } catch (err) {
    return { name: 'broker', status: 'fail', message: `cannot read broker TLS files: ${errText(err)}` };
  }
  const started = performance.now();
  const outcome = await new Promise<string | undefined>((resolve) => {
    const client = mqtt.connect(url, opts);
    let done = false;
    const finish = (err?: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      client.end(true, () => resolve(err));
    };
    const timer = setTimeout(() => finish(`no CONNACK within ${timeoutMs} ms`), timeoutMs);
    client.once('connect', () => finish());
    client.once('error', (err) => finish(err.message || errText(err)));
    client.once('close', () => finish('connection closed'));
  });
  if (outcome !== undefined) return { name: 'broker', status: 'fail', message: `${b.url} unreachable: ${outcome}` };
  return { name: 'broker', status: 'ok', message: `${b.url} accepted a connection in ${Math.round(performance.now() - started)} ms` };
}

/** `cmd` as an absolute path, or found on PATH; executable. */
export function findExecutable(cmd: string, path = process.env.PATH ?? ''): string | undefined {
  const candidates = isAbsolute(cmd) || cmd.includes('/') ? [cmd] : path.split(delimiter).filter(Boolean).map((d) => join(d, cmd));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      if (statSync(c).isFile()) return c;
    } catch {
      // next
    }
  }
  return undefined;
}

export async function checkRuntimes(config: Config): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  const onnxConfigured = 'onnx' in config.runtimes;
  try {
    const p = await probeOrtBackend(config.serving.onnxBackend);
    const where = `on ${process.platform}/${process.arch}`;
    const message =
      p.backend === 'native'
        ? `onnxruntime-node ${p.version} serves ${where} (a probe model answered)`
        : `onnxruntime-web ${p.version} WASM backend serves ${where} (a probe model answered; slower than native)${p.nativeError ? `: onnxruntime-node does not load (${p.nativeError})` : ': serving.onnxBackend is wasm'}`;
    out.push({ name: 'runtime:onnx (built in)', status: 'ok', message });
  } catch (err) {
    out.push({
      name: 'runtime:onnx (built in)',
      status: onnxConfigured ? 'ok' : 'warn',
      message: `no onnxruntime backend (serving.onnxBackend ${config.serving.onnxBackend}) loads on ${process.platform}/${process.arch} (${(err as Error).message.split('\n')[0].slice(0, 160)})${
        onnxConfigured ? '; runtimes.onnx is configured instead' : '; ONNX models need runtimes.onnx configured (an external runtime)'
      }`,
    });
  }
  for (const [name, entry] of Object.entries(config.runtimes)) {
    const cmd = entry.command[0];
    if (/\{(port|modelDir|modelName|version)\}/.test(cmd)) {
      out.push({ name: `runtime:${name}`, status: 'fail', message: `runtimes.${name}.command[0] must be a program, not a placeholder: ${cmd}` });
      continue;
    }
    const found = findExecutable(cmd, entry.env.PATH ?? process.env.PATH);
    out.push(
      found
        ? { name: `runtime:${name}`, status: 'ok', message: `${found}` }
        : { name: `runtime:${name}`, status: 'fail', message: `runtimes.${name}.command[0] ${JSON.stringify(cmd)} not found or not executable${cmd.includes('/') ? '' : ' on PATH'}` },
    );
  }
  return out;
}

function tryListen(port: number, host: string): Promise<NodeJS.ErrnoException | undefined> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', (err) => resolve(err as NodeJS.ErrnoException));
    srv.listen({ port, host, exclusive: true }, () => srv.close(() => resolve(undefined)));
  });
}

/** One GET, over https without verifying (it only asks who holds the port, and sends nothing secret). */
function probe(url: string, tls: boolean, timeoutMs: number): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; text: string }> {
  return new Promise((resolve, reject) => {
    const req = (tls ? httpsGet : httpGet)(url, { timeout: timeoutMs, rejectUnauthorized: false, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
      res.on('error', reject);
    });
    req.once('timeout', () => req.destroy(new Error('timeout')));
    req.once('error', reject);
  });
}

/**
 * Is the program on this port the modeld daemon? (its gateway answers /v2, its metrics name
 * modeld; a gateway that wants a token answers 401 with realm="modeld").
 */
async function heldByModeld(host: string, port: number, kind: 'gateway' | 'metrics', timeoutMs: number, tls: boolean): Promise<boolean> {
  const h = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  try {
    const res = await probe(`${tls ? 'https' : 'http'}://${h.includes(':') ? `[${h}]` : h}:${port}${kind === 'gateway' ? '/v2' : '/metrics'}`, tls, timeoutMs);
    if (kind === 'metrics') return res.text.includes('modeld_info');
    return /"name"\s*:\s*"modeld"/.test(res.text) || (res.status === 401 && /realm="modeld"/.test(String(res.headers['www-authenticate'] ?? '')));
  } catch {
    return false;
  }
}

export async function checkPort(kind: 'gateway' | 'metrics', host: string, port: number, timeoutMs: number, opts: { tls?: boolean } = {}): Promise<CheckResult> {
  const name = `port:${kind}`;
  if (port === 0) return { name, status: 'ok', message: `${host}:0 (the OS picks a free port)` };
  const err = await tryListen(port, host);
  if (!err) return { name, status: 'ok', message: `${host}:${port} is free` };
  if (err.code === 'EADDRINUSE') {
    if (await heldByModeld(host, port, kind, timeoutMs, !!opts.tls)) return { name, status: 'ok', message: `${host}:${port} is held by the running modeld` };
    return { name, status: 'fail', message: `${host}:${port} is in use by another program` };
  }
  if (err.code === 'EACCES') return { name, status: 'fail', message: `${host}:${port} needs CAP_NET_BIND_SERVICE (ports below 1024)` };
  return { name, status: 'fail', message: `cannot bind ${host}:${port}: ${err.code ?? err.message}` };
}

/** The runtime host (agent/host/): does its control socket answer, and what does it serve? */
export async function checkHost(config: Config, timeoutMs: number): Promise<CheckResult> {
  const { HostClient } = await import('../runtime/host-client.js');
  const { statePaths } = await import('../paths.js');
  const { silentLogger } = await import('../log.js');
  const client = new HostClient({ config, paths: statePaths(config.stateDir), log: silentLogger() });
  try {
    const s = await client.state(timeoutMs);
    const notReady = s.routes.filter((r) => r.replicas > 0 && r.readyReplicas === 0);
    const models = s.routes.map((r) => `${r.modelName}@${r.version} (${r.kind === 'session' ? `session, ${r.backend ?? 'native'}` : 'proxy'}, ${r.readyReplicas}/${r.replicas} ready)`);
    const msg = `pid ${s.pid}, endpoint ${s.endpoint.bind}:${s.endpoint.port}, ${s.routes.length} models${models.length ? `: ${models.slice(0, 20).join(', ')}` : ''}${s.restoring ? '; restoring' : ''}`;
    if (notReady.length) return { name: 'host', status: 'warn', message: `${msg}; not ready: ${notReady.map((r) => r.modelName).join(', ')}` };
    return { name: 'host', status: 'ok', message: msg };
  } catch (err) {
    const how = config.serving.hostStart === 'systemd' ? 'systemctl status modeld-host' : 'the agent starts it (modeld run)';
    return { name: 'host', status: 'warn', message: `the runtime host does not answer on ${client.socketPath} (${errText(err)}): nothing is served; ${how}` };
  }
}
