import fs, { constants as fsc } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'winston';
import { copyAndHash, hashDescriptor } from './file-io.js';
import { fsyncDescriptor } from './file-jobs.js';
import { insertBeforeExtension } from './filename-policy.js';
import { quarantineDataName, releaseTemporaryName, type ItemRecord } from './item.js';
import type { Journal } from './journal.js';
import { lstatOrNull, type VerifiedDirectory, type Zone } from './zone.js';

// Metadata calls here (lstat, open, close, chmod, chown) are synchronous, and contents follow the rule in
// file-io.ts; see there why. Every fsync is asynchronous.

/** Released files: read and write for owner and group, nothing for others, never executable (invariant 7). */
export const RELEASED_FILE_MODE = 0o660;
const MAX_COLLISION_SUFFIX = 10_000;

/** The bytes about to be released are not the bytes that were scanned. The item is held as failed. */
export class ReleaseIntegrityError extends Error {
  constructor(
    readonly id: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super(`item ${id}: released bytes hash to ${actual}, intake recorded ${expected}`);
    this.name = 'ReleaseIntegrityError';
  }
}

export interface ReleaseDependencies {
  readonly zone: Zone;
  /** Real path of destination_path. */
  readonly destinationRoot: string;
  readonly quarantine: VerifiedDirectory;
  readonly journal: Journal;
  readonly logger: Logger;
  /** Quarantine and destination share a filesystem: release by rename instead of a second copy. */
  readonly sameFilesystem: boolean;
  /**
   * The permission model, when the daemon enforces one: a released file gets its directory's group and the
   * ACL its default ACL implies, and a directory the release creates gets the model's mode and ACLs.
   */
  readonly permissions?: ReleasePermissions;
  /** Makes the release durable in the audit log; runs before the journal records it. */
  readonly recordRelease?: (item: ItemRecord, releasedAs: string) => Promise<void>;
}

export interface ReleasePermissions {
  /** `descriptor`: the file, open, when the releaser holds it. */
  applyAfterMove(filePath: string, descriptor?: number): Promise<void>;
  enforceDirectory(directory: string): Promise<unknown>;
}

/**
 * Puts clean files into destination_path under their relative path. The bytes go to a temporary name in
 * the target directory first, are checked against the intake SHA-256, and only then get their final name
 * through link(2), which fails rather than replace an existing name (invariants 3 and 5).
 *
 * Each step can be cut short by kill -9; `release` also finishes a release that a crash interrupted,
 * using what it finds: the temporary name, its link count, and whether the quarantine copy is still there.
 */
export class Releaser {
  /**
   * Items that may have left something behind: those the journal held when the daemon started (a crash may
   * have cut their release short) and those whose release began in this process. For any other item
   * nothing of its release exists yet, and looking for it would cost a lookup of a name that is not there,
   * which waits for the directory's lock while other names in it are being created.
   */
  private readonly mayHaveLeftovers: Set<string>;

  constructor(private readonly deps: ReleaseDependencies) {
    this.mayHaveLeftovers = new Set(deps.journal.items().keys());
  }

  async release(item: ItemRecord, signal: AbortSignal): Promise<string> {
    if (item.state !== 'clean') throw new Error(`item ${item.id} is ${item.state}, not clean: refusing to release`);
    const { zone, logger } = this.deps;
    const target = releasePath(item);
    const firstAttempt = !this.mayHaveLeftovers.has(item.id);
    this.mayHaveLeftovers.add(item.id);
    const directory = await this.ensureDirectory(path.dirname(target));
    // The released file, open, when this call placed or checked it: its final fsync goes through it.
    let released: number | null = null;
    try {
      const temporary = releaseTemporaryName(item.id);
      const leftover = firstAttempt ? null : lstatOrNull(directory.entry(temporary));
      if (leftover !== null && leftover.nlink > 1) {
        // Linked before a crash, not yet recorded: the other name is the release. Its permissions may not
        // have reached the disk before the crash (see finish): set them again, which changes nothing if they did.
        const releasedName = await findOtherName(directory, temporary, leftover.ino);
        if (releasedName !== null) {
          await this.setReleasedPermissions(directory, temporary);
          return await this.finish(item, directory, temporary, releasedName, false);
        }
      }
      const dataPresent = firstAttempt || lstatOrNull(this.deps.quarantine.entry(quarantineDataName(item.id))) !== null;
      if (leftover !== null && dataPresent) await zone.unlinkIn(directory, temporary);
      if (leftover === null || dataPresent) released = await this.placeTemporary(item, directory, temporary, signal);
      else released = await this.verifyTemporary(item, directory, temporary);

      const wanted = path.basename(target);
      const finalName = await this.linkWithoutOverwriting(directory, temporary, wanted);
      if (finalName !== wanted) {
        logger.warn('name already taken in destination; released under a distinct name', {
          id: item.id,
          path: directory.realEntry(wanted),
          releasedAs: directory.realEntry(finalName),
        });
      }
      return await this.finish(item, directory, temporary, finalName, true, this.deps.sameFilesystem, released);
    } finally {
      if (released !== null) fs.closeSync(released);
      directory.close();
    }
  }

