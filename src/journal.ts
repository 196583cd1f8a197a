import { constants as fsc, promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import type { Logger } from 'winston';
import type { ItemRecord, JournalEntry } from './item.js';
import type { VerifiedDirectory, Zone } from './zone.js';

export const JOURNAL_NAME = 'journal.jsonl';
/** Past this size the journal is rewritten with only the live items. */
const COMPACT_AFTER_BYTES = 8 * 1024 * 1024;

interface PendingAppend {
  entry: JournalEntry;
  line: string;
  resolve: () => void;
  reject: (error: Error) => void;
}

/**
 * The durable state of every item, as an append-only log in quarantine_path. An entry is applied in memory
 * only once it is on disk, so what the pipeline sees is always what a restart would see.
 *
 * Appends are group-committed: entries that arrive while a write and fdatasync are under way go out
 * together in the next one, so many files in flight share one flush.
 */
export class Journal {
  private readonly live = new Map<string, ItemRecord>();
  private pending: PendingAppend[] = [];
  private flushing: Promise<void> | null = null;
  private bytesWritten = 0;
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
      applyEntry(live, entry);
    });
    const handle = await Journal.rewrite(zone, directory, live);
    const journal = new Journal(zone, directory, handle, logger);
    for (const [id, item] of live) journal.live.set(id, item);
    return journal;
  }

  /** Items not yet done with, by id. */
  items(): ReadonlyMap<string, ItemRecord> {
    return this.live;
  }

  get(id: string): ItemRecord | undefined {
    return this.live.get(id);
  }

  /** Resolves once the entry is durable; only then is it visible through items()/get(). */
  async append(entry: JournalEntry): Promise<void> {
    if (this.closed) throw new Error('journal is closed');
    await new Promise<void>((resolve, reject) => {
      this.pending.push({ entry, line: JSON.stringify(entry) + '\n', resolve, reject });
      this.flushing ??= this.flushLoop();
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.flushing;
    await this.handle.close();
  }

  private async flushLoop(): Promise<void> {
    while (this.pending.length > 0) {
      const batch = this.pending;
      this.pending = [];
      const data = batch.map((append) => append.line).join('');
      try {
        await this.handle.write(data);
        await this.handle.datasync();
        this.bytesWritten += Buffer.byteLength(data);
        for (const append of batch) {
          applyEntry(this.live, append.entry);
          append.resolve();
        }
      } catch (error) {
        batch.forEach((append) => append.reject(error as Error));
      }
      if (this.bytesWritten > COMPACT_AFTER_BYTES && this.pending.length === 0) await this.compact();
    }
    this.flushing = null;
  }

  private async compact(): Promise<void> {
    const handle = await Journal.rewrite(this.zone, this.directory, this.live);
    await this.handle.close();
    this.handle = handle;
    this.bytesWritten = 0;
    this.logger.debug('journal compacted', { live: this.live.size });
  }

  /** Write a journal holding one entry per live item, atomically replace the old one, and open it for appends. */
  private static async rewrite(zone: Zone, directory: VerifiedDirectory, live: ReadonlyMap<string, ItemRecord>): Promise<FileHandle> {
    const snapshot = [...live.values()].map((item) => JSON.stringify({ op: 'item', item }) + '\n').join('');
    await zone.writeFileAtomically(directory, JOURNAL_NAME, snapshot, 0o600);
    zone.assertWritable('append', directory.realEntry(JOURNAL_NAME));
    return fsp.open(directory.entry(JOURNAL_NAME), fsc.O_WRONLY | fsc.O_APPEND | fsc.O_NOFOLLOW);
  }
}

function applyEntry(live: Map<string, ItemRecord>, entry: JournalEntry): void {
  if (entry.op === 'item') {
    live.set(entry.item.id, entry.item);
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
