import { spawnSync } from 'node:child_process';
import { spawnTree } from './process-tree.js';
import { WAIT_MS, waitFor } from './wait.js';

// A systemd-style notify socket: a real AF_UNIX SOCK_DGRAM socket (python3, since Node has none)
// that records every datagram with the sender's pid from SCM_CREDENTIALS, as PID 1 sees them.

const LISTENER = `
import socket, sys, os, struct, json
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o777)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
print(json.dumps({"listening": True}), flush=True)
while True:
    msg, anc, flags, addr = s.recvmsg(8192, socket.CMSG_SPACE(12) + socket.CMSG_SPACE(64))
    pid = None
    for lvl, typ, data in anc:
        if lvl == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS:
            pid = struct.unpack('iII', data[:12])[0]
        elif lvl == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
            for i in range(len(data) // 4):
                os.close(struct.unpack('i', data[i*4:i*4+4])[0])
    print(json.dumps({"pid": pid, "msg": msg.decode("utf-8", "replace")}), flush=True)
`;

export interface NotifyMessage {
  pid: number | null;
  msg: string;
  /** The assignments, e.g. { READY: '1', STATUS: '...' }. */
  fields: Record<string, string>;
}

export interface NotifySocket {
  path: string;
  messages: NotifyMessage[];
  stop(): Promise<void>;
}

/** Whether the listener can run here (python3 on PATH); tests skip with a printed reason if not. */
export const canListenForNotify = (): boolean => spawnSync('python3', ['--version']).status === 0;

export async function startNotifySocket(path: string): Promise<NotifySocket> {
  const tree = spawnTree('python3', ['-c', LISTENER, path], { stdio: ['ignore', 'pipe', 'pipe'] });
  const child = tree.child;
  const messages: NotifyMessage[] = [];
  let listening = false;
  let buf = '';
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  child.stdout!.on('data', (c: Buffer) => {
    buf += c.toString();
    const lines = buf.split('\n');
    buf = lines.pop()!;
    for (const line of lines) {
      const o = JSON.parse(line) as { listening?: boolean; pid: number | null; msg: string };
      if (o.listening) listening = true;
      else {
        const fields: Record<string, string> = {};
        for (const l of o.msg.split('\n')) {
          const i = l.indexOf('=');
          if (i > 0) fields[l.slice(0, i)] = l.slice(i + 1);
        }
        messages.push({ pid: o.pid, msg: o.msg, fields });
      }
    }
  });
  await waitFor(() => listening || child.exitCode !== null, WAIT_MS, 'the notify socket');
  if (!listening) {
    await tree.end();
    throw new Error(`notify socket listener failed: ${stderr}`);
  }
  return { path, messages, stop: () => tree.end() };
}
