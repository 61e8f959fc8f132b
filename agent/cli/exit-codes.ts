import { EXIT } from './exit.js';

// Each subcommand's exit codes, as its --help lists them (test/agent/cli-exit-codes.test.ts makes
// every one of them happen). Every command also exits 2 on an unknown option and 78 on a bad
// configuration; those are listed where the command reads the configuration.

type Code = readonly [number, string];

const OK: Code = [EXIT.OK, 'ok'];
const USAGE: Code = [EXIT.USAGE, 'bad usage or arguments (unknown option, unreadable or invalid file, malformed name)'];
const UNREACHABLE: Code = [EXIT.DAEMON_UNREACHABLE, 'the daemon holds the state directory but does not answer'];
const NOT_FOUND: Code = [EXIT.NOT_FOUND, 'no such model on this node'];
const CONFIG: Code = [EXIT.CONFIG_INVALID, 'configuration invalid'];
const DENIED: Code = [EXIT.PERMISSION_DENIED, 'permission denied: not allowed on the admin socket (not in its group), or root could not become the state directory\'s owner'];
const INTERRUPTED: Code = [EXIT.INTERRUPTED, 'interrupted (Ctrl-C)'];

export const COMMAND_EXIT_CODES: Record<string, readonly Code[]> = {
  run: [[EXIT.OK, 'stopped by SIGTERM or SIGINT'], [EXIT.FAILURE, 'could not start (state directory in use, ...)'], USAGE, CONFIG],
  host: [[EXIT.OK, 'stopped by SIGTERM or SIGINT'], [EXIT.FAILURE, 'could not start (the endpoint port in use, ...)'], USAGE, CONFIG],
  status: [OK, USAGE, NOT_FOUND, DENIED, CONFIG],
  get: [OK, USAGE, NOT_FOUND, DENIED, CONFIG],
  describe: [OK, USAGE, NOT_FOUND, DENIED, CONFIG],
  apply: [OK, [EXIT.FAILURE, 'refused (managed by the cloud, state directory in use, ...)'], USAGE, UNREACHABLE, DENIED, CONFIG],
  diff: [[EXIT.OK, 'no differences'], [EXIT.FAILURE, 'differences'], [EXIT.USAGE, 'bad usage or arguments, or apply would refuse the file'], CONFIG],
  delete: [OK, [EXIT.FAILURE, 'refused (managed by the cloud, ...)'], USAGE, UNREACHABLE, NOT_FOUND, DENIED, CONFIG],
  seed: [OK, [EXIT.FAILURE, 'digest mismatch, or other bytes than the ones seeded before under that version'], USAGE, UNREACHABLE, DENIED, CONFIG, INTERRUPTED],
  rollback: [OK, [EXIT.FAILURE, 'no version to roll back to, or (--release) no hold'], USAGE, UNREACHABLE, NOT_FOUND, DENIED, CONFIG],
  defer: [OK, [EXIT.FAILURE, '(--release) the model is not deferred'], [EXIT.USAGE, 'bad usage or arguments (malformed --until or --for, a time not in the future, longer than deferral.maxSeconds)'], UNREACHABLE, NOT_FOUND, DENIED, CONFIG],
  gc: [OK, [EXIT.FAILURE, 'the state directory is in use by another command'], USAGE, UNREACHABLE, DENIED, CONFIG],
  verify: [[EXIT.OK, 'everything intact'], [EXIT.FAILURE, 'something corrupt was found'], USAGE, UNREACHABLE, DENIED, CONFIG],
  doctor: [[EXIT.OK, 'no check failed'], [EXIT.FAILURE, 'a check failed'], USAGE],
  events: [[EXIT.OK, 'ok (with --follow: until Ctrl-C)'], USAGE, NOT_FOUND, DENIED, CONFIG],
  config: [OK, USAGE, DENIED, CONFIG],
  completion: [OK, USAGE],
  version: [OK, USAGE],
};

/** The "Exit codes:" block of a command's --help. */
export function exitCodesHelp(command: string): string {
  const codes = COMMAND_EXIT_CODES[command];
  if (!codes) throw new Error(`no exit codes listed for ${command}`);
  return `\nExit codes:\n${codes.map(([c, what]) => `  ${String(c).padEnd(4)}${what}`).join('\n')}\n`;
}
