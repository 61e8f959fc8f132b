// header.sequence for every message to a node: microseconds since the epoch, strictly increasing
// in this process, and raised past the highest a node says it accepted (hello.lastSequence) so a
// controller that restarts, or a new leader whose clock is a little behind, still continues above
// what the node has seen. Microseconds leave room for a thousand messages per millisecond before
// the counter runs ahead of the clock, and stay below 2^53 until the year 2255.

export class Sequencer {
  private last = 0;

  constructor(private readonly nowMs: () => number = Date.now) {}

  next(): number {
    this.last = Math.max(Math.floor(this.nowMs() * 1000), this.last + 1);
    return this.last;
  }

  /** A node accepted `floor` already (from an earlier process or leader): continue above it. */
  raise(floor: number): void {
    if (Number.isSafeInteger(floor) && floor > this.last) this.last = floor;
  }
}
