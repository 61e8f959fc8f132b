import { createServer } from 'node:net';
import { ModeldError } from '../errors.js';

// Loopback ports for instances: from serving.basePort up, or chosen by the OS when it is 0.

const canBind = (port: number, host: string) =>
  new Promise<number | undefined>((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', () => resolve(undefined));
    srv.listen(port, host, () => {
      const got = (srv.address() as { port: number }).port;
      srv.close(() => resolve(got));
    });
  });

export class PortAllocator {
  private readonly used = new Set<number>();

  constructor(
    private readonly basePort: number,
    private readonly host = '127.0.0.1',
  ) {}

  async allocate(): Promise<number> {
    if (this.basePort === 0) {
      for (let i = 0; i < 20; i++) {
        const port = await canBind(0, this.host);
        if (port && !this.used.has(port)) {
          this.used.add(port);
          return port;
        }
      }
    } else {
      for (let port = this.basePort; port <= Math.min(65535, this.basePort + 2000); port++) {
        if (this.used.has(port)) continue;
        this.used.add(port); // reserve before the await so concurrent calls do not pick it too
        if (await canBind(port, this.host)) return port;
        this.used.delete(port);
      }
    }
    throw new ModeldError('StartFailed', `no free loopback port for an instance (basePort ${this.basePort})`, { retryable: true });
  }

  release(port: number): void {
    this.used.delete(port);
  }
}
