// Reads the actual state of paths: type, owner, group, mode (lstat, never following a link) and ACLs
// (through an AclBackend). Nothing here judges; checks.ts compares what this returns with the model.

import { lstatSync, readdirSync, type Dirent, type Stats } from 'node:fs';
import path from 'node:path';

import { isErrnoException, type AclBackend, type AclReading, type AclTarget } from './acl-backend.js';

export type EntryType = 'directory' | 'file' | 'symlink' | 'special';

export interface PathState {
  readonly status: 'present';
  readonly path: string;
  readonly type: EntryType;
  readonly dev: number;
  readonly ino: number;
  /** Names the inode has; a file with more than one may be reachable from outside the managed tree. */
  readonly nlink: number;
  readonly uid: number;
  readonly gid: number;
  /** st_mode & 0o7777: permission and special bits. */
  readonly mode: number;
  /** null for symlinks and special files, whose ACLs are never read. */
  readonly acl: AclReading | null;
}

export interface PathMissing {
  readonly status: 'missing';
  readonly path: string;
}

/** The path exists (or may) but could not be read: permission denied, I/O error. */
export interface PathUnreadable {
  readonly status: 'unreadable';
  readonly path: string;
  readonly error: NodeJS.ErrnoException;
}

export type Inspection = PathState | PathMissing | PathUnreadable;

/** Entries per batch a walk yields, so memory stays flat however large a directory is. */
const MAX_BATCH = 2000;

export function entryTypeOf(stats: Stats): EntryType {
  if (stats.isDirectory()) return 'directory';
  if (stats.isFile()) return 'file';
  if (stats.isSymbolicLink()) return 'symlink';
  return 'special';
}

function stateOf(target: string, stats: Stats, acl: AclReading | null): PathState {
  return {
    status: 'present',
    path: target,
    type: entryTypeOf(stats),
    dev: stats.dev,
    ino: stats.ino,
    nlink: stats.nlink,
    uid: stats.uid,
    gid: stats.gid,
    mode: stats.mode & 0o7777,
    acl,
  };
}

function hasAcl(type: EntryType): boolean {
  return type === 'directory' || type === 'file';
}

/** One path, as it is now. */
export async function inspectPath(target: string, backend: AclBackend): Promise<Inspection> {
  let stats: Stats | undefined;
  try {
    stats = lstatSync(target, { throwIfNoEntry: false });
  } catch (error) {
    if (isErrnoException(error) && error.code === 'ENOTDIR') return { status: 'missing', path: target };
    if (isErrnoException(error)) return { status: 'unreadable', path: target, error };
    throw error;
  }
  if (stats === undefined) return { status: 'missing', path: target };
  const type = entryTypeOf(stats);
  if (!hasAcl(type)) return stateOf(target, stats, null);
  const [reading] = await backend.readAcls([{ path: target, isDirectory: type === 'directory', mode: stats.mode & 0o7777 }]);
  if (reading === undefined || reading instanceof Error) {
    if (reading?.code === 'ENOENT') return { status: 'missing', path: target };
    return { status: 'unreadable', path: target, error: reading ?? new Error('no ACL reading') };
  }
  return stateOf(target, stats, reading);
}

/**
 * What the walk may expect, to save a system call per entry: where entries are expected to carry
 * extended ACLs, they are read at once; elsewhere one cheap test (has it any?) usually settles it.
 */
export interface WalkHints {
  readonly directoriesHaveExtendedAcls?: boolean;
  readonly filesHaveExtendedAcls?: boolean;
}

/**
 * Everything below `root` (not root itself), depth first, in batches. Subdirectories are entered only
 * when lstat says they are directories, so a symlink is reported as one and never followed. Entries
 * that vanish during the walk (the daemon moves files all the time) are skipped silently.
 */
export async function* walkTree(root: string, backend: AclBackend, hints: WalkHints = {}): AsyncGenerator<Inspection[]> {
  const pending = [root];
  while (pending.length > 0) {
    const directory = pending.pop() as string;
    let dirents: Dirent[];
    try {
      dirents = readdirSync(directory, { withFileTypes: true });
    } catch (error) {
      if (!isErrnoException(error)) throw error;
      if (error.code === 'ENOENT' || (error.code === 'ENOTDIR' && directory !== root)) continue;
      yield [{ status: 'unreadable', path: directory, error }];
      continue;
    }
    for (let start = 0; start < dirents.length; start += MAX_BATCH) {
      yield await inspectEntries(directory, dirents.slice(start, start + MAX_BATCH), backend, pending, hints);
    }
  }
}

async function inspectEntries(
  directory: string,
  dirents: readonly Dirent[],
  backend: AclBackend,
  pending: string[],
  hints: WalkHints,
): Promise<Inspection[]> {
  const found: { path: string; stats: Stats }[] = [];
  const problems: Inspection[] = [];
  for (const dirent of dirents) {
    const target = path.join(directory, dirent.name);
    let stats: Stats | undefined;
    try {
      stats = lstatSync(target, { throwIfNoEntry: false });
    } catch (error) {
      if (!isErrnoException(error)) throw error;
      problems.push({ status: 'unreadable', path: target, error });
      continue;
    }
    if (stats === undefined) continue;
    if (stats.isDirectory()) pending.push(target);
    found.push({ path: target, stats });
  }

  const targets: AclTarget[] = [];
  for (const { path: target, stats } of found) {
    const type = entryTypeOf(stats);
    if (!hasAcl(type)) continue;
    const expectExtended = type === 'directory' ? hints.directoriesHaveExtendedAcls : hints.filesHaveExtendedAcls;
    targets.push({ path: target, isDirectory: type === 'directory', ...(expectExtended ? {} : { mode: stats.mode & 0o7777 }) });
  }
  const readings = await backend.readAcls(targets);
  const readingByPath = new Map<string, AclReading | NodeJS.ErrnoException>();
  targets.forEach((target, index) => readingByPath.set(target.path, readings[index] as AclReading | NodeJS.ErrnoException));

  const batch: Inspection[] = problems;
  for (const { path: target, stats } of found) {
    const reading = readingByPath.get(target);
    if (reading === undefined) {
      batch.push(stateOf(target, stats, null));
    } else if (reading instanceof Error) {
      if (reading.code !== 'ENOENT') batch.push({ status: 'unreadable', path: target, error: reading });
    } else {
      batch.push(stateOf(target, stats, reading));
    }
  }
  return batch;
}
