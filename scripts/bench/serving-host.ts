// The agent side of the serving benchmark, in its own process so the load generator does not
// share its event loop: the agent's serving layer (Serving), which starts the runtime host
// (`modeld host`, a process of its own owning the node endpoint) and drives it over its control
// socket, driven here by JSON lines on stdin.
//   argv: <stateDir>          stdout: {"type":"ready", endpoint, hostPid}
//   stdin {"cmd":"activate","version":"2"} -> {"type":"activated", version, activateMs, switchMs}
//   stdin {"cmd":"serve","name":"img","version":"1"} -> {"type":"serving", name} (another model, from its tree)
//   stdin {"cmd":"close"} -> the host stopped, exits
import { createInterface } from 'node:readline';
import { ConfigSchema } from '../../agent/config/schema.js';
import { silentLogger } from '../../agent/log.js';
import { statePaths } from '../../agent/paths.js';
import { Serving } from '../../agent/runtime/serving.js';

const stateDir = process.argv[2];
const paths = statePaths(stateDir);
const config = ConfigSchema.parse({
  stateDir,
  gateway: { bind: '127.0.0.1', port: 0 },
  node: { address: '127.0.0.1' },
  serving: { stopGraceMs: 2000, drainTimeoutMs: 5000 },
});
let last = { switchMs: NaN };
const serving = new Serving({ config, paths, log: silentLogger(), onSwitch: (_ns, _n, _v, t) => (last = t) });
const say = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);
const target = (version: string, name = 'lin') => ({ namespace: 'bench', name, modelName: name, version, versionDir: paths.treeDir('bench', name, { version }), replicas: 1 });

await serving.start();
await serving.activate(target('1'));
say({ type: 'ready', endpoint: serving.gatewayUrl(), hostPid: (await serving.host.state()).pid });

for await (const line of createInterface({ input: process.stdin })) {
  const msg = JSON.parse(line) as { cmd: string; version?: string; name?: string };
  if (msg.cmd === 'serve') {
    try {
      await serving.activate(target(msg.version!, msg.name!));
      say({ type: 'serving', name: msg.name });
    } catch (err) {
      say({ type: 'error', message: (err as Error).message });
    }
  } else if (msg.cmd === 'activate') {
    const t0 = performance.now();
    try {
      await serving.activate(target(msg.version!));
      say({ type: 'activated', version: msg.version, activateMs: performance.now() - t0, switchMs: last.switchMs });
    } catch (err) {
      say({ type: 'error', message: (err as Error).message });
    }
  } else if (msg.cmd === 'close') {
    break;
  }
}
await serving.close();
await serving.stopHost();
process.exit(0);
