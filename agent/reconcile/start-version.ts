import { sleep as sharedSleep } from '../../shared/sleep.js';
import type { Config } from '../config/schema.js';
import { ModeldError, toModeldError, type StatusReason } from '../errors.js';
import { backoffDelay } from '../fetch/backoff.js';
import type { Logger } from '../log.js';
import { WAITING_FOR_SLOT, type NodeLimits } from './node-limits.js';
import type { StatusUpdate } from './report.js';
import type { ServeTarget, ServingPort } from './serving-port.js';

// The start step's executor: serve a version under a node-wide start slot, and give a version
// that was not ready in time (NotReady: what a slow start on a busy board looks like) more tries
// with backoff before it fails. Blue/green throughout: while the new version is tried, the old one
// serves. Other failures (StartFailed, CrashLoop, RuntimeNotFound) are not a matter of time and
// fail at once.

/** No wait between two tries is longer than this, whatever serving.startBackoffMs says. */
const MAX_BACKOFF_MS = 10 * 60_000;

export interface StartDeps {
  serving: ServingPort;
  limits: NodeLimits;
  reporter: { report(namespace: string, name: string, update: StatusUpdate): unknown };
  config: { serving: Pick<Config['serving'], 'startAttempts' | 'startBackoffMs'> };
  log: Logger;
  /** The wait between tries; default the shared sleep (tests record it). */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

const seconds = (ms: number) => `${Math.round(ms / 100) / 10} s`;

/**
 * Resolves once `target` serves. Throws NotReady after serving.startAttempts tries that were not
 * ready (the message says how many), any other error of a try at once, Cancelled on `signal`.
 */
export async function startVersion(target: ServeTarget, deps: StartDeps, signal: AbortSignal): Promise<void> {
  const { namespace: ns, name, version } = target;
  const tries = deps.config.serving.startAttempts;
  const report = (update: { reason?: StatusReason; message?: string }) => deps.reporter.report(ns, name, { phase: 'Starting', targetVersion: version, ...update });
  const wait = deps.sleep ?? sharedSleep;
  for (let attempt = 1; ; attempt++) {
    const label = attempt > 1 ? `version ${version}: try ${attempt} of ${tries}` : undefined;
    try {
      await deps.limits.withSlot(
        'start',
        async (release) => {
          report({ message: label });
          // Free the slot once the version takes traffic: draining the old one is no start.
          await deps.serving.activate(target, { signal, onRouted: release });
        },
        { signal, onWait: (message) => report({ reason: WAITING_FOR_SLOT, message: label ? `${label}, ${message}` : message }) },
      );
      return;
    } catch (err) {
      const e = toModeldError(err);
      if (signal.aborted || e.code !== 'NotReady' || tries === 1) throw e;
      if (attempt >= tries) {
        throw new ModeldError('NotReady', `not ready on ${tries} tries: ${e.message}`, { cause: e, details: { ...e.details, tries } });
      }
      const ms = backoffDelay(attempt, deps.config.serving.startBackoffMs, MAX_BACKOFF_MS);
      deps.log.warn({ model: `${ns}/${name}`, version, attempt, tries, waitMs: ms, err: e.message }, 'version not ready; trying again');
      report({ reason: 'NotReady', message: `version ${version} not ready on try ${attempt} of ${tries}: ${e.message}; trying again in ${seconds(ms)}` });
      await wait(ms, signal);
      if (signal.aborted) throw new ModeldError('Cancelled', `start of version ${version} cancelled`, { cause: signal.reason });
    }
  }
}
