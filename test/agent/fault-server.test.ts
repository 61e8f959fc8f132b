import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { faultObject, seededRandom, startFaultServer, type FaultServer } from '../helpers/fault-server.js';

// The fault server's wire behaviour, read with a raw socket: what the e2e fault tests rely on.

let server: FaultServer | undefined;

afterEach(async () => {
  await server?.stop();
  server = undefined;
});

/** Sends one raw request; resolves with everything received, and how the connection ended. */
function raw(port: number, request: string): Promise<{ data: Buffer; end: 'fin' | 'reset' }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = connect(port, '127.0.0.1', () => s.write(request));
    s.on('data', (c) => chunks.push(c));
    s.on('end', () => resolve({ data: Buffer.concat(chunks), end: 'fin' }));
    s.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' ? resolve({ data: Buffer.concat(chunks), end: 'reset' }) : reject(err)));
  });
}

const get = (extra = '') => `GET /x HTTP/1.1\r\nhost: x\r\n${extra}\r\n`;
const split = (data: Buffer) => {
  const i = data.indexOf('\r\n\r\n');
  return { head: data.subarray(0, i).toString('latin1'), body: data.subarray(i + 4) };
};

describe('fault server', () => {
  const body = randomBytes(300_000);
  const start = async () => {
    server = await startFaultServer({ objects: [faultObject(body, '"a"'), faultObject(Buffer.from(body).reverse(), '"a"', 2)], seed: 7 });
    return Number(new URL(server.url).port);
  };

  it('http10: HTTP/1.0, no Content-Length, the body ends with a FIN (or cleanly at endAt)', async () => {
    const port = await start();
    server!.script({ kind: 'http10' }, { kind: 'http10', endAt: 1000 });
    const full = await raw(port, get('range: bytes=10-\r\n'));
    const { head, body: got } = split(full.data);
    expect(head).toMatch(/^HTTP\/1\.0 200 OK/);
    expect(head).not.toMatch(/content-length|etag/i);
    expect(full.end).toBe('fin');
    expect(got.equals(body)).toBe(true);
    const cut = await raw(port, get());
    expect(cut.end).toBe('fin');
    expect(split(cut.data).body.equals(body.subarray(0, 1000))).toBe(true);
  });

  it('closeBehindBody: Content-Length, Connection: close, the whole body then a FIN', async () => {
    const port = await start();
    server!.fallback = { kind: 'closeBehindBody' };
    const r = await raw(port, get());
    const { head, body: got } = split(r.data);
    expect(head).toMatch(/content-length: 300000/);
    expect(head).toMatch(/connection: close/);
    expect(r.end).toBe('fin');
    expect(got.equals(body)).toBe(true);
  });

  it('honours Range and If-Range like a real server, and rangeAs200 answers a Range with 200 and another object', async () => {
    const port = await start();
    server!.script({ kind: 'ok' }, { kind: 'ok' }, { kind: 'rangeAs200', object: 1 });
    expect(split((await raw(port, get('range: bytes=100-\r\nif-range: "a"\r\nconnection: close\r\n'))).data).head).toMatch(/^HTTP\/1\.1 206[^]*content-range: bytes 100-299999\/300000/);
    expect(split((await raw(port, get('range: bytes=100-\r\nif-range: "other"\r\nconnection: close\r\n'))).data).head).toMatch(/^HTTP\/1\.1 200/);
    const r = split((await raw(port, get('range: bytes=100-\r\n'))).data);
    expect(r.head).toMatch(/^HTTP\/1\.1 200/);
    expect(r.body.equals(Buffer.from(body).reverse())).toBe(true);
    expect(server!.requests.map((q) => [q.status, q.object])).toEqual([[206, 0], [200, 0], [200, 1]]);
  });

  it('reset: the body up to the offset, then RST; open offsets come from the seeded PRNG', async () => {
    const port = await start();
    server!.script({ kind: 'reset', atByte: 5000, hold: async () => {} }, { kind: 'reset' });
    const r = await raw(port, get());
    expect(r.end).toBe('reset');
    expect(server!.requests[0]).toMatchObject({ resetAt: 5000, bytesSent: 5000 });
    await raw(port, get());
    const rng = seededRandom(7);
    expect(server!.requests[1].resetAt).toBe(Math.floor(rng() * body.length));
  });

  it('trickle in the headers never ends the head', async () => {
    const port = await start();
    server!.fallback = { kind: 'trickle', in: 'headers', bytes: 1, everyMs: 5 };
    const s = connect(port, '127.0.0.1', () => s.write(get()));
    let got = '';
    await new Promise<void>((resolve) =>
      s.on('data', (c) => {
        got += c.toString('latin1');
        if (got.length > 120) resolve();
      }),
    );
    s.destroy();
    expect(got).toMatch(/^HTTP\/1\.1 200 OK\r\n[^]*x-trickle: a+$/);
  });
});
