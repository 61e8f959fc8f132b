import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backoffDelay, parseRetryAfter, retryWait } from '../../agent/fetch/backoff.js';
import { fetchPolicyFromConfig } from '../../agent/fetch/policy.js';
import { checkUrl } from '../../agent/fetch/url-policy.js';
import { ConfigSchema } from '../../agent/config/schema.js';
import { startChaosServer, type ChaosServer } from '../helpers/chaos-server.js';
import { makeTempRoot, openAgent, rejection, testPolicy, type Agentish } from './fetch-fixture.js';

const policy = testPolicy();

function refusal(url: string, p = policy): string {
  try {
    checkUrl(url, p);
  } catch (err) {
    expect((err as { code: string }).code).toBe('URLNotAllowed');
    return (err as Error).message;
  }
  throw new Error(`${url} was allowed`);
}

describe('checkUrl', () => {
  it('allows http and https URLs by default', () => {
    expect(checkUrl('https://models.example.com/a.tgz', policy).host).toBe('models.example.com');
    expect(checkUrl('http://127.0.0.1:8080/a.tgz', policy).port).toBe('8080');
  });

  it('refuses ftp: as an unsupported scheme', () => {
    expect(refusal('ftp://example.com/a.tgz')).toMatch(/scheme "ftp:" is not supported/);
  });

  it('refuses file: unless the policy allows it', () => {
    expect(refusal('file:///tmp/a.tgz')).toMatch(/"file:" is not allowed by fetch.allowedSchemes/);
    expect(checkUrl('file:///tmp/a.tgz', testPolicy({ allowedSchemes: ['file'] })).pathname).toBe('/tmp/a.tgz');
  });

  it('refuses a file: URL naming a remote host', () => {
    expect(refusal('file://otherhost/tmp/a.tgz', testPolicy({ allowedSchemes: ['file'] }))).toMatch(/remote host/);
  });

  it('refuses credentials in the URL without echoing them', () => {
    const msg = refusal('https://user:s3cret@example.com/a.tgz');
    expect(msg).toMatch(/credentials/);
    expect(msg).not.toContain('s3cret');
  });

  it('refuses unparsable and relative URLs', () => {
    expect(refusal('not a url')).toMatch(/not a valid absolute URL/);
    expect(refusal('/relative/path.tgz')).toMatch(/not a valid absolute URL/);
    expect(refusal('')).toMatch(/empty/);
  });

  it('enforces allowedHosts with exact names and *.wildcards', () => {
    const p = testPolicy({ allowedHosts: ['models.example.com', '*.cdn.example.net'] });
    expect(checkUrl('https://MODELS.example.com/x', p)).toBeInstanceOf(URL);
    expect(checkUrl('https://eu.cdn.example.net/x', p)).toBeInstanceOf(URL);
    expect(refusal('https://cdn.example.net/x', p)).toMatch(/not in fetch.allowedHosts/);
    expect(refusal('https://evil.com/x', p)).toMatch(/"evil.com"/);
    expect(refusal('https://models.example.com.evil.com/x', p)).toMatch(/not in fetch.allowedHosts/);
  });

  it('matches bracketed IPv6 hosts', () => {
    expect(checkUrl('http://[::1]:8080/x', testPolicy({ allowedHosts: ['::1'] }))).toBeInstanceOf(URL);
  });
});

describe('fetchPolicyFromConfig', () => {
  it('takes the fetch keys, the archive limit and allowUnverified from the config', () => {
    const config = ConfigSchema.parse({ fetch: { bandwidth: '2MiB', attempts: 3 }, limits: { archiveBytes: '1GiB' }, allowUnverified: true });
    expect(fetchPolicyFromConfig(config)).toMatchObject({
      attempts: 3,
      bandwidth: 2 * 1024 * 1024,
      maxBytes: 1024 ** 3,
      allowUnverified: true,
      allowedSchemes: ['https', 'http'],
      allowedHosts: [],
    });
  });
});

describe('backoff', () => {
  it('grows exponentially with full jitter, capped', () => {
    expect(backoffDelay(1, 100, 10_000, () => 0.999)).toBe(99);
    expect(backoffDelay(4, 100, 10_000, () => 0.999)).toBe(799);
    expect(backoffDelay(20, 100, 10_000, () => 0.999)).toBe(9990);
    expect(backoffDelay(3, 100, 10_000, () => 0)).toBe(0);
  });

  it('honours Retry-After in seconds or as a date, never past the cap', () => {
    expect(parseRetryAfter('3')).toBe(3000);
    expect(parseRetryAfter(new Date(10_000).toUTCString(), 4_000)).toBe(6000);
    expect(parseRetryAfter('soon')).toBeUndefined();
    expect(retryWait(1, { backoffBaseMs: 10, backoffMaxMs: 500 }, 3000, () => 0)).toBe(500);
    expect(retryWait(1, { backoffBaseMs: 10, backoffMaxMs: 5000 }, 3000, () => 0)).toBe(3000);
  });
});

describe('fetchBlob refuses URLs before any request', () => {
  let server: ChaosServer;
  let agent: Agentish;
  let cleanup: () => Promise<void>;
  beforeAll(async () => {
    server = await startChaosServer({ size: 1024 });
    const t = await makeTempRoot();
    cleanup = t.cleanup;
    agent = openAgent(t.root, testPolicy({ allowedHosts: ['localhost'] }));
  });
  afterAll(async () => {
    agent.close();
    await server.stop();
    await cleanup();
  });

  it.each([
    ['ftp', () => server.url.replace('http:', 'ftp:')],
    ['file', () => 'file:///etc/passwd'],
    ['credentials', () => server.url.replace('http://', 'http://u:p@')],
    ['host not allowed', () => server.url],
  ])('%s -> URLNotAllowed, no request', async (_name, url) => {
    const err = await rejection(agent.fetch({ url: url(), sha256: server.sha256 }));
    expect(err.code).toBe('URLNotAllowed');
    expect(server.requests).toHaveLength(0);
  });
});
