import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { LocalTarget } from '../runtime/gateway.js';
import { jsonReply, loadOipModel, type OipModel, type OipModelOptions, type OipReply } from '../runtime/oip-model.js';
import { OipError, OIP_TO_ORT, oipDatatype } from '../runtime/oip-tensors.js';
import { readBody, refuseBody } from '../runtime/read-body.js';
import type { RouteSpec } from './protocol.js';

// One model version held in the host: `replicas` loaded sessions (OipModel), each warmed up before
// it takes traffic; a request goes to the one with the fewest requests in flight. Answered in this
// process: no second hop.

export interface Session {
  /** Unique per loaded session (state and tests tell a reload from a kept session). */
  id: string;
  model: OipModel;
  inFlight: number;
  /** Out of the route: its probe failed (a replacement is loaded) or it is being released. */
  out: boolean;
}

export type LoadModel = (o: OipModelOptions) => Promise<OipModel>;

/** An infer body with every input zero-filled, symbolic dimensions 1: the warm-up and probe request. */
export function warmupBody(model: OipModel): Buffer | undefined {
  const inputs = [];
  for (const i of model.inputs) {
    const datatype = oipDatatype(i.type);
    if (!(datatype in OIP_TO_ORT)) return undefined; // a type JSON cannot carry: no warm-up possible
    const shape = i.shape.map((d) => (typeof d === 'number' && d >= 0 ? d : 1));
    const count = shape.reduce((a, b) => a * b, 1);
    if (count > 1_000_000) return undefined;
    inputs.push({ name: i.name, shape, datatype, data: new Array(count).fill(datatype === 'BOOL' ? false : 0) });
  }
  return Buffer.from(JSON.stringify({ inputs }));
}

/** Loads one session and runs the warm-up inference; rejects with the reason when either fails. */
export async function loadWarm(load: LoadModel, o: OipModelOptions): Promise<OipModel> {
  const model = await load(o);
  const body = warmupBody(model);
  if (body) {
    try {
      const r = await model.infer(body, { 'content-type': 'application/json' });
      if (r.status !== 200) throw new Error(`status ${r.status}: ${r.body.toString('utf8').slice(0, 300)}`);
    } catch (err) {
      await model.release().catch(() => {});
      throw new Error(`warm-up inference failed: ${(err as Error).message}`);
    }
  }
  return model;
}

const send = (res: ServerResponse, r: OipReply) => {
  if (res.headersSent) return void res.destroy();
  res.writeHead(r.status, r.headers);
  res.end(r.body);
};
const sendError = (res: ServerResponse, status: number, message: string, extra: Record<string, string> = {}) => {
  const r = jsonReply(status, { error: message });
  send(res, { ...r, headers: { ...r.headers, ...extra } });
};

export class SessionRoute implements LocalTarget {
  readonly kind = 'local';
  readonly sessions: Session[] = [];
  /** Set when a restore failed: the route serves nothing and says why. */
  error: string | undefined;

  constructor(
    readonly spec: RouteSpec,
    private readonly maxBodyBytes: number,
    private readonly hooks: { error(err: unknown): void; begin(key: string): void; end(key: string): void },
  ) {}

  get namespace() {
    return this.spec.namespace;
  }
  get name() {
    return this.spec.name;
  }
  get modelName() {
    return this.spec.modelName;
  }
  get version() {
    return this.spec.version;
  }

  ready(): Session[] {
    return this.sessions.filter((s) => !s.out);
  }
  readyCount(): number {
    return this.ready().length;
  }
  shouldServe(): boolean {
    return this.spec.replicas > 0;
  }
  inFlight(): number {
    return this.sessions.reduce((n, s) => n + s.inFlight, 0);
  }

  add(model: OipModel): Session {
    const s = { id: randomBytes(6).toString('hex'), model, inFlight: 0, out: false };
    this.sessions.push(s);
    return s;
  }

  handle(req: IncomingMessage, res: ServerResponse, path: string): void {
    const m = /^\/v2\/models\/[^/]+(?:\/versions\/([^/]+))?(\/ready|\/infer)?\/?$/.exec(path);
    if (!m) return sendError(res, 404, `no route for ${req.method} ${path}`);
    if (m[1] !== undefined && decodeSafe(m[1]) !== this.spec.version) return sendError(res, 404, `model "${this.spec.modelName}" has no version "${m[1].slice(0, 64)}"`);
    let pick: Session | undefined;
    for (const s of this.ready()) if (!pick || s.inFlight < pick.inFlight) pick = s;
    if (!pick) return sendError(res, 503, `model "${this.spec.modelName}" has no ready instance`, { 'retry-after': '1' });
    const action = m[2];
    if (action === '/infer') {
      if (req.method !== 'POST') return sendError(res, 405, 'infer takes POST');
      return this.infer(req, res, pick);
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return sendError(res, 405, `${req.method} not allowed here`);
    if (action === '/ready') return send(res, jsonReply(200, { name: this.spec.modelName, ready: true }));
    send(res, jsonReply(200, pick.model.metadata()));
  }

  private infer(req: IncomingMessage, res: ServerResponse, s: Session): void {
    s.inFlight++;
    const key = `${this.spec.namespace}/${this.spec.name}`;
    let asked = false;
    let done = false;
    const finish = () => {
      if (!done) {
        done = true;
        s.inFlight--;
        if (asked) this.hooks.end(key);
      }
    };
    res.once('close', finish);
    readBody(req, this.maxBodyBytes)
      .then((body) => {
        asked = true;
        this.hooks.begin(key);
        return s.model.infer(body, req.headers);
      })
      .then(
        (reply) => {
          finish();
          send(res, reply);
        },
        (err: unknown) => {
          finish();
          const status = err instanceof OipError ? err.status : 500;
          if (status === 500) this.hooks.error(err);
          const message = (err as Error)?.message ?? String(err);
          if (status !== 413) return sendError(res, status, message);
          const r = jsonReply(413, { error: message });
          refuseBody(req, res, 413, r.headers, r.body);
        },
      );
  }
}

function decodeSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

export const defaultLoad: LoadModel = loadOipModel;
