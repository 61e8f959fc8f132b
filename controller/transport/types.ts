// What the controller needs from a transport: publish one message for one node, and hand over
// whatever the nodes send back. The same envelopes travel over either transport.

export interface Inbound {
  payload: Buffer;
  /** The MQTT topic it arrived on; absent when the KubeEdge Router forwarded it over HTTP. */
  topic?: string;
}

export interface Transport {
  readonly name: 'mqtt' | 'kubeedge';
  start(onMessage: (m: Inbound) => void): Promise<void>;
  /** Resolves once the message is handed to something that will deliver it; rejects if not. */
  publish(node: string, topic: string, payload: string): Promise<void>;
  /** Whether a publish can go out now (for /healthz). */
  connected(): boolean;
  /** Why it cannot deliver now, in words (for /healthz), when it knows. */
  problem?(): string | undefined;
  stop(): Promise<void>;
}

/**
 * A publish that did not get through. `nodeUnreachable`: the path to the cloud side works but the
 * node is not connected (KubeEdge's Router answers 500 when cloudcore has no session for the
 * node); otherwise the transport itself failed (Router or broker down, a bad answer).
 */
export class DeliveryError extends Error {
  constructor(
    message: string,
    readonly nodeUnreachable: boolean,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'DeliveryError';
  }
}
