// syncDescriptors: one job that fsyncs several descriptors, with one outcome each.
import { execFileSync } from 'node:child_process';
import { closeSync, constants, fstatSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadNative } from '../../src/native.js';

const native = loadNative();
let directory: string;

beforeAll(() => {
  directory = mkdtempSync(join(tmpdir(), 'shuttle-sync-'));
});

afterAll(() => {
  rmSync(directory, { recursive: true, force: true });
});

function writtenFile(name: string): number {
  const fd = openSync(join(directory, name), 'w+');
  writeSync(fd, Buffer.alloc(8192, name));
  return fd;
}

describe('syncDescriptors', () => {
  it('fsyncs files and a directory in one call, and leaves the callers\u2019 descriptors open', async () => {
    const files = [writtenFile('a'), writtenFile('b')];
    const folder = openSync(directory, 'r');
    try {
      expect(await native.syncDescriptors([...files, folder])).toEqual([null, null, null]);
      for (const fd of [...files, folder]) expect(() => fstatSync(fd)).not.toThrow();
    } finally {
      for (const fd of [...files, folder]) closeSync(fd);
    }
  });

  it('gives each descriptor its own outcome: one that fails does not fail the others', async () => {
    const file = writtenFile('c');
    // fsync(2) of a FIFO fails with EINVAL, which shows that each descriptor really reached fsync.
    const fifoPath = join(directory, 'fifo');
    execFileSync('mkfifo', [fifoPath]);
    const fifo = openSync(fifoPath, constants.O_RDWR | constants.O_NONBLOCK);
    // Far above any descriptor this process has open.
    const closed = 1_000_000;
    try {
      const outcomes = await native.syncDescriptors([fifo, file, closed]);
      expect(outcomes[0]).toMatchObject({ code: 'EINVAL', syscall: 'fsync' });
      expect(outcomes[1]).toBeNull();
      expect(outcomes[2]).toMatchObject({ code: 'EBADF', syscall: 'fcntl' });
    } finally {
      closeSync(file);
      closeSync(fifo);
    }
  });

  it('refuses what is not a list of descriptors before any work starts', () => {
    expect(() => native.syncDescriptors(3 as unknown as number[])).toThrow(/fds/);
    expect(() => native.syncDescriptors([-1])).toThrow(/non-negative integer/);
  });
});
