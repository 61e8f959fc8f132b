// The agent side of the serving benchmark, in its own process so the load generator does not
// share its event loop: Serving with one model, driven by JSON lines on stdin.
//   argv: <stateDir>          stdout: {"type":"ready", gateway, instancePort}
//   stdin {"cmd":"activate","version":"2"} -> {"type":"activated", version, activateMs, switchMs, runtimeStartMs, instancePort}
//   stdin {"cmd":"serve","name":"img","version":"1"} -> {"type":"serving", name} (another model, from its tree)
//   stdin {"cmd":"close"} -> exits
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
let last = { switchMs: NaN, runtimeStartMs: NaN };
const serving = new Serving({ config, paths, log: silentLogger(), onSwitch: (_ns, _n, _v, t) => (last = t) });
const say = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);
const target = (version: string, name = 'lin') => ({ namespace: 'bench', name, modelName: name, version, versionDir: paths.treeDir('bench', name, { version }), replicas: 1 });
const instancePort = () => (serving as unknown as { models: Map<string, { group: { instances: Array<{ port: number }> } }> }).models.get('bench/lin')!.group.instances[0].port;

await serving.start();
await serving.activate(target('1'));
say({ type: 'ready', gateway: serving.gatewayUrl(), instancePort: instancePort() });

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
      say({ type: 'activated', version: msg.version, activateMs: performance.now() - t0, ...last, instancePort: instancePort() });
    } catch (err) {
      say({ type: 'error', message: (err as Error).message });
    }
  } else if (msg.cmd === 'close') {
    break;
  }
}
await serving.close();
process.exit(0);
