import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigSchema } from '../../agent/config/schema.js';
import { proxyFromEnv, redactProxy } from '../../agent/fetch/dispatcher.js';
import { parseMirrors, viaMirror } from '../../agent/fetch/mirrors.js';
import { fetchPolicyFromConfig } from '../../agent/fetch/policy.js';
import { checkUrl } from '../../agent/fetch/url-policy.js';
import { faultObject, faultSeed, startFaultServer, type FaultServer } from '../helpers/fault-server.js';
import { startPythonHttp, type PythonHttp } from '../helpers/python-http.js';
import { startTinyproxy, type Tinyproxy } from '../helpers/tinyproxy.js';
import { makeTempRoot, openAgent, rejection, testPolicy, until, type Agentish } from './fetch-fixture.js';

// Boards behind a site proxy or a site mirror (issue 11): downloads go through the proxy the
// environment names (Debian's tinyproxy here, a real forward proxy), resume through it, and a
// configured mirror serves the spec's URLs with the digest still checked.

const SIZE = 2 * 1024 * 1024;
const body = randomBytes(SIZE);
const obj = faultObject(body, '"proxy-1"');

let agent: Agentish;
let cleanup: () => Promise<void>;
const stops: Array<() => Promise<void>> = [];

beforeEach(async () => {
  const t = await makeTempRoot();
  cleanup = t.cleanup;
  agent = openAgent(t.root, testPolicy());
});

afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
  agent.close();
  await cleanup();
});

async function proxy(): Promise<Tinyproxy> {
  const p = await startTinyproxy();
  stops.push(() => p.stop());
  return p;
}

async function origin(): Promise<FaultServer> {
  const s = await startFaultServer({ objects: [obj], seed: faultSeed() });
  stops.push(() => s.stop());
  return s;
}

describe('downloads through a forward proxy (HTTP_PROXY, HTTPS_PROXY, NO_PROXY)', () => {
  it('goes through the proxy the environment names, and the bytes are checked', async () => {
    const [p, s] = await Promise.all([proxy(), origin()]);
    agent.policy = testPolicy({ proxy: proxyFromEnv({ HTTP_PROXY: p.url }) });
    const r = await agent.fetch({ url: s.url, sha256: obj.sha256 });
    expect(readFileSync(r.path).equals(body)).toBe(true);
    expect(p.requests(s.url)).toEqual([`GET ${s.url} HTTP/1.1`]);
    expect(s.requests).toHaveLength(1);
  });

  it('resumes through the proxy after the connection is reset mid-body', async () => {
    const [p, s] = await Promise.all([proxy(), origin()]);
    // The reset waits until bytes have reached the client's file through the proxy: a resume.
    const partial = agent.paths.partial(obj.sha256);
    const hold = () => until(() => existsSync(partial) && statSync(partial).size >= 64 * 1024, 'bytes through the proxy on disk');
    s.script({ kind: 'reset', atByte: SIZE / 2, hold }, { kind: 'ok' });
    agent.policy = testPolicy({ proxy: proxyFromEnv({ http_proxy: p.url }) });
    const r = await agent.fetch({ url: s.url, sha256: obj.sha256 });
    expect(readFileSync(r.path).equals(body)).toBe(true);
    // The retry asked for the rest only, and it too came through the proxy.
    expect(s.requests).toHaveLength(2);
    const from = Number(/^bytes=(\d+)-$/.exec(s.requests[1].range ?? '')?.[1]);
    expect(from).toBeGreaterThan(0);
    expect(s.requests[1].start).toBe(from);
    expect(p.requests(s.url)).toEqual([`GET ${s.url} HTTP/1.1`, `GET ${s.url} HTTP/1.1`]);
    expect(r.fetchedBytes).toBeLessThan(SIZE + SIZE / 4);
  });

  it('a whole body followed by a close of a keep-alive connection is complete, not a retry from zero', async () => {
    // tinyproxy answers without a Connection header (keep-alive in HTTP/1.1) and closes after
    // each response: the client then saw "other side closed" behind the last byte, asked for
    // bytes=<size>-, got 416, and downloaded the whole archive again.
    const s = await origin();
    s.script({ kind: 'closeBehindBody', keepAlive: true });
    // A throttled client is behind when the FIN comes, every time.
    agent.policy = testPolicy({ bandwidth: 16 * 1024 * 1024 });
    const r = await agent.fetch({ url: s.url, sha256: obj.sha256 });
    expect(readFileSync(r.path).equals(body)).toBe(true);
    expect(s.requests).toHaveLength(1);
    expect(r.fetchedBytes).toBe(SIZE);
  });

  it('goes direct to a host NO_PROXY names', async () => {
    const [p, s] = await Promise.all([proxy(), origin()]);
    agent.policy = testPolicy({ proxy: proxyFromEnv({ HTTP_PROXY: p.url, NO_PROXY: 'localhost,127.0.0.1' }) });
    const r = await agent.fetch({ url: s.url, sha256: obj.sha256 });
    expect(readFileSync(r.path).equals(body)).toBe(true);
    expect(p.requests(s.url)).toEqual([]);
  });

  it('a proxy that is down fails the download with the reason, after its attempts', async () => {
    const s = await origin();
    const p = await proxy();
    const url = p.url;
    await p.stop();
    stops.pop();
    agent.policy = testPolicy({ attempts: 2, proxy: proxyFromEnv({ HTTP_PROXY: url }) });
    const err = await rejection(agent.fetch({ url: s.url, sha256: obj.sha256 }));
    expect(err.code).toMatch(/ConnectFailed|DownloadFailed/);
    expect(err.message).toMatch(/ECONNREFUSED|refused|connect/i);
    expect(err.details.attempts).toBe(2);
    expect(s.requests).toHaveLength(0);
  });

  it('reads lower case first, as curl does, and never shows a proxy password', () => {
    expect(proxyFromEnv({ HTTPS_PROXY: 'http://a:1', https_proxy: 'http://b:2', NO_PROXY: ' ' })).toEqual({ httpProxy: undefined, httpsProxy: 'http://b:2', noProxy: undefined });
    expect(redactProxy('http://user:s3cret@proxy:3128')).toBe('http://user:***@proxy:3128');
    expect(redactProxy('http://proxy:3128')).toBe('http://proxy:3128');
  });
});