  /**
   * Make the final name and the file's permissions durable, record the release, then remove the temporary
   * name and the quarantine copy. `dataMoved`: this call renamed the quarantine copy away itself, so there
   * is none to look for.
   *
   * The file's bytes were fsynced at intake (or by the copy); what its fsync adds here is its new mode,
   * group and ACL. It runs beside the directory's fsync, after the link: a crash before both end leaves the
   * release unrecorded, and finishing it sets the permissions again. `released`: the file, when the caller
   * has it open; otherwise it is opened under its temporary name.
   */
  private async finish(item: ItemRecord, directory: VerifiedDirectory, temporary: string, finalName: string, fresh: boolean, dataMoved = false, released: number | null = null): Promise<string> {
    await Promise.all([released === null ? syncEntry(directory, temporary) : fsyncDescriptor(released), directory.sync()]);
    const releasedAs = path.join(path.dirname(releasePath(item)), finalName);
    await this.deps.recordRelease?.(item, releasedAs);
    await this.deps.journal.append({ op: 'released', id: item.id, releasedAs });
    this.deps.logger.info(fresh ? 'released' : 'release completed after restart', {
      id: item.id,
      path: directory.realEntry(finalName),
      sha256: item.sha256,
      size: item.size,
    });
    await this.removeLeftovers(item.id, directory, dataMoved);
    this.mayHaveLeftovers.delete(item.id);
    return releasedAs;
  }

  /**
   * Whether the item's temporary name is in its target directory: its release had begun (only a clean
   * verdict leads there) when the daemon stopped. For recovery, before the release is resumed.
   */
  async releaseUnderway(item: ItemRecord): Promise<boolean> {
    let directory: VerifiedDirectory;
    try {
      directory = await this.deps.zone.openDirectory(path.join(this.deps.destinationRoot, path.dirname(releasePath(item))));
    } catch {
      // Gone, or not what it should be (a symlink in the way): nothing of the release can be trusted there.
      return false;
    }
    try {
      return lstatOrNull(directory.entry(releaseTemporaryName(item.id)))?.isFile() ?? false;
    } finally {
      directory.close();
    }
  }

  /** For an item recorded as released: drop the temporary name and the quarantine copy, then forget it. */
  async cleanUpReleased(item: ItemRecord): Promise<void> {
    const directory = await this.deps.zone.openDirectory(path.join(this.deps.destinationRoot, path.dirname(releasePath(item))));
    try {
      await this.removeLeftovers(item.id, directory);
    } finally {
      directory.close();
    }
  }

  private async removeLeftovers(id: string, directory: VerifiedDirectory, dataMoved = false): Promise<void> {
    const { zone, journal, quarantine } = this.deps;
    const temporary = releaseTemporaryName(id);
    const leftover = lstatOrNull(directory.entry(temporary));
    // Only a temporary name that is a second link may go: with one link it would be the only copy.
    if (leftover !== null && leftover.nlink > 1) await zone.unlinkIn(directory, temporary);
    if (!dataMoved && lstatOrNull(quarantine.entry(quarantineDataName(id))) !== null) await zone.unlinkIn(quarantine, quarantineDataName(id));
    await journal.append({ op: 'done', id });
  }

  /**
   * Bring the quarantine copy to `temporary` in the target directory, with its final mode and group.
   * Answers the file, open, for the caller to close, when it was checked in place (a rename); null after a copy.
   */
  private async placeTemporary(item: ItemRecord, directory: VerifiedDirectory, temporary: string, signal: AbortSignal): Promise<number | null> {
    const { zone, quarantine } = this.deps;
    const dataName = quarantineDataName(item.id);
    if (this.deps.sameFilesystem) {
      // No fsync of quarantine for the name that left it: rename(2) is one step, so after a crash the copy
      // is under one name or the other, and either way the release picks up from there. Should the old
      // name come back after the item is done, recovery removes it as a copy no live item owns.
      await zone.move(quarantine, dataName, directory, temporary);
      return this.verifyTemporary(item, directory, temporary);
    }
    const source = fs.openSync(quarantine.entry(dataName), fsc.O_RDONLY | fsc.O_NOFOLLOW);
    try {
      const target = await zone.createExclusiveDescriptor(directory, temporary, RELEASED_FILE_MODE);
      let copied: { sha256: string };
      try {
        copied = await copyAndHash(source, target, signal, fs.fstatSync(source).size);
      } finally {
        fs.closeSync(target);
      }
      if (copied.sha256 !== item.sha256) {
        await zone.unlinkIn(directory, temporary);
        throw new ReleaseIntegrityError(item.id, item.sha256, copied.sha256);
      }
      await this.setReleasedPermissions(directory, temporary);
      return null;
    } finally {
      fs.closeSync(source);
    }
  }

