import { spawnSync } from 'node:child_process';
import { getEventListeners } from 'node:events';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { sleep } from '../../shared/sleep.js';

const HOUR = 3_600_000;
/** Timers that keep this process alive (unref'd ones are not counted). */
const liveTimers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

describe('sleep', () => {
  it('resolves once the time has passed, leaving no listener and no timer', async () => {
    const ac = new AbortController();
    const before = liveTimers();
    await sleep(5, ac.signal);
    expect(ac.signal.aborted).toBe(false);
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
    expect(liveTimers()).toBe(before);
  });

  it('resolves (does not reject) as soon as the signal aborts, clearing its timer and its listener', async () => {
    const ac = new AbortController();
    const before = liveTimers();
    const p = sleep(HOUR, ac.signal);
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(1);
    expect(liveTimers()).toBe(before + 1);
    ac.abort(new Error('stop'));
    await expect(p).resolves.toBeUndefined();
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
    expect(liveTimers()).toBe(before);
  });

  it('resolves at once on a signal that is already aborted, without a timer or a listener', async () => {
    const signal = AbortSignal.abort();
    const before = liveTimers();
    const p = sleep(HOUR, signal);
    expect(liveTimers()).toBe(before);
    expect(getEventListeners(signal, 'abort')).toHaveLength(0);
    await expect(p).resolves.toBeUndefined();
  });

  it('leaves a long-lived signal with no listeners after hundreds of sleeps', async () => {
    const ac = new AbortController();
    for (let i = 0; i < 500; i++) await sleep(0, ac.signal);
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
  });

  it('wakes every sleeper on one signal when it aborts', async () => {
    const ac = new AbortController();
    const all = Promise.all(Array.from({ length: 50 }, () => sleep(HOUR, ac.signal)));
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(50);
    ac.abort();
    await all;
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
  });

  it('with unref, does not keep the process alive', () => {
    const module = fileURLToPath(new URL('../../shared/sleep.ts', import.meta.url));
    const script = `import(${JSON.stringify(module)}).then(({ sleep }) => sleep(${HOUR}, undefined, { unref: true }).then(() => console.log('woke')));`;
    // The hour-long timer is the only thing left: the process must exit at once, without waking.
    const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
    expect(child.error).toBeUndefined();
    expect({ status: child.status, signal: child.signal, stdout: child.stdout }).toEqual({ status: 0, signal: null, stdout: '' });
  });

  it('without unref, keeps the process alive until it wakes', () => {
    const module = fileURLToPath(new URL('../../shared/sleep.ts', import.meta.url));
    const script = `import(${JSON.stringify(module)}).then(({ sleep }) => sleep(20).then(() => console.log('woke')));`;
    const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
    expect({ status: child.status, stdout: child.stdout }).toEqual({ status: 0, stdout: 'woke\n' });
  });
});
