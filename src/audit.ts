// The audit trail: one JSON line per state change of every file, in log_path/audit-YYYY-MM-DD.jsonl (UTC).
// Each record carries a sequence number and `prev`, the SHA-256 of the previous record's line (its exact
// bytes, without the newline), across file boundaries; the very first record's prev is 64 zeros. Changing,
// removing, inserting or reordering a record therefore breaks the chain at the next one, and
// `verifyAuditChain` finds it. Removing the newest records cannot be seen from the files alone, which is why
// the head (seq and hash) also goes to the daemon's log on every rotation and at close.
//
// A record is durable (written and fdatasync'ed) before append() resolves; appends that arrive during a
// flush share the next one. The sequence and hash are assigned as a group is written, so a failed write is
// cut back off the file and the chain continues from the last durable record.

import { createHash } from 'node:crypto';
import { constants as fsc, promises as fsp, writeSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import type { Logger } from 'winston';
import type { ScanReport, Verdict } from './scanners/scanner.js';
import type { VerifiedDirectory, Zone } from './zone.js';

export const AUDIT_FILE = /^audit-(\d{4}-\d{2}-\d{2})\.jsonl$/;
export const GENESIS_HASH = '0'.repeat(64);
/** Audit files, like every file the daemon creates: owner and group, no execute bit. */
export const AUDIT_FILE_MODE = 0o660;
/** How many problems verification spells out; the rest are counted. */
const MAX_PROBLEMS = 100;
const TAIL_CHUNK_BYTES = 64 * 1024;

export interface AuditScannerResult {
  readonly name: string;
  readonly version: string | null;
  readonly verdict: 'clean' | 'suspect' | 'failed';
  readonly signature?: string;
  readonly reason?: string;
  readonly durationMs: number;
}

/** What happened to a file. `path` is relative to source_path (or, for `released`, destination_path). */
export type AuditEvent =
  | { readonly event: 'detected'; readonly path: string }
  | {
      readonly event: 'quarantined';
      readonly id: string;
      readonly path: string;
      readonly sha256: string;
      readonly size: number;
      readonly uploader: { readonly uid: number; readonly name: string | null };
    }
  | { readonly event: 'scanned'; readonly id: string; readonly verdict: 'clean' | 'suspect' | 'failed'; readonly scanners: readonly AuditScannerResult[] }
  /** `renamed` when the wanted name was taken and the file got a distinct one. */
  | { readonly event: 'released'; readonly id: string; readonly path: string; readonly requestedPath: string; readonly renamed: boolean }
  | { readonly event: 'hazarded'; readonly id: string; readonly archive: string; readonly sidecar: string | null }
  /** Left in source_path and never taken (a symlink, a FIFO, a hard link...). */
  | { readonly event: 'rejected'; readonly path: string; readonly reason: string }
  | { readonly event: 'failed'; readonly id?: string; readonly path?: string; readonly reason: string }
  /** Written by the log itself: an unacknowledged, incomplete record was cut off at start. */
  | { readonly event: 'audit-repaired'; readonly file: string; readonly droppedBytes: number };

export type AuditRecord = { readonly seq: number; readonly time: string; readonly prev: string } & AuditEvent;

export interface AuditHead {
  readonly seq: number;
  /** SHA-256 of the last durable record's line, or GENESIS_HASH before the first. */
  readonly hash: string;
}

/** A `scanned` event from what scanWithAll returned. */
export function scannedEvent(id: string, verdict: Verdict, reports: readonly ScanReport[]): AuditEvent {
  return {
    event: 'scanned',
    id,
    verdict: verdict.kind,
    scanners: reports.map((report) => ({
      name: report.scanner,
      version: report.version,
      verdict: report.verdict.kind,
      ...(report.verdict.kind === 'suspect' ? { signature: report.verdict.signature } : {}),
      ...(report.verdict.kind === 'failed' ? { reason: report.verdict.reason } : {}),
      durationMs: Math.round(report.durationMs),
    })),
  };
}

export function auditFileName(day: string): string {
  return `audit-${day}.jsonl`;
}

export function lineHash(line: Buffer | string): string {
  return createHash('sha256').update(line).digest('hex');
}

interface PendingRecord {
  readonly event: AuditEvent;
  readonly time: Date;
  resolve: () => void;
  reject: (error: Error) => void;
}

interface OpenFile {
  readonly day: string;
  readonly name: string;
  readonly handle: FileHandle;
  size: number;
}

/** The audit log could not take a record; the step it describes must not count as done. */
export class AuditError extends Error {
  readonly code = 'EAUDIT';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AuditError';
  }
}

