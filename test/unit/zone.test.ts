import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PathEscapeError, Zone, ZoneError } from '../../src/zone.js';

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
