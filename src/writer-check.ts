import { readFileSync } from 'node:fs';
import type { BigIntStats } from 'node:fs';
import type { NativeAddon } from './native.js';

/** CAP_LEASE from linux/capability.h. */
const CAP_LEASE_BIT = 28n;

export type WriterCheckMode = 'lease' | 'lease-own-files' | 'stability';

/** How one attempt to take a file was judged. */
export type WriterCheck =
  /** No writer holds the file; `lease` says whether a read lease now guards the copy. */
  | { readonly kind: 'free'; readonly lease: boolean }
  | { readonly kind: 'busy'; readonly retryInMs: number; readonly reason: string };

interface Observation {
  readonly fingerprint: string;
  readonly since: number;
}

/**
 * Decides whether a file in source_path is finished: no other process holds it open for writing.
 *
 * With a lease (fcntl F_SETLEASE F_RDLCK) the kernel answers exactly: the call fails with EAGAIN while any
 * writer holds the file open, and a writer that opens it during our copy breaks the lease, which we see
 * afterwards. A lease needs file ownership or CAP_LEASE; without either we fall back to a quiet period in
 * which size, mtime and ctime must not change, which cannot see a writer that pauses longer than it.
 */
export class WriterChecker {
  private readonly observations = new Map<string, Observation>();

  constructor(
    private readonly addon: NativeAddon | null,
    readonly mode: WriterCheckMode,
    private stabilityWindowMs: number,
    private readonly now: () => number,
  ) {}

  /** A reloaded config's quiet period; applies to the next observation of each file. */
  setStabilityWindow(ms: number): void {
    this.stabilityWindowMs = ms;
  }

  check(path: string, fd: number, stats: BigIntStats): WriterCheck {
    if (this.addon !== null && this.mode !== 'stability') {
      try {
        this.addon.setLease(fd, 'read');
        this.observations.delete(path);
        return { kind: 'free', lease: true };
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN' || code === 'EWOULDBLOCK') {
          return { kind: 'busy', retryInMs: 0, reason: 'another process holds it open for writing' };
        }
        // EACCES/EPERM: not our file and no CAP_LEASE. Anything else is unexpected: fall back rather than stall.
        if (code !== 'EACCES' && code !== 'EPERM') throw error;
      }
    }
    return this.checkStability(path, stats);
  }

  /**
   * Was the file left alone since `before`? With a lease, also: has no writer tried to open it since we took
   * the lease (a pending break shows as a lease other than 'read'). The lease itself ends when the
   * descriptor is closed.
   */
  untouched(fd: number, check: WriterCheck, before: BigIntStats, after: BigIntStats): boolean {
    if (check.kind === 'free' && check.lease && this.addon !== null && this.addon.getLease(fd) !== 'read') return false;
    // The content's fingerprint, not ctime: the permission enforcer may chmod or chown the file meanwhile,
    // which changes nothing that was copied.
    return contentFingerprint(before) === contentFingerprint(after);
  }

  forget(path: string): void {
    this.observations.delete(path);
  }

  private checkStability(path: string, stats: BigIntStats): WriterCheck {
    const now = this.now();
    const current = fingerprint(stats);
    const seen = this.observations.get(path);
    if (seen === undefined || seen.fingerprint !== current) {
      this.observations.set(path, { fingerprint: current, since: now });
      return { kind: 'busy', retryInMs: this.stabilityWindowMs, reason: 'waiting for the file to stay unchanged' };
    }
    const quietFor = now - seen.since;
    if (quietFor < this.stabilityWindowMs) {
      return { kind: 'busy', retryInMs: this.stabilityWindowMs - quietFor, reason: 'waiting for the file to stay unchanged' };
    }
    this.observations.delete(path);
    return { kind: 'free', lease: false };
  }
}

function fingerprint(stats: BigIntStats): string {
  return `${contentFingerprint(stats)}:${stats.ctimeNs}`;
}

function contentFingerprint(stats: BigIntStats): string {
  return `${stats.dev}:${stats.ino}:${stats.size}:${stats.mtimeNs}`;
}

/** Which writer check this process can do, from its effective capabilities. */
export function detectWriterCheckMode(addon: NativeAddon | null, statusFile = '/proc/self/status'): WriterCheckMode {
  if (addon === null) return 'stability';
  const line = readFileSync(statusFile, 'utf8')
    .split('\n')
    .find((candidate) => candidate.startsWith('CapEff:'));
  if (line === undefined) return 'lease-own-files';
  const effective = BigInt(`0x${line.slice('CapEff:'.length).trim()}`);
  return (effective >> CAP_LEASE_BIT) & 1n ? 'lease' : 'lease-own-files';
}
