import type { Presence } from '../../shared/index.js';

export const presencePayload = (state: Presence['state'], node: string, agentVersion: string): string =>
  JSON.stringify({ state, node, time: new Date().toISOString(), agentVersion } satisfies Presence);
