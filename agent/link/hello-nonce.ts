import { randomBytes } from 'node:crypto';

// The nonce of the node's current hello (issue 14): fresh for each connect, echoed by the sync
// that answers it. A sync that echoes it was made after this connect, whatever the clocks say;
// one sync may use it (a second with it is a replay).

export class HelloNonce {
  private value: string | undefined;
  private usedBy = false;

  /** A new nonce for a new connect's hello. */
  next(): string {
    this.value = randomBytes(16).toString('base64url');
    this.usedBy = false;
    return this.value;
  }

  get current(): { nonce?: string; used: boolean } {
    return { nonce: this.value, used: this.usedBy };
  }

  /** A sync accepted on the strength of this nonce. */
  use(): void {
    this.usedBy = true;
  }
}
