import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { freePort } from './ports.js';

// Python's http.server as an outside HTTP peer (HTTP/1.0 by default: no keep-alive, bodies that
// end with the connection), serving the files of one directory.

export interface PythonHttp {
  url(file: string): string;
  /** What it printed (its request log), the last 20 kB. */
  log(): string;
  stop(): Promise<void>;
}

export async function startPythonHttp(dir: string, opts: { protocol?: 'HTTP/1.0' | 'HTTP/1.1' } = {}): Promise<PythonHttp> {
  const port = await freePort();
  const child: ChildProcess = spawn('python3', ['-u', '-m', 'http.server', String(port), '--bind', '127.0.0.1', '--directory', dir, '--protocol', opts.protocol ?? 'HTTP/1.0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = once(child, 'exit');
  let out = '';
  // It prints "Serving HTTP on 127.0.0.1 port N" once it listens, then a line per request.
  await new Promise<void>((resolve, reject) => {
    const onData = (c: Buffer) => {
      out = (out + c.toString()).slice(-20_000);
      if (out.includes('Serving HTTP')) resolve();
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`python3 http.server exited (${code}) before listening: ${out}`)));
  });
  return {
    url: (file) => `http://127.0.0.1:${port}/${file}`,
    log: () => out,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}
