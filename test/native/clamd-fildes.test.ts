// zFILDES exchanges (one file, or a zIDSESSION session of several) against stand-in servers. A python3 child
// plays clamd, since Node cannot receive descriptors; the real clamd is exercised by the scanner integration
// tests.
import { spawn, type ChildProcess, execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { loadNative } from '../../src/native.js';

const native = loadNative();
let directory: string;
const children: ChildProcess[] = [];

// Listens on argv[1]. Reads the command up to its NUL, then one data byte with its descriptors, and
// prints what it got as JSON. Then, by argv[2]: 'verdict' reads the received file and answers
// "fd[N]: <first line> FOUND"; 'silent' never answers; 'hangup' closes without answering.
const FAKE_CLAMD = `
import json, os, socket, sys, time
path, mode = sys.argv[1], sys.argv[2]
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(path)
server.listen(1)
print('ready', flush=True)
conn, _ = server.accept()
command = b''
while not command.endswith(b'\\0'):
    byte = conn.recv(1)
    if not byte:
        break
    command += byte
data, fds, _, _ = socket.recv_fds(conn, 16, 4)
print(json.dumps({'command': command.hex(), 'data': data.hex(), 'fds': len(fds)}), flush=True)
if mode == 'verdict':
    content = os.pread(fds[0], 4096, 0).decode().splitlines()[0]
    conn.sendall(('fd[%d]: %s FOUND' % (fds[0], content)).encode() + b'\\0')
elif mode == 'silent':
    conn.recv(1)
conn.close()
`;

interface FakeClamd {
  socketPath: string;
  /** What the server received, once it has handled the connection. */
  received: Promise<{ command: string; data: string; fds: number }>;
}

async function startFakeClamd(name: string, mode: 'verdict' | 'silent' | 'hangup'): Promise<FakeClamd> {
  const socketPath = join(directory, name);
  const child = spawn('python3', ['-c', FAKE_CLAMD, socketPath, mode], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  let output = '';
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (output.startsWith('ready\n')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`fake clamd exited early (${code})`)));
  });
  const received = new Promise<{ command: string; data: string; fds: number }>((resolve, reject) => {
    child.stdout.on('data', () => {
      const report = output.split('\n')[1];
      if (report) resolve(JSON.parse(report) as { command: string; data: string; fds: number });
    });
    child.once('exit', () => reject(new Error('fake clamd exited without a report')));
  });
  return { socketPath, received };
}

beforeAll(() => {
  directory = mkdtempSync(join(tmpdir(), 'shuttle-clamd-'));
});

afterEach(() => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
});

afterAll(() => {
  rmSync(directory, { recursive: true, force: true });
});

function sample(name: string, content: string): string {
  const path = join(directory, name);
  writeFileSync(path, content);
  return path;
}

