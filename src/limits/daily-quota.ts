// How many files, and how many bytes, may be taken per local calendar day. Counting is in memory; at start
// the day's totals are rebuilt from the audit log's `quarantined` records, which every taken file already
// gets, so the quota survives restarts without a write of its own per file.

import { constants as fsc, promises as fsp } from 'node:fs';
import path from 'node:path';
import { AUDIT_FILE } from '../audit.js';
import { formatBytes } from './free-space.js';

export interface DailyQuotaLimits {
  /** 0 = no limit. */
  readonly maxFiles: number;
  readonly maxBytes: number;
}

/** Counted against the day it was admitted on; hand it back with refund() when the file was not taken. */
export interface QuotaTicket {
  readonly day: string;
  readonly size: number;
}

export type QuotaDecision =
  | { readonly ok: true; readonly ticket: QuotaTicket }
  | {
      readonly ok: false;
      readonly limit: 'files' | 'bytes';
      /**
       * When the next day's quota starts (local midnight); null when the file alone is larger than the
       * daily byte limit, so no day could ever take it.
       */
      readonly resumesAt: Date | null;
      readonly reason: string;
    };

export interface DailyUsage {
  readonly day: string;
  readonly files: number;
  readonly bytes: number;
}

export interface RestoredUsage extends DailyUsage {
  /** The audit files that were read. */
  readonly sources: readonly string[];
}

export class DailyQuota {
  private day: string;
  private files: number;
  private bytes: number;

  constructor(
    private limits: DailyQuotaLimits,
    /** What was already taken today (from restore); ignored when it is for another day. */
    usage: DailyUsage | null = null,
    now: Date = new Date(),
  ) {
    const today = localDay(now);
    const carried = usage !== null && usage.day === today;
    this.day = today;
    this.files = carried ? usage.files : 0;
    this.bytes = carried ? usage.bytes : 0;
  }

  /** A quota that starts from what the audit log in `logDirectory` says was taken today. */
  static async restore(logDirectory: string, limits: DailyQuotaLimits, now: Date = new Date()): Promise<{ quota: DailyQuota; restored: RestoredUsage }> {
    const restored = await usageFromAuditLog(logDirectory, now);
    return { quota: new DailyQuota(limits, restored, now), restored };
  }

  /** On reload: the counts stay, the new limits apply to the next file. */
  setLimits(limits: DailyQuotaLimits): void {
    this.limits = limits;
  }

  usage(now: Date): DailyUsage {
    this.rollOver(now);
    return { day: this.day, files: this.files, bytes: this.bytes };
  }

  /** Would a file of `size` bytes be admitted now? Changes nothing but the day. */
  check(size: number, now: Date): QuotaDecision {
    this.rollOver(now);
    const { maxFiles, maxBytes } = this.limits;
    if (maxBytes > 0 && size > maxBytes) {
      return {
        ok: false,
        limit: 'bytes',
        resumesAt: null,
        reason: `the file (${formatBytes(size)}) is larger than the whole daily limit (limits.daily_max_bytes, ${formatBytes(maxBytes)})`,
      };
    }
    if (maxFiles > 0 && this.files >= maxFiles) {
      return { ok: false, limit: 'files', resumesAt: nextLocalDay(now), reason: `${this.files} files taken today, the daily limit (limits.daily_max_files)` };
    }
    if (maxBytes > 0 && this.bytes + size > maxBytes) {
      return {
        ok: false,
        limit: 'bytes',
        resumesAt: nextLocalDay(now),
        reason: `${formatBytes(this.bytes)} taken today; ${formatBytes(size)} more would pass the daily limit (limits.daily_max_bytes, ${formatBytes(maxBytes)})`,
      };
    }
    return { ok: true, ticket: { day: this.day, size } };
  }

  /** check(), and when it is ok, count the file at once, so concurrent intakes cannot overshoot together. */
  admit(size: number, now: Date): QuotaDecision {
    const decision = this.check(size, now);
    if (decision.ok) {
      this.files++;
      this.bytes += size;
    }
    return decision;
  }

