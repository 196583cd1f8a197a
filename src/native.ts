// Loader for the native addon (native/). Declares its TypeScript interface; the C++ only does syscalls.
//
// loadNative() returns the addon wrapped in argument checks: C++ receives only well-formed values.
// Errors from the system calls look like Node's fs errors (code, errno, syscall, path). ACL entries
// come back from C++ with numeric ids only; getAcl/getAclSync add account names (qualifier) through
// getent, leaving qualifier undefined for ids without an account.

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inspect } from 'node:util';

import { resolveQualifiers, resolveQualifiersSync } from './acl-text.js';

export { aclFromText, aclToText, parseAclText } from './acl-text.js';
export type { AclTextOptions } from './acl-text.js';

export type LeaseType = 'read' | 'write' | 'none';

export interface AclEntry {
  tag: 'user_obj' | 'user' | 'group_obj' | 'group' | 'mask' | 'other';
  /** Numeric uid/gid for 'user'/'group' entries, undefined otherwise. */
  id?: number;
  /** Name resolved from id when the account exists. */
  qualifier?: string;
  read: boolean;
  write: boolean;
  execute: boolean;
}

export type AclKind = 'access' | 'default';

/** A name change for changeNames: `from`/`to` are open directory descriptors, the names plain file names. */
export type NameChange =
  | { readonly kind: 'rename' | 'link'; readonly from: number; readonly fromName: string; readonly to: number; readonly toName: string }
  | { readonly kind: 'unlink'; readonly from: number; readonly fromName: string };

export interface NativeAddon {
  /** fcntl(fd, F_SETLEASE, F_RDLCK | F_UNLCK). Throws fs-style errors (EAGAIN while a writer holds the file open, EACCES without ownership or CAP_LEASE). */
  setLease(fd: number, type: 'read' | 'none'): void;
  /** fcntl(fd, F_GETLEASE). */
  getLease(fd: number): LeaseType;
  /** flock(fd, LOCK_EX | LOCK_NB). Throws EWOULDBLOCK/EAGAIN error when another process holds it. */
  lockExclusive(fd: number): void;
  /**
   * One zFILDES exchange with clamd over a unix socket: connect, send "zFILDES\0" and the descriptor (SCM_RIGHTS),
   * read the reply up to its NUL. Runs off the main thread. Rejects with fs-style errors (ECONNREFUSED, ENOENT, ETIMEDOUT).
   */
  clamdScanDescriptor(socketPath: string, fd: number, timeoutMs: number): Promise<string>;
  /**
   * zFILDES for several descriptors in one clamd session (zIDSESSION ... zEND) on one connection, off the main
   * thread; clamd scans them in parallel. Resolves with one entry per descriptor, in order: clamd's reply to it
   * (as clamdScanDescriptor would return it), or the fs-style error that kept it from one. `timeoutMs` is for
   * the whole session.
   */
  clamdScanDescriptors(socketPath: string, fds: readonly number[], timeoutMs: number): Promise<(string | Error)[]>;
  /** sd_notify(3): returns false without NOTIFY_SOCKET. Handles abstract (@) sockets. */
  sdNotify(state: string): boolean;
  /**
   * fsync(2) of each descriptor, in one job off the main thread: writeback of all of them is started first, so
   * that one journal commit can cover them all. Resolves with one entry per descriptor, in order: null, or the
   * fs-style error (syscall 'fsync') that one got. The others are synced whatever happens to one.
   */
  syncDescriptors(fds: readonly number[]): Promise<(Error | null)[]>;
  /**
   * openat(2) of each name in its directory with O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, one after another in
   * one job off the main thread. Resolves with one entry per file, in order: its new descriptor, or the error.
   */
  createFiles(files: readonly { directory: number; name: string; mode: number }[]): Promise<(number | Error)[]>;
  /** close(2) of each descriptor in one job off the main thread; one entry per descriptor: null, or the error. */
  closeDescriptors(fds: readonly number[]): Promise<(Error | null)[]>;
  /**
   * renameat(2), linkat(2) (never following a symlink) or unlinkat(2) of names inside open directories, one after
   * another in one job off the main thread. One entry per change, in order: null, or the error.
   */
  changeNames(changes: readonly NameChange[]): Promise<(Error | null)[]>;
  getAcl(path: string, kind: AclKind): Promise<AclEntry[]>;
  getAclSync(path: string, kind: AclKind): AclEntry[];
  setAcl(path: string, kind: AclKind, entries: AclEntry[]): Promise<void>;
  setAclSync(path: string, kind: AclKind, entries: AclEntry[]): void;
  deleteDefaultAcl(path: string): Promise<void>;
  deleteDefaultAclSync(path: string): void;
  hasExtendedAcl(path: string): Promise<boolean>;
  hasExtendedAclSync(path: string): boolean;
}

