import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DirectorySyncs, PathEscapeError, Zone, ZoneError } from '../../src/zone.js';

let root: string;
let inside: string;
let outside: string;

beforeEach(async () => {
  root = await fsp.realpath(await fsp.mkdtemp(path.join(os.tmpdir(), 'shuttle-zone-')));
  inside = path.join(root, 'managed');
  outside = path.join(root, 'elsewhere');
  await fsp.mkdir(inside);
  await fsp.mkdir(outside);
});

afterEach(async () => {
  await fsp.rm(root, { recursive: true, force: true });
});

describe('Zone', () => {
  it('contains its roots and what is below them, nothing else', () => {
    const zone = new Zone([inside]);
    expect(zone.contains(inside)).toBe(true);
    expect(zone.contains(path.join(inside, 'a/b'))).toBe(true);
    expect(zone.contains(`${inside}-sibling`)).toBe(false);
    expect(zone.contains(path.join(inside, '../elsewhere/x'))).toBe(false);
    expect(() => zone.assertWritable('create', path.join(outside, 'x'))).toThrow(ZoneError);
  });

  it('refuses to open a directory reached through a symlink, at any level', async () => {
    const zone = new Zone([inside]);
    await fsp.mkdir(path.join(outside, 'deep'));
    await fsp.symlink(outside, path.join(inside, 'link'));
    // O_DIRECTORY with O_NOFOLLOW on a symlink fails with ENOTDIR on Linux.
    await expect(zone.openDirectory(path.join(inside, 'link'))).rejects.toMatchObject({ code: 'ENOTDIR' });
    await expect(zone.openDirectory(path.join(inside, 'link/deep'))).rejects.toBeInstanceOf(PathEscapeError);
  });

  it('writes through an opened directory even after a component is swapped for a symlink', async () => {
    const zone = new Zone([inside]);
    await fsp.mkdir(path.join(inside, 'sub'));
    const directory = await zone.openDirectory(path.join(inside, 'sub'));
    try {
      await fsp.rename(path.join(inside, 'sub'), path.join(inside, 'moved'));
      await fsp.symlink(outside, path.join(inside, 'sub'));
      const handle = await zone.createExclusive(directory, 'file.txt', 0o600);
      await handle.close();
      expect(await fsp.readdir(outside)).toEqual([]);
      expect(await fsp.readdir(path.join(inside, 'moved'))).toEqual(['file.txt']);
    } finally {
      directory.close();
    }
  });

  it('never replaces through link: an existing name gives EEXIST', async () => {
    const zone = new Zone([inside]);
    await fsp.writeFile(path.join(inside, 'a'), 'a');
    await fsp.writeFile(path.join(inside, 'b'), 'b');
    const directory = await zone.openDirectory(inside);
    try {
      await expect(zone.link(directory, 'a', 'b')).rejects.toMatchObject({ code: 'EEXIST' });
      expect(await fsp.readFile(path.join(inside, 'b'), 'utf8')).toBe('b');
    } finally {
      directory.close();
    }
  });

  it('refuses plain names that are not plain', async () => {
    const zone = new Zone([inside]);
    const directory = await zone.openDirectory(inside);
    try {
      expect(() => directory.entry('../x')).toThrow(/not a plain file name/);
      expect(() => directory.entry('..')).toThrow(/not a plain file name/);
    } finally {
      directory.close();
    }
  });
});

describe('DirectorySyncs', () => {
  /** An fsync that finishes only when told, and remembers when each one started. */
  function controlledFsync() {
    const started: { fd: number; finish: () => void }[] = [];
    const fsync = (fd: number) => new Promise<void>((resolve) => started.push({ fd, finish: resolve }));
    return { started, fsync };
  }
  const settle = () => new Promise((resolve) => setImmediate(resolve));

  it('gives callers who ask while an fsync runs one fsync that starts after it, never the running one', async () => {
    const { started, fsync } = controlledFsync();
    const syncs = new DirectorySyncs(fsync);
    const first = syncs.sync('1:10', 3);
    let laterDone = 0;
    const later = [syncs.sync('1:10', 4), syncs.sync('1:10', 5), syncs.sync('1:10', 6)].map((promise) => promise.then(() => laterDone++));
    await settle();
    // The running fsync began before their changes: it must not answer them.
    expect(started).toHaveLength(1);
    started[0]!.finish();
    await first;
    await settle();
    expect(laterDone).toBe(0);
    // One more fsync for all three, through the first of their descriptors.
    expect(started.map(({ fd }) => fd)).toEqual([3, 4]);
    started[1]!.finish();
    await Promise.all(later);
    expect(laterDone).toBe(3);
  });

  it('keeps directories apart, and starts afresh once nothing is running', async () => {
    const { started, fsync } = controlledFsync();
    const syncs = new DirectorySyncs(fsync);
    const a = syncs.sync('1:10', 3);
    const b = syncs.sync('1:11', 4);
    await settle();
    expect(started).toHaveLength(2);
    started.forEach(({ finish }) => finish());
    await Promise.all([a, b]);
    const again = syncs.sync('1:10', 5);
    await settle();
    expect(started).toHaveLength(3);
    started[2]!.finish();
    await again;
  });

  it('still runs the next fsync when the running one failed', async () => {
    let calls = 0;
    const syncs = new DirectorySyncs(async () => {
      calls++;
      if (calls === 1) throw Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' });
    });
    const first = syncs.sync('1:10', 3);
    const second = syncs.sync('1:10', 4);
    await expect(first).rejects.toMatchObject({ code: 'EIO' });
    await expect(second).resolves.toBeUndefined();
    expect(calls).toBe(2);
  });
});
