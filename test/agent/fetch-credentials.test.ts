import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigSchema } from '../../agent/config/schema.js';
import { parseCredentials, type HostCredentials } from '../../agent/fetch/credentials.js';
import { makeTestPki, type TestPki } from '../helpers/test-pki.js';
import { makeTempRoot, openAgent, rejection, testPolicy, type Agentish } from './fetch-fixture.js';

// Private model stores (issue 14): per-host credentials from files on the node — a bearer token,
// basic auth, a client certificate, a site CA — against a real TLS server on loopback that demands
// each kind. Never from the spec, never sent over plain http, never to another host on a redirect.

const body = randomBytes(256 * 1024);
const sha256 = createHash('sha256').update(body).digest('hex');
const TOKEN = 'tok-7f3a9c1e-secret';

interface Store {
  url(path: string): string;
  seen: Array<{ path: string; authorization?: string; clientCert: boolean }>;
  close(): Promise<void>;
}

type Demand = { kind: 'bearer'; token: () => string } | { kind: 'basic'; pair: string } | { kind: 'mtls' } | { kind: 'none' };

let pki: TestPki;
let agent: Agentish;
let cleanup: () => Promise<void>;
const stores: Store[] = [];

beforeEach(async () => {
  pki = makeTestPki();
  const t = await makeTempRoot();
  cleanup = t.cleanup;
  agent = openAgent(t.root, testPolicy({ attempts: 2 }));
});

afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
  agent.close();
  await cleanup();
  pki.cleanup();
});

