// flock(2) exclusion between real processes.
import { spawn, execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadNative, nativeAddonCandidates } from '../../src/native.js';

const native = loadNative();
const addonPath = nativeAddonCandidates().find((candidate) => existsSync(candidate)) ?? '';
let directory: string;

beforeAll(() => {
  directory = mkdtempSync(join(tmpdir(), 'shuttle-lock-'));
});

afterAll(() => {
  rmSync(directory, { recursive: true, force: true });
});

/** Another process opens the file itself and tries the same lock; prints "locked" or "<code> <syscall>". */
function tryLockInChild(path: string): string {
  const script = `
    const addon = require(process.argv[1]);
    const fd = require('node:fs').openSync(process.argv[2], 'r');
    try { addon.lockExclusive(fd); console.log('locked'); }
    catch (error) { console.log(error.code + ' ' + error.syscall); }
  `;
  return execFileSync(process.execPath, ['-e', script, addonPath, path], { encoding: 'utf8' }).trim();
}

describe('lockExclusive', () => {
  it('excludes a second process until the holder closes its descriptor', () => {
    const path = join(directory, 'daemon.lock');
    writeFileSync(path, '');
    const fd = openSync(path, 'r');
    try {
      native.lockExclusive(fd);
      expect(tryLockInChild(path)).toBe('EAGAIN flock');
    } finally {
      closeSync(fd);
    }
    expect(tryLockInChild(path)).toBe('locked');
  });

  it('throws EAGAIN (EWOULDBLOCK) when another process holds the lock', async () => {
    const path = join(directory, 'held.lock');
    writeFileSync(path, '');
    const holder = spawn('flock', ['--exclusive', path, '-c', 'echo held; exec sleep 30'], {
      stdio: ['ignore', 'pipe', 'inherit'],
      detached: true, // its own process group, so the shell it runs goes too
    });
    const holderGroup = holder.pid;
    if (holderGroup === undefined) throw new Error('flock(1) did not start');
    try {
      await new Promise<void>((resolve) => holder.stdout.once('data', () => resolve()));
      const fd = openSync(path, 'r');
      try {
        expect(() => native.lockExclusive(fd)).toThrow(
          expect.objectContaining({ code: 'EAGAIN', errno: -11, syscall: 'flock', message: 'EAGAIN: resource temporarily unavailable, flock' }),
        );
      } finally {
        closeSync(fd);
      }
    } finally {
      process.kill(-holderGroup, 'SIGKILL');
    }
  });

  it('takes a free lock at once', () => {
    const path = join(directory, 'free.lock');
    writeFileSync(path, '');
    const fd = openSync(path, 'r');
    try {
      expect(() => native.lockExclusive(fd)).not.toThrow();
      // Locking again through the same open file description is a no-op, as flock(2) documents.
      expect(() => native.lockExclusive(fd)).not.toThrow();
    } finally {
      closeSync(fd);
    }
  });
});
