import { ModeldError } from '../errors.js';

// The deadline of a local hold (`modeld defer`), from what was asked: pure, the clock passed in.
// A hold lasts at most deferral.maxSeconds counted from when it was first placed, so an
// application that extends its hold again and again still lets the update through in the end.

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const DURATION = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$/;

/** An RFC 3339 time (`2026-12-02T15:00:00Z`, with an offset or Z) as epoch ms; undefined when malformed. */
export function parseRfc3339(text: string): number | undefined {
  if (!RFC3339.test(text)) return undefined;
  const ms = Date.parse(text.replace(' ', 'T'));
  return Number.isFinite(ms) ? ms : undefined;
}

/** A duration like `30m`, `2h`, `1h30m`, `90s`, `1d` as ms; undefined when malformed. */
export function parseDuration(text: string): number | undefined {
  if (!DURATION.test(text)) return undefined;
  let ms = 0;
  for (const m of text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)) ms += Number(m[1]) * UNIT_MS[m[2]];
  return Number.isFinite(ms) ? Math.round(ms) : undefined;
}

export interface DeferralRequest {
  /** RFC 3339. */
  until?: string;
  /** A duration (`30m`). */
  for?: string;
}

/**
 * When the hold ends and when it began. `since`: the start of a hold already in force (an
 * extension keeps it). Neither `until` nor `for`: as long as allowed.
 */
export function deferralDeadline(req: DeferralRequest, now: number, maxSeconds: number, since?: number): { until: number; since: number } {
  if (req.until !== undefined && req.for !== undefined) throw new ModeldError('BadRequest', '--until and --for do not go together');
  const start = since ?? now;
  const latest = start + maxSeconds * 1000;
  let until: number;
  if (req.until !== undefined) {
    const t = parseRfc3339(req.until);
    if (t === undefined) throw new ModeldError('BadRequest', `--until "${req.until.slice(0, 80)}" is not an RFC 3339 time (like 2026-12-02T15:00:00Z)`);
    if (t <= now) throw new ModeldError('BadRequest', `--until ${req.until.slice(0, 80)} is not in the future (now ${new Date(now).toISOString()})`);
    until = t;
  } else if (req.for !== undefined) {
    const d = parseDuration(req.for);
    if (d === undefined || d <= 0) throw new ModeldError('BadRequest', `--for "${req.for.slice(0, 80)}" is not a duration (like 30m, 2h, 1h30m)`);
    until = now + d;
  } else {
    until = latest;
  }
  if (until > latest) {
    const from = since === undefined ? '' : ` counted from when the hold was placed (${new Date(start).toISOString()})`;
    throw new ModeldError(
      'DeferralTooLong',
      `a hold may last at most ${maxSeconds} s (deferral.maxSeconds)${from}, that is until ${new Date(latest).toISOString()}; asked until ${new Date(until).toISOString()}`,
    );
  }
  return { until, since: start };
}
