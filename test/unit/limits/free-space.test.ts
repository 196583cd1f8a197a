import { promises as fsp } from 'node:fs';
import os from 'node:os';
import { describe, expect, it } from 'vitest';
import {
  describeShortage,
  formatBytes,
  FreeSpaceGuard,
  INODE_RESERVE,
  inspectFilesystem,
  pipelineTargets,
  type FilesystemSpace,
  type FreeSpaceShortage,
} from '../../../src/limits/free-space.js';

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;

/** Filesystems by device number, and which device each path is on. */
function fakeDisks(devices: Record<string, Partial<FilesystemSpace>>, where: Record<string, string>) {
  const calls: string[] = [];
  const disks = Object.fromEntries(
    Object.entries(devices).map(([name, space], index) => [
      name,
      { device: index + 1, totalBytes: 100 * GiB, availableBytes: 50 * GiB, totalInodes: 1_000_000, availableInodes: 500_000, ...space },
    ]),
  );
  const inspect = async (path: string): Promise<FilesystemSpace> => {
    calls.push(path);
    const disk = where[path];
    if (disk === undefined) throw Object.assign(new Error(`ENOENT: no such file or directory, statfs '${path}'`), { code: 'ENOENT' });
    return { ...(disks[disk] as FilesystemSpace) };
  };
  return { inspect, calls, disks };
}

const DIRECTORIES = { quarantine: '/q', destination: '/out', hazardArchive: '/hz' };

/** A guard that reads the filesystems for every check, unless `clock` makes it keep a reading. */
function guardOn(where: Record<string, string>, devices: Record<string, Partial<FilesystemSpace>>, reserveBytes = GiB, clock?: { ms: number }) {
  const disks = fakeDisks(devices, where);
  const timing = clock === undefined ? { maxAgeMs: 0 } : { maxAgeMs: 500, monotonicMs: () => clock.ms };
  return { guard: new FreeSpaceGuard({ targets: pipelineTargets(DIRECTORIES), reserveBytes, inspect: disks.inspect, ...timing }), ...disks };
}

function shortage(result: Awaited<ReturnType<FreeSpaceGuard['check']>>): FreeSpaceShortage {
  if (result.ok) throw new Error('expected a shortage, the file fits');
  return result;
}

