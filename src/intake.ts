import { randomBytes } from 'node:crypto';
import { closeSync, constants as fsc, fstatSync, lstatSync, openSync } from 'node:fs';
import type { BigIntStats } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'winston';
import { copyAndHash } from './file-io.js';
import { closeDescriptor } from './file-jobs.js';
import { quarantineDataName, type ItemRecord, type SourceIdentity } from './item.js';
import type { Journal } from './journal.js';
import type { IntakeAdmission, IntakeTicket } from './limits/intake-limits.js';
import type { WriterChecker } from './writer-check.js';
import { PathEscapeError, type VerifiedDirectory, type Zone } from './zone.js';

// lstat, fstat, open and close here are synchronous on purpose. They are answered from the inode cache of a
// local filesystem in microseconds; through the thread pool each one costs a worker wake-up and an
// event-loop wake-up, which with many small files was most of the main thread's time. Contents follow the
// rule in file-io.ts, and every fsync stays asynchronous: those can wait on the disk.

/** O_NONBLOCK keeps a FIFO that slipped past lstat from blocking the open; it changes nothing for regular files. */
const SOURCE_OPEN_FLAGS = fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK;
const QUARANTINE_FILE_MODE = 0o600;

export type IntakeOutcome =
  | { readonly kind: 'taken'; readonly item: ItemRecord }
  /** Not finished yet, or something passing (no space): try again later. The source is untouched. */
  | { readonly kind: 'deferred'; readonly retryInMs: number; readonly reason: string }
  /** Never taken as it is (symlink, hard link, FIFO, ...): left in place. */
  | { readonly kind: 'refused'; readonly reason: string }
  /** Vanished, or not a file. */
  | { readonly kind: 'gone' };

/** Where a file is in source_path, and where it is to be released (another name when its own cannot be used). */
interface ItemPaths {
  readonly relativePath: string;
  readonly releaseAs: string;
}

export interface IntakeDependencies {
  readonly zone: Zone;
  /** Real path of source_path. */
  readonly sourceRoot: string;
  readonly quarantine: VerifiedDirectory;
  readonly journal: Journal;
  readonly writerChecker: WriterChecker;
  readonly logger: Logger;
  readonly now: () => Date;
  /** Limits (size, free space, daily quota, uploader rate) asked before a file is copied. */
  readonly limits?: IntakeGate;
  /** Makes the intake durable in the audit log; runs after the journal record, before the source goes. */
  readonly recordIntake?: (item: ItemRecord) => Promise<void>;
}

/** What intake asks before copying: IntakeLimits in the daemon. */
export interface IntakeGate {
  admit(candidate: { readonly size: number; readonly uploaderUid: number }): Promise<IntakeAdmission>;
  notTaken(ticket: IntakeTicket): void;
}

/** Copies finished files from source_path into quarantine, hashing them in the same read, then removes the source. */
export class Intake {
  /** Inodes being copied now, by dev:ino. */
  private readonly inFlight = new Set<string>();
  /**
   * Sources copied and recorded whose removal failed, by identity (dev:ino:size:mtimeNs): never take the
   * same bytes twice. Kept in the journal too, so that a restart does not forget them.
   */
  private readonly unremovedSources = new Map<string, string>();
  /** The identity last kept for each path, to forget it once the file there has changed. */
  private readonly keptByPath = new Map<string, string>();

  constructor(private readonly deps: IntakeDependencies) {
    for (const [key, kept] of deps.journal.keptSources()) {
      this.unremovedSources.set(key, kept.id);
      this.keptByPath.set(kept.path, key);
    }
  }

  /** At start: forget kept sources that are gone or have changed since, so the journal does not keep them forever. */
  async forgetVanishedSources(): Promise<void> {
    for (const [relativePath, key] of [...this.keptByPath]) {
      let stats: BigIntStats | undefined;
      try {
        stats = lstatSync(path.join(this.deps.sourceRoot, relativePath), { bigint: true, throwIfNoEntry: false });
      } catch {
        stats = undefined;
      }
      // Moved elsewhere in the share with its bytes unchanged, it would be taken again: rare, and a copy too many
      // is the safe side of that choice, where keeping every record forever is not.
      if (stats === undefined || identityOf(stats) !== key) await this.forgetKeptSource(relativePath, key);
    }
  }

