// Reading and writing POSIX ACLs, through the native addon or through getfacl/setfacl, with identical
// results: entries carry numeric ids (no names: the report resolves those once, from one snapshot of the
// account databases), in the kernel's canonical order. Symlinks are never followed: both backends fail
// with ELOOP on one. Errors look like Node's fs errors, with the addon's syscall names.

import { existsSync, lstatSync, type Stats } from 'node:fs';
import { lstat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { constants as osConstants } from 'node:os';
import { getSystemErrorMap } from 'node:util';
import { execa } from 'execa';

import type { PermissionsBackendChoice } from '../config.js';
import { loadNative, nativeAddonCandidates, normaliseAclEntries, type AclEntry, type AclKind, type NativeAddon } from '../native.js';
import { bitsText, isMinimal, minimalAcl } from './model.js';

export type AclBackendName = 'native' | 'setfacl';

export interface AclTarget {
  readonly path: string;
  readonly isDirectory: boolean;
  /**
   * The stat mode, when the caller has just taken it: a path without extended ACL entries then needs no
   * further read, as its access ACL is the mode.
   */
  readonly mode?: number;
}

export interface AclReading {
  readonly access: AclEntry[];
  /** [] for files and for directories without a default ACL. */
  readonly defaultAcl: AclEntry[];
}

export interface AclBackend {
  readonly name: AclBackendName;
  getAcl(path: string, kind: AclKind): Promise<AclEntry[]>;
  /** Replaces the ACL with exactly these entries (a mask is added to named entries without one); a default [] removes it. */
  setAcl(path: string, kind: AclKind, entries: readonly AclEntry[]): Promise<void>;
  deleteDefaultAcl(path: string): Promise<void>;
  hasExtendedAcl(path: string): Promise<boolean>;
  /**
   * Access and default ACLs of many paths at once; the tree walk's bulk read. One result per target, in
   * order: a reading, or the fs-style error for that path (ENOENT when it vanished meanwhile).
   */
  readAcls(targets: readonly AclTarget[]): Promise<(AclReading | NodeJS.ErrnoException)[]>;
}

/** The backend a config asks for. auto: the addon when it is built, else getfacl/setfacl. */
export function selectAclBackend(choice: PermissionsBackendChoice): AclBackend {
  if (choice === 'setfacl') return new SetfaclBackend();
  if (choice === 'native') return new NativeAclBackend();
  try {
    return new NativeAclBackend();
  } catch {
    return new SetfaclBackend();
  }
}

// ---------------------------------------------------------------------------------------------------
// Errors shaped like Node's own fs errors.

export function systemError(code: string, syscall: string, path: string): NodeJS.ErrnoException {
  const errno = (osConstants.errno as Record<string, number>)[code];
  const description = errno === undefined ? code.toLowerCase() : (getSystemErrorMap().get(-errno)?.[1] ?? code.toLowerCase());
  const error: NodeJS.ErrnoException = new Error(`${code}: ${description}, ${syscall} '${path}'`);
  Object.assign(error, { errno: errno === undefined ? undefined : -errno, code, syscall, path });
  return error;
}

export function isErrnoException(value: unknown): value is NodeJS.ErrnoException {
  return value instanceof Error && typeof (value as NodeJS.ErrnoException).code === 'string';
}

function checkPath(path: string): void {
  if (typeof path !== 'string' || path === '' || path.includes('\0')) {
    throw Object.assign(new TypeError(`The "path" argument must be a non-empty string without NUL bytes. Received ${JSON.stringify(path)}`), {
      code: 'ERR_INVALID_ARG_VALUE',
    });
  }
}

// ---------------------------------------------------------------------------------------------------
// The native addon.

type RawAclCalls = Pick<
  NativeAddon,
  'getAclSync' | 'setAclSync' | 'deleteDefaultAclSync' | 'hasExtendedAclSync'
>;

let rawAddon: RawAclCalls | undefined;

/**
 * The addon's own functions, without the loader's name lookups: loadNative() resolves the qualifier of
 * every named entry through a getent process per call, which over a tree of 100,000 files would cost
 * minutes. Arguments are checked here instead.
 */
function loadRawAclCalls(): RawAclCalls {
  if (rawAddon !== undefined) return rawAddon;
  loadNative(); // throws the loader's explanation (what was tried, how to build) when the addon is missing
  const require = createRequire(import.meta.url);
  let lastError: unknown;
  for (const candidate of nativeAddonCandidates()) {
    if (!existsSync(candidate)) continue;
    try {
      rawAddon = require(candidate) as RawAclCalls;
      return rawAddon;
    } catch (error) {
      lastError = error;
    }
  }
  throw new Error('the native addon loaded once but cannot be loaded again', { cause: lastError });
}

export class NativeAclBackend implements AclBackend {
  readonly name = 'native';
  private readonly raw: RawAclCalls;

  /** Throws when the addon is not built (the message says what was tried and how to build it). */
  constructor() {
    this.raw = loadRawAclCalls();
  }

  // Every call here is synchronous: an ACL is an extended attribute the kernel answers from memory in a
  // few microseconds, far less than a trip through the thread pool. The daemon sets one per released file.

  async getAcl(path: string, kind: AclKind): Promise<AclEntry[]> {
    checkPath(path);
    return this.raw.getAclSync(path, kind);
  }

  async setAcl(path: string, kind: AclKind, entries: readonly AclEntry[]): Promise<void> {
    checkPath(path);
    const clean = normaliseAclEntries([...entries], kind);
    if (clean.length === 0) return this.raw.deleteDefaultAclSync(path);
    return this.raw.setAclSync(path, kind, clean);
  }

  async deleteDefaultAcl(path: string): Promise<void> {
    checkPath(path);
    return this.raw.deleteDefaultAclSync(path);
  }

  async hasExtendedAcl(path: string): Promise<boolean> {
    checkPath(path);
    return this.raw.hasExtendedAclSync(path);
  }

  /** Callers pass batches of a directory's worth, so the event loop is never held for long. */
  async readAcls(targets: readonly AclTarget[]): Promise<(AclReading | NodeJS.ErrnoException)[]> {
    return targets.map((target) => this.readOne(target));
  }

  private readOne(target: AclTarget): AclReading | NodeJS.ErrnoException {
    try {
      checkPath(target.path);
      if (target.mode !== undefined && !this.raw.hasExtendedAclSync(target.path)) {
        return { access: minimalAcl(target.mode), defaultAcl: [] };
      }
      const access = this.raw.getAclSync(target.path, 'access');
      const defaultAcl = target.isDirectory ? this.raw.getAclSync(target.path, 'default') : [];
      return { access, defaultAcl };
    } catch (error) {
      if (isErrnoException(error)) return error;
      throw error;
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// getfacl and setfacl.

/** Keeps each getfacl command line well below ARG_MAX (2 MiB on Linux, environment included). */
const MAX_ARGUMENT_BYTES = 256 * 1024;

/**
 * getfacl/setfacl as a fallback for hosts where the addon is not built. Both tools resolve symbolic
 * links given as arguments unless told `--physical`, which makes them skip links instead; each call
 * lstat's the path first so that a link gives ELOOP, as the addon does. (A link swapped in between is
 * skipped by the tools, never followed.)
 */
export class SetfaclBackend implements AclBackend {
  readonly name = 'setfacl';

  async getAcl(path: string, kind: AclKind): Promise<AclEntry[]> {
    const stats = await this.lstatFor(path, 'acl_get_file');
    if (kind === 'default' && !stats.isDirectory()) throw systemError('EACCES', 'acl_get_file', path);
    const readings = await this.getfacl([path]);
    const reading = readings.get(path);
    if (reading === undefined) throw await this.vanished(path, 'acl_get_file');
    return kind === 'access' ? reading.access : reading.defaultAcl;
  }

  async setAcl(path: string, kind: AclKind, entries: readonly AclEntry[]): Promise<void> {
    const clean = normaliseAclEntries([...entries], kind);
    if (clean.length === 0) return this.deleteDefaultAcl(path);
    const stats = await this.lstatFor(path, 'acl_set_file');
    if (kind === 'default' && !stats.isDirectory()) throw systemError('EACCES', 'acl_set_file', path);
    const text = clean.map(entryText).join(',');
    // --no-mask: the entries already hold the mask they need; write exactly them, as the addon does.
    await this.setfacl(['--physical', '--no-mask', ...(kind === 'default' ? ['--default'] : []), `--set=${text}`, '--', path], path, 'acl_set_file');
  }

  async deleteDefaultAcl(path: string): Promise<void> {
    await this.lstatFor(path, 'acl_delete_def_file');
    await this.setfacl(['--physical', '--remove-default', '--', path], path, 'acl_delete_def_file');
  }

  async hasExtendedAcl(path: string): Promise<boolean> {
    const stats = await this.lstatFor(path, 'acl_extended_file');
    const reading = (await this.getfacl([path])).get(path);
    if (reading === undefined) throw await this.vanished(path, 'acl_extended_file');
    return !isMinimal(reading.access) || (stats.isDirectory() && reading.defaultAcl.length > 0);
  }

  /** One getfacl process per batch of paths (as many as fit on a command line), parsed in one go. */
  async readAcls(targets: readonly AclTarget[]): Promise<(AclReading | NodeJS.ErrnoException)[]> {
    const readings = new Map<string, AclReading>();
    let batch: string[] = [];
    let bytes = 0;
    const flush = async (): Promise<void> => {
      if (batch.length === 0) return;
      for (const [path, reading] of await this.getfacl(batch)) readings.set(path, reading);
      batch = [];
      bytes = 0;
    };
    for (const target of targets) {
      checkPath(target.path);
      batch.push(target.path);
      bytes += Buffer.byteLength(target.path) + 1;
      if (bytes >= MAX_ARGUMENT_BYTES) await flush();
    }
    await flush();

    const results: (AclReading | NodeJS.ErrnoException)[] = [];
    for (const target of targets) {
      const reading = readings.get(target.path);
      if (reading !== undefined) {
        results.push(target.isDirectory ? reading : { access: reading.access, defaultAcl: [] });
        continue;
      }
      // getfacl skipped it: gone, a symlink now, or unreadable. Ask again alone for the precise error.
      try {
        const access = await this.getAcl(target.path, 'access');
        results.push({ access, defaultAcl: target.isDirectory ? await this.getAcl(target.path, 'default') : [] });
      } catch (error) {
        if (!isErrnoException(error)) throw error;
        results.push(error);
      }
    }
    return results;
  }

  private async getfacl(paths: readonly string[]): Promise<Map<string, AclReading>> {
    // Exit status 1 means some paths failed (each reported on stderr); the rest are on stdout.
    const result = await execa('getfacl', ['--absolute-names', '--numeric', '--no-effective', '--physical', '--', ...paths], {
      reject: false,
      stripFinalNewline: false,
      maxBuffer: 1024 * 1024 * 1024,
    });
    if (result.exitCode !== 0 && result.exitCode !== 1) {
      throw new Error(`getfacl failed (exit status ${String(result.exitCode)}): ${String(result.stderr).trim()}`);
    }
    return parseGetfaclOutput(String(result.stdout));
  }

  private async setfacl(args: string[], path: string, syscall: string): Promise<void> {
    const result = await execa('setfacl', args, { reject: false });
    if (result.exitCode === 0) return;
    const stderr = String(result.stderr).trim();
    throw errorFromToolMessage(stderr, syscall, path) ?? new Error(`setfacl ${args.join(' ')} failed (exit status ${String(result.exitCode)}): ${stderr}`);
  }

  private async lstatFor(path: string, syscall: string): Promise<Stats> {
    checkPath(path);
    let stats: Stats;
    try {
      stats = await lstat(path);
    } catch (error) {
      if (isErrnoException(error) && error.code !== undefined) throw systemError(error.code, syscall, path);
      throw error;
    }
    if (stats.isSymbolicLink()) throw systemError('ELOOP', syscall, path);
    return stats;
  }

  /** The error for a path getfacl printed nothing about. */
  private async vanished(path: string, syscall: string): Promise<NodeJS.ErrnoException> {
    try {
      const stats = lstatSync(path);
      return systemError(stats.isSymbolicLink() ? 'ELOOP' : 'EIO', syscall, path);
    } catch (error) {
      return systemError((error as NodeJS.ErrnoException).code ?? 'EIO', syscall, path);
    }
  }
}

function entryText(entry: AclEntry): string {
  const word = entry.tag === 'user_obj' ? 'user' : entry.tag === 'group_obj' ? 'group' : entry.tag;
  const qualifier = entry.tag === 'user' || entry.tag === 'group' ? String(entry.id) : '';
  return `${word}:${qualifier}:${bitsText((entry.read ? 4 : 0) | (entry.write ? 2 : 0) | (entry.execute ? 1 : 0))}`;
}

/** getfacl and setfacl print strerror text ("setfacl: /x: Operation not permitted"); map it back to a code. */
function errorFromToolMessage(stderr: string, syscall: string, path: string): NodeJS.ErrnoException | null {
  const message = stderr.slice(stderr.lastIndexOf(': ') + 2).trim().toLowerCase();
  if (message === 'only directories can have default acls') return systemError('EACCES', syscall, path);
  for (const [name, description] of getSystemErrorMap().values()) {
    if (description.toLowerCase() === message) return systemError(name, syscall, path);
  }
  return null;
}

/**
 * Parses `getfacl --absolute-names --numeric --no-effective` output: blocks of "# file: PATH" headers
 * and entry lines, separated by blank lines. getfacl escapes a backslash as "\\" and control characters
 * (a newline, say) as three octal digits, so names survive the line format.
 */
export function parseGetfaclOutput(text: string): Map<string, AclReading> {
  const readings = new Map<string, AclReading>();
  let current: { path: string; access: AclEntry[]; defaultAcl: AclEntry[] } | null = null;
  const finish = (): void => {
    if (current !== null) readings.set(current.path, { access: current.access, defaultAcl: current.defaultAcl });
    current = null;
  };
  for (const line of text.split('\n')) {
    if (line === '') {
      finish();
    } else if (line.startsWith('# file: ')) {
      finish();
      current = { path: unescapeGetfaclName(line.slice('# file: '.length)), access: [], defaultAcl: [] };
    } else if (line.startsWith('#') || current === null) {
      continue;
    } else if (line.startsWith('default:')) {
      current.defaultAcl.push(parseEntryLine(line.slice('default:'.length)));
    } else {
      current.access.push(parseEntryLine(line));
    }
  }
  finish();
  return readings;
}

function parseEntryLine(line: string): AclEntry {
  const [word = '', qualifier = '', permissions = ''] = line.split(':');
  const perms = { read: permissions[0] === 'r', write: permissions[1] === 'w', execute: permissions[2] === 'x' };
  switch (word) {
    case 'user':
      return qualifier === '' ? { tag: 'user_obj', ...perms } : { tag: 'user', id: Number(qualifier), ...perms };
    case 'group':
      return qualifier === '' ? { tag: 'group_obj', ...perms } : { tag: 'group', id: Number(qualifier), ...perms };
    case 'mask':
      return { tag: 'mask', ...perms };
    case 'other':
      return { tag: 'other', ...perms };
    default:
      throw new Error(`getfacl printed an entry of unknown type: ${JSON.stringify(line)}`);
  }
}

function unescapeGetfaclName(escaped: string): string {
  if (!escaped.includes('\\')) return escaped;
  const bytes: number[] = [];
  const raw = Buffer.from(escaped, 'utf8');
  for (let index = 0; index < raw.length; index++) {
    const byte = raw[index] as number;
    if (byte === 0x5c && raw[index + 1] === 0x5c) {
      bytes.push(0x5c);
      index += 1;
    } else if (byte === 0x5c && /^[0-7]{3}$/.test(raw.subarray(index + 1, index + 4).toString('latin1'))) {
      bytes.push(Number.parseInt(raw.subarray(index + 1, index + 4).toString('latin1'), 8));
      index += 3;
    } else {
      bytes.push(byte);
    }
  }
  return Buffer.from(bytes).toString('utf8');
}
