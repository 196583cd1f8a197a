// The free-space guard and intake on real, small tmpfs mounts that really fill up: what statfs reports is
// what the guard decides on, a full inode table counts as full, and a copy that runs out of space mid-way
// leaves neither a partial file nor a missing source.

import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FreeSpaceGuard, INODE_RESERVE, pipelineTargets, type FreeSpaceCheck, type FreeSpaceShortage } from '../../../src/limits/free-space.js';
import { openIntake } from '../../helpers/intake.js';

const execFileAsync = promisify(execFile);
const KiB = 1024;
const MiB = 1024 ** 2;

let root: string;
/** Two 4 MiB filesystems: quarantine and hazard archive share one, destination has the other. */
let shared: string;
let outbound: string;
const mounted: string[] = [];
let mountProblem: string | null = null;

async function mountTmpfs(directory: string, options: string): Promise<void> {
  await fsp.mkdir(directory, { recursive: true });
  await execFileAsync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', directory]);
  mounted.push(directory);
}

beforeAll(async () => {
  root = await fsp.realpath(await fsp.mkdtemp(path.join(os.tmpdir(), 'shuttle-space-')));
  shared = path.join(root, 'shared');
  outbound = path.join(root, 'outbound');
  try {
    await mountTmpfs(shared, 'size=4m,mode=0700');
    await mountTmpfs(outbound, 'size=4m,mode=0700');
  } catch (error) {
    mountProblem = (error as Error).message;
  }
});

afterAll(async () => {
  for (const directory of mounted.reverse()) await execFileAsync('umount', [directory]).catch(() => undefined);
  await fsp.rm(root, { recursive: true, force: true });
});

beforeEach((context) => {
  if (mountProblem !== null) context.skip(`cannot mount a small tmpfs to fill: ${mountProblem}`);
});

function shortage(result: FreeSpaceCheck): FreeSpaceShortage {
  if (result.ok) throw new Error('expected a shortage, the file fits');
  return result;
}

async function available(directory: string): Promise<number> {
  const space = await fsp.statfs(directory);
  return space.bavail * space.bsize;
}

/** Writes zeros into `file` until the filesystem refuses with ENOSPC; resolves with the bytes written. */
async function fillUp(file: string): Promise<number> {
  const handle = await fsp.open(file, 'w');
  const chunk = Buffer.alloc(64 * KiB, 1);
  let written = 0;
  try {
    for (;;) written += (await handle.write(chunk)).bytesWritten;
  } catch (error) {
    expect((error as NodeJS.ErrnoException).code).toBe('ENOSPC');
  } finally {
    await handle.close();
  }
  return written;
}