describe('site mirrors (fetch.mirrors)', () => {
  let www: string;
  let mirror: PythonHttp;

  beforeEach(async () => {
    www = join(agent.root, 'www');
    mkdirSync(join(www, 'cache', 'linear'), { recursive: true });
    writeFileSync(join(www, 'cache', 'linear', 'model.tgz'), body);
    mirror = await startPythonHttp(www);
    stops.push(() => mirror.stop());
  });

  const mirrored = (over: Record<string, unknown> = {}) =>
    fetchPolicyFromConfig(
      ConfigSchema.parse({ fetch: { attempts: 2, backoffBaseMs: 10, allowedHosts: ['models.example.invalid'], mirrors: { 'http://models.example.invalid/store/': mirror.url('cache/') }, ...over } }),
      {},
    );

  it('fetches the spec URL from the mirror (its host unresolvable here), digest checked', async () => {
    agent.policy = mirrored();
    const r = await agent.fetch({ url: 'http://models.example.invalid/store/linear/model.tgz', sha256: obj.sha256 });
    expect(readFileSync(r.path).equals(body)).toBe(true);
    expect(mirror.log()).toContain('GET /cache/linear/model.tgz');
  });

  it('other bytes at the mirror are a DigestMismatch and nothing is stored', async () => {
    writeFileSync(join(www, 'cache', 'linear', 'model.tgz'), Buffer.from(body).reverse());
    agent.policy = mirrored();
    const err = await rejection(agent.fetch({ url: 'http://models.example.invalid/store/linear/model.tgz', sha256: obj.sha256 }));
    expect(err.code).toBe('DigestMismatch');
    expect(agent.blobStore.has(obj.sha256)).toBe(false);
  });

  it('the spec URL is checked before the rewrite: a host outside allowedHosts stays refused', async () => {
    agent.policy = mirrored({ allowedHosts: ['other.example.invalid'] });
    const err = await rejection(agent.fetch({ url: 'http://models.example.invalid/store/linear/model.tgz', sha256: obj.sha256 }));
    expect(err.code).toBe('URLNotAllowed');
    expect(mirror.log()).not.toContain('GET /cache');
  });

  it('a mirror is allowed by being configured; other hosts are still refused', () => {
    const policy = mirrored();
    expect(checkUrl(mirror.url('cache/linear/model.tgz'), policy)).toBeInstanceOf(URL);
    expect(() => checkUrl('http://127.0.0.2:1/x', policy)).toThrow(/not in fetch.allowedHosts/);
  });
});

describe('viaMirror', () => {
  const mirrors = parseMirrors({
    'https://models.example.com/store': 'http://cache.site.lan:8080/m/',
    'https://models.example.com/store/big/': 'http://bigcache.site.lan/',
  });

  it('rewrites at a path boundary, the longest prefix winning, keeping the query', () => {
    expect(viaMirror(new URL('https://models.example.com/store/a/b.tgz?sig=1'), mirrors)?.href).toBe('http://cache.site.lan:8080/m/a/b.tgz?sig=1');
    expect(viaMirror(new URL('https://models.example.com/store/big/x.tgz'), mirrors)?.href).toBe('http://bigcache.site.lan/x.tgz');
    expect(viaMirror(new URL('https://models.example.com/store-private/x.tgz'), mirrors)).toBeUndefined();
    expect(viaMirror(new URL('http://models.example.com/store/a.tgz'), mirrors)).toBeUndefined();
    expect(viaMirror(new URL('https://models.example.com.evil.net/store/a.tgz'), mirrors)).toBeUndefined();
  });

  it('the config refuses a mirror that is not a plain http(s) prefix, naming the key', () => {
    const bad = (mirrors: Record<string, string>) => ConfigSchema.safeParse({ fetch: { mirrors } });
    const cases: Array<Record<string, string>> = [{ 'ftp://a/': 'http://b/' }, { 'https://a/': 'http://u:p@b/' }, { 'https://a/?x=1': 'http://b/' }, { 'not a url': 'http://b/' }];
    for (const m of cases) {
      const r = bad(m);
      expect(r.success, JSON.stringify(m)).toBe(false);
      expect(JSON.stringify(r.error?.issues[0].path)).toContain('mirrors');
    }
    expect(bad({ 'https://a/x/': 'http://10.0.0.5:8080/x/' }).success).toBe(true);
  });
});
