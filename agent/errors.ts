// Coded errors: every failure the agent reports carries one of these codes as its status reason.

export type ErrorCode =
  // intake
  | 'BadMessage'
  | 'UnknownOperation'
  | 'MessageTooLarge'
  | 'InvalidSpec'
  | 'TargetVersionNotInManifest'
  | 'DuplicateVersion'
  | 'EmptyManifest'
  | 'MissingDigest'
  | 'ImageNotForAgent'
  | 'URLNotAllowed'
  | 'UnknownNode'
  // signed messages (issue 14)
  | 'Unsigned'
  | 'UnknownKey'
  | 'BadSignature'
  | 'Replayed'
  | 'LocalApplyNotAllowed'
  // fetch
  | 'HTTPError'
  | 'ConnectTimeout'
  | 'Stalled'
  | 'SizeMismatch'
  | 'TooLarge'
  | 'NoSpace'
  | 'DigestMismatch'
  | 'DownloadFailed'
  // install
  | 'UnsupportedArchive'
  | 'UnsafeArchive'
  | 'ArchiveTooLarge'
  | 'TooManyEntries'
  | 'CorruptArchive'
  | 'InstallFailed'
  // serving
  | 'RuntimeNotFound'
  | 'NotReady'
  | 'CrashLoop'
  | 'StartFailed'
  | 'NoRollbackVersion'
  // admin CLI and local API
  | 'BadRequest'
  | 'NotFound'
  | 'ManagedByCloud'
  | 'StateLocked'
  | 'DaemonNotRunning'
  | 'PermissionDenied'
  | 'AdminSocketInUse'
  | 'Corrupt'
  | 'SeedConflict'
  | 'NotHeld'
  | 'DeferralTooLong'
  // general
  | 'Cancelled'
  | 'ConfigInvalid'
  | 'Internal';

/**
 * A status's `reason`: an error code, or a notice that is not a failure (a rollback hold in
 * force; a cloud spec that replaced a local one; a step waiting for a node-wide slot; a switch
 * deferred by a local hold, `modeld defer`). The wire keeps it a string.
 */
export type StatusReason = ErrorCode | 'RolledBack' | 'CloudOverridesLocal' | 'WaitingForSlot' | 'UpdateDeferred';

export class ModeldError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  /** Extra facts for the status message and logs (expected/actual digests, attempts, url...). */
  readonly details: Record<string, unknown>;

  constructor(
    code: ErrorCode,
    message: string,
    opts: { retryable?: boolean; cause?: unknown; details?: Record<string, unknown> } = {},
  ) {
    super(message, { cause: opts.cause });
    this.name = 'ModeldError';
    this.code = code;
    this.retryable = opts.retryable ?? false;
    this.details = opts.details ?? {};
  }
}

export const isModeldError = (err: unknown): err is ModeldError => err instanceof ModeldError;

/** Any thrown value as a ModeldError, so reporting has one shape. */
export function toModeldError(err: unknown): ModeldError {
  if (err instanceof ModeldError) return err;
  if (err instanceof Error && err.name === 'AbortError') return new ModeldError('Cancelled', 'cancelled by a newer spec', { cause: err });
  const e = err as NodeJS.ErrnoException;
  if (e?.code === 'ENOSPC') return new ModeldError('NoSpace', `disk full: ${e.message}`, { cause: err, retryable: true });
  return new ModeldError('Internal', err instanceof Error ? err.message : String(err), { cause: err });
}