export class AuditLog {
  private pending: PendingRecord[] = [];
  private flushing: Promise<void> | null = null;
  private file: OpenFile | null = null;
  private closed = false;
  /** Set when a failed write could not be cut back off: appending more would corrupt the chain. */
  private broken: Error | null = null;

  private constructor(
    private readonly zone: Zone,
    private readonly directory: VerifiedDirectory,
    private readonly ownsDirectory: boolean,
    private readonly logger: Logger,
    private readonly clock: () => Date,
    private durable: AuditHead,
    /** The day of the newest existing file: records never go into an older file than that. */
    private latestDay: string | null,
  ) {}

  /**
   * Find the newest record in `logDirectory` (log_path) and continue the chain from it. An incomplete last
   * line (a crash mid-append: never acknowledged) is cut off, and an `audit-repaired` record says so.
   */
  static async open(zone: Zone, logDirectory: VerifiedDirectory | string, logger: Logger, clock: () => Date = () => new Date()): Promise<AuditLog> {
    const ownsDirectory = typeof logDirectory === 'string';
    const directory = typeof logDirectory === 'string' ? await zone.openDirectory(logDirectory) : logDirectory;
    try {
      const names = (await directory.list()).filter((name) => AUDIT_FILE.test(name)).sort();
      let head: AuditHead = { seq: 0, hash: GENESIS_HASH };
      const repairs: AuditEvent[] = [];
      for (const name of [...names].reverse()) {
        const repaired = await cutIncompleteTail(zone, directory, name);
        if (repaired > 0) {
          repairs.push({ event: 'audit-repaired', file: name, droppedBytes: repaired });
          logger.warn('audit log: cut off an incomplete last record (never acknowledged)', { path: directory.realEntry(name), droppedBytes: repaired });
        }
        const last = await readLastLine(directory.entry(name));
        if (last === null) continue;
        head = { seq: recordSeq(last, directory.realEntry(name)), hash: lineHash(last) };
        break;
      }
      const latest = names.at(-1);
      const latestDay = latest === undefined ? null : (AUDIT_FILE.exec(latest)?.[1] ?? null);
      const log = new AuditLog(zone, directory, ownsDirectory, logger, clock, head, latestDay);
      logger.info('audit log opened', { path: directory.realPath, seq: head.seq, hash: head.hash });
      for (const repair of repairs) await log.append(repair);
      return log;
    } catch (error) {
      if (ownsDirectory) directory.close();
      throw error;
    }
  }

  /** The last durable record. */
  get head(): AuditHead {
    return this.durable;
  }

  /** Resolves once the record is on disk (fdatasync); rejects with AuditError if it is not. */
  append(event: AuditEvent): Promise<void> {
    if (this.closed) return Promise.reject(new AuditError('audit log is closed'));
    if (this.broken) return Promise.reject(new AuditError(`audit log is unusable: ${this.broken.message}`, { cause: this.broken }));
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ event, time: this.clock(), resolve, reject });
      this.flushing ??= this.flushLoop();
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.flushing;
    await this.file?.handle.close();
    this.file = null;
    this.logger.info('audit log closed', { seq: this.durable.seq, hash: this.durable.hash });
    if (this.ownsDirectory) this.directory.close();
  }

  private async flushLoop(): Promise<void> {
    // Records appended in the same turn of the event loop (detected and quarantined, say) share a flush.
    await Promise.resolve();
    while (this.pending.length > 0) {
      const batch = this.pending;
      this.pending = [];
      let index = 0;
      while (index < batch.length) {
        // Consecutive records for the same day go out in one write and one fdatasync.
        const day = this.dayFor(batch[index]!.time);
        let end = index + 1;
        while (end < batch.length && this.dayFor(batch[end]!.time) === day) end++;
        const group = batch.slice(index, end);
        try {
          await this.writeGroup(day, group);
        } catch (error) {
          const failure = error instanceof AuditError ? error : new AuditError(`audit record not written: ${(error as Error).message}`, { cause: error });
          for (const record of batch.slice(index)) record.reject(failure);
          this.logger.error('audit record not written; the step it describes is not done', {
            code: (error as NodeJS.ErrnoException).code,
            error: (error as Error).message,
          });
          break;
        }
        for (const record of group) record.resolve();
        index = end;
      }
    }
    this.flushing = null;
  }

  private async writeGroup(day: string, group: readonly PendingRecord[]): Promise<void> {
    const file = await this.fileFor(day);
    let { seq, hash } = this.durable;
    const lines: string[] = [];
    for (const record of group) {
      seq++;
      const line = JSON.stringify({ seq, time: record.time.toISOString(), prev: hash, ...record.event });
      hash = lineHash(line);
      lines.push(`${line}\n`);
    }
    const data = Buffer.from(lines.join(''), 'utf8');
    try {
      writeFully(file.handle, data, file.size);
      await file.handle.datasync();
    } catch (error) {
      await this.cutBack(file, error as Error);
      throw error;
    }
    file.size += data.length;
    this.durable = { seq, hash };
  }

  /** Remove a partly written group, so the next one continues the chain from the last durable record. */
  private async cutBack(file: OpenFile, cause: Error): Promise<void> {
    try {
      await file.handle.truncate(file.size);
      await file.handle.datasync();
    } catch (error) {
      this.broken = new Error(`a failed write (${cause.message}) could not be cut back off ${file.name}: ${(error as Error).message}`);
    }
  }

  /** Day of the file a record goes to: its own UTC day, but never a day before the newest file's. */
  private dayFor(time: Date): string {
    const day = time.toISOString().slice(0, 10);
    return this.latestDay !== null && day < this.latestDay ? this.latestDay : day;
  }

  private async fileFor(day: string): Promise<OpenFile> {
    if (this.file?.day === day) return this.file;
    const name = auditFileName(day);
    this.zone.assertWritable('append', this.directory.realEntry(name));
    const { handle, created } = await openForAppend(this.directory.entry(name));
    try {
      const stats = await handle.stat();
      if (!stats.isFile()) throw new AuditError(`${this.directory.realEntry(name)} is not a regular file`);
      if (created) {
        await handle.chmod(AUDIT_FILE_MODE);
        // The new name must survive a crash before any record in it counts as durable.
        await this.directory.sync();
      }
      const previous = this.file;
      this.file = { day, name, handle, size: stats.size };
      this.latestDay = day;
      if (previous !== null) {
        await previous.handle.close();
        this.logger.info('audit log rotated', { from: previous.name, to: name, seq: this.durable.seq, hash: this.durable.hash });
      }
      return this.file;
    } catch (error) {
      await handle.close();
      throw error;
    }
  }
}