describe('clamdScanDescriptor', () => {
  it('sends zFILDES with its NUL, then one byte carrying the descriptor, and returns the reply without its NUL', async () => {
    const clamd = await startFakeClamd('verdict.sock', 'verdict');
    const fd = openSync(sample('suspect.bin', 'Shuttle-Test-Signature\n'), 'r');
    try {
      const reply = await native.clamdScanDescriptor(clamd.socketPath, fd, 5000);
      expect(reply).toMatch(/^fd\[\d+\]: Shuttle-Test-Signature FOUND$/);
    } finally {
      closeSync(fd);
    }
    expect(await clamd.received).toEqual({ command: Buffer.from('zFILDES\0').toString('hex'), data: '00', fds: 1 });
  });

  it('keeps its own copy of the descriptor, so closing the caller’s at once is safe', async () => {
    const clamd = await startFakeClamd('early-close.sock', 'verdict');
    const fd = openSync(sample('early-close.bin', 'still-readable\n'), 'r');
    const scan = native.clamdScanDescriptor(clamd.socketPath, fd, 5000);
    closeSync(fd);
    expect(await scan).toMatch(/: still-readable FOUND$/);
  });

  it('rejects with ENOENT when the socket does not exist', async () => {
    const socketPath = join(directory, 'missing.sock');
    const fd = openSync(sample('a.bin', 'a'), 'r');
    try {
      await expect(native.clamdScanDescriptor(socketPath, fd, 1000)).rejects.toMatchObject({
        code: 'ENOENT',
        errno: -2,
        syscall: 'connect',
        path: socketPath,
        message: `ENOENT: no such file or directory, connect '${socketPath}'`,
      });
    } finally {
      closeSync(fd);
    }
  });

  it('rejects with ECONNREFUSED when nothing listens on the socket', async () => {
    const socketPath = join(directory, 'stale.sock');
    // A socket file that was bound but never listened on, as a crashed clamd leaves behind.
    execFileSync('python3', ['-c', 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', socketPath]);
    const fd = openSync(sample('b.bin', 'b'), 'r');
    try {
      await expect(native.clamdScanDescriptor(socketPath, fd, 1000)).rejects.toMatchObject({
        code: 'ECONNREFUSED',
        syscall: 'connect',
        path: socketPath,
      });
    } finally {
      closeSync(fd);
    }
  });

  it('rejects with ETIMEDOUT when clamd never answers', async () => {
    const clamd = await startFakeClamd('silent.sock', 'silent');
    const fd = openSync(sample('c.bin', 'c'), 'r');
    const started = Date.now();
    try {
      await expect(native.clamdScanDescriptor(clamd.socketPath, fd, 300)).rejects.toMatchObject({
        code: 'ETIMEDOUT',
        syscall: 'recv',
        path: clamd.socketPath,
      });
    } finally {
      closeSync(fd);
    }
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('rejects with EPROTO when clamd hangs up without a terminated reply', async () => {
    const clamd = await startFakeClamd('hangup.sock', 'hangup');
    const fd = openSync(sample('d.bin', 'd'), 'r');
    try {
      await expect(native.clamdScanDescriptor(clamd.socketPath, fd, 5000)).rejects.toMatchObject({ code: 'EPROTO', syscall: 'recv' });
    } finally {
      closeSync(fd);
    }
  });

  it('rejects a closed descriptor with EBADF before connecting', async () => {
    const fd = openSync(sample('e.bin', 'e'), 'r');
    closeSync(fd);
    await expect(native.clamdScanDescriptor(join(directory, 'unused.sock'), fd, 1000)).rejects.toMatchObject({
      code: 'EBADF',
      syscall: 'fcntl',
    });
  });

  it('rejects malformed arguments', async () => {
    await expect(native.clamdScanDescriptor('/run/clamav/clamd.ctl', 0, 0)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' });
    await expect(native.clamdScanDescriptor('/run/clamav/clamd.ctl', -3, 1000)).rejects.toThrow(/"fd" argument/);
    await expect(native.clamdScanDescriptor('', 0, 1000)).rejects.toThrow(/"socketPath" argument/);
  });
});

// A clamd session that answers only the first of the files it is sent, then, by argv[2]: 'hangup' closes the
// connection, 'silent' keeps it open without another word. Prints 'ready', then the commands it read.
const FAKE_SESSION = `
import socket, sys
path, mode, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(path)
server.listen(1)
print('ready', flush=True)
conn, _ = server.accept()
def command():
    text = b''
    while not text.endswith(b'\\0'):
        byte = conn.recv(1)
        if not byte:
            return None
        text += byte
    return text
commands = [command()]
for _ in range(count):
    commands.append(command())
    socket.recv_fds(conn, 16, 4)
print(' '.join(c.decode().rstrip('\\0') for c in commands if c), flush=True)
conn.sendall(b'1: fd[9]: OK\\0')
if mode == 'silent':
    conn.recv(1)
conn.close()
`;

async function startFakeSession(name: string, mode: 'hangup' | 'silent', count: number): Promise<{ socketPath: string; commands: Promise<string> }> {
  const socketPath = join(directory, name);
  const child = spawn('python3', ['-c', FAKE_SESSION, socketPath, mode, String(count)], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  let output = '';
  const lines = new Promise<string[]>((resolve) => {
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const complete = output.split('\n');
      if (complete.length > 2) resolve(complete);
    });
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', () => {
      if (output.startsWith('ready\n')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`fake clamd exited early (${code})`)));
  });
  return { socketPath, commands: lines.then((all) => all[1] ?? '') };
}

describe('clamdScanDescriptors', () => {
  it('sends one session, and fails the files clamd never answered when it hangs up', async () => {
    const session = await startFakeSession('session-hangup.sock', 'hangup', 2);
    const fds = [openSync(sample('first.bin', 'first'), 'r'), openSync(sample('second.bin', 'second'), 'r')];
    try {
      const outcomes = await native.clamdScanDescriptors(session.socketPath, fds, 5000);
      expect(outcomes[0]).toBe('fd[9]: OK');
      expect(outcomes[1]).toMatchObject({ code: 'EPROTO', syscall: 'recv', path: session.socketPath });
    } finally {
      fds.forEach((fd) => closeSync(fd));
    }
    expect(await session.commands).toBe('zIDSESSION zFILDES zFILDES');
  });

  it('fails the files still unanswered at the deadline with ETIMEDOUT', async () => {
    const session = await startFakeSession('silent-session.sock', 'silent', 2);
    const fds = [openSync(sample('third.bin', 'third'), 'r'), openSync(sample('fourth.bin', 'fourth'), 'r')];
    try {
      const outcomes = await native.clamdScanDescriptors(session.socketPath, fds, 500);
      expect(outcomes[0]).toBe('fd[9]: OK');
      expect(outcomes[1]).toMatchObject({ code: 'ETIMEDOUT', syscall: 'recv' });
    } finally {
      fds.forEach((fd) => closeSync(fd));
    }
  });

  it('fails every file with the connect error when clamd is not there', async () => {
    const socketPath = join(directory, 'no-session.sock');
    const fd = openSync(sample('c.bin', 'c'), 'r');
    try {
      const outcomes = await native.clamdScanDescriptors(socketPath, [fd, fd], 1000);
      for (const outcome of outcomes) expect(outcome).toMatchObject({ code: 'ENOENT', syscall: 'connect', path: socketPath });
    } finally {
      closeSync(fd);
    }
  });
});
