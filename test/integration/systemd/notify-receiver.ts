// Plays systemd's side of sd_notify for tests: a unix datagram socket (a path, or '@name' for the abstract
// namespace) that collects every datagram sent to it. Node cannot bind datagram sockets, so a python3
// child does, and prints each datagram as one hex line.

import { spawn, type ChildProcess } from 'node:child_process';

const RECEIVER = [
  'import socket, sys',
  'name = sys.argv[1]',
  'sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)',
  "sock.bind('\\0' + name[1:] if name.startswith('@') else name)",
  "print('ready', flush=True)",
  'while True:',
  '    print(sock.recv(65536).hex(), flush=True)',
].join('\n');

export interface NotifyReceiver {
  /** The datagrams received so far, decoded, in arrival order. */
  messages(): string[];
  /** Resolves once a datagram matching `pattern` has arrived; rejects after the timeout with what did arrive. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<void>;
  close(): void;
}

const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

export async function startNotifyReceiver(address: string): Promise<NotifyReceiver> {
  const child = spawn('python3', ['-c', RECEIVER, address], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  const received: string[] = [];
  let buffer = '';
  let errors = '';
  const listeners = new Set<() => void>();
  child.stderr.on('data', (chunk: Buffer) => (errors += chunk.toString()));
  await new Promise<void>((resolve, reject) => {
    let ready = false;
    child.stdout.on('data', (chunk: Buffer) => {
      buffer += chunk.toString();
      const lines = buffer.split('\n');
      buffer = lines.pop() ?? '';
      for (const line of lines) {
        if (!ready && line === 'ready') {
          ready = true;
          resolve();
        } else if (line !== '') {
          received.push(Buffer.from(line, 'hex').toString());
        }
      }
      listeners.forEach((listener) => listener());
    });
    child.once('exit', (code) => {
      children.delete(child);
      if (!ready) reject(new Error(`notify receiver exited (${code}): ${errors}`));
    });
  });
  return {
    messages: () => [...received],
    waitFor: (pattern, timeoutMs = 10_000) =>
      new Promise<void>((resolve, reject) => {
        const check = (): void => {
          if (received.some((message) => pattern.test(message))) {
            cleanup();
            resolve();
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`no datagram matching ${pattern} within ${timeoutMs} ms; received ${JSON.stringify(received)}`));
        }, timeoutMs);
        const cleanup = (): void => {
          clearTimeout(timer);
          listeners.delete(check);
        };
        listeners.add(check);
        check();
      }),
    close: () => {
      child.kill('SIGKILL');
      children.delete(child);
    },
  };
}

/** The key of every line of every datagram, in order: "READY=1\nSTATUS=x" gives READY, STATUS. */
export function messageKinds(messages: readonly string[]): string[] {
  return messages.flatMap((message) => message.split('\n').map((line) => line.slice(0, line.indexOf('='))));
}
