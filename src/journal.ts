import { constants as fsc, fstatSync, ftruncateSync, promises as fsp, writeSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import type { Logger } from 'winston';
import type { ItemRecord, JournalEntry, KeptSource } from './item.js';
import type { VerifiedDirectory, Zone } from './zone.js';

export const JOURNAL_NAME = 'journal.jsonl';
/** Past this size the journal is rewritten with only the live items. */
const COMPACT_AFTER_BYTES = 8 * 1024 * 1024;

interface PendingAppend {
  entry: JournalEntry;
  line: string;
  /** Whether this entry needs an fdatasync of its own before it is acknowledged (see needsSync). */
  sync: boolean;
  resolve: () => void;
  reject: (error: Error) => void;
}

/**
 * Most entries are steps that must not be repeated or lost, so they are fdatasync'ed before they are
 * acknowledged. Two kinds may be lost in a crash, because what follows them finds its way back:
 * - 'done' only says that the leftovers of a released or hazarded item are gone; if it is lost, the item
 *   comes back as released (or hazarded), cleaning up again finds nothing to remove, and 'done' is
 *   appended anew.
 * - a clean verdict ('scanned' with state 'clean'), which the audit log already holds durably; if it is
 *   lost, the item comes back as quarantined and is scanned again, or, when its release had begun (its
 *   copy moved to the release's temporary name, which only a clean verdict leads to), recovery resumes
 *   the release (Pipeline.recover).
 * These are written at once (they survive kill -9 in the page cache) but reach the disk with the next
 * flush of any other entry, or at close. That takes two fdatasyncs per file off the pipeline.
 */
function needsSync(entry: JournalEntry): boolean {
  if (entry.op === 'done') return false;
  return !(entry.op === 'scanned' && entry.state === 'clean');
}

/**
 * The durable state of every item, as an append-only log in quarantine_path. An entry is applied in memory
 * only once it is on disk, so what the pipeline sees is always what a restart would see.
 *
 * Appends are group-committed: entries that arrive while a write and fdatasync are under way go out
 * together in the next one, so many files in flight share one flush. 'done' entries ride along with the
 * next flush instead of forcing one (see needsSync).
 */
export class Journal {
  private readonly live = new Map<string, ItemRecord>();
  private readonly kept = new Map<string, KeptSource>();
  private pending: PendingAppend[] = [];
  private flushing: Promise<void> | null = null;
  private bytesWritten = 0;
  /** Written entries not yet fdatasync'ed (only those needsSync lets wait are ever left so). */
  private unsynced = false;
  private closed = false;

  private constructor(
    private readonly zone: Zone,
    private readonly directory: VerifiedDirectory,
    private handle: FileHandle,
    private readonly logger: Logger,
  ) {}

  /**
   * Replay the journal in `directory` (quarantine_path), then rewrite it holding only live items.
   * A torn last line (a crash mid-append) is dropped: its step was never acknowledged.
   */
  static async open(zone: Zone, directory: VerifiedDirectory, logger: Logger): Promise<Journal> {
    const live = new Map<string, ItemRecord>();
    const kept = new Map<string, KeptSource>();
    let text = '';
    try {
      text = await fsp.readFile(directory.entry(JOURNAL_NAME), 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    const lines = text.split('\n');
    lines.forEach((line, index) => {
      if (line.trim() === '') return;
      let entry: JournalEntry;
      try {
        entry = JSON.parse(line) as JournalEntry;
      } catch {
        if (index >= lines.length - 2) {
          logger.warn('journal: dropping an incomplete last entry', { path: directory.realEntry(JOURNAL_NAME), line: index + 1 });
          return;
        }
        throw new Error(`${directory.realEntry(JOURNAL_NAME)}: line ${index + 1} is not valid JSON; refusing to guess what it held`);
      }
      applyEntry(live, kept, entry);
    });
    const handle = await Journal.rewrite(zone, directory, live, kept);
    const journal = new Journal(zone, directory, handle, logger);
    for (const [id, item] of live) journal.live.set(id, item);
    for (const [key, source] of kept) journal.kept.set(key, source);
    return journal;
  }

  /** Items not yet done with, by id. */
  items(): ReadonlyMap<string, ItemRecord> {
    return this.live;
  }

  get(id: string): ItemRecord | undefined {
    return this.live.get(id);
  }

  /** Sources left in place after their bytes were taken, by identity (see the 'source-kept' entry). */
  keptSources(): ReadonlyMap<string, KeptSource> {
    return this.kept;
  }

  /** Resolves once the entry is durable; only then is it visible through items()/get(). */
  async append(entry: JournalEntry): Promise<void> {
    if (this.closed) throw new Error('journal is closed');
    await new Promise<void>((resolve, reject) => {
      this.pending.push({ entry, line: JSON.stringify(entry) + '\n', sync: needsSync(entry), resolve, reject });
      this.flushing ??= this.flushLoop();
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.flushing;
    // 'done' entries written since the last flush: a clean stop leaves nothing to redo.
    if (this.unsynced) await this.handle.datasync();
    this.unsynced = false;
    await this.handle.close();
  }

  private async flushLoop(): Promise<void> {
    // Appends made in the same turn of the event loop go out in the first batch together.
    await Promise.resolve();
    try {
      while (this.pending.length > 0) {
        const batch = this.pending;
        this.pending = [];
        try {
          this.bytesWritten += this.writeAll(batch.map((append) => append.line).join(''));
          if (batch.some((append) => append.sync)) {
            await this.handle.datasync();
            this.unsynced = false;
          } else {
            this.unsynced = true;
          }
          for (const append of batch) {
            applyEntry(this.live, this.kept, append.entry);
            append.resolve();
          }
        } catch (error) {
          batch.forEach((append) => append.reject(error as Error));
        }
        if (this.bytesWritten > COMPACT_AFTER_BYTES && this.pending.length === 0) await this.compact();
      }
    } finally {
      this.flushing = null;
    }
  }

  /**
   * Append `data` with write(2) directly: a few hundred bytes into the page cache take microseconds, while a
   * trip through the thread pool costs two thread wake-ups per batch. The fdatasync stays asynchronous.
   * A write that fails part way is taken back, so a torn entry never ends up in front of good ones.
   */
  private writeAll(data: string): number {
    const bytes = Buffer.from(data, 'utf8');
    const fd = this.handle.fd;
    let offset = 0;
    try {
      while (offset < bytes.length) offset += writeSync(fd, bytes, offset, bytes.length - offset);
    } catch (error) {
      if (offset > 0) {
        try {
          ftruncateSync(fd, fstatSync(fd).size - offset);
        } catch (truncateError) {
          this.logger.error('journal: cannot take back a partly written entry; the next start will refuse the journal', {
            path: this.directory.realEntry(JOURNAL_NAME),
            code: (truncateError as NodeJS.ErrnoException).code,
          });
        }
      }
      throw error;
    }
    return bytes.length;
  }

  private async compact(): Promise<void> {
    const handle = await Journal.rewrite(this.zone, this.directory, this.live, this.kept);
    await this.handle.close();
    this.handle = handle;
    this.bytesWritten = 0;
    // The rewrite is fsynced and holds every live item: nothing written before it is waiting to be.
    this.unsynced = false;
    this.logger.debug('journal compacted', { live: this.live.size });
  }

  /**
   * Write a journal holding one entry per live item and per kept source, atomically replace the old one,
   * and open it for appends.
   */
  private static async rewrite(
    zone: Zone,
    directory: VerifiedDirectory,
    live: ReadonlyMap<string, ItemRecord>,
    kept: ReadonlyMap<string, KeptSource>,
  ): Promise<FileHandle> {
    const entries: JournalEntry[] = [...live.values()].map((item) => ({ op: 'item', item }));
    for (const [key, { path, id }] of kept) entries.push({ op: 'source-kept', key, path, id });
    const snapshot = entries.map((entry) => JSON.stringify(entry) + '\n').join('');
    await zone.writeFileAtomically(directory, JOURNAL_NAME, snapshot, 0o600);
    zone.assertWritable('append', directory.realEntry(JOURNAL_NAME));
    return fsp.open(directory.entry(JOURNAL_NAME), fsc.O_WRONLY | fsc.O_APPEND | fsc.O_NOFOLLOW);
  }
}

function applyEntry(live: Map<string, ItemRecord>, kept: Map<string, KeptSource>, entry: JournalEntry): void {
  if (entry.op === 'item') {
    live.set(entry.item.id, entry.item);
    return;
  }
  if (entry.op === 'source-kept') {
    kept.set(entry.key, { path: entry.path, id: entry.id });
    return;
  }
  if (entry.op === 'source-gone') {
    kept.delete(entry.key);
    return;
  }
  const item = live.get(entry.id);
  if (item === undefined) return;
  switch (entry.op) {
    case 'scanned':
      live.set(entry.id, { ...item, state: entry.state, reports: entry.reports, ...(entry.signature ? { signature: entry.signature } : {}) });
      return;
    case 'failed':
      live.set(entry.id, { ...item, state: 'failed', reason: entry.reason });
      return;
    case 'released':
      live.set(entry.id, { ...item, state: 'released', releasedAs: entry.releasedAs });
      return;
    case 'hazarded':
      live.set(entry.id, { ...item, state: 'hazarded', archive: entry.archive });
      return;
    case 'done':
      live.delete(entry.id);
      return;
  }
}
