// The batched file jobs: syncDescriptors, createFiles and closeDescriptors, each one job for many files with
// one outcome per file.
import { execFileSync } from 'node:child_process';
import { closeSync, constants, fstatSync, lstatSync, mkdtempSync, openSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
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

describe('createFiles', () => {
  it('creates each file exclusively, without following a symlink, and reports each failure on its own', async () => {
    const folder = openSync(directory, 'r');
    writeFileSync(join(directory, 'taken'), 'already here');
    symlinkSync('/etc/passwd', join(directory, 'link'));
    try {
      const [created, taken, link, badDirectory] = await native.createFiles([
        { directory: folder, name: 'new', mode: 0o600 },
        { directory: folder, name: 'taken', mode: 0o600 },
        { directory: folder, name: 'link', mode: 0o600 },
        { directory: 1_000_000, name: 'elsewhere', mode: 0o600 },
      ]);
      expect(typeof created).toBe('number');
      writeSync(created as number, 'written through the new descriptor');
      closeSync(created as number);
      expect(readFileSync(join(directory, 'new'), 'utf8')).toBe('written through the new descriptor');
      expect(lstatSync(join(directory, 'new')).mode & 0o777).toBe(0o600 & ~process.umask());
      expect(taken).toMatchObject({ code: 'EEXIST', syscall: 'open', path: 'taken' });
      expect(readFileSync(join(directory, 'taken'), 'utf8')).toBe('already here');
      expect(link).toMatchObject({ code: 'EEXIST', syscall: 'open' });
      expect(badDirectory).toMatchObject({ code: 'EBADF', syscall: 'fcntl' });
    } finally {
      closeSync(folder);
    }
  });

  it('refuses names that are not plain file names', () => {
    expect(() => native.createFiles([{ directory: 0, name: '../escape', mode: 0o600 }])).toThrow(/plain file name/);
    expect(() => native.createFiles([{ directory: 0, name: 'x', mode: 0o10000 }])).toThrow(/mode/);
  });
});

describe('closeDescriptors', () => {
  it('closes each descriptor and reports one that was not open', async () => {
    writeFileSync(join(directory, 'a'), 'to be closed');
    const fd = openSync(join(directory, 'a'), 'r');
    expect(await native.closeDescriptors([fd, 1_000_000])).toEqual([null, expect.objectContaining({ code: 'EBADF', syscall: 'close' })]);
    // Closed: the number leads nowhere, or (reused meanwhile) to some other file.
    let target: string | null = null;
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      target = null;
    }
    expect(target).not.toBe(join(directory, 'a'));
  });
});


describe('changeNames', () => {
  it('renames, links and unlinks inside open directories, one outcome per change', async () => {
    const from = mkdtempSync(join(directory, 'from-'));
    const to = mkdtempSync(join(directory, 'to-'));
    writeFileSync(join(from, 'moving'), 'moved bytes');
    writeFileSync(join(to, 'taken'), 'already here');
    writeFileSync(join(to, 'doomed'), 'to be removed');
    const [fromFd, toFd] = [openSync(from, 'r'), openSync(to, 'r')];
    try {
      const outcomes = await native.changeNames([
        { kind: 'rename', from: fromFd, fromName: 'moving', to: toFd, toName: 'moved' },
        { kind: 'link', from: toFd, fromName: 'moved', to: toFd, toName: 'second-name' },
        { kind: 'link', from: toFd, fromName: 'moved', to: toFd, toName: 'taken' },
        { kind: 'unlink', from: toFd, fromName: 'doomed' },
        { kind: 'unlink', from: toFd, fromName: 'never-there' },
      ]);
      expect(outcomes.slice(0, 2)).toEqual([null, null]);
      // link(2) never replaces a name: that is what keeps a release from overwriting.
      expect(outcomes[2]).toMatchObject({ code: 'EEXIST', syscall: 'link' });
      expect(outcomes[3]).toBeNull();
      expect(outcomes[4]).toMatchObject({ code: 'ENOENT', syscall: 'unlink' });
      expect(readFileSync(join(to, 'moved'), 'utf8')).toBe('moved bytes');
      expect(lstatSync(join(to, 'second-name')).ino).toBe(lstatSync(join(to, 'moved')).ino);
      expect(lstatSync(join(to, 'moved')).nlink).toBe(2);
      expect(readFileSync(join(to, 'taken'), 'utf8')).toBe('already here');
      expect(() => lstatSync(join(to, 'doomed'))).toThrow(/ENOENT/);
      expect(() => lstatSync(join(from, 'moving'))).toThrow(/ENOENT/);
    } finally {
      closeSync(fromFd);
      closeSync(toFd);
    }
  });

  it('links a symbolic link itself, never what it points to, and fails a change whose directory is not open', async () => {
    const folder = mkdtempSync(join(directory, 'links-'));
    symlinkSync('/etc/passwd', join(folder, 'pointer'));
    const fd = openSync(folder, 'r');
    try {
      const outcomes = await native.changeNames([
        { kind: 'link', from: fd, fromName: 'pointer', to: fd, toName: 'second-pointer' },
        { kind: 'unlink', from: 1_000_000, fromName: 'pointer' },
      ]);
      expect(outcomes[0]).toBeNull();
      expect(lstatSync(join(folder, 'second-pointer')).isSymbolicLink()).toBe(true);
      expect(outcomes[1]).toMatchObject({ code: 'EBADF', syscall: 'fcntl' });
      expect(lstatSync(join(folder, 'pointer')).isSymbolicLink()).toBe(true);
    } finally {
      closeSync(fd);
    }
  });

  it('refuses names that are not plain file names', () => {
    expect(() => native.changeNames([{ kind: 'unlink', from: 0, fromName: '../x' }])).toThrow(/plain file name/);
    expect(() => native.changeNames([{ kind: 'rename', from: 0, fromName: 'a', to: 0, toName: 'b/c' }])).toThrow(/plain file name/);
  });
});
