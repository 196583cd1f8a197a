// File leases on real files, against real writer processes.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { loadNative } from '../../src/native.js';

const native = loadNative();
let directory: string;
const children: ChildProcess[] = [];
const descriptors: number[] = [];

beforeAll(() => {
  directory = mkdtempSync(join(tmpdir(), 'shuttle-lease-'));
});

afterEach(() => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
  for (const fd of descriptors.splice(0)) closeSync(fd);
});

afterAll(() => {
  rmSync(directory, { recursive: true, force: true });
});

function freshFile(name: string): string {
  const path = join(directory, name);
  writeFileSync(path, 'payload\n');
  return path;
}

function openForReading(path: string): number {
  const fd = openSync(path, 'r');
  descriptors.push(fd);
  return fd;
}

/** Runs a shell snippet with the file as $1 and collects what it prints. */
function shell(script: string, file: string): { child: ChildProcess; output: () => string; printed: (text: string) => Promise<void> } {
  const child = spawn('sh', ['-c', script, 'sh', file], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  const printed = (text: string): Promise<void> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        if (output.includes(text)) resolve();
      };
      check();
      child.stdout?.on('data', check);
      child.once('exit', () => (output.includes(text) ? resolve() : reject(new Error(`child exited without printing ${text}`))));
    });
  return { child, output: () => output, printed };
}

async function waitFor(condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('setLease / getLease', () => {
  it('takes and releases a read lease on a file nobody writes', () => {
    const fd = openForReading(freshFile('quiet.csv'));
    expect(native.getLease(fd)).toBe('none');
    native.setLease(fd, 'read');
    expect(native.getLease(fd)).toBe('read');
    native.setLease(fd, 'none');
    expect(native.getLease(fd)).toBe('none');
  });

  it('fails with EAGAIN while another process holds the file open for writing', async () => {
    const path = freshFile('being-written.csv');
    const writer = shell('exec 3>>"$1"; echo ready; exec sleep 30', path);
    await writer.printed('ready');

    const fd = openForReading(path);
    let caught: NodeJS.ErrnoException | undefined;
    try {
      native.setLease(fd, 'read');
    } catch (error) {
      caught = error as NodeJS.ErrnoException;
    }
    expect(caught).toBeInstanceOf(Error);
    expect(caught?.code).toBe('EAGAIN');
    expect(caught?.syscall).toBe('fcntl');
    expect(caught?.errno).toBe(-11);
    expect(caught?.message).toBe('EAGAIN: resource temporarily unavailable, fcntl');
    expect(native.getLease(fd)).toBe('none');

    writer.child.kill('SIGKILL');
    await new Promise((resolve) => writer.child.once('exit', resolve));
    native.setLease(fd, 'read');
    expect(native.getLease(fd)).toBe('read');
  });

  it('survives a writer opening the file, reports the break, and lets the writer in on release', async () => {
    const path = freshFile('late-writer.csv');
    const fd = openForReading(path);
    native.setLease(fd, 'read');

    // The writer's open blocks until the lease is released; the kernel signals this process meanwhile.
    const writer = shell('exec 3>>"$1"; echo opened', path);
    await waitFor(() => native.getLease(fd) === 'none', 5000);
    expect(writer.output()).toBe('');

    native.setLease(fd, 'none');
    await writer.printed('opened');
  });

  it('reports EBADF for a descriptor that is not open', () => {
    const fd = openSync(freshFile('closed.csv'), 'r');
    closeSync(fd);
    expect(() => native.getLease(fd)).toThrow(expect.objectContaining({ code: 'EBADF', syscall: 'fcntl' }));
  });

  it('rejects malformed arguments before they reach C++', () => {
    expect(() => native.setLease(-1, 'read')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
    expect(() => native.setLease(1.5, 'read')).toThrow(TypeError);
    expect(() => native.setLease(0, 'write' as 'read')).toThrow(/"type" argument/);
    expect(() => native.getLease('3' as unknown as number)).toThrow(TypeError);
  });
});
