// A status's `time` orders the reports of one generation at the controller (controller/status/
// intake.ts keeps the newest). Two statuses of one model in the same millisecond would tie, and a
// delayed earlier one could then overwrite the later: so this process's stamps strictly increase.

let last = 0;

export function statusTime(now = Date.now()): string {
  last = Math.max(now, last + 1);
  return new Date(last).toISOString();
}