// ---- verification ----

export interface AuditVerification {
  readonly ok: boolean;
  readonly records: number;
  readonly files: readonly string[];
  readonly problems: readonly string[];
  /** The last record seen, to compare with the head the daemon logged. */
  readonly head: AuditHead | null;
}

/**
 * Re-reads every audit file in `directory`, oldest first, and checks the chain: sequence numbers without
 * gaps, each `prev` equal to the hash of the line before, nothing but complete JSON records. Reading is
 * streamed, so memory does not grow with the log. Rejects only when the directory or a file cannot be read.
 */
export async function verifyAuditChain(directory: string): Promise<AuditVerification> {
  const files = (await fsp.readdir(directory)).filter((name) => AUDIT_FILE.test(name)).sort();
  const problems: string[] = [];
  let problemCount = 0;
  const report = (problem: string) => {
    problemCount++;
    if (problems.length < MAX_PROBLEMS) problems.push(problem);
  };
  let expectedSeq = 1;
  let prevHash = GENESIS_HASH;
  let previousWhere = '';
  let records = 0;
  let head: AuditHead | null = null;

  for (const name of files) {
    const filePath = `${directory}/${name}`;
    let lineNumber = 0;
    const tail = await forEachLine(filePath, (line) => {
      lineNumber++;
      const where = `${name}:${lineNumber}`;
      const hash = lineHash(line);
      const parsed = parseRecord(line);
      if (typeof parsed === 'string') {
        report(`${where}: ${parsed}`);
      } else {
        const faults: string[] = [];
        if (parsed.seq !== expectedSeq) {
          faults.push(records === 0 && parsed.seq > 1 ? `starts at seq ${parsed.seq}: the records before it are missing` : `has seq ${parsed.seq}, expected ${expectedSeq}`);
        }
        if (parsed.prev !== prevHash) {
          faults.push(records === 0 ? 'does not start the chain (its prev is not the genesis hash)' : `does not chain to the record before it (${previousWhere}): that record was changed, or records between them were removed or reordered`);
        }
        if (faults.length > 0) report(`${where}: ${faults.join('; ')}`);
        expectedSeq = parsed.seq + 1;
        head = { seq: parsed.seq, hash };
      }
      if (typeof parsed === 'string') expectedSeq++;
      prevHash = hash;
      previousWhere = where;
      records++;
    });
    if (tail > 0) report(`${name}: ends with an incomplete record (${tail} bytes after the last newline): truncated or torn`);
  }
  if (problemCount > problems.length) problems.push(`... and ${problemCount - problems.length} more problems`);
  return { ok: problemCount === 0, records, files, problems, head };
}

