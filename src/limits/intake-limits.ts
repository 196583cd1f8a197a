// Every limit on taking a file, asked in one place and in one order, before intake copies anything:
//   1. limits.max_file_size                 -> reject (never taken)
//   2. the daily quota                      -> wait for everyone until local midnight (reject if the file
//                                              alone exceeds daily_max_bytes)
//   3. the uploader's rate                  -> wait for this uploader only
//   4. free space on every target filesystem -> wait for everyone (reject if the file could not fit even
//                                              on an empty filesystem)
// Counters are taken only once every check passed, and handed back with notTaken() when intake then does
// not take the file, so files that wait or fail never use up a quota.
//
// Waiting files stay in source_path. What holds intake up for everyone (low space, the daily quota) is
// kept as "holds", for the log, `shuttle status` and systemd's STATUS= line.

import type { LimitsOptions } from '../config.js';
import type { DailyQuota, QuotaTicket } from './daily-quota.js';
import { describeShortage, formatBytes, type FreeSpaceGuard } from './free-space.js';
import type { UploaderRateLimit } from './uploader-rate.js';

/** Retry interval for a file that waits for space; the same as intake's after ENOSPC. */
export const SPACE_RETRY_MS = 10_000;
/** A space hold no file has confirmed for this long is dropped: the file it was for went away. */
export const SPACE_HOLD_TTL_MS = 60_000;

export interface IntakeCandidate {
  readonly size: number;
  /** The file's owner in source_path. */
  readonly uploaderUid: number;
}

export type LimitName = 'max_file_size' | 'daily_max_files' | 'daily_max_bytes' | 'uploader_rate' | 'free_space';

export type IntakeAdmission =
  | { readonly kind: 'take'; readonly ticket: IntakeTicket }
  /** Never taken: leave it in source_path and log the reason once. */
  | { readonly kind: 'reject'; readonly limit: LimitName; readonly reason: string }
  /**
   * Not now: leave it in source_path and ask again after retryInMs. `scope: 'uploader'` concerns only this
   * uploader's files; others should go ahead meanwhile.
   */
  | { readonly kind: 'wait'; readonly scope: 'all' | 'uploader'; readonly limit: LimitName; readonly retryInMs: number; readonly reason: string };

/** Hand it to notTaken() when the admitted file was not taken after all. */
export interface IntakeTicket {
  readonly size: number;
  readonly uploaderUid: number;
  readonly quota: QuotaTicket;
  settled: boolean;
}

export interface IntakeHold {
  readonly cause: 'free-space' | 'daily-quota';
  readonly reason: string;
  readonly since: Date;
  /** When it ends by itself (the daily quota at midnight); null when it ends as space returns. */
  readonly until: Date | null;
}

export interface IntakeLimitsDependencies {
  readonly options: LimitsOptions;
  readonly freeSpace: FreeSpaceGuard;
  readonly quota: DailyQuota;
  readonly uploaders: UploaderRateLimit;
  readonly now: () => Date;
  /** Monotonic milliseconds (performance.now()), for the rate limit and hold expiry. */
  readonly monotonicMs: () => number;
  /** Called when a hold starts or ends; log it and update the status and systemd's STATUS=. */
  readonly onHoldsChange?: (holds: readonly IntakeHold[]) => void;
}

interface SpaceHold {
  readonly hold: IntakeHold;
  /** The smallest file refused for space: once that fits, files flow again. */
  readonly fileBytes: number;
  readonly confirmedAtMs: number;
}

export class IntakeLimits {
  private options: LimitsOptions;
  private spaceHold: SpaceHold | null = null;
  private quotaHold: IntakeHold | null = null;

  constructor(private readonly deps: IntakeLimitsDependencies) {
    this.options = deps.options;
  }

  /** On reload: new limits for the next admission; today's counts are kept. */
  setOptions(options: LimitsOptions): void {
    this.options = options;
    this.deps.quota.setLimits({ maxFiles: options.dailyMaxFiles, maxBytes: options.dailyMaxBytes });
    this.deps.uploaders.setLimits({ maxFilesPerMinute: options.uploaderMaxFilesPerMinute, maxBytesPerMinute: options.uploaderMaxBytesPerMinute });
    this.deps.freeSpace.setReserve(options.freeSpaceReserve);
  }

  /**
   * May this file be taken now? On 'take' the file is already counted against the quota and its
   * uploader's rate. Rejects only when a target filesystem cannot be inspected (FreeSpaceGuard.check).
   */
  async admit(candidate: IntakeCandidate): Promise<IntakeAdmission> {
    const before = this.holdCauses();
    try {
      return await this.decide(candidate);
    } finally {
      this.reportIfChanged(before);
    }
  }

  /** The admitted file was not taken (gone, busy, ENOSPC, shutting down): give its counts back. */
  notTaken(ticket: IntakeTicket): void {
    if (ticket.settled) return;
    ticket.settled = true;
    this.deps.quota.refund(ticket.quota);
    this.deps.uploaders.refund(ticket.uploaderUid, ticket.size, this.deps.monotonicMs());
  }