  /**
   * Hash what is under `temporary` and give it the released mode and group. A mismatch is moved back.
   * Answers the file, still open, for the caller to close.
   */
  private async verifyTemporary(item: ItemRecord, directory: VerifiedDirectory, temporary: string): Promise<number> {
    const fd = fs.openSync(directory.entry(temporary), fsc.O_RDONLY | fsc.O_NOFOLLOW);
    try {
      const actual = await hashDescriptor(fd, item.size);
      if (actual !== item.sha256) {
        await this.deps.zone.move(directory, temporary, this.deps.quarantine, quarantineDataName(item.id));
        throw new ReleaseIntegrityError(item.id, item.sha256, actual);
      }
      await this.setReleasedPermissions(directory, temporary, fd);
      return fd;
    } catch (error) {
      fs.closeSync(fd);
      throw error;
    }
  }

  /**
   * A moved file keeps its old group, mode and ACL (a copied one may carry a group it was created with):
   * set all of them explicitly, before the file gets its final name.
   */
  private async setReleasedPermissions(directory: VerifiedDirectory, temporary: string, open?: number): Promise<void> {
    if (this.deps.permissions !== undefined) {
      await this.deps.permissions.applyAfterMove(directory.realEntry(temporary), open);
      return;
    }
    const fd = open ?? fs.openSync(directory.entry(temporary), fsc.O_RDONLY | fsc.O_NOFOLLOW);
    try {
      const directoryGid = directory.stat().gid;
      if (fs.fstatSync(fd).gid !== directoryGid) fs.fchownSync(fd, -1, directoryGid);
      fs.fchmodSync(fd, RELEASED_FILE_MODE);
    } finally {
      if (open === undefined) fs.closeSync(fd);
    }
  }

  private async linkWithoutOverwriting(directory: VerifiedDirectory, temporary: string, wanted: string): Promise<string> {
    for (let attempt = 0; attempt <= MAX_COLLISION_SUFFIX; attempt++) {
      const candidate = collisionName(wanted, attempt);
      try {
        await this.deps.zone.link(directory, temporary, candidate);
        return candidate;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
    }
    throw new Error(`'${directory.realEntry(wanted)}': more than ${MAX_COLLISION_SUFFIX} files already carry this name`);
  }

  /**
   * Open (creating where missing) the destination directory for a relative directory path. A new directory
   * gets its parent's mode (setgid included) and group; its default ACL the kernel copies from the parent.
   */
  private async ensureDirectory(relativeDirectory: string): Promise<VerifiedDirectory> {
    const { zone, destinationRoot } = this.deps;
    let current = await zone.openDirectory(destinationRoot);
    if (relativeDirectory === '.' || relativeDirectory === '') return current;
    try {
      for (const component of relativeDirectory.split(path.sep)) {
        if (lstatOrNull(current.entry(component)) === null) {
          const parent = current.stat();
          const mode = parent.mode & 0o7777;
          try {
            await zone.mkdirIn(current, component, mode);
            // mkdir(2) applies the umask and may drop setgid: state the mode outright.
            await zone.chmodIn(current, component, mode);
            const created = fs.lstatSync(current.entry(component));
            if (created.gid !== parent.gid) await zone.chownIn(current, component, -1, parent.gid);
            await this.deps.permissions?.enforceDirectory(current.realEntry(component));
          } catch (error) {
            if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
          }
        }
        const next = await zone.openDirectory(current.realEntry(component));
        current.close();
        current = next;
      }
      return current;
    } catch (error) {
      current.close();
      throw error;
    }
  }
}

/** Where an item goes under destination_path: its own relative path, or the name the filename policy gave it. */
export function releasePath(item: ItemRecord): string {
  return item.releaseAs ?? item.relativePath;
}

/** `report.csv`, then `report (1).csv`, `report (2).csv`, ... */
export function collisionName(name: string, attempt: number): string {
  if (attempt === 0) return name;
  // Shortened where needed, so that the suffix never pushes a name past 255 bytes.
  return insertBeforeExtension(name, ` (${attempt})`);
}

/** fsync(2) of a file in `directory`, opened without following a symlink. */
async function syncEntry(directory: VerifiedDirectory, name: string): Promise<void> {
  const fd = fs.openSync(directory.entry(name), fsc.O_RDONLY | fsc.O_NOFOLLOW);
  try {
    await fsyncDescriptor(fd);
  } finally {
    fs.closeSync(fd);
  }
}

async function findOtherName(directory: VerifiedDirectory, temporary: string, ino: number): Promise<string | null> {
  for (const name of await directory.list()) {
    if (name === temporary) continue;
    const stats = lstatOrNull(directory.entry(name));
    if (stats !== null && stats.ino === ino) return name;
  }
  return null;
}