// ---------------------------------------------------------------------------------------------------
// Loading

const ADDON_FILE = 'shuttle_native.node';
const BUILD_HINT = 'Build it with `npm run build:native` (needs g++ and libacl1-dev).';

/**
 * The package root: the nearest directory at or above this module that holds package.json. This
 * module runs as src/native.ts under the test runner and as dist/src/native.js once compiled.
 */
function packageRoot(): string {
  const start = dirname(fileURLToPath(import.meta.url));
  for (let directory = start; ; directory = dirname(directory)) {
    if (existsSync(join(directory, 'package.json'))) return directory;
    if (dirname(directory) === directory) return resolve(start, '..');
  }
}

/** Where the addon may be, in the order they are tried. */
export function nativeAddonCandidates(): string[] {
  const root = packageRoot();
  return [join(root, 'native', 'build', 'Release', ADDON_FILE), join(root, 'native', 'build', 'Debug', ADDON_FILE)];
}

let loaded: NativeAddon | undefined;

/**
 * The addon, wrapped so that every argument is checked before it reaches C++. Throws an Error that
 * lists each path tried, why it failed, and how to build the addon.
 */
export function loadNative(): NativeAddon {
  if (loaded !== undefined) return loaded;

  const require = createRequire(import.meta.url);
  const attempts: string[] = [];
  let lastError: unknown;
  for (const candidate of nativeAddonCandidates()) {
    if (!existsSync(candidate)) {
      attempts.push(`  ${candidate}: not found`);
      continue;
    }
    try {
      loaded = withArgumentChecks(require(candidate) as NativeAddon);
      return loaded;
    } catch (error) {
      lastError = error;
      attempts.push(`  ${candidate}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  throw new Error(`Shuttle's native addon (${ADDON_FILE}) could not be loaded. Tried:\n${attempts.join('\n')}\n${BUILD_HINT}`, {
    cause: lastError,
  });
}

/** The addon, or null when it is not built or will not load (see loadNative for why). */
export function tryLoadNative(): NativeAddon | null {
  try {
    return loadNative();
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------------
// Argument checks. The C++ trusts its arguments' shape; everything a caller can get wrong is caught
// here, with errors shaped like Node's own (TypeError/RangeError with an ERR_* code).

function invalidArgument(name: string, value: unknown, expected: string): TypeError {
  const error = new TypeError(`The "${name}" argument must be ${expected}. Received ${inspect(value)}`);
  Object.assign(error, { code: 'ERR_INVALID_ARG_VALUE' });
  return error;
}

function checkDescriptor(fd: unknown): asserts fd is number {
  if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0 || fd > 0x7fffffff) {
    throw invalidArgument('fd', fd, 'a non-negative integer');
  }
}

/** A name inside a directory: not empty, not . or .., no slash, no NUL. */
function checkFileName(name: unknown, label: string): asserts name is string {
  if (typeof name !== 'string' || name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
    throw invalidArgument(label, name, 'a plain file name');
  }
}

function checkPath(path: unknown, name = 'path'): asserts path is string {
  if (typeof path !== 'string' || path === '' || path.includes('\0')) {
    throw invalidArgument(name, path, 'a non-empty string without NUL bytes');
  }
}

function checkKind(kind: unknown): asserts kind is AclKind {
  if (kind !== 'access' && kind !== 'default') throw invalidArgument('kind', kind, "'access' or 'default'");
}

function checkTimeout(timeoutMs: unknown): asserts timeoutMs is number {
  if (typeof timeoutMs !== 'number' || !Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > 0x7fffffff) {
    throw invalidArgument('timeoutMs', timeoutMs, 'a positive integer number of milliseconds');
  }
}

const ACL_TAGS: ReadonlySet<string> = new Set(['user_obj', 'user', 'group_obj', 'group', 'mask', 'other']);
const MAX_ACCOUNT_ID = 0xfffffffe; // (uid_t)-1 is "no id", never an account

/**
 * Checks entries and returns clean copies. Like setfacl, adds a mask when named entries have none,
 * granting the union of the group-class permissions, so that the named entries mean what they say.
 */
export function normaliseAclEntries(entries: unknown, kind: AclKind): AclEntry[] {
  if (!Array.isArray(entries)) throw invalidArgument('entries', entries, 'an array of ACL entries');

  const clean: AclEntry[] = entries.map((entry: unknown, index) => {
    const name = `entries[${index}]`;
    if (typeof entry !== 'object' || entry === null) throw invalidArgument(name, entry, 'an ACL entry object');
    const { tag, id, qualifier, read, write, execute } = entry as Record<string, unknown>;
    if (typeof tag !== 'string' || !ACL_TAGS.has(tag)) {
      throw invalidArgument(`${name}.tag`, tag, 'one of user_obj, user, group_obj, group, mask, other');
    }
    for (const [field, value] of [['read', read], ['write', write], ['execute', execute]] as const) {
      if (typeof value !== 'boolean') throw invalidArgument(`${name}.${field}`, value, 'a boolean');
    }
    const named = tag === 'user' || tag === 'group';
    if (named && (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id > MAX_ACCOUNT_ID)) {
      throw invalidArgument(`${name}.id`, id, `an integer uid/gid for a '${tag}' entry (resolve names with aclFromText)`);
    }
    if (!named && id !== undefined) throw invalidArgument(`${name}.id`, id, `undefined for a '${tag}' entry`);
    return {
      tag: tag as AclEntry['tag'],
      ...(named ? { id: id as number } : {}),
      ...(named && typeof qualifier === 'string' ? { qualifier } : {}),
      read: read as boolean,
      write: write as boolean,
      execute: execute as boolean,
    };
  });

  // An empty default ACL means "no default ACL"; setAcl turns it into deleteDefaultAcl.
  if (kind === 'default' && clean.length === 0) return clean;

  const count = (tag: AclEntry['tag']): number => clean.filter((e) => e.tag === tag).length;
  for (const tag of ['user_obj', 'group_obj', 'other'] as const) {
    if (count(tag) !== 1) throw invalidArgument('entries', entries, `an ACL with exactly one '${tag}' entry`);
  }
  if (count('mask') > 1) throw invalidArgument('entries', entries, "an ACL with at most one 'mask' entry");
  const namedKeys = clean.filter((e) => e.tag === 'user' || e.tag === 'group').map((e) => `${e.tag}:${e.id}`);
  if (new Set(namedKeys).size !== namedKeys.length) {
    throw invalidArgument('entries', entries, 'an ACL with one entry per named user or group');
  }

  if (namedKeys.length > 0 && count('mask') === 0) {
    const groupClass = clean.filter((e) => e.tag === 'user' || e.tag === 'group' || e.tag === 'group_obj');
    clean.push({
      tag: 'mask',
      read: groupClass.some((e) => e.read),
      write: groupClass.some((e) => e.write),
      execute: groupClass.some((e) => e.execute),
    });
  }
  return clean;
}

function withArgumentChecks(raw: NativeAddon): NativeAddon {
  return Object.freeze({
    setLease(fd: number, type: 'read' | 'none'): void {
      checkDescriptor(fd);
      if (type !== 'read' && type !== 'none') throw invalidArgument('type', type, "'read' or 'none'");
      raw.setLease(fd, type);
    },
    getLease(fd: number): LeaseType {
      checkDescriptor(fd);
      return raw.getLease(fd);
    },
    lockExclusive(fd: number): void {
      checkDescriptor(fd);
      raw.lockExclusive(fd);
    },
    async clamdScanDescriptor(socketPath: string, fd: number, timeoutMs: number): Promise<string> {
      checkPath(socketPath, 'socketPath');
      checkDescriptor(fd);
      checkTimeout(timeoutMs);
      return raw.clamdScanDescriptor(socketPath, fd, timeoutMs);
    },
    async clamdScanDescriptors(socketPath: string, fds: readonly number[], timeoutMs: number): Promise<(string | Error)[]> {
      checkPath(socketPath, 'socketPath');
      if (!Array.isArray(fds)) throw invalidArgument('fds', fds, 'an array of file descriptors');
      fds.forEach((fd) => checkDescriptor(fd));
      checkTimeout(timeoutMs);
      return raw.clamdScanDescriptors(socketPath, fds, timeoutMs);
    },
    syncDescriptors(fds: readonly number[]): Promise<(Error | null)[]> {
      if (!Array.isArray(fds)) throw invalidArgument('fds', fds, 'an array of file descriptors');
      fds.forEach((fd) => checkDescriptor(fd));
      return raw.syncDescriptors(fds);
    },
    createFiles(files: readonly { directory: number; name: string; mode: number }[]): Promise<(number | Error)[]> {
      if (!Array.isArray(files)) throw invalidArgument('files', files, 'an array of { directory, name, mode }');
      for (const [index, file] of files.entries()) {
        if (typeof file !== 'object' || file === null) throw invalidArgument(`files[${index}]`, file, 'an object');
        checkDescriptor(file.directory);
        checkFileName(file.name, `files[${index}].name`);
        if (!Number.isInteger(file.mode) || file.mode < 0 || file.mode > 0o7777) throw invalidArgument(`files[${index}].mode`, file.mode, 'a mode from 0 to 0o7777');
      }
      return raw.createFiles(files);
    },
    changeNames(changes: readonly NameChange[]): Promise<(Error | null)[]> {
      if (!Array.isArray(changes)) throw invalidArgument('changes', changes, 'an array of name changes');
      for (const [index, change] of changes.entries()) {
        if (typeof change !== 'object' || change === null || !['rename', 'link', 'unlink'].includes(change.kind)) {
          throw invalidArgument(`changes[${index}]`, change, 'a rename, link or unlink');
        }
        checkDescriptor(change.from);
        checkFileName(change.fromName, `changes[${index}].fromName`);
        if (change.kind !== 'unlink') {
          checkDescriptor(change.to);
          checkFileName(change.toName, `changes[${index}].toName`);
        }
      }
      return raw.changeNames(changes);
    },
    closeDescriptors(fds: readonly number[]): Promise<(Error | null)[]> {
      if (!Array.isArray(fds)) throw invalidArgument('fds', fds, 'an array of file descriptors');
      fds.forEach((fd) => checkDescriptor(fd));
      return raw.closeDescriptors(fds);
    },
    sdNotify(state: string): boolean {
      if (typeof state !== 'string' || state === '') throw invalidArgument('state', state, 'a non-empty string');
      return raw.sdNotify(state);
    },
    async getAcl(path: string, kind: AclKind): Promise<AclEntry[]> {
      checkPath(path);
      checkKind(kind);
      return resolveQualifiers(await raw.getAcl(path, kind));
    },
    getAclSync(path: string, kind: AclKind): AclEntry[] {
      checkPath(path);
      checkKind(kind);
      return resolveQualifiersSync(raw.getAclSync(path, kind));
    },
    async setAcl(path: string, kind: AclKind, entries: AclEntry[]): Promise<void> {
      checkPath(path);
      checkKind(kind);
      const clean = normaliseAclEntries(entries, kind);
      if (clean.length === 0) return raw.deleteDefaultAcl(path);
      return raw.setAcl(path, kind, clean);
    },
    setAclSync(path: string, kind: AclKind, entries: AclEntry[]): void {
      checkPath(path);
      checkKind(kind);
      const clean = normaliseAclEntries(entries, kind);
      if (clean.length === 0) return raw.deleteDefaultAclSync(path);
      raw.setAclSync(path, kind, clean);
    },
    async deleteDefaultAcl(path: string): Promise<void> {
      checkPath(path);
      return raw.deleteDefaultAcl(path);
    },
    deleteDefaultAclSync(path: string): void {
      checkPath(path);
      raw.deleteDefaultAclSync(path);
    },
    async hasExtendedAcl(path: string): Promise<boolean> {
      checkPath(path);
      return raw.hasExtendedAcl(path);
    },
    hasExtendedAclSync(path: string): boolean {
      checkPath(path);
      return raw.hasExtendedAclSync(path);
    },
  });
}
