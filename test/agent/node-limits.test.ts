import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../agent/config/load.js';
import { ModeldError } from '../../agent/errors.js';
import { Throttle } from '../../agent/fetch/throttle.js';
import { NodeLimits, nodeLimitsFromConfig } from '../../agent/reconcile/node-limits.js';

const tick = () => new Promise<void>((r) => setImmediate(r));

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

describe('NodeLimits', () => {
  it('has edge-sized defaults: 2 downloads, 1 install, 1 runtime start at a time, no bandwidth cap', () => {
    const config = parseConfig({});
    expect(config.limits).toMatchObject({ fetches: 2, installs: 1, starts: 1 });
    const limits = nodeLimitsFromConfig(config);
    expect(limits.capacity('fetch')).toBe(2);
    expect(limits.capacity('install')).toBe(1);
    expect(limits.capacity('start')).toBe(1);
    expect(limits.bandwidth).toBeUndefined();
  });

  it('builds one Throttle for the whole node from fetch.bandwidth', () => {
    const limits = nodeLimitsFromConfig(parseConfig({ fetch: { bandwidth: '2MiB' } }));
    expect(limits.bandwidth).toBeInstanceOf(Throttle);
    expect(limits.bandwidth).toBe(limits.bandwidth); // one object, handed to every download
  });

  it('runs at once when a slot is free, and says nothing', async () => {
    const limits = new NodeLimits({ fetches: 2, installs: 1, starts: 1 });
    const waits: string[] = [];
    await expect(limits.withSlot('fetch', async () => 'done', { onWait: (m) => waits.push(m) })).resolves.toBe('done');
    expect(waits).toEqual([]);
  });

  it('a caller kept out says what it waits for and how many slots are taken, then runs when one frees', async () => {
    const limits = new NodeLimits({ fetches: 2, installs: 1, starts: 1 });
    const gate = deferred();
    const holders = [limits.withSlot('fetch', () => gate.promise), limits.withSlot('fetch', () => gate.promise)];
    const waits: string[] = [];
    let ran = false;
    const third = limits.withSlot('fetch', async () => void (ran = true), { onWait: (m) => waits.push(m) });
    await tick();
    expect(ran).toBe(false);
    expect(waits).toEqual(['waiting for a download slot (2 of 2 in use)']);
    // Another waiter learns its place in line.
    const more: string[] = [];
    const fourth = limits.withSlot('fetch', async () => {}, { onWait: (m) => more.push(m) });
    expect(more).toEqual(['waiting for a download slot (2 of 2 in use, 1 waiting ahead)']);
    gate.resolve();
    await Promise.all([...holders, third, fourth]);
    expect(ran).toBe(true);
    expect(limits.inUse('fetch')).toBe(0);
  });

  it('kinds do not share slots: an install waits for an install, not for downloads', async () => {
    const limits = new NodeLimits({ fetches: 1, installs: 1, starts: 1 });
    const gate = deferred();
    const download = limits.withSlot('fetch', () => gate.promise);
    const waits: string[] = [];
    await limits.withSlot('install', async () => {}, { onWait: (m) => waits.push(m) });
    await limits.withSlot('start', async () => {}, { onWait: (m) => waits.push(m) });
    expect(waits).toEqual([]);
    const install = limits.withSlot('install', () => gate.promise);
    const second = limits.withSlot('install', async () => {}, { onWait: (m) => waits.push(m) });
    expect(waits).toEqual(['waiting for an install slot (1 of 1 in use)']);
    gate.resolve();
    await Promise.all([download, install, second]);
  });

  it('an abort while waiting throws Cancelled and never runs the work; the slot goes to the next', async () => {
    const limits = new NodeLimits({ fetches: 1, installs: 1, starts: 1 });
    const gate = deferred();
    const holder = limits.withSlot('start', () => gate.promise);
    const ac = new AbortController();
    let ran = false;
    const quitter = limits.withSlot('start', async () => void (ran = true), { signal: ac.signal });
    const next = limits.withSlot('start', async () => 'next');
    ac.abort(new Error('superseded'));
    const err = await quitter.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModeldError);
    expect((err as ModeldError).code).toBe('Cancelled');
    expect((err as ModeldError).message).toMatch(/runtime start slot/);
    gate.resolve();
    await holder;
    await expect(next).resolves.toBe('next');
    expect(ran).toBe(false);
  });

  it('gives the slot back when the work throws, and the work may give it back early (once)', async () => {
    const limits = new NodeLimits({ fetches: 1, installs: 1, starts: 1 });
    await expect(limits.withSlot('install', async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(limits.inUse('install')).toBe(0);
    const gate = deferred();
    let otherRan = false;
    const early = limits.withSlot('start', async (release) => {
      release();
      release();
      await gate.promise;
    });
    await limits.withSlot('start', async () => void (otherRan = true));
    expect(otherRan).toBe(true);
    gate.resolve();
    await early;
    expect(limits.inUse('start')).toBe(0);
  });
});