  /** What holds intake up for everyone right now; call it for the status, it also ends expired holds. */
  holds(): readonly IntakeHold[] {
    const before = this.holdCauses();
    this.expireHolds();
    this.reportIfChanged(before);
    return this.currentHolds();
  }

  private async decide(candidate: IntakeCandidate): Promise<IntakeAdmission> {
    this.expireHolds();
    const { maxFileSize } = this.options;
    if (maxFileSize > 0 && candidate.size > maxFileSize) {
      return {
        kind: 'reject',
        limit: 'max_file_size',
        reason: `the file (${formatBytes(candidate.size)}) is larger than limits.max_file_size (${formatBytes(maxFileSize)})`,
      };
    }
    // Cheap checks first: no statfs while the quota is used up or the uploader is throttled.
    const early = this.counters(candidate, false);
    if (early !== null) return early;

    const space = await this.deps.freeSpace.check(candidate.size);
    if (!space.ok) {
      const reason = describeShortage(space);
      if (!space.fitsWhenEmpty) return { kind: 'reject', limit: 'free_space', reason: `the file can never fit: ${reason}` };
      this.holdForSpace(candidate.size, reason);
      return { kind: 'wait', scope: 'all', limit: 'free_space', retryInMs: SPACE_RETRY_MS, reason: `waiting for space: ${reason}` };
    }
    if (this.spaceHold !== null && candidate.size >= this.spaceHold.fileBytes) this.spaceHold = null;

    // Other admissions ran during the await: check again, and this time count the file.
    const late = this.counters(candidate, true);
    if (late === null) throw new Error('counters() returned no decision while taking');
    return late;
  }

  /** The quota and rate checks; with `take`, a passing file is counted and 'take' returned. */
  private counters(candidate: IntakeCandidate, take: boolean): IntakeAdmission | null {
    const { quota, uploaders } = this.deps;
    const now = this.deps.now();
    const nowMs = this.deps.monotonicMs();
    const quotaDecision = quota.check(candidate.size, now);
    if (!quotaDecision.ok) {
      const limit = quotaDecision.limit === 'files' ? 'daily_max_files' : 'daily_max_bytes';
      if (quotaDecision.resumesAt === null) return { kind: 'reject', limit, reason: quotaDecision.reason };
      if (this.quotaHold === null) this.quotaHold = { cause: 'daily-quota', reason: quotaDecision.reason, since: now, until: quotaDecision.resumesAt };
      const retryInMs = Math.max(1, quotaDecision.resumesAt.getTime() - now.getTime());
      return { kind: 'wait', scope: 'all', limit, retryInMs, reason: `daily limit reached: ${quotaDecision.reason}; resumes at ${quotaDecision.resumesAt.toISOString()}` };
    }
    this.quotaHold = null;
    const waitMs = uploaders.waitMs(candidate.uploaderUid, candidate.size, nowMs);
    if (waitMs > 0) {
      return {
        kind: 'wait',
        scope: 'uploader',
        limit: 'uploader_rate',
        retryInMs: waitMs,
        reason: `uploader ${candidate.uploaderUid} is over its rate (limits.uploader_max_files_per_minute / uploader_max_bytes_per_minute)`,
      };
    }
    if (!take) return null;
    const admitted = quota.admit(candidate.size, now);
    if (!admitted.ok) throw new Error('the daily quota refused a file it had just admitted');
    uploaders.admit(candidate.uploaderUid, candidate.size, nowMs);
    return { kind: 'take', ticket: { size: candidate.size, uploaderUid: candidate.uploaderUid, quota: admitted.ticket, settled: false } };
  }

  private holdForSpace(fileBytes: number, reason: string): void {
    const nowMs = this.deps.monotonicMs();
    const existing = this.spaceHold;
    const since = existing?.hold.since ?? this.deps.now();
    this.spaceHold = {
      hold: { cause: 'free-space', reason, since, until: null },
      fileBytes: existing === null ? fileBytes : Math.min(existing.fileBytes, fileBytes),
      confirmedAtMs: nowMs,
    };
  }

  private expireHolds(): void {
    if (this.spaceHold !== null && this.deps.monotonicMs() - this.spaceHold.confirmedAtMs > SPACE_HOLD_TTL_MS) this.spaceHold = null;
    const until = this.quotaHold?.until;
    if (until != null && this.deps.now().getTime() >= until.getTime()) this.quotaHold = null;
  }

  private currentHolds(): IntakeHold[] {
    const holds: IntakeHold[] = [];
    if (this.spaceHold !== null) holds.push(this.spaceHold.hold);
    if (this.quotaHold !== null) holds.push(this.quotaHold);
    return holds;
  }

  private holdCauses(): string {
    return this.currentHolds()
      .map((hold) => hold.cause)
      .join(',');
  }

  private reportIfChanged(before: string): void {
    if (this.holdCauses() !== before) this.deps.onHoldsChange?.(this.currentHolds());
  }
}

/** "intake paused: <reasons>" for systemd's STATUS= and the status output; null when nothing holds it up. */
export function describeHolds(holds: readonly IntakeHold[]): string | null {
  if (holds.length === 0) return null;
  return `intake paused: ${holds.map((hold) => hold.reason).join('; ')}`;
}