describe('FreeSpaceGuard on real filesystems', () => {
  let directories: { quarantine: string; destination: string; hazardArchive: string };

  beforeAll(async () => {
    if (mountProblem !== null) return;
    directories = { quarantine: path.join(shared, 'quarantine'), destination: path.join(outbound, 'out'), hazardArchive: path.join(shared, 'hazard') };
    for (const directory of Object.values(directories)) await fsp.mkdir(directory, { recursive: true });
  });

  it('follows what statfs reports as the filesystem fills and empties', async () => {
    const guard = new FreeSpaceGuard({ targets: pipelineTargets(directories), reserveBytes: 512 * KiB, maxAgeMs: 0 });
    // Quarantine and hazard archive share 4 MiB: 2 × 1 MiB + 512 KiB fits.
    expect(await guard.check(MiB)).toEqual({ ok: true });

    const filler = path.join(shared, 'filler');
    await fsp.writeFile(filler, randomBytes(2 * MiB));
    const free = await available(directories.quarantine);
    expect(free).toBeLessThanOrEqual(2 * MiB);
    const short = shortage(await guard.check(MiB));
    expect(short).toMatchObject({ key: 'quarantine_path', keys: ['quarantine_path', 'hazard_archive_path'], path: directories.quarantine, resource: 'bytes' });
    expect(short.availableBytes).toBe(free);
    expect(short.neededBytes).toBe(2 * MiB + 512 * KiB);
    expect(short.fitsWhenEmpty).toBe(true);
    // A smaller file still fits beside the filler.
    expect(await guard.check(600 * KiB)).toEqual({ ok: true });

    await fsp.rm(filler);
    expect(await guard.check(MiB)).toEqual({ ok: true });
  });

  it('sees a disk filled to the last block, and says a file larger than the disk can never fit', async () => {
    const guard = new FreeSpaceGuard({ targets: pipelineTargets(directories), reserveBytes: 0, maxAgeMs: 0 });
    const filler = path.join(outbound, 'filler');
    const written = await fillUp(filler);
    expect(written).toBeGreaterThan(3 * MiB);
    try {
      const short = shortage(await guard.check(1));
      expect(short).toMatchObject({ key: 'destination_path', availableBytes: 0, neededBytes: 1, fitsWhenEmpty: true });
    } finally {
      await fsp.rm(filler);
    }
    expect(await guard.check(1)).toEqual({ ok: true });
    expect(shortage(await guard.check(3 * MiB)).fitsWhenEmpty).toBe(false);
  });

  it('counts a full inode table as full, while there is still room to finish what is in flight', async () => {
    const inodes = path.join(root, 'inodes');
    await mountTmpfs(inodes, 'size=4m,nr_inodes=200,mode=0700');
    const guard = new FreeSpaceGuard({ targets: [{ key: 'quarantine_path', path: inodes }], reserveBytes: 0, maxAgeMs: 0 });
    let created = 0;
    while ((await guard.check(1)).ok) {
      await fsp.writeFile(path.join(inodes, `f${created++}`), '');
      expect(created).toBeLessThan(200);
    }
    const short = shortage(await guard.check(1));
    expect(short).toMatchObject({ resource: 'inodes', neededInodes: 1 + INODE_RESERVE });
    expect(short.availableInodes).toBe((await fsp.statfs(inodes)).ffree);
    // The reserve is real: the files already admitted can still be created.
    for (let n = 0; n < INODE_RESERVE; n++) await fsp.writeFile(path.join(inodes, `in-flight-${n}`), '');
  });
});

describe('intake when the quarantine fills up mid-copy', () => {
  it('removes the partial copy, leaves the source as it was, and takes the file once space returns', async () => {
    const source = path.join(root, 'in');
    const quarantine = path.join(shared, 'intake-quarantine');
    await fsp.mkdir(source, { recursive: true });
    await fsp.mkdir(quarantine, { recursive: true });
    const content = randomBytes(3 * MiB);
    const sha256 = createHash('sha256').update(content).digest('hex');
    await fsp.writeFile(path.join(source, 'big.bin'), content);

    const { intake, close } = await openIntake(source, quarantine);
    // Leave less room than the file needs, so the copy starts and runs out part-way.
    const filler = path.join(shared, 'intake-filler');
    await fsp.writeFile(filler, Buffer.alloc(2 * MiB, 1));
    const freeBefore = await available(quarantine);
    expect(freeBefore).toBeGreaterThan(0);
    expect(freeBefore).toBeLessThan(content.length);
    const guard = new FreeSpaceGuard({ targets: [{ key: 'quarantine_path', path: quarantine }], reserveBytes: 0, maxAgeMs: 0 });
    expect((await guard.check(content.length)).ok).toBe(false);

    try {
      const outcome = await intake.take('big.bin', new AbortController().signal);
      expect(outcome).toMatchObject({ kind: 'deferred', reason: 'quarantine is full (ENOSPC)' });
      expect((await fsp.readdir(quarantine)).filter((name) => name.endsWith('.data'))).toEqual([]);
      expect(await available(quarantine)).toBe(freeBefore);
      expect(createHash('sha256').update(await fsp.readFile(path.join(source, 'big.bin'))).digest('hex')).toBe(sha256);

      await fsp.rm(filler);
      expect(await guard.check(content.length)).toEqual({ ok: true });
      const retried = await intake.take('big.bin', new AbortController().signal);
      expect(retried.kind).toBe('taken');
      if (retried.kind !== 'taken') return;
      expect(retried.item.sha256).toBe(sha256);
      const copies = (await fsp.readdir(quarantine)).filter((name) => name.endsWith('.data'));
      expect(copies).toHaveLength(1);
      expect(createHash('sha256').update(await fsp.readFile(path.join(quarantine, copies[0] as string))).digest('hex')).toBe(sha256);
      await expect(fsp.lstat(path.join(source, 'big.bin'))).rejects.toMatchObject({ code: 'ENOENT' });
    } finally {
      await close();
    }
  });
});