/** An https store demanding one kind of credential; `/go-elsewhere` redirects to `redirectTo`. */
async function startStore(demand: Demand, redirectTo?: () => string): Promise<Store> {
  const seen: Store['seen'] = [];
  const server: Server = createServer(
    {
      key: readFileSync(pki.serverKey),
      cert: readFileSync(pki.serverCert),
      ca: readFileSync(pki.caCert),
      requestCert: demand.kind === 'mtls',
      rejectUnauthorized: demand.kind === 'mtls',
    },
    (req, res) => {
      const socket = req.socket as import('node:tls').TLSSocket;
      seen.push({ path: req.url ?? '', authorization: req.headers.authorization, clientCert: socket.authorized && !!socket.getPeerCertificate()?.subject });
      const ok =
        demand.kind === 'bearer'
          ? req.headers.authorization === `Bearer ${demand.token()}`
          : demand.kind === 'basic'
            ? req.headers.authorization === `Basic ${Buffer.from(demand.pair).toString('base64')}`
            : true;
      if (!ok) {
        res.writeHead(401, { 'www-authenticate': demand.kind === 'basic' ? 'Basic realm="models"' : 'Bearer' }).end();
        return;
      }
      if (req.url?.startsWith('/go-elsewhere') && redirectTo) {
        res.writeHead(302, { location: redirectTo() }).end();
        return;
      }
      res.writeHead(200, { 'content-length': body.length, 'content-type': 'application/octet-stream' }).end(body);
    },
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  const store: Store = {
    url: (path) => `https://127.0.0.1:${port}/${path}`,
    seen,
    close: () => {
      server.closeAllConnections();
      return new Promise((r) => server.close(() => r()));
    },
  };
  stores.push(store);
  return store;
}

const secretFile = (name: string, content: string) => {
  const file = join(pki.dir, name);
  writeFileSync(file, content, { mode: 0o600 });
  return file;
};

const withCredentials = (map: Record<string, HostCredentials>) => (agent.policy = testPolicy({ attempts: 2, credentials: parseCredentials(map) }));

describe('private model stores: credentials per host from files on the node', () => {
  it('a bearer token: refused without it (401, not retried), served with it, never in an error', async () => {
    const s = await startStore({ kind: 'bearer', token: () => TOKEN });
    withCredentials({ '127.0.0.1': { caFile: pki.caCert } });
    const err = await rejection(agent.fetch({ url: s.url('m.tgz'), sha256 }));
    expect(err.code).toBe('HTTPError');
    expect(err.details.status).toBe(401);
    expect(s.seen).toHaveLength(1);

    withCredentials({ '127.0.0.1': { caFile: pki.caCert, bearerTokenFile: secretFile('token', `${TOKEN}\n`) } });
    const r = await agent.fetch({ url: s.url('m.tgz'), sha256 });
    expect(readFileSync(r.path).equals(body)).toBe(true);
    expect(s.seen.at(-1)!.authorization).toBe(`Bearer ${TOKEN}`);
    expect(JSON.stringify(agent.store.downloads.get(sha256) ?? {})).not.toContain(TOKEN);
  });

  it('a rotated token file is read again at the next download, without a restart', async () => {
    let current = TOKEN;
    const s = await startStore({ kind: 'bearer', token: () => current });
    const file = secretFile('token', TOKEN);
    withCredentials({ '127.0.0.1': { caFile: pki.caCert, bearerTokenFile: file } });
    await agent.fetch({ url: s.url('a.tgz'), sha256 });
    current = 'tok-rotated';
    writeFileSync(file, current);
    const other = randomBytes(16);
    const err = await rejection(agent.fetch({ url: s.url('b.tgz'), sha256: createHash('sha256').update(other).digest('hex') }));
    // The server answered (with the right token) and the bytes are another blob's: DigestMismatch, not 401.
    expect(err.code).toBe('DigestMismatch');
    expect(s.seen.at(-1)!.authorization).toBe('Bearer tok-rotated');
  });

  it('basic auth from a user:password file', async () => {
    const s = await startStore({ kind: 'basic', pair: 'edge:pa55:word' });
    withCredentials({ '127.0.0.1': { caFile: pki.caCert, basicAuthFile: secretFile('basic', 'edge:pa55:word\n') } });
    const r = await agent.fetch({ url: s.url('m.tgz'), sha256 });
    expect(readFileSync(r.path).equals(body)).toBe(true);
  });

  it('a client certificate (mutual TLS): the handshake fails without it, succeeds with it', async () => {
    const s = await startStore({ kind: 'mtls' });
    withCredentials({ '127.0.0.1': { caFile: pki.caCert } });
    const err = await rejection(agent.fetch({ url: s.url('m.tgz'), sha256 }));
    expect(err.code).toBe('DownloadFailed');
    expect(s.seen).toHaveLength(0);

    withCredentials({ '127.0.0.1': { caFile: pki.caCert, clientCertFile: pki.clientCert, clientKeyFile: pki.clientKey } });
    const r = await agent.fetch({ url: s.url('m.tgz'), sha256 });
    expect(readFileSync(r.path).equals(body)).toBe(true);
    expect(s.seen).toEqual([{ path: '/m.tgz', authorization: undefined, clientCert: true }]);
  });

  it('a store signed by another CA than the configured one is refused', async () => {
    const s = await startStore({ kind: 'none' });
    withCredentials({ '127.0.0.1': { caFile: pki.otherCaCert } });
    const err = await rejection(agent.fetch({ url: s.url('m.tgz'), sha256 }));
    expect(err.code).toBe('DownloadFailed');
    expect(err.message).toMatch(/certificate|verify|self.signed/i);
    expect(s.seen).toHaveLength(0);
  });

  it('a redirect to another host carries none of the first host\'s credentials (a presigned URL keeps working)', async () => {
    const presigned = await startStore({ kind: 'none' });
    const s = await startStore({ kind: 'bearer', token: () => TOKEN }, () => presigned.url('blob?X-Amz-Signature=abc&X-Amz-Expires=60').replace('127.0.0.1', 'localhost'));
    withCredentials({ '127.0.0.1': { caFile: pki.caCert, bearerTokenFile: secretFile('token', TOKEN) }, localhost: { caFile: pki.caCert } });
    const r = await agent.fetch({ url: s.url('go-elsewhere'), sha256 });
    expect(readFileSync(r.path).equals(body)).toBe(true);
    expect(s.seen[0].authorization).toBe(`Bearer ${TOKEN}`);
    expect(presigned.seen).toEqual([{ path: '/blob?X-Amz-Signature=abc&X-Amz-Expires=60', authorization: undefined, clientCert: false }]);
  });

  it('credentials are never sent over plain http: the download is refused before any request', async () => {
    withCredentials({ '127.0.0.1': { bearerTokenFile: secretFile('token', TOKEN) } });
    const err = await rejection(agent.fetch({ url: 'http://127.0.0.1:9/m.tgz', sha256 }));
    expect(err.code).toBe('DownloadFailed');
    expect(err.message).toContain('https only');
    expect(err.message).not.toContain(TOKEN);
  });

  it('an unreadable secret file is named, its content never', async () => {
    const s = await startStore({ kind: 'bearer', token: () => TOKEN });
    withCredentials({ '127.0.0.1': { caFile: pki.caCert, bearerTokenFile: join(pki.dir, 'missing-token') } });
    const err = await rejection(agent.fetch({ url: s.url('m.tgz'), sha256 }));
    expect(err.message).toMatch(/cannot read bearerTokenFile .*missing-token: ENOENT/);
    expect(s.seen).toHaveLength(0);
  });

  it('the config refuses entries that cannot work, naming the host', () => {
    const parse = (credentials: unknown) => ConfigSchema.safeParse({ fetch: { credentials } });
    const cases: unknown[] = [
      { 'a.example': { bearerTokenFile: '/t', basicAuthFile: '/b' } },
      { 'a.example': { clientCertFile: '/c' } },
      { 'a.example': { bearerTokenFile: 'relative/token' } },
      { 'https://a.example/': { bearerTokenFile: '/t' } },
      { 'a.example': { token: 'inline-secret' } },
    ];
    for (const c of cases) {
      const r = parse(c);
      expect(r.success, JSON.stringify(c)).toBe(false);
      expect(JSON.stringify(r.error?.issues[0].path)).toContain('credentials');
    }
    expect(parse({ 'models.example.com': { bearerTokenFile: '/etc/modeld/store-token' }, '*.blob.example.net': { caFile: '/etc/modeld/site-ca.pem' } }).success).toBe(true);
  });
});
