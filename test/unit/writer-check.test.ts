import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { detectWriterCheckMode, WriterChecker } from '../../src/writer-check.js';
import type { NativeAddon } from '../../src/native.js';

async function statsOf(content: string): Promise<import('node:fs').BigIntStats> {
  const file = path.join(await fsp.mkdtemp(path.join(os.tmpdir(), 'shuttle-writer-')), 'f');
  await fsp.writeFile(file, content);
  return fsp.stat(file, { bigint: true });
}

describe('WriterChecker without a lease', () => {
  it('takes a file only after it stayed unchanged for the whole window', async () => {
    let now = 1000;
    const checker = new WriterChecker(null, 'stability', 5000, () => now);
    const stats = await statsOf('abc');
    expect(checker.check('/in/f', -1, stats)).toEqual({ kind: 'busy', retryInMs: 5000, reason: expect.any(String) });
    now += 4999;
    expect(checker.check('/in/f', -1, stats)).toMatchObject({ kind: 'busy', retryInMs: 1 });
    now += 1;
    expect(checker.check('/in/f', -1, stats)).toEqual({ kind: 'free', lease: false });
  });

  it('starts the window again when the file changes', async () => {
    let now = 0;
    const checker = new WriterChecker(null, 'stability', 5000, () => now);
    checker.check('/in/f', -1, await statsOf('abc'));
    now = 6000;
    expect(checker.check('/in/f', -1, await statsOf('abcd'))).toMatchObject({ kind: 'busy', retryInMs: 5000 });
  });
});

describe('WriterChecker after the copy', () => {
  it('counts a chmod (ctime only) as untouched, and new bytes or a new mtime as touched', async () => {
    const checker = new WriterChecker(null, 'stability', 5000, () => 0);
    const file = path.join(await fsp.mkdtemp(path.join(os.tmpdir(), 'shuttle-writer-')), 'f');
    await fsp.writeFile(file, 'abc');
    const before = await fsp.stat(file, { bigint: true });
    const free = { kind: 'free', lease: false } as const;
    await new Promise((resolve) => setTimeout(resolve, 20));
    await fsp.chmod(file, 0o660);
    const chmodded = await fsp.stat(file, { bigint: true });
    expect(chmodded.ctimeNs).not.toBe(before.ctimeNs);
    expect(checker.untouched(-1, free, before, chmodded)).toBe(true);
    await fsp.utimes(file, new Date(1000), new Date(1000));
    expect(checker.untouched(-1, free, before, await fsp.stat(file, { bigint: true }))).toBe(false);
    await fsp.appendFile(file, 'd');
    expect(checker.untouched(-1, free, chmodded, await fsp.stat(file, { bigint: true }))).toBe(false);
  });
});

describe('WriterChecker with a lease', () => {
  const addon = (outcome: 'ok' | 'EAGAIN' | 'EACCES', lease: 'read' | 'none' = 'read'): Pick<NativeAddon, 'setLease' | 'getLease'> => ({
    setLease: () => {
      if (outcome !== 'ok') throw Object.assign(new Error(outcome), { code: outcome });
    },
    getLease: () => lease,
  });

  it('is free at once when the lease is granted, busy on EAGAIN', async () => {
    const stats = await statsOf('x');
    expect(new WriterChecker(addon('ok') as NativeAddon, 'lease', 5000, () => 0).check('/f', 3, stats)).toEqual({ kind: 'free', lease: true });
    expect(new WriterChecker(addon('EAGAIN') as NativeAddon, 'lease', 5000, () => 0).check('/f', 3, stats)).toMatchObject({ kind: 'busy' });
  });

  it('falls back to the quiet period when the lease is not allowed', async () => {
    const stats = await statsOf('x');
    expect(new WriterChecker(addon('EACCES') as NativeAddon, 'lease-own-files', 5000, () => 0).check('/f', 3, stats)).toMatchObject({ kind: 'busy', retryInMs: 5000 });
  });

  it('sees a broken lease after the copy', async () => {
    const stats = await statsOf('x');
    const broken = new WriterChecker(addon('ok', 'none') as NativeAddon, 'lease', 5000, () => 0);
    const check = broken.check('/f', 3, stats);
    expect(broken.untouched(3, check, stats, stats)).toBe(false);
    const intact = new WriterChecker(addon('ok', 'read') as NativeAddon, 'lease', 5000, () => 0);
    expect(intact.untouched(3, intact.check('/f', 3, stats), stats, stats)).toBe(true);
  });
});

describe('detectWriterCheckMode', () => {
  it('reads CAP_LEASE (bit 28) from the effective set', async () => {
    const directory = await fsp.mkdtemp(path.join(os.tmpdir(), 'shuttle-caps-'));
    const status = path.join(directory, 'status');
    const fakeAddon = {} as NativeAddon;
    await fsp.writeFile(status, 'Name:\tnode\nCapEff:\t0000000010000000\n');
    expect(detectWriterCheckMode(fakeAddon, status)).toBe('lease');
    await fsp.writeFile(status, 'Name:\tnode\nCapEff:\t0000000000000000\n');
    expect(detectWriterCheckMode(fakeAddon, status)).toBe('lease-own-files');
    expect(detectWriterCheckMode(null, status)).toBe('stability');
  });
});
