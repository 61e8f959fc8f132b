import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { freePort } from './ports.js';

// Python's http.server as an outside HTTP peer (HTTP/1.0 by default: no keep-alive, bodies that
// end with the connection), serving the files of one directory.

export interface PythonHttp {
  url(file: string): string;
  stop(): Promise<void>;
}

export async function startPythonHttp(dir: string, opts: { protocol?: 'HTTP/1.0' | 'HTTP/1.1' } = {}): Promise<PythonHttp> {
  const port = await freePort();
  const child: ChildProcess = spawn('python3', ['-u', '-m', 'http.server', String(port), '--bind', '127.0.0.1', '--directory', dir, '--protocol', opts.protocol ?? 'HTTP/1.0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = once(child, 'exit');
  // It prints "Serving HTTP on 127.0.0.1 port N" once it listens.
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const onData = (c: Buffer) => {
      out += c.toString();
      if (out.includes('Serving HTTP')) resolve();
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`python3 http.server exited (${code}) before listening: ${out}`)));
  });
  child.stdout!.resume();
  child.stderr!.resume();
  return {
    url: (file) => `http://127.0.0.1:${port}/${file}`,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}
