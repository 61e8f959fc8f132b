import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, rmSync, statSync, truncateSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { expectOneLineError, inferenceModel, offlineNodeConfig, runCli, startCli, writeConfig, writeYaml } from '../helpers/modeld-cli.js';
import { makeModelArchive } from '../helpers/models.js';
import { freePort } from '../helpers/ports.js';
import { waitFor } from '../helpers/wait.js';

// The small things an operator trips on, each as the CLI says it: the real reason first when a
// second daemon starts, the digest just seeded offered on MissingDigest, other bytes under a
// seeded version refused, Ctrl-C during a seed through the daemon exits 130.

let work: string;
let config: Record<string, unknown> & { stateDir: string };
let configFile: string;
let daemon: AgentProcess | undefined;
const cli = (...args: string[]) => runCli(configFile, args);

beforeEach(async () => {
  work = mkdtempSync(join(tmpdir(), 'modeld-messages-'));
  config = await offlineNodeConfig(work, { admin: { socket: join(work, 'admin.sock'), metricsBind: '127.0.0.1', metricsPort: await freePort() } });
  configFile = writeConfig(config);
});
afterEach(async () => {
  await daemon?.end();
  daemon = undefined;
  rmSync(work, { recursive: true, force: true });
});

describe('messages', () => {
  it('a second daemon on the same state directory says StateLocked, and nothing about the metrics port before it', async () => {
    daemon = startAgentProcess(config, ['--no-serve']);
    await waitFor(async () => JSON.parse((await cli('status', '-o', 'json')).stdout || '{}').daemon === true, 60_000, 'the first daemon');
    const second = await runCli(configFile, ['run', '--no-serve']);
    expect(second.code).toBe(1);
    expect(second.stdout).not.toMatch(/metrics not available|EADDRINUSE/);
    expect(expectOneLineError(second)).toMatch(/^modeld: StateLocked: the state directory is in use by modeld run \(pid \d+\)/);
  });

  it('MissingDigest on apply offers the digest seeded for that name and version', async () => {
    const a = await makeModelArchive(join(work, 'lin-1.tar.gz'), { w: 1, b: 0 });
    expect((await cli('seed', a.path, '--name', 'lin', '--version', '1')).code).toBe(0);
    const r = await cli('apply', '-f', writeYaml(join(work, 'nodigest.yaml'), inferenceModel('lin', [{ version: '1' }])));
    expect(r.code).toBe(2);
    expect(expectOneLineError(r)).toBe(
      `modeld: BadRequest: default/lin: MissingDigest: version "1" has no sha256sum and unverified downloads are not allowed; it was seeded as sha256 ${a.sha256}: add \`sha256sum: ${a.sha256}\` to that manifest entry`,
    );
    // Another name or version: nothing to offer.
    const other = await cli('apply', '-f', writeYaml(join(work, 'other.yaml'), inferenceModel('other', [{ version: '1' }])));
    expect(expectOneLineError(other)).toMatch(/unverified downloads are not allowed$/);
  });

  it('other bytes under an already seeded name and version are refused, unless --replace', async () => {
    const a = await makeModelArchive(join(work, 'a.tar.gz'), { w: 1, b: 0 });
    const b = await makeModelArchive(join(work, 'b.tar.gz'), { w: 2, b: 0 });
    expect((await cli('seed', a.path, '--name', 'lin', '--version', '1')).code).toBe(0);
    const again = await cli('seed', a.path, '--name', 'lin', '--version', '1');
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/already in the store/);
    const other = await cli('seed', b.path, '--name', 'lin', '--version', '1');
    expect(other.code).toBe(1);
    expect(expectOneLineError(other)).toBe(
      `modeld: SeedConflict: version 1 of default/lin was seeded as sha256 ${a.sha256}; this archive is sha256 ${b.sha256}. Seed it under another version, or pass --replace`,
    );
    expect(readdirSync(join(config.stateDir, 'blobs', 'sha256'), { recursive: true }).filter((f) => String(f).length > 3)).toHaveLength(1);
    const replaced = await cli('seed', b.path, '--name', 'lin', '--version', '1', '--replace');
    expect(replaced.code, replaced.stderr).toBe(0);
    expect(replaced.stdout).toBe(`${b.sha256}  ${b.path}\n`);
    // A spec naming the first digest does not make the store skip reading other bytes.
    expect((await cli('apply', '-f', writeYaml(join(work, 'lin.yaml'), inferenceModel('lin', [{ version: '2', sha256: a.sha256 }])))).code).toBe(0);
    const lie = await cli('seed', b.path, '--name', 'lin', '--version', '2');
    expect(lie.code).toBe(1);
    expect(expectOneLineError(lie)).toMatch(/^modeld: DigestMismatch: sha256 mismatch for .*b\.tar\.gz: expected [0-9a-f]{64}, got [0-9a-f]{64}$/);
  });

  it('Ctrl-C during a seed through the daemon exits 130, and the daemon keeps nothing of it', async () => {
    daemon = startAgentProcess(config, ['--no-serve']);
    await waitFor(async () => JSON.parse((await cli('status', '-o', 'json')).stdout || '{}').daemon === true, 60_000, 'the daemon');
    const big = join(work, 'big.tar.gz');
    const fd = openSync(big, 'w');
    writeSync(fd, Buffer.from([0x1f, 0x8b]));
    closeSync(fd);
    truncateSync(big, 2 * 1024 ** 3);
    const seed = startCli(configFile, ['seed', big, '--name', 'lin', '--version', '1']);
    try {
      const partial = join(config.stateDir, 'blobs', 'partial');
      await waitFor(() => (existsSync(partial) ? readdirSync(partial) : []).some((f) => statSync(join(partial, f)).size > 0), 60_000, 'the copy to start');
      // What a terminal does on Ctrl-C: SIGINT to the foreground process group.
      process.kill(-seed.tree.child.pid!, 'SIGINT');
      expect((await seed.tree.exited).code).toBe(130);
      expect(seed.stderr()).toBe('modeld: Cancelled: interrupted\n');
      await waitFor(() => readdirSync(partial).length === 0, 60_000, 'the partial copy removed');
    } finally {
      await seed.tree.end();
    }
  });
});
