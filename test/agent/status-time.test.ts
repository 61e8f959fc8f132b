import { describe, expect, it } from 'vitest';
import { statusTime } from '../../agent/reconcile/status-time.js';

// Seen in CI: two statuses of one model stamped in the same millisecond tied at the controller, and
// a delayed earlier one overwrote the later (kubeedge-transport.test.ts, through a delaying Router).
describe('statusTime', () => {
  it('strictly increases within the process, even in one millisecond or with the clock stepped back', () => {
    const now = Date.parse('2026-12-02T00:00:00.000Z');
    const a = statusTime(now);
    const b = statusTime(now);
    const c = statusTime(now - 5000);
    expect(Date.parse(b)).toBeGreaterThan(Date.parse(a));
    expect(Date.parse(c)).toBeGreaterThan(Date.parse(b));
  });
});
