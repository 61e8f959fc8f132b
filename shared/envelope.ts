import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import {
  AckContentSchema,
  DeleteContentSchema,
  HelloContentSchema,
  ModelContentSchema,
  StatusContentSchema,
  SyncContentSchema,
  type AckContent,
  type DeleteContent,
  type HelloContent,
  type ModelContent,
  type StatusContent,
  type SyncContent,
} from './schema.js';

// The message envelope, shaped like KubeEdge's beehive message (key `route`, timestamp in ms).

export const DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024;

export const EnvelopeSchema = z.object({
  header: z.object({
    msg_id: z.string().min(1).max(128),
    parent_msg_id: z.string().max(128).optional().default(''),
    timestamp: z.number().int().min(0),
    resourceVersion: z.string().max(128).optional(),
    sync: z.boolean().optional(),
    /** The sender keeps this message until an `ack` names its msg_id (and resends it meanwhile). */
    ack: z.boolean().optional(),
    /**
     * Cloud -> node: increases for each node and resource across every message the controller
     * sends (rollout steps and rollbacks included), so a node can order messages that share a
     * generation and refuse a replay. Microseconds since the epoch, raised past what the node
     * says it accepted (hello.lastSequence): see controller/sequence.ts.
     */
    sequence: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
  }),
  route: z.object({
    source: z.string().max(128),
    group: z.string().max(64),
    operation: z.string().max(32),
    resource: z.string().max(512),
  }),
  content: z.unknown(),
  /** Cloud -> node: Ed25519 over the RFC 8785 form of the rest plus the node (shared/signing.ts). */
  signature: z.object({ alg: z.literal('Ed25519'), keyId: z.string().max(64), value: z.string().max(128) }).optional(),
});
export type RawEnvelope = z.infer<typeof EnvelopeSchema>;

/** Typed content per operation: the topic -> payload map both ends share. */
export interface ContentByOperation {
  update: ModelContent;
  insert: ModelContent;
  delete: DeleteContent;
  sync: SyncContent;
  status: StatusContent;
  hello: HelloContent;
  ack: AckContent;
}
export type Operation = keyof ContentByOperation;

const contentSchemas: { [K in Operation]: z.ZodType<ContentByOperation[K]> } = {
  update: ModelContentSchema,
  insert: ModelContentSchema,
  delete: DeleteContentSchema,
  sync: SyncContentSchema,
  status: StatusContentSchema,
  hello: HelloContentSchema,
  ack: AckContentSchema,
};
export const OPERATIONS = Object.keys(contentSchemas) as Operation[];

export type Message = {
  [K in Operation]: { header: RawEnvelope['header']; route: RawEnvelope['route'] & { operation: K }; content: ContentByOperation[K] };
}[Operation];

export type ParseResult =
  | { ok: true; message: Message }
  | { ok: false; reason: 'MessageTooLarge' | 'BadMessage' | 'UnknownOperation' | 'InvalidSpec'; message: string; envelope?: RawEnvelope };

/** Explains a zod error in one line, naming the path of each bad field. */
export function describeZodError(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`)
    .join('; ');
}

/**
 * Parses and validates one wire message. Never throws: bad input becomes a reason code and a
 * human message; when the envelope itself was readable it is returned too, so the caller can
 * answer the model it names.
 */
export function parseMessage(payload: Buffer | string, maxBytes = DEFAULT_MAX_MESSAGE_BYTES): ParseResult {
  const size = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
  if (size > maxBytes) {
    return { ok: false, reason: 'MessageTooLarge', message: `message of ${size} bytes exceeds the limit of ${maxBytes}` };
  }
  let json: unknown;
  try {
    json = JSON.parse(payload.toString());
  } catch (err) {
    return { ok: false, reason: 'BadMessage', message: `not JSON: ${(err as Error).message}` };
  }
  const envelope = EnvelopeSchema.safeParse(json);
  if (!envelope.success) {
    return { ok: false, reason: 'BadMessage', message: `bad envelope: ${describeZodError(envelope.error)}` };
  }
  const operation = envelope.data.route.operation as Operation;
  const schema = contentSchemas[operation];
  if (!Object.hasOwn(contentSchemas, operation) || !schema) {
    return {
      ok: false,
      reason: 'UnknownOperation',
      message: `unknown operation "${envelope.data.route.operation}" (expected one of ${OPERATIONS.join(', ')})`,
      envelope: envelope.data,
    };
  }
  const content = schema.safeParse(envelope.data.content);
  if (!content.success) {
    const isSpec = operation === 'update' || operation === 'insert' || operation === 'sync';
    return {
      ok: false,
      reason: isSpec ? 'InvalidSpec' : 'BadMessage',
      message: `bad ${operation} content: ${describeZodError(content.error)}`,
      envelope: envelope.data,
    };
  }
  return { ok: true, message: { header: envelope.data.header, route: envelope.data.route, content: content.data } as Message };
}

/** Builds an envelope; the only place messages are made, on both ends. */
export function makeEnvelope<K extends Operation>(
  operation: K,
  content: ContentByOperation[K],
  opts: { source: string; resource: string; parentMsgId?: string; now?: number; msgId?: string; ack?: boolean; sequence?: number },
) {
  return {
    header: {
      msg_id: opts.msgId ?? randomUUID(),
      parent_msg_id: opts.parentMsgId ?? '',
      timestamp: opts.now ?? Date.now(),
      ...(opts.ack ? { ack: true } : {}),
      ...(opts.sequence !== undefined ? { sequence: opts.sequence } : {}),
    },
    route: { source: opts.source, group: 'user', operation, resource: opts.resource },
    content,
  };
}

/** `<namespace>/inferencemodel/<name>`, as beehive names a resource. */
export function resourcePath(namespace: string, name: string): string {
  return `${namespace}/inferencemodel/${name}`;
}
