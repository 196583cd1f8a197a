import { constants as fsc, promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import type { NativeAddon } from './native.js';
import type { VerifiedDirectory, Zone } from './zone.js';

export const LOCK_NAME = '.shuttle.lock';

/** Another daemon already runs on these directories. Exit status 2; the running one is left alone. */
export class AlreadyRunningError extends Error {
  constructor(
    readonly lockPath: string,
    readonly holder: string,
  ) {
    super(`another shuttle daemon${holder ? ` (pid ${holder})` : ''} holds ${lockPath}; refusing to start a second one`);
    this.name = 'AlreadyRunningError';
  }
}

/**
 * One daemon per quarantine. flock(2) belongs to the open file, so the kernel drops it when the holder dies
 * however it dies: the lock cannot go stale, and nobody ever needs to delete the file.
 */
export async function acquireInstanceLock(addon: NativeAddon, zone: Zone, quarantine: VerifiedDirectory): Promise<FileHandle> {
  zone.assertWritable('lock', quarantine.realEntry(LOCK_NAME));
  const handle = await fsp.open(quarantine.entry(LOCK_NAME), fsc.O_RDWR | fsc.O_CREAT | fsc.O_NOFOLLOW, 0o600);
  try {
    addon.lockExclusive(handle.fd);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const holder = (await handle.readFile('utf8').catch(() => '')).trim();
    await handle.close();
    if (code === 'EWOULDBLOCK' || code === 'EAGAIN') throw new AlreadyRunningError(quarantine.realEntry(LOCK_NAME), holder);
    throw error;
  }
  await handle.truncate(0);
  await handle.write(`${process.pid}\n`, 0);
  return handle;
}