  /** `releaseAs` (relative to destination_path) is recorded with the item when the file keeps another name. */
  async take(relativePath: string, signal: AbortSignal, releaseAs: string = relativePath): Promise<IntakeOutcome> {
    const { zone, sourceRoot } = this.deps;
    const name = path.basename(relativePath);
    let directory: VerifiedDirectory;
    try {
      directory = await zone.openDirectory(path.join(sourceRoot, path.dirname(relativePath)));
    } catch (error) {
      if (error instanceof PathEscapeError) return { kind: 'refused', reason: error.message };
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return { kind: 'gone' };
      if (code === 'ELOOP') return { kind: 'refused', reason: 'a directory on its path is a symbolic link' };
      throw error;
    }
    try {
      return await this.takeFrom(directory, name, { relativePath, releaseAs }, signal);
    } finally {
      directory.close();
    }
  }

  private async takeFrom(directory: VerifiedDirectory, name: string, paths: ItemPaths, signal: AbortSignal): Promise<IntakeOutcome> {
    let linkStats: BigIntStats;
    try {
      linkStats = lstatSync(directory.entry(name), { bigint: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
        // A name that is not valid UTF-8 reaches us with U+FFFD in place of its bytes and cannot be opened
        // by that name: it stays where it is, and says so, rather than vanishing from view.
        if (name.includes('\uFFFD')) return { kind: 'refused', reason: 'its name is not valid UTF-8; rename it' };
        return { kind: 'gone' };
      }
      throw error;
    }
    const refusal = refusalFor(linkStats);
    if (refusal === 'directory') return { kind: 'gone' };
    if (refusal !== null) return { kind: 'refused', reason: refusal };

    // The same inode under a second path (its directory renamed while it was being copied): one intake
    // at a time, so its bytes are never taken twice.
    const inode = `${linkStats.dev}:${linkStats.ino}`;
    if (this.inFlight.has(inode)) return { kind: 'deferred', retryInMs: 0, reason: 'being taken under another path' };
    this.inFlight.add(inode);
    try {
      return await this.admitAndCopy(directory, name, paths, linkStats, signal);
    } finally {
      this.inFlight.delete(inode);
    }
  }

  private async admitAndCopy(directory: VerifiedDirectory, name: string, paths: ItemPaths, linkStats: BigIntStats, signal: AbortSignal): Promise<IntakeOutcome> {
    const { limits } = this.deps;
    if (limits === undefined) return this.openAndCopy(directory, name, paths, linkStats, signal);
    const admission = await limits.admit({ size: Number(linkStats.size), uploaderUid: Number(linkStats.uid) });
    if (admission.kind === 'reject') return { kind: 'refused', reason: admission.reason };
    if (admission.kind === 'wait') return { kind: 'deferred', retryInMs: admission.retryInMs, reason: admission.reason };
    let outcome: IntakeOutcome | null = null;
    try {
      outcome = await this.openAndCopy(directory, name, paths, linkStats, signal);
      return outcome;
    } finally {
      // Counted on admission; a file not taken after all gives its share of the limits back.
      if (outcome?.kind !== 'taken') limits.notTaken(admission.ticket);
    }
  }

  private async openAndCopy(directory: VerifiedDirectory, name: string, paths: ItemPaths, linkStats: BigIntStats, signal: AbortSignal): Promise<IntakeOutcome> {
    let source: number;
    try {
      source = openSync(directory.entry(name), SOURCE_OPEN_FLAGS);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return { kind: 'gone' };
      if (code === 'ELOOP') return { kind: 'refused', reason: 'it is a symbolic link' };
      if (code === 'EACCES' || code === 'EPERM') return { kind: 'refused', reason: `shuttle may not read it (${code})` };
      throw error;
    }
    try {
      return await this.copyToQuarantine(directory, name, paths, source, linkStats, signal);
    } finally {
      // Through the thread pool: the source is unlinked by now, so this last close is what frees its inode
      // and blocks, which is filesystem work that can take far longer than a close.
      await closeDescriptor(source);
    }
  }

  private async copyToQuarantine(
    directory: VerifiedDirectory,
    name: string,
    { relativePath, releaseAs }: ItemPaths,
    source: number,
    linkStats: BigIntStats,
    signal: AbortSignal,
  ): Promise<IntakeOutcome> {
    const { zone, quarantine, journal, writerChecker, logger } = this.deps;
    const before = fstatSync(source, { bigint: true });
    // What we opened must be what we looked at: a swap between lstat and open is refused, not followed.
    if (before.ino !== linkStats.ino || before.dev !== linkStats.dev) return { kind: 'deferred', retryInMs: 0, reason: 'replaced while being opened' };
    // The limits were asked with the size lstat saw: a writer that added bytes since (and closed the file,
    // or the writer check would stop it below) sends the file back to be asked again with its real size.
    if (before.size !== linkStats.size) return { kind: 'deferred', retryInMs: 0, reason: 'grew while being opened' };
    const refusal = refusalFor(before);
    if (refusal !== null) return { kind: 'refused', reason: refusal };
    const identityKey = identityOf(before);
    const earlierItem = this.unremovedSources.get(identityKey);
    if (earlierItem !== undefined) return { kind: 'refused', reason: `already in quarantine as item ${earlierItem}; removing the source failed` };
    const keptHere = this.keptByPath.get(relativePath);
    if (keptHere !== undefined) await this.forgetKeptSource(relativePath, keptHere);

    const sourcePath = directory.realEntry(name);
    const check = writerChecker.check(sourcePath, source, before);
    if (check.kind === 'busy') return { kind: 'deferred', retryInMs: check.retryInMs, reason: check.reason };

    const id = newItemId(this.deps.now());
    const dataName = quarantineDataName(id);
    let copied: { sha256: string; size: number };
    try {
      const target = await zone.createExclusiveDescriptor(quarantine, dataName, QUARANTINE_FILE_MODE);
      try {
        copied = await copyAndHash(source, target, signal, Number(before.size));
      } finally {
        closeSync(target);
      }
    } catch (error) {
      await removeQuietly(zone, quarantine, dataName);
      const code = (error as NodeJS.ErrnoException).code;
      if (signal.aborted) return { kind: 'deferred', retryInMs: 0, reason: 'shutting down' };
      if (code === 'ENOSPC' || code === 'EDQUOT') return { kind: 'deferred', retryInMs: 10_000, reason: `quarantine is full (${code})` };
      throw error;
    }
    const after = fstatSync(source, { bigint: true });
    if (!writerChecker.untouched(source, check, before, after) || BigInt(copied.size) !== after.size) {
      await removeQuietly(zone, quarantine, dataName);
      return { kind: 'deferred', retryInMs: 0, reason: 'changed while being copied' };
    }

    const identity: SourceIdentity = { dev: Number(before.dev), ino: Number(before.ino), size: copied.size, mtimeNs: before.mtimeNs.toString() };
    const item: ItemRecord = {
      id,
      relativePath,
      size: copied.size,
      sha256: copied.sha256,
      uploaderUid: Number(before.uid),
      source: identity,
      quarantinedAt: this.deps.now().toISOString(),
      state: 'quarantined',
      ...(releaseAs === relativePath ? {} : { releaseAs }),
    };
    // The copy is fsynced; once its record is durable too, the source may go.
    await journal.append({ op: 'item', item });
    try {
      await this.deps.recordIntake?.(item);
    } catch (error) {
      // The bytes are safe in quarantine and journalled; without its audit record the source stays, and a
      // restart removes it once it is recognised as this item.
      await this.keepSource(identityKey, relativePath, id);
      logger.error('intake could not be written to the audit log; the source stays in place', { path: sourcePath, id, error: (error as Error).message });
      writerChecker.forget(sourcePath);
      return { kind: 'taken', item };
    }
    try {
      // A writer that opened the file after the copy would lose its bytes if we unlinked now: leave the
      // file, and take it again only once it has changed.
      if (!writerChecker.untouched(source, check, before, fstatSync(source, { bigint: true }))) {
        await this.keepSource(identityKey, relativePath, id);
        logger.warn('source was opened for writing after it was copied; left in place', { path: sourcePath, id });
      } else {
        await removeSource(zone, directory, name, before);
      }
    } catch (error) {
      await this.keepSource(identityKey, relativePath, id);
      logger.error('source copied to quarantine but could not be removed; it will not be taken again', {
        path: sourcePath,
        id,
        code: (error as NodeJS.ErrnoException).code,
        error: (error as Error).message,
      });
    }
    writerChecker.forget(sourcePath);
    return { kind: 'taken', item };
  }

  /** Never take these bytes again, across restarts: in memory, and in the journal. */
  private async keepSource(key: string, relativePath: string, id: string): Promise<void> {
    this.unremovedSources.set(key, id);
    this.keptByPath.set(relativePath, key);
    try {
      await this.deps.journal.append({ op: 'source-kept', key, path: relativePath, id });
    } catch (error) {
      this.deps.logger.error('cannot record a source left in place; after a restart it could be taken again', {
        path: path.join(this.deps.sourceRoot, relativePath),
        id,
        error: (error as Error).message,
      });
    }
  }

  /** The file at `relativePath` is no longer the kept one (changed, replaced or gone). */
  private async forgetKeptSource(relativePath: string, key: string): Promise<void> {
    this.unremovedSources.delete(key);
    this.keptByPath.delete(relativePath);
    try {
      await this.deps.journal.append({ op: 'source-gone', key });
    } catch (error) {
      // Only a record that outlives its file: it is forgotten again at the next start.
      this.deps.logger.warn('cannot record that a kept source is gone', { path: path.join(this.deps.sourceRoot, relativePath), error: (error as Error).message });
    }
  }
}

/** What makes a source the same bytes: the same inode, size and modification time. */
function identityOf(stats: BigIntStats): string {
  return `${stats.dev}:${stats.ino}:${stats.size}:${stats.mtimeNs}`;
}

/** Why a file is never taken, or 'directory' for a directory (walked, not taken), or null for a plain file. */
function refusalFor(stats: BigIntStats): string | 'directory' | null {
  if (stats.isDirectory()) return 'directory';
  if (stats.isSymbolicLink()) return 'it is a symbolic link';
  if (stats.isFIFO()) return 'it is a FIFO';
  if (stats.isSocket()) return 'it is a socket';
  if (stats.isBlockDevice() || stats.isCharacterDevice()) return 'it is a device node';
  if (!stats.isFile()) return 'it is not a regular file';
  // No count in the reason: it is logged once per reason, and a count that changes would log it again.
  if (stats.nlink > 1n) return 'it has more than one hard link';
  return null;
}

/** Remove the source if it is still the very file we copied, then make the removal durable. */
async function removeSource(zone: Zone, directory: VerifiedDirectory, name: string, copied: BigIntStats): Promise<void> {
  const current = lstatSync(directory.entry(name), { bigint: true });
  if (current.ino !== copied.ino || current.dev !== copied.dev) {
    throw Object.assign(new Error(`'${directory.realEntry(name)}' was replaced after it was copied`), { code: 'ESTALE' });
  }
  zone.unlinkInNow(directory, name);
  await directory.sync();
}

async function removeQuietly(zone: Zone, directory: VerifiedDirectory, name: string): Promise<void> {
  try {
    await zone.unlinkIn(directory, name);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}

/** Sortable by time, unique across restarts and processes. */
export function newItemId(now: Date): string {
  return `${now.getTime().toString(36)}-${randomBytes(6).toString('hex')}`;
}