function parseRecord(line: Buffer): { seq: number; prev: string } | string {
  if (line.length === 0) return 'is an empty line';
  let value: unknown;
  try {
    value = JSON.parse(line.toString('utf8'));
  } catch {
    return 'is not valid JSON (changed or corrupted)';
  }
  const record = value as Partial<Record<'seq' | 'prev' | 'time' | 'event', unknown>>;
  if (typeof value !== 'object' || value === null || !Number.isSafeInteger(record.seq) || typeof record.prev !== 'string' || typeof record.time !== 'string' || typeof record.event !== 'string') {
    return 'is not an audit record (needs seq, time, prev and event)';
  }
  return { seq: record.seq as number, prev: record.prev };
}

/** Calls `onLine` with each newline-terminated line (without it); resolves with the bytes after the last newline. */
async function forEachLine(filePath: string, onLine: (line: Buffer) => void): Promise<number> {
  let carry: Buffer = Buffer.alloc(0);
  const handle = await fsp.open(filePath, fsc.O_RDONLY | fsc.O_NOFOLLOW);
  for await (const chunk of handle.createReadStream({ highWaterMark: 1024 * 1024 })) {
    let data = carry.length > 0 ? Buffer.concat([carry, chunk as Buffer]) : (chunk as Buffer);
    let start = 0;
    for (let newline = data.indexOf(0x0a, start); newline !== -1; newline = data.indexOf(0x0a, start)) {
      onLine(data.subarray(start, newline));
      start = newline + 1;
    }
    data = data.subarray(start);
    carry = Buffer.from(data);
  }
  return carry.length;
}

// ---- helpers for open ----

/** O_APPEND: whatever the offset, every write lands at the end. */
async function openForAppend(target: string): Promise<{ handle: FileHandle; created: boolean }> {
  const flags = fsc.O_WRONLY | fsc.O_APPEND | fsc.O_NOFOLLOW;
  try {
    return { handle: await fsp.open(target, flags | fsc.O_CREAT | fsc.O_EXCL, AUDIT_FILE_MODE), created: true };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    return { handle: await fsp.open(target, flags), created: false };
  }
}

/**
 * pwrite(2) directly: a few hundred bytes into the page cache take microseconds, while a trip through the
 * thread pool costs two thread wake-ups per group. The fdatasync after it stays asynchronous.
 */
function writeFully(handle: FileHandle, data: Buffer, position: number): void {
  let written = 0;
  while (written < data.length) written += writeSync(handle.fd, data, written, data.length - written, position + written);
}

/** Truncates the file after its last newline when bytes follow it; resolves with how many were dropped. */
async function cutIncompleteTail(zone: Zone, directory: VerifiedDirectory, name: string): Promise<number> {
  const handle = await fsp.open(directory.entry(name), fsc.O_RDONLY | fsc.O_NOFOLLOW);
  let keep: number;
  let size: number;
  try {
    size = (await handle.stat()).size;
    if (size === 0) return 0;
    const last = Buffer.alloc(1);
    await handle.read(last, 0, 1, size - 1);
    if (last[0] === 0x0a) return 0;
    keep = (await lastNewlineBefore(handle, size)) + 1;
  } finally {
    await handle.close();
  }
  zone.assertWritable('truncate', directory.realEntry(name));
  const writable = await fsp.open(directory.entry(name), fsc.O_WRONLY | fsc.O_NOFOLLOW);
  try {
    await writable.truncate(keep);
    await writable.datasync();
  } finally {
    await writable.close();
  }
  return size - keep;
}

/** Offset of the last newline before `end`, or -1. */
async function lastNewlineBefore(handle: FileHandle, end: number): Promise<number> {
  const buffer = Buffer.alloc(TAIL_CHUNK_BYTES);
  let position = end;
  while (position > 0) {
    const start = Math.max(0, position - buffer.length);
    const { bytesRead } = await handle.read(buffer, 0, position - start, start);
    const at = buffer.subarray(0, bytesRead).lastIndexOf(0x0a);
    if (at !== -1) return start + at;
    position = start;
  }
  return -1;
}

/** The last complete line of a file that ends with a newline, or null when it is empty. */
async function readLastLine(filePath: string): Promise<Buffer | null> {
  const handle = await fsp.open(filePath, fsc.O_RDONLY | fsc.O_NOFOLLOW);
  try {
    const size = (await handle.stat()).size;
    if (size === 0) return null;
    const start = (await lastNewlineBefore(handle, size - 1)) + 1;
    const line = Buffer.alloc(size - 1 - start);
    await handle.read(line, 0, line.length, start);
    return line;
  } finally {
    await handle.close();
  }
}

function recordSeq(line: Buffer, where: string): number {
  const parsed = parseRecord(line);
  if (typeof parsed === 'string') {
    throw new AuditError(`cannot continue the audit chain: the last record in ${where} ${parsed}; run \`shuttle audit verify\``);
  }
  return parsed.seq;
}
