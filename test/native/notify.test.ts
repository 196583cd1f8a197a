// sdNotify against real unix datagram sockets. Node cannot bind one, so a python3 child receives.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { loadNative } from '../../src/native.js';

const native = loadNative();
const savedNotifySocket = process.env.NOTIFY_SOCKET;
let directory: string;

// Binds the address given as argv[1] ('@name' for the abstract namespace), says "ready", then prints
// the first datagram as hex.
const RECEIVER = [
  'import socket, sys',
  'name = sys.argv[1]',
  'sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)',
  "sock.bind('\\0' + name[1:] if name.startswith('@') else name)",
  "print('ready', flush=True)",
  'sock.settimeout(20)',
  'print(sock.recv(65536).hex(), flush=True)',
].join('\n');

/** Starts a receiver on `address`; resolves once it is bound, with a promise of what it will receive. */
async function startReceiver(address: string): Promise<{ received: Promise<string> }> {
  const child = spawn('python3', ['-c', RECEIVER, address], { stdio: ['ignore', 'pipe', 'inherit'] });
  let output = '';
  const lines = (): string[] => output.split('\n').filter(Boolean);
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (lines()[0] === 'ready') resolve();
    });
    child.once('exit', (code) => reject(new Error(`receiver exited early (${code})`)));
  });
  const received = new Promise<string>((resolve, reject) => {
    child.once('exit', (code) => {
      const hex = lines()[1];
      if (code === 0 && hex !== undefined) resolve(Buffer.from(hex, 'hex').toString());
      else reject(new Error(`receiver failed (${code})`));
    });
  });
  return { received };
}

beforeAll(() => {
  directory = mkdtempSync(join(tmpdir(), 'shuttle-notify-'));
});

afterEach(() => {
  if (savedNotifySocket === undefined) delete process.env.NOTIFY_SOCKET;
  else process.env.NOTIFY_SOCKET = savedNotifySocket;
});

afterAll(() => {
  rmSync(directory, { recursive: true, force: true });
});

describe('sdNotify', () => {
  it('returns false when NOTIFY_SOCKET is not set', () => {
    delete process.env.NOTIFY_SOCKET;
    expect(native.sdNotify('READY=1')).toBe(false);
  });

  it('sends the state to a socket named by path', async () => {
    const address = join(directory, 'notify.sock');
    const { received } = await startReceiver(address);
    process.env.NOTIFY_SOCKET = address;
    expect(native.sdNotify('READY=1\nSTATUS=watching /srv/shuttle/in')).toBe(true);
    expect(await received).toBe('READY=1\nSTATUS=watching /srv/shuttle/in');
  });

  it('sends the state to an abstract (@) socket, addressed by its exact length', async () => {
    const address = `@shuttle-test-${randomBytes(6).toString('hex')}`;
    const { received } = await startReceiver(address);
    process.env.NOTIFY_SOCKET = address;
    expect(native.sdNotify('STOPPING=1')).toBe(true);
    expect(await received).toBe('STOPPING=1');
  });

  it('throws an fs-style error when nothing listens on the socket', () => {
    const address = join(directory, 'nobody-here.sock');
    process.env.NOTIFY_SOCKET = address;
    expect(() => native.sdNotify('READY=1')).toThrow(
      expect.objectContaining({
        code: 'ENOENT',
        errno: -2,
        syscall: 'sendto',
        path: address,
        message: `ENOENT: no such file or directory, sendto '${address}'`,
      }),
    );
  });

  it('refuses a NOTIFY_SOCKET that is neither a path nor abstract', () => {
    process.env.NOTIFY_SOCKET = 'relative/notify.sock';
    expect(() => native.sdNotify('READY=1')).toThrow(expect.objectContaining({ code: 'EAFNOSUPPORT', syscall: 'sendto' }));
  });

  it('rejects an empty state before it reaches C++', () => {
    expect(() => native.sdNotify('')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
  });
});