describe('FreeSpaceGuard', () => {
  it('admits a file that leaves the reserve free everywhere, and not one byte more', async () => {
    const { guard } = guardOn({ '/q': 'a', '/out': 'b', '/hz': 'c' }, { a: { availableBytes: 2 * GiB }, b: {}, c: {} });
    expect(await guard.check(GiB)).toEqual({ ok: true });
    const result = shortage(await guard.check(GiB + 1));
    expect(result).toMatchObject({ key: 'quarantine_path', path: '/q', keys: ['quarantine_path'], resource: 'bytes', availableBytes: 2 * GiB, neededBytes: 2 * GiB + 1, fitsWhenEmpty: true });
  });

  it('checks every target, and names the one that is short', async () => {
    const { guard } = guardOn({ '/q': 'a', '/out': 'b', '/hz': 'c' }, { a: {}, b: {}, c: { availableBytes: GiB + 10 * MiB } });
    const result = shortage(await guard.check(20 * MiB));
    expect(result).toMatchObject({ key: 'hazard_archive_path', path: '/hz', keys: ['hazard_archive_path'], neededBytes: GiB + 20 * MiB });
  });

  it('needs one copy where quarantine and destination share a filesystem (release renames)', async () => {
    const { guard } = guardOn({ '/q': 'a', '/out': 'a', '/hz': 'c' }, { a: { availableBytes: GiB + 100 * MiB }, c: {} });
    expect(await guard.check(100 * MiB)).toEqual({ ok: true });
    expect(shortage(await guard.check(100 * MiB + 1)).keys).toEqual(['quarantine_path', 'destination_path']);
  });

  it('needs two copies where quarantine and hazard archive share one (plaintext and archive coexist)', async () => {
    const { guard } = guardOn({ '/q': 'a', '/out': 'b', '/hz': 'a' }, { a: { availableBytes: GiB + 200 * MiB }, b: {} });
    expect(await guard.check(100 * MiB)).toEqual({ ok: true });
    const result = shortage(await guard.check(100 * MiB + 1));
    expect(result.neededBytes).toBe(GiB + 200 * MiB + 2);
    expect(result.keys).toEqual(['quarantine_path', 'hazard_archive_path']);
  });

  it('needs two copies on one filesystem holding all three, the worst case being a suspect file', async () => {
    const { guard } = guardOn({ '/q': 'a', '/out': 'a', '/hz': 'a' }, { a: { availableBytes: GiB + 200 * MiB } });
    expect(await guard.check(100 * MiB)).toEqual({ ok: true });
    expect(shortage(await guard.check(101 * MiB)).neededBytes).toBe(GiB + 202 * MiB);
  });

  it('needs one copy where destination and hazard archive share a filesystem apart from quarantine', async () => {
    const { guard } = guardOn({ '/q': 'a', '/out': 'b', '/hz': 'b' }, { a: {}, b: { availableBytes: GiB + 100 * MiB } });
    expect(await guard.check(100 * MiB)).toEqual({ ok: true });
    expect(shortage(await guard.check(100 * MiB + 1)).keys).toEqual(['destination_path', 'hazard_archive_path']);
  });

  it('says when the file could not fit even on the empty filesystem', async () => {
    const { guard } = guardOn({ '/q': 'a', '/out': 'b', '/hz': 'c' }, { a: { totalBytes: 10 * GiB, availableBytes: 9 * GiB }, b: {}, c: {} });
    expect(shortage(await guard.check(9 * GiB)).fitsWhenEmpty).toBe(true);
    expect(shortage(await guard.check(10 * GiB + 1)).fitsWhenEmpty).toBe(false);
  });

  it('does not count a reserve larger than the filesystem as "never fits"', async () => {
    const { guard } = guardOn({ '/q': 'a', '/out': 'b', '/hz': 'c' }, { a: { totalBytes: 512 * MiB, availableBytes: 500 * MiB }, b: {}, c: {} });
    expect(shortage(await guard.check(MiB)).fitsWhenEmpty).toBe(true);
  });

  it('is short when the inode table is nearly full, and ignores filesystems that do not count inodes', async () => {
    const { guard } = guardOn(
      { '/q': 'a', '/out': 'b', '/hz': 'c' },
      { a: { availableInodes: INODE_RESERVE }, b: { totalInodes: 0, availableInodes: 0 }, c: {} },
    );
    const result = shortage(await guard.check(1));
    expect(result).toMatchObject({ key: 'quarantine_path', resource: 'inodes', availableInodes: INODE_RESERVE, neededInodes: INODE_RESERVE + 1 });
  });

  it('takes a new reserve on reload', async () => {
    const { guard } = guardOn({ '/q': 'a', '/out': 'b', '/hz': 'c' }, { a: { availableBytes: GiB }, b: {}, c: {} });
    expect((await guard.check(1)).ok).toBe(false);
    guard.setReserve(0);
    expect(guard.reserveBytes).toBe(0);
    expect(await guard.check(1)).toEqual({ ok: true });
  });

  it('with maxAgeMs 0, reads the filesystems afresh on every check', async () => {
    const { guard, calls, disks } = guardOn({ '/q': 'a', '/out': 'b', '/hz': 'c' }, { a: {}, b: {}, c: {} });
    expect((await guard.check(MiB)).ok).toBe(true);
    (disks.a as { availableBytes: number }).availableBytes = GiB;
    expect((await guard.check(MiB)).ok).toBe(false);
    expect(calls).toEqual(['/q', '/out', '/hz', '/q', '/out', '/hz']);
  });

  it('answers "fits" from a recent reading less what it admitted since, and nothing else', async () => {
    const clock = { ms: 0 };
    const { guard, calls } = guardOn({ '/q': 'a', '/out': 'a', '/hz': 'b' }, { a: { availableBytes: GiB + 100 * MiB }, b: {} }, GiB, clock);
    for (let n = 0; n < 10; n++) expect(await guard.check(10 * MiB)).toEqual({ ok: true });
    expect(calls).toHaveLength(3);
    // The eleventh would not fit in what is left of the reading: a fresh one confirms (the pretend disk
    // did not change, so there is room again) before anything is refused.
    expect(await guard.check(10 * MiB)).toEqual({ ok: true });
    expect(calls).toHaveLength(6);
    clock.ms = 499;
    expect(await guard.check(MiB)).toEqual({ ok: true });
    expect(calls).toHaveLength(6);
    clock.ms = 500;
    expect(await guard.check(MiB)).toEqual({ ok: true });
    expect(calls).toHaveLength(9);
  });

  it('never refuses on an old reading: freed space counts at once', async () => {
    const clock = { ms: 0 };
    const { guard, calls, disks } = guardOn({ '/q': 'a', '/out': 'b', '/hz': 'c' }, { a: { availableBytes: GiB }, b: {}, c: {} }, GiB, clock);
    expect(shortage(await guard.check(MiB)).availableBytes).toBe(GiB);
    (disks.a as { availableBytes: number }).availableBytes = 2 * GiB;
    expect(await guard.check(MiB)).toEqual({ ok: true });
    expect(calls).toHaveLength(6);
  });

  it('shares one reading among concurrent checks', async () => {
    const clock = { ms: 0 };
    const { guard, calls } = guardOn({ '/q': 'a', '/out': 'b', '/hz': 'c' }, { a: {}, b: {}, c: {} }, GiB, clock);
    const results = await Promise.all(Array.from({ length: 20 }, () => guard.check(MiB)));
    expect(results.every((result) => result.ok)).toBe(true);
    expect(calls).toHaveLength(3);
  });

  it('rejects when a target cannot be inspected', async () => {
    const { guard } = guardOn({ '/q': 'a', '/out': 'b' }, { a: {}, b: {} });
    await expect(guard.check(1)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('refuses to be built without targets', () => {
    expect(() => new FreeSpaceGuard({ targets: [], reserveBytes: 0 })).toThrow(/at least one target/);
  });
});

describe('inspectFilesystem', () => {
  it('reads statfs and the device of a real directory', async () => {
    const directory = os.tmpdir();
    const space = await inspectFilesystem(directory);
    const statfs = await fsp.statfs(directory);
    expect(space.device).toBe((await fsp.stat(directory)).dev);
    expect(space.totalBytes).toBe(statfs.blocks * statfs.bsize);
    expect(space.availableBytes).toBeGreaterThan(0);
    expect(space.availableBytes).toBeLessThanOrEqual(space.totalBytes);
  });

  it('rejects for a path that does not exist', async () => {
    await expect(inspectFilesystem('/nonexistent/shuttle-free-space')).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('messages', () => {
  it('say which directories, what is free and what is needed', () => {
    const base = {
      ok: false,
      key: 'quarantine_path',
      path: '/srv/q',
      keys: ['quarantine_path', 'destination_path'],
      availableInodes: 10,
      neededInodes: 65,
      fileBytes: 256 * MiB,
      copies: 2,
      reserveBytes: GiB,
    } as const;
    expect(describeShortage({ ...base, resource: 'bytes', availableBytes: 512 * MiB, neededBytes: 1536 * MiB, fitsWhenEmpty: true })).toBe(
      'quarantine_path and destination_path (/srv/q) has 512 MiB free, needs 1.5 GiB (2 × 256 MiB for the file and the 1 GiB reserve)',
    );
    expect(describeShortage({ ...base, resource: 'bytes', availableBytes: 0, neededBytes: 3 * GiB, fitsWhenEmpty: false })).toContain('whole filesystem is smaller');
    expect(describeShortage({ ...base, copies: 1, reserveBytes: 0, resource: 'bytes', availableBytes: 0, neededBytes: 256 * MiB, fitsWhenEmpty: true })).toBe(
      'quarantine_path and destination_path (/srv/q) has 0 bytes free, needs 256 MiB (256 MiB for the file)',
    );
    expect(describeShortage({ ...base, resource: 'inodes', availableBytes: GiB, neededBytes: GiB, fitsWhenEmpty: true })).toBe(
      'quarantine_path and destination_path (/srv/q) has 10 free inodes, needs 65',
    );
  });

  it.each([
    [0, '0 bytes'],
    [1023, '1023 bytes'],
    [1536, '1.5 KiB'],
    [25 * MiB, '25 MiB'],
    [25.25 * MiB, '25.3 MiB'],
    [GiB, '1 GiB'],
    [GiB + 10 * MiB, '1.01 GiB'],
    [512 * GiB, '512 GiB'],
    [5 * 1024 * GiB, '5 TiB'],
  ])('formatBytes(%d) = %s', (value, text) => {
    expect(formatBytes(value)).toBe(text);
  });
});
