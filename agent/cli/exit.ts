import { ModeldError } from '../errors.js';

// Exit codes (also documented at the top of index.ts).
export const EXIT = {
  OK: 0,
  FAILURE: 1,
  USAGE: 2,
  DAEMON_UNREACHABLE: 3,
  NOT_FOUND: 4,
  /** EX_NOPERM: this user may not use the admin socket, or root cannot act as the state directory's owner. */
  PERMISSION_DENIED: 77,
  CONFIG_INVALID: 78,
  INTERRUPTED: 130,
} as const;

/** Errors in what the user passed (arguments, files, specs): exit 2. */
const USAGE_CODES = new Set(['BadRequest', 'InvalidSpec', 'TargetVersionNotInManifest', 'DuplicateVersion', 'EmptyManifest', 'MissingDigest', 'URLNotAllowed', 'DeferralTooLong']);

export function exitCodeFor(err: unknown): number {
  if (!(err instanceof ModeldError)) return EXIT.FAILURE;
  if (USAGE_CODES.has(err.code)) return EXIT.USAGE;
  switch (err.code) {
    case 'DaemonNotRunning':
      return EXIT.DAEMON_UNREACHABLE;
    case 'NotFound':
      return EXIT.NOT_FOUND;
    case 'PermissionDenied':
      return EXIT.PERMISSION_DENIED;
    case 'ConfigInvalid':
      return EXIT.CONFIG_INVALID;
    case 'Cancelled':
      return EXIT.INTERRUPTED;
    default:
      return EXIT.FAILURE;
  }
}

/** One line, no stack: what a person reads on stderr. */
export function errorLine(err: unknown): string {
  const text = err instanceof ModeldError ? `${err.code}: ${err.message}` : err instanceof Error ? err.message : String(err);
  return `modeld: ${text.replace(/\s*\n\s*/g, ' ').slice(0, 2000)}`;
}
