// A fair share per uploader: each uploader (the uid owning the file in source_path) has two token buckets,
// files and bytes, each holding one minute's worth and refilling continuously. A file is admitted when both
// have enough, so one user dropping ten thousand files is paced while the others' files keep moving, as
// long as the caller leaves a throttled uploader's files waiting instead of blocking on them.
//
// The byte bucket admits a file larger than a minute's worth once it is full, and then goes into debt:
// that uploader's next file waits until the debt is paid off at the configured rate.

export interface UploaderRateLimits {
  /** 0 = no limit. */
  readonly maxFilesPerMinute: number;
  readonly maxBytesPerMinute: number;
}

interface Buckets {
  files: number;
  bytes: number;
  updatedAt: number;
}

const MINUTE_MS = 60_000;
/** How often idle uploaders are forgotten; a full bucket is the same as no bucket, so nothing is lost. */
const SWEEP_INTERVAL_MS = MINUTE_MS;

export class UploaderRateLimit {
  private readonly buckets = new Map<number, Buckets>();
  private lastSweep = Number.NEGATIVE_INFINITY;

  constructor(private limits: UploaderRateLimits) {}

  /** On reload. Buckets over the new capacity are cut down to it. */
  setLimits(limits: UploaderRateLimits): void {
    this.limits = limits;
    for (const buckets of this.buckets.values()) {
      buckets.files = Math.min(buckets.files, this.filesCapacity);
      buckets.bytes = Math.min(buckets.bytes, this.bytesCapacity);
      // A dimension that is no longer limited is full, so the uploader can be forgotten once the other is.
      if (limits.maxFilesPerMinute === 0) buckets.files = Number.POSITIVE_INFINITY;
      if (limits.maxBytesPerMinute === 0) buckets.bytes = Number.POSITIVE_INFINITY;
    }
  }

  /** Uploaders currently remembered (for tests and metrics). */
  get tracked(): number {
    return this.buckets.size;
  }

  /**
   * How long (ms) `uid`'s file of `size` bytes must wait; 0 means now. Changes nothing. `nowMs` should be
   * monotonic (performance.now()); a clock that goes back is treated as standing still.
   */
  waitMs(uid: number, size: number, nowMs: number): number {
    const buckets = this.current(uid, nowMs);
    if (buckets === null) return 0;
    const { maxFilesPerMinute, maxBytesPerMinute } = this.limits;
    let wait = 0;
    if (maxFilesPerMinute > 0 && buckets.files < 1) {
      wait = Math.max(wait, ((1 - buckets.files) * MINUTE_MS) / maxFilesPerMinute);
    }
    if (maxBytesPerMinute > 0) {
      const needed = Math.min(size, maxBytesPerMinute);
      if (buckets.bytes < needed) wait = Math.max(wait, ((needed - buckets.bytes) * MINUTE_MS) / maxBytesPerMinute);
    }
    // Rounded to a microsecond first, so float noise cannot add a millisecond to an exact wait.
    return Math.ceil(Math.round(wait * 1000) / 1000);
  }

  /** waitMs(), and when that is 0, take the file's tokens. Returns the wait, 0 when admitted. */
  admit(uid: number, size: number, nowMs: number): number {
    this.sweep(nowMs);
    const wait = this.waitMs(uid, size, nowMs);
    if (wait > 0) return wait;
    const buckets = this.current(uid, nowMs);
    if (buckets === null) return 0;
    buckets.files -= 1;
    buckets.bytes -= size;
    this.buckets.set(uid, buckets);
    return 0;
  }

  /** Give back what admit() took for a file that was not taken after all. */
  refund(uid: number, size: number, nowMs: number): void {
    const buckets = this.current(uid, nowMs);
    if (buckets === null) return;
    buckets.files = Math.min(buckets.files + 1, this.filesCapacity);
    buckets.bytes = Math.min(buckets.bytes + size, this.bytesCapacity);
    this.buckets.set(uid, buckets);
  }

  private get filesCapacity(): number {
    return this.limits.maxFilesPerMinute > 0 ? this.limits.maxFilesPerMinute : Number.POSITIVE_INFINITY;
  }

  private get bytesCapacity(): number {
    return this.limits.maxBytesPerMinute > 0 ? this.limits.maxBytesPerMinute : Number.POSITIVE_INFINITY;
  }

  /** The uploader's buckets refilled up to `nowMs` (a fresh, full pair if unknown); null when unlimited. */
  private current(uid: number, nowMs: number): Buckets | null {
    const { maxFilesPerMinute, maxBytesPerMinute } = this.limits;
    if (maxFilesPerMinute === 0 && maxBytesPerMinute === 0) return null;
    const known = this.buckets.get(uid);
    if (known === undefined) return { files: this.filesCapacity, bytes: this.bytesCapacity, updatedAt: nowMs };
    const elapsed = Math.max(0, nowMs - known.updatedAt);
    known.files = Math.min(this.filesCapacity, known.files + (elapsed * maxFilesPerMinute) / MINUTE_MS);
    known.bytes = Math.min(this.bytesCapacity, known.bytes + (elapsed * maxBytesPerMinute) / MINUTE_MS);
    known.updatedAt = Math.max(known.updatedAt, nowMs);
    return known;
  }

  private sweep(nowMs: number): void {
    if (nowMs - this.lastSweep < SWEEP_INTERVAL_MS) return;
    this.lastSweep = nowMs;
    for (const [uid, buckets] of this.buckets) {
      const refilled = this.current(uid, nowMs);
      if (refilled === null || (refilled.files >= this.filesCapacity && refilled.bytes >= this.bytesCapacity)) this.buckets.delete(uid);
    }
  }
}
