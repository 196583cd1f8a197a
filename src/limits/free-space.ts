// Is there room for one more file? Before a file is taken, every filesystem it may be written to
// (quarantine, then destination or hazard archive) must have room for it plus a reserve, so the daemon
// never drives a disk it shares with logs, the journal and other services to zero. This is a gate, not a
// promise: a disk can still fill mid-copy, and intake handles ENOSPC by removing the partial copy and
// retrying later.
//
// statfs and stat for three directories cost about as much as a tenth of a small file's intake, so one
// reading serves for up to maxAgeMs: each file admitted meanwhile is subtracted from it. Only "fits" is
// ever answered from an older reading; "short" is always confirmed by a fresh one, so freed space is seen
// at once and a pause never rests on an estimate.

import { promises as fsp } from 'node:fs';
import { performance } from 'node:perf_hooks';

/** Free inodes kept besides the file's own: a full inode table fails creates with ENOSPC as well. */
export const INODE_RESERVE = 64;
export const DEFAULT_MAX_AGE_MS = 500;

export interface FreeSpaceTarget {
  /** The config key, for messages: "quarantine_path". */
  readonly key: string;
  readonly path: string;
  /**
   * Targets with the same label receive the file as alternatives, never both (a file is released or
   * archived): on one filesystem they need room for a single copy. Unlabelled targets each hold a copy.
   */
  readonly alternative?: string;
  /**
   * The key of the target the file comes from. On the same filesystem as that one, the file is renamed
   * rather than copied and needs no room of its own (release does this when it can).
   */
  readonly movedFrom?: string;
}

/** What the guard needs to know about the filesystem holding a path. */
export interface FilesystemSpace {
  /** st_dev of the path: paths with the same device share their free space. */
  readonly device: number;
  readonly totalBytes: number;
  /** Free to unprivileged users (f_bavail): the blocks reserved for root are not ours. */
  readonly availableBytes: number;
  /** 0 when the filesystem does not count inodes (btrfs, for one). */
  readonly totalInodes: number;
  readonly availableInodes: number;
}

export type InspectFilesystem = (path: string) => Promise<FilesystemSpace>;

export type FreeSpaceCheck =
  | { readonly ok: true }
  | {
      readonly ok: false;
      /** The first target on the filesystem that is short, and every target that shares it. */
      readonly key: string;
      readonly path: string;
      readonly keys: readonly string[];
      readonly resource: 'bytes' | 'inodes';
      readonly availableBytes: number;
      /** The file's copies on this filesystem plus the reserve. */
      readonly neededBytes: number;
      readonly fileBytes: number;
      /** How many copies of the file this filesystem holds at the worst moment. */
      readonly copies: number;
      readonly reserveBytes: number;
      readonly availableInodes: number;
      readonly neededInodes: number;
      /**
       * false when the copies alone exceed the filesystem's total size: waiting will never help, and the
       * file should be refused rather than kept waiting.
       */
      readonly fitsWhenEmpty: boolean;
    };

export type FreeSpaceShortage = Extract<FreeSpaceCheck, { ok: false }>;

export interface FreeSpaceGuardOptions {
  readonly targets: readonly FreeSpaceTarget[];
  readonly reserveBytes: number;
  /** statfs(2) and stat(2) by default; tests pass their own. */
  readonly inspect?: InspectFilesystem;
  /** How long one reading may answer "fits" (less what was admitted since); 0 reads for every check. */
  readonly maxAgeMs?: number;
  readonly monotonicMs?: () => number;
}

interface FilesystemGroup {
  readonly space: FilesystemSpace;
  readonly targets: readonly FreeSpaceTarget[];
  readonly copies: number;
  /** Bytes and inodes admitted since the reading. */
  debitBytes: number;
  debitInodes: number;
}

interface Reading {
  readonly takenAtMs: number;
  readonly groups: readonly FilesystemGroup[];
}

export class FreeSpaceGuard {
  private readonly targets: readonly FreeSpaceTarget[];
  private readonly inspect: InspectFilesystem;
  private readonly maxAgeMs: number;
  private readonly monotonicMs: () => number;
  private reserve: number;
  private reading: Reading | null = null;
  private pendingReading: Promise<Reading> | null = null;

  constructor(options: FreeSpaceGuardOptions) {
    if (options.targets.length === 0) throw new Error('FreeSpaceGuard needs at least one target');
    this.targets = [...options.targets];
    this.inspect = options.inspect ?? inspectFilesystem;
    this.maxAgeMs = options.maxAgeMs ?? DEFAULT_MAX_AGE_MS;
    this.monotonicMs = options.monotonicMs ?? (() => performance.now());
    this.reserve = options.reserveBytes;
  }

  get reserveBytes(): number {
    return this.reserve;
  }

  /** On reload (limits.free_space_reserve). */
  setReserve(bytes: number): void {
    this.reserve = bytes;
  }

  /**
   * Whether a file of `bytesNeeded` bytes fits everywhere it may go, with the reserve left over. A "fits"
   * counts the file as admitted until the next reading. Rejects only if a target cannot be inspected at
   * all (ENOENT, EACCES).
   */
  async check(bytesNeeded: number): Promise<FreeSpaceCheck> {
    let reading = this.reading;
    let fresh = false;
    if (reading === null || this.monotonicMs() - reading.takenAtMs >= this.maxAgeMs) {
      reading = await this.read();
      fresh = true;
    }
    let shortage = this.shortageIn(reading, bytesNeeded);
    if (shortage !== null && !fresh) {
      reading = await this.read();
      shortage = this.shortageIn(reading, bytesNeeded);
    }
    if (shortage !== null) return shortage;
    for (const group of reading.groups) {
      group.debitBytes += bytesNeeded * group.copies;
      group.debitInodes += group.copies;
    }
    return { ok: true };
  }

