#!/usr/bin/env node
import './node-check.js';
import { Command, CommanderError } from 'commander';
import { AGENT_VERSION } from '../version.js';
import { registerApply } from './apply.js';
import { registerCompletion } from './completion.js';
import { registerConfig } from './config-view.js';
import { registerDefer } from './defer.js';
import { registerDelete } from './delete.js';
import { registerDescribe } from './describe.js';
import { registerDiff } from './diff.js';
import { registerGet } from './get.js';
import { registerEvents } from './events.js';
import { EXIT, errorLine, exitCodeFor } from './exit.js';
import { registerGc } from './gc.js';
import { registerHost } from './host.js';
import { registerRollback } from './rollback.js';
import { registerRun } from './run.js';
import { becomeStateDirOwner } from './service-user.js';
import { loadConfig } from '../config/load.js';
import { registerDoctor } from './doctor.js';
import { registerSeed } from './seed.js';
import { registerStatus } from './status.js';
import { registerVerify } from './verify.js';
import { registerVersion } from './version.js';

// The one program: daemon (`modeld run`) and the node's admin CLI. One file per subcommand.
//
// Commands that change state go to the running daemon over its admin socket (config
// admin.socket); when no daemon runs they work on the state directory directly under its lock
// (and `modeld run` waits up to 10 s for it, then refuses to start). `status` and `events` read
// the store read-only then. More in README.md beside this file.
//
// Exit codes:
//   0   ok
//   1   failure (the operation failed: digest mismatch, corrupt data found by verify, the model
//       is managed by the cloud, no version to roll back to, state directory locked by another
//       CLI command, ...)
//   2   bad usage or arguments (unknown option, missing/unreadable file, not an archive,
//       malformed YAML or spec, malformed digest or name, a deferral malformed, past or over its cap)
//   3   the daemon is needed but not reachable (holds the state directory but does not answer)
//   4   not found (unknown model)
//   77  permission denied (EX_NOPERM): this user may not open the admin socket (not in its group),
//       or root could not switch to the state directory's owner
//   78  configuration invalid (EX_CONFIG)
//   130 interrupted (Ctrl-C)
// Each command's --help lists its own (exit-codes.ts); `modeld diff` has kubectl diff's: 0 no
// differences, 1 differences, 2 and up errors.
// Errors are one line on stderr: `modeld: <Reason>: <message>`.

const program = new Command()
  .name('modeld')
  .description('deliver and serve machine-learning models on this edge node')
  // `-V` only: `--version` is seed's option (`modeld seed x --version 3`); a bare `modeld --version` is handled below.
  .version(AGENT_VERSION, '-V', 'output the version number (also: modeld version)')
  .option('-c, --config <file>', 'configuration file (default /etc/modeld/config.yaml, or $MODELD_CONFIG)')
  .exitOverride()
  .configureOutput({ outputError: (str, write) => write(`modeld: ${str.replace(/^error: /, '')}`) });

// Root works on the state directory as its owner (the service user), before any command opens
// it. A config that does not load is left to the command to report (doctor lists it as a check).
const NO_STATE = new Set(['version', 'help']);
program.hook('preAction', (_program, command) => {
  if (process.geteuid?.() !== 0 || NO_STATE.has(command.name())) return;
  let stateDir: string;
  try {
    stateDir = loadConfig({ path: program.opts().config }).stateDir;
  } catch {
    return;
  }
  becomeStateDirOwner(stateDir, command.name());
});

registerRun(program);
registerHost(program);
registerDoctor(program);
registerStatus(program);
registerGet(program);
registerDescribe(program);
registerApply(program);
registerDiff(program);
registerDelete(program);
registerSeed(program);
registerRollback(program);
registerDefer(program);
registerGc(program);
registerVerify(program);
registerEvents(program);
registerConfig(program);
registerCompletion(program);
registerVersion(program);

// `modeld --version` (no subcommand) still prints the version.
const commands = new Set(program.commands.map((c) => c.name()));
const hasCommand = process.argv.slice(2).some((a) => commands.has(a) || a === 'help');
const argv = hasCommand ? process.argv : process.argv.map((a, i) => (i >= 2 && a === '--version' ? '-V' : a));

program.parseAsync(argv).then(
  () => {
    // `run` keeps the process alive with its own handles; the others end here.
  },
  (err: unknown) => {
    if (err instanceof CommanderError) {
      // Commander printed its message (or the help/version) already.
      process.exit(err.exitCode === 0 ? EXIT.OK : EXIT.USAGE);
    }
    process.stderr.write(errorLine(err) + '\n');
    const code = exitCodeFor(err);
    // kubectl diff: 1 means "differences"; a failure is 2 and up.
    process.exit(program.args[0] === 'diff' && code === EXIT.FAILURE ? EXIT.USAGE : code);
  },
);
