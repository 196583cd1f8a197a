import type { ScanReport } from './scanners/scanner.js';

/**
 * Where a file taken from source_path stands. Every state but `released` keeps the bytes in quarantine
 * (or, for a release cut short, under a temporary name in destination_path that recovery finishes).
 */
export type ItemState =
  /** Copied to quarantine and hashed; not yet judged by every scanner. */
  | 'quarantined'
  /** Every enabled scanner said clean about exactly these bytes; release may begin. */
  | 'clean'
  /** Some scanner found something. Held in quarantine, never released. */
  | 'suspect'
  /** Something went wrong that retrying will not fix (hash mismatch, bytes missing). Held and logged. */
  | 'failed'
  | 'released'
  /** Encrypted into a durable hazard archive; what is left is the secure removal of the plaintext. */
  | 'hazarded';

/** Where the file came from, to recognise it again after a crash between intake and removing the source. */
export interface SourceIdentity {
  readonly dev: number;
  readonly ino: number;
  readonly size: number;
  readonly mtimeNs: string;
}

export interface ItemRecord {
  readonly id: string;
  /** Path relative to source_path, which is also the path it is released under. */
  readonly relativePath: string;
  readonly size: number;
  readonly sha256: string;
  readonly uploaderUid: number;
  readonly source: SourceIdentity;
  readonly quarantinedAt: string;
  readonly state: ItemState;
  readonly reports?: readonly ScanReport[];
  readonly signature?: string;
  readonly reason?: string;
  /** Path relative to destination_path to release under, when it differs from relativePath (filename policy). */
  readonly releaseAs?: string;
  /** Path relative to destination_path the file was released under. */
  readonly releasedAs?: string;
  /** Name of the item's archive in hazard_archive_path. */
  readonly archive?: string;
}

export type JournalEntry =
  /** The whole record: written at intake, and for every live item when the journal is compacted. */
  | { readonly op: 'item'; readonly item: ItemRecord }
  | { readonly op: 'scanned'; readonly id: string; readonly state: 'clean' | 'suspect'; readonly reports: readonly ScanReport[]; readonly signature?: string }
  | { readonly op: 'failed'; readonly id: string; readonly reason: string }
  | { readonly op: 'released'; readonly id: string; readonly releasedAs: string }
  | { readonly op: 'hazarded'; readonly id: string; readonly archive: string }
  /** The temporary name and the quarantine copy of a released (or the plaintext of a hazarded) item are gone. */
  | { readonly op: 'done'; readonly id: string }
  /**
   * A source copied into quarantine as item `id` could not be removed: never take these bytes again.
   * `key` is its identity (dev:ino:size:mtimeNs), `path` its path relative to source_path.
   */
  | { readonly op: 'source-kept'; readonly key: string; readonly path: string; readonly id: string }
  /** That source is gone or has changed since: forget it. */
  | { readonly op: 'source-gone'; readonly key: string };

/** A source left in place after its bytes were taken (see the 'source-kept' journal entry). */
export interface KeptSource {
  readonly path: string;
  readonly id: string;
}

/** The name of an item's bytes inside quarantine_path. */
export function quarantineDataName(id: string): string {
  return `${id}.data`;
}

/** The temporary name a release writes under, in the destination directory, before linking the final name. */
export function releaseTemporaryName(id: string): string {
  return `.shuttle-${id}.tmp`;
}

const RELEASE_TEMPORARY = /^\.shuttle-([0-9a-z]+-[0-9a-f]+)\.tmp$/;

export function itemIdOfReleaseTemporary(name: string): string | null {
  return RELEASE_TEMPORARY.exec(name)?.[1] ?? null;
}