  /** The admitted file was not taken after all (vanished, busy, disk full): it does not count. */
  refund(ticket: QuotaTicket): void {
    if (ticket.day !== this.day) return;
    this.files = Math.max(0, this.files - 1);
    this.bytes = Math.max(0, this.bytes - ticket.size);
  }

  private rollOver(now: Date): void {
    const today = localDay(now);
    if (today === this.day) return;
    this.day = today;
    this.files = 0;
    this.bytes = 0;
  }
}

// ---- local days ----

/** "YYYY-MM-DD" of `now` in the process's time zone (TZ, else /etc/localtime). */
export function localDay(now: Date): string {
  const month = String(now.getMonth() + 1).padStart(2, '0');
  const day = String(now.getDate()).padStart(2, '0');
  return `${now.getFullYear()}-${month}-${day}`;
}

export function startOfLocalDay(now: Date): Date {
  return new Date(now.getFullYear(), now.getMonth(), now.getDate());
}

/** The next local midnight; across a DST change that day is 23 or 25 hours long, which Date handles. */
export function nextLocalDay(now: Date): Date {
  return new Date(now.getFullYear(), now.getMonth(), now.getDate() + 1);
}

// ---- rebuilding the day from the audit log ----

const QUARANTINED_MARK = '"event":"quarantined"';

/**
 * Files and bytes taken on `now`'s local day, summed from the `quarantined` records of the audit files
 * (one per UTC day) that can hold records of that day. A missing log directory counts as nothing taken;
 * lines that are not records are skipped: counting is advisory, `shuttle audit verify` checks the chain.
 */
export async function usageFromAuditLog(logDirectory: string, now: Date): Promise<RestoredUsage> {
  const start = startOfLocalDay(now);
  const end = nextLocalDay(now);
  const firstFileDay = start.toISOString().slice(0, 10);
  let names: string[];
  try {
    names = await fsp.readdir(logDirectory);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { day: localDay(now), files: 0, bytes: 0, sources: [] };
    throw error;
  }
  // The audit log never writes into a file older than its newest, so after a clock step back a local
  // day's records can sit in a later file: read every file from the day's first UTC date on.
  const sources = names.filter((name) => (AUDIT_FILE.exec(name)?.[1] ?? '') >= firstFileDay).sort();
  let files = 0;
  let bytes = 0;
  for (const name of sources) {
    await forEachLine(path.join(logDirectory, name), (line) => {
      if (!line.includes(QUARANTINED_MARK)) return;
      const record = parseQuarantined(line);
      if (record === null || record.time < start || record.time >= end) return;
      files++;
      bytes += record.size;
    });
  }
  return { day: localDay(now), files, bytes, sources };
}

function parseQuarantined(line: string): { time: Date; size: number } | null {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return null;
  }
  const record = value as { event?: unknown; time?: unknown; size?: unknown };
  if (typeof value !== 'object' || value === null || record.event !== 'quarantined') return null;
  if (typeof record.time !== 'string' || typeof record.size !== 'number' || !Number.isFinite(record.size)) return null;
  const time = new Date(record.time);
  return Number.isNaN(time.getTime()) ? null : { time, size: record.size };
}

/** Each newline-terminated line; a last line without its newline was never acknowledged and is skipped. */
async function forEachLine(file: string, onLine: (line: string) => void): Promise<void> {
  const handle = await fsp.open(file, fsc.O_RDONLY | fsc.O_NOFOLLOW);
  try {
    let carry = '';
    for await (const chunk of handle.createReadStream({ encoding: 'utf8', highWaterMark: 1024 * 1024, autoClose: false })) {
      const lines = (carry + (chunk as string)).split('\n');
      carry = lines.pop() ?? '';
      for (const line of lines) onLine(line);
    }
  } finally {
    await handle.close();
  }
}