  /** One statfs and stat per target; concurrent checks share a reading in progress. */
  private read(): Promise<Reading> {
    this.pendingReading ??= this.readFilesystems().finally(() => {
      this.pendingReading = null;
    });
    return this.pendingReading;
  }

  private async readFilesystems(): Promise<Reading> {
    const takenAtMs = this.monotonicMs();
    const spaces = await Promise.all(this.targets.map((target) => this.inspect(target.path)));
    const byDevice = new Map<number, { space: FilesystemSpace; targets: FreeSpaceTarget[] }>();
    for (const [index, target] of this.targets.entries()) {
      const space = spaces[index] as FilesystemSpace;
      const group = byDevice.get(space.device);
      if (group === undefined) byDevice.set(space.device, { space, targets: [target] });
      else group.targets.push(target);
    }
    const groups = [...byDevice.values()].map(({ space, targets }) => ({ space, targets, copies: copiesOn(targets), debitBytes: 0, debitInodes: 0 }));
    this.reading = { takenAtMs, groups };
    return this.reading;
  }

  private shortageIn(reading: Reading, bytesNeeded: number): FreeSpaceShortage | null {
    for (const { space, targets, copies, debitBytes, debitInodes } of reading.groups) {
      const availableBytes = Math.max(0, space.availableBytes - debitBytes);
      const availableInodes = Math.max(0, space.availableInodes - debitInodes);
      const neededBytes = bytesNeeded * copies + this.reserve;
      const neededInodes = copies + INODE_RESERVE;
      const shortOfBytes = availableBytes < neededBytes;
      const shortOfInodes = space.totalInodes > 0 && availableInodes < neededInodes;
      if (!shortOfBytes && !shortOfInodes) continue;
      const first = targets[0] as FreeSpaceTarget;
      return {
        ok: false,
        key: first.key,
        path: first.path,
        keys: targets.map((target) => target.key),
        resource: shortOfBytes ? 'bytes' : 'inodes',
        availableBytes,
        neededBytes,
        fileBytes: bytesNeeded,
        copies,
        reserveBytes: this.reserve,
        availableInodes,
        neededInodes,
        fitsWhenEmpty: bytesNeeded * copies <= space.totalBytes,
      };
    }
    return null;
  }
}

/** Copies of the file the targets on one filesystem hold at the worst moment. */
function copiesOn(targets: readonly FreeSpaceTarget[]): number {
  const keys = new Set(targets.map((target) => target.key));
  const alternatives = new Map<string, number>();
  let copies = 0;
  for (const target of targets) {
    const adds = target.movedFrom !== undefined && keys.has(target.movedFrom) ? 0 : 1;
    if (target.alternative === undefined) copies += adds;
    else alternatives.set(target.alternative, Math.max(alternatives.get(target.alternative) ?? 0, adds));
  }
  for (const adds of alternatives.values()) copies += adds;
  return copies;
}

export async function inspectFilesystem(path: string): Promise<FilesystemSpace> {
  const [stats, space] = await Promise.all([fsp.stat(path), fsp.statfs(path)]);
  return {
    device: stats.dev,
    totalBytes: space.blocks * space.bsize,
    availableBytes: space.bavail * space.bsize,
    totalInodes: space.files,
    availableInodes: space.ffree,
  };
}

/**
 * The pipeline's targets: every file is copied into quarantine, then either released (renamed when
 * quarantine and destination share a filesystem, else copied) or encrypted into the hazard archive. So
 * destination and hazard archive are alternatives, and on a filesystem shared by all three the worst
 * case (a suspect file and its archive) needs two copies. Pass real paths.
 */
export function pipelineTargets(directories: { readonly quarantine: string; readonly destination: string; readonly hazardArchive: string }): FreeSpaceTarget[] {
  return [
    { key: 'quarantine_path', path: directories.quarantine },
    { key: 'destination_path', path: directories.destination, alternative: 'outcome', movedFrom: 'quarantine_path' },
    { key: 'hazard_archive_path', path: directories.hazardArchive, alternative: 'outcome' },
  ];
}

/** One line for the log, the status and systemd's STATUS=: which filesystem, what is free, what is needed. */
export function describeShortage(shortage: FreeSpaceShortage): string {
  const where = `${shortage.keys.join(' and ')} (${shortage.path})`;
  if (shortage.resource === 'inodes') {
    return `${where} has ${shortage.availableInodes} free inodes, needs ${shortage.neededInodes}`;
  }
  const file = shortage.copies === 1 ? formatBytes(shortage.fileBytes) : `${shortage.copies} × ${formatBytes(shortage.fileBytes)}`;
  const parts = shortage.reserveBytes > 0 ? `${file} for the file and the ${formatBytes(shortage.reserveBytes)} reserve` : `${file} for the file`;
  const never = shortage.fitsWhenEmpty ? '' : '; the whole filesystem is smaller than that';
  return `${where} has ${formatBytes(shortage.availableBytes)} free, needs ${formatBytes(shortage.neededBytes)} (${parts})${never}`;
}

/** 1536 -> "1.5 KiB", three significant digits; binary units, as the config's K, M and G are. */
export function formatBytes(bytes: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  if (unit === 0) return `${bytes} bytes`;
  const decimals = Math.abs(value) < 10 ? 2 : Math.abs(value) < 100 ? 1 : 0;
  return `${Number(value.toFixed(decimals))} ${units[unit]}`;
}
