// The desired state: config.permissions resolved against the account databases into exact numbers (uids,
// gids, stat modes) and complete ACLs, so that checks compare numbers, never names or text.
//
// Masks: where an ACL has named entries it needs a mask. Unless the config gives one, the mask is the
// union of the group-class permissions (owning group and named entries), as setfacl computes it. The
// group digit of a stat mode shows the mask when there is one, so the expected stat mode carries it.

import {
  DATA_DIRECTORY_KEYS,
  MANAGED_PATH_KEYS,
  type DataDirectoryKey,
  type ManagedPathKey,
  type PermissionSpec,
  type ShuttleConfig,
  type ShuttlePaths,
} from '../config.js';
import { parseAclText } from '../acl-text.js';
import type { AclEntry } from '../native.js';
import type { AccountPolicy, AccountsSnapshot } from './accounts.js';
import { unchecked, type Finding } from './finding.js';

export interface Account {
  readonly name: string;
  readonly id: number;
}

/** Mode and ACLs a directory (or file) must have. */
export interface DesiredAcls {
  /** Stat mode bits (0o7777), special bits included; the group digit is the mask when there is one. */
  readonly mode: number;
  /** The complete access ACL, base entries included, in canonical order. */
  readonly access: readonly AclEntry[];
  /** The complete default ACL, or [] for none. */
  readonly defaultAcl: readonly AclEntry[];
}

/** What everything below a data directory must look like. */
export interface ContentsModel {
  readonly key: DataDirectoryKey;
  readonly root: string;
  /** Every file and subdirectory carries the directory's group (setgid makes the kernel do it). */
  readonly group: Account;
  /** Subdirectories are like the data directory itself: mode, setgid, access and default ACL. */
  readonly directory: DesiredAcls;
  /** The most a file may allow (0o660 by default); tighter is fine. */
  readonly fileMaxMode: number;
  /**
   * Named entries a file must carry: those of the directory's default ACL, without execute and within
   * fileMaxMode's group digit. Files carry no other named entries.
   */
  readonly fileNamedEntries: readonly AclEntry[];
}

export interface ManagedPath extends DesiredAcls {
  readonly key: ManagedPathKey;
  readonly path: string;
  readonly type: 'directory' | 'file';
  readonly owner: Account;
  readonly group: Account;
  /** Data directories only. */
  readonly contents: ContentsModel | null;
}

export interface PermissionModel extends AccountPolicy {
  readonly paths: readonly ManagedPath[];
}

export const DEFAULT_FILE_MAX_MODE = 0o660;

const SPECIAL_BITS = 0o7000;
export const SETGID = 0o2000;
const EXECUTE = 0o1;
const FILE_KEYS: readonly ManagedPathKey[] = ['hazard_encryption_key_path', 'ledger_file_path'];

const PATH_FIELDS: Readonly<Record<ManagedPathKey, keyof ShuttlePaths>> = {
  source_path: 'sourcePath',
  destination_path: 'destinationPath',
  quarantine_path: 'quarantinePath',
  hazard_archive_path: 'hazardArchivePath',
  log_path: 'logPath',
  hazard_encryption_key_path: 'hazardEncryptionKeyPath',
  ledger_file_path: 'ledgerFilePath',
};

/** Data directories whose named ACL groups are Samba users. */
const SAMBA_SHARE_KEYS: readonly ManagedPathKey[] = ['source_path', 'destination_path'];

// ---------------------------------------------------------------------------------------------------
// ACL entry helpers, shared by checks, fixes and the backends.

const TAG_ORDER: readonly AclEntry['tag'][] = ['user_obj', 'user', 'group_obj', 'group', 'mask', 'other'];

/** rwx as a 3-bit number, like one digit of a mode. */
export function permissionBits(entry: Pick<AclEntry, 'read' | 'write' | 'execute'>): number {
  return (entry.read ? 4 : 0) | (entry.write ? 2 : 0) | (entry.execute ? 1 : 0);
}

export function withBits<T extends AclEntry>(entry: T, bits: number): T {
  return { ...entry, read: (bits & 4) !== 0, write: (bits & 2) !== 0, execute: (bits & 1) !== 0 };
}

/** The entry with only those of its permissions that `bits` allows. */
export function aclBitsWithin<T extends AclEntry>(entry: T, bits: number): T {
  return withBits(entry, permissionBits(entry) & bits);
}

export function bitsText(bits: number): string {
  return `${bits & 4 ? 'r' : '-'}${bits & 2 ? 'w' : '-'}${bits & 1 ? 'x' : '-'}`;
}

export function modeText(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, '0');
}

export function isNamed(entry: AclEntry): boolean {
  return entry.tag === 'user' || entry.tag === 'group';
}

/** Identifies an entry within one ACL: its tag, and its id for named entries. */
export function entryKey(entry: AclEntry): string {
  return isNamed(entry) ? `${entry.tag}:${entry.id ?? '?'}` : entry.tag;
}

export function sortEntries(entries: readonly AclEntry[]): AclEntry[] {
  return [...entries].sort((a, b) => TAG_ORDER.indexOf(a.tag) - TAG_ORDER.indexOf(b.tag) || (a.id ?? -1) - (b.id ?? -1));
}

export function entry(tag: AclEntry['tag'], bits: number, id?: number): AclEntry {
  return withBits({ tag, ...(id === undefined ? {} : { id }), read: false, write: false, execute: false }, bits);
}

/** The three entries that an ACL without extended entries consists of, read off a mode. */
export function minimalAcl(mode: number): AclEntry[] {
  return [entry('user_obj', (mode >> 6) & 7), entry('group_obj', (mode >> 3) & 7), entry('other', mode & 7)];
}

/** Adds the mask setfacl would compute (union of the group class) when named entries lack one. */
export function withComputedMask(entries: readonly AclEntry[]): AclEntry[] {
  const result = entries.map((e) => ({ ...e }));
  if (!result.some(isNamed) || result.some((e) => e.tag === 'mask')) return sortEntries(result);
  const union = result.filter((e) => isNamed(e) || e.tag === 'group_obj').reduce((bits, e) => bits | permissionBits(e), 0);
  result.push(entry('mask', union));
  return sortEntries(result);
}

/** The stat mode an ACL implies: owner, mask (or owning group) and other digits, plus special bits. */
export function statModeOf(entries: readonly AclEntry[], specialBits: number): number {
  const bits = (tag: AclEntry['tag']): number => {
    const found = entries.find((e) => e.tag === tag);
    return found === undefined ? 0 : permissionBits(found);
  };
  const groupDigit = entries.some((e) => e.tag === 'mask') ? bits('mask') : bits('group_obj');
  return (specialBits & SPECIAL_BITS) | (bits('user_obj') << 6) | (groupDigit << 3) | bits('other');
}

export function isMinimal(entries: readonly AclEntry[]): boolean {
  return entries.every((e) => e.tag === 'user_obj' || e.tag === 'group_obj' || e.tag === 'other');
}

// ---------------------------------------------------------------------------------------------------
// Building the model.

export function managedPathOf(config: ShuttleConfig, key: ManagedPathKey): string {
  return config.paths[PATH_FIELDS[key]];
}

/** The account names a config mentions, to look up before building the model. */
export function accountNamesIn(config: ShuttleConfig): { users: string[]; groups: string[] } {
  const users = new Set<string>();
  const groups = new Set<string>();
  for (const spec of Object.values(config.permissions)) {
    if (spec === undefined) continue;
    users.add(spec.owner);
    groups.add(spec.group);
    for (const text of [...spec.acl, ...spec.defaultAcl]) {
      const [tag = '', qualifier = ''] = text.split(':');
      if (qualifier === '' || /^\d+$/.test(qualifier)) continue;
      (tag === 'user' ? users : groups).add(qualifier);
    }
  }
  return { users: [...users], groups: [...groups] };
}

export interface ModelBuild {
  readonly model: PermissionModel;
  /** Accounts that do not exist and specs that contradict themselves: the paths they concern are left out. */
  readonly problems: readonly Finding[];
}

/**
 * Resolves config.permissions against a snapshot of the account databases. Pure. Only the paths listed
 * in the config are managed; a path whose spec names an unknown account is left out of the model and
 * reported (exit status 2: it could not be checked).
 */
export function buildPermissionModel(config: ShuttleConfig, accounts: AccountsSnapshot): ModelBuild {
  const missing = new Map<string, { what: 'user' | 'group'; name: string; neededBy: Set<string> }>();
  const problems: Finding[] = [];
  const paths: ManagedPath[] = [];
  const sambaGroups = new Set<string>();
  const modelGroups = new Set<string>();

  for (const key of MANAGED_PATH_KEYS) {
    const spec = config.permissions[key];
    if (spec === undefined) continue;
    const configKey = `permissions.${key}`;
    const resolver = new NameResolver(accounts, (what, name) => {
      const id = `${what}:${name}`;
      let record = missing.get(id);
      if (record === undefined) missing.set(id, (record = { what, name, neededBy: new Set() }));
      record.neededBy.add(configKey);
    });
    modelGroups.add(spec.group);
    for (const text of [...spec.acl, ...spec.defaultAcl]) {
      const [tag = '', qualifier = ''] = text.split(':');
      if (tag === 'group' && qualifier !== '') {
        modelGroups.add(qualifier);
        if (SAMBA_SHARE_KEYS.includes(key) && spec.acl.includes(text)) sambaGroups.add(qualifier);
      }
    }

    const built = buildManagedPath(key, managedPathOf(config, key), spec, resolver);
    if (typeof built === 'string') {
      problems.push(unchecked(configKey, 'model', 'a consistent permission spec', built));
    } else if (built !== null) {
      paths.push(built);
    }
  }

  for (const { what, name, neededBy } of missing.values()) {
    problems.push(unchecked(`${what}:${name}`, 'account-missing', `${what} exists`, `no such ${what} (named by ${[...neededBy].join(', ')}, not checked)`));
  }
  return { model: { paths, sambaGroups: [...sambaGroups], modelGroups: [...modelGroups] }, problems };
}

class NameResolver {
  ok = true;

  constructor(
    private readonly accounts: AccountsSnapshot,
    private readonly onMissing: (what: 'user' | 'group', name: string) => void,
  ) {}

  user(name: string): Account {
    return this.resolve('user', name, this.accounts.usersByName.get(name)?.uid);
  }

  group(name: string): Account {
    return this.resolve('group', name, this.accounts.groupsByName.get(name)?.gid);
  }

  /** Named entries get their id; numeric qualifiers are ids already. */
  entries(entries: readonly AclEntry[]): AclEntry[] {
    return entries.map((e) => {
      if (!isNamed(e) || e.id !== undefined) return e;
      const account = e.tag === 'user' ? this.user(e.qualifier ?? '') : this.group(e.qualifier ?? '');
      const { qualifier: _name, ...rest } = e;
      return { ...rest, id: account.id };
    });
  }

  private resolve(what: 'user' | 'group', name: string, id: number | undefined): Account {
    if (/^\d+$/.test(name)) return { name, id: Number(name) };
    if (id === undefined) {
      this.ok = false;
      this.onMissing(what, name);
      return { name, id: -1 };
    }
    return { name, id };
  }
}

/** null when an account is missing (reported by the resolver), a string when the spec contradicts itself. */
function buildManagedPath(key: ManagedPathKey, target: string, spec: PermissionSpec, resolver: NameResolver): ManagedPath | string | null {
  const type = FILE_KEYS.includes(key) ? 'file' : 'directory';
  const owner = resolver.user(spec.owner);
  const group = resolver.group(spec.group);
  const isDirectory = type === 'directory';

  const base = minimalAcl(spec.mode);
  const configured = resolver.entries(parseAclText(spec.acl.join(','), { isDirectory }));
  for (const given of configured.filter((e) => !isNamed(e) && e.tag !== 'mask')) {
    const fromMode = base.find((e) => e.tag === given.tag);
    if (fromMode !== undefined && permissionBits(fromMode) !== permissionBits(given)) {
      return `acl entry ${given.tag.replace('_obj', '')}::${bitsText(permissionBits(given))} contradicts mode "${modeText(spec.mode)}"`;
    }
  }
  const access = withComputedMask([...base, ...configured.filter((e) => isNamed(e) || e.tag === 'mask')]);

  let defaultAcl: AclEntry[] = [];
  if (spec.defaultAcl.length > 0) {
    // X in a default ACL set on a directory means execute, as setfacl reads it.
    const given = resolver.entries(parseAclText(spec.defaultAcl.join(','), { isDirectory: true }));
    const filled = [...given];
    // Like setfacl, base entries a default ACL leaves out are copied from the access ACL.
    for (const baseEntry of base) if (!filled.some((e) => e.tag === baseEntry.tag)) filled.push(baseEntry);
    defaultAcl = withComputedMask(filled);
  }
  if (!resolver.ok) return null;

  const mode = statModeOf(access, spec.mode);
  const contents = isDataDirectory(key) ? contentsModel(key, target, group, { mode, access, defaultAcl }, spec.fileMode ?? DEFAULT_FILE_MAX_MODE) : null;
  return { key, path: target, type, owner, group, mode, access, defaultAcl, contents };
}

function isDataDirectory(key: ManagedPathKey): key is DataDirectoryKey {
  return (DATA_DIRECTORY_KEYS as readonly string[]).includes(key);
}

function contentsModel(key: DataDirectoryKey, root: string, group: Account, directory: DesiredAcls, fileMaxMode: number): ContentsModel {
  const groupDigit = (fileMaxMode >> 3) & 7 & ~EXECUTE;
  const fileNamedEntries = directory.defaultAcl.filter(isNamed).map((e) => withBits(e, permissionBits(e) & groupDigit));
  return { key, root, group, directory, fileMaxMode: fileMaxMode & ~SPECIAL_BITS & 0o660, fileNamedEntries };
}

/**
 * The ACL a file should carry in a directory with `defaultAcl`, keeping what is allowed of its current
 * owner and owning-group permissions (a file may be tighter than the model). Used by fixes; `current` is
 * the file's access ACL.
 *
 * Behind a mask the owning group only has what the mask lets through, and that is what it keeps: every
 * file in a share with named default entries has a mask, and raising it for the named entries must not
 * hand the owning group more than it had. A named entry that differs from the model only by an execute
 * bit the mask hides is kept as it is: that is what the kernel gives a new file from a default ACL with
 * `rwX` or `r-X`, the checks accept it, and a fix should change only what drifted.
 */
export function fileAclFor(contents: Pick<ContentsModel, 'fileMaxMode' | 'fileNamedEntries'>, current: readonly AclEntry[]): AclEntry[] {
  const max = contents.fileMaxMode;
  const bitsOf = (tag: AclEntry['tag']): number => {
    const found = current.find((e) => e.tag === tag);
    return found === undefined ? 0 : permissionBits(found);
  };
  const effectiveGroupBits = current.some((e) => e.tag === 'mask') ? bitsOf('group_obj') & bitsOf('mask') : bitsOf('group_obj');
  const userBits = bitsOf('user_obj') & (max >> 6) & 7;
  const groupBits = effectiveGroupBits & (max >> 3) & 7;
  const wanted = withComputedMask([entry('user_obj', userBits), entry('group_obj', groupBits), ...contents.fileNamedEntries, entry('other', 0)]);
  // The mask is computed from entries without execute, so it hides any execute bit kept below.
  const maskBits = permissionBits(wanted.find((e) => e.tag === 'mask') ?? entry('mask', 0));
  return wanted.map((e) => {
    if (!isNamed(e) || (maskBits & EXECUTE) !== 0) return e;
    const found = current.find((c) => isNamed(c) && entryKey(c) === entryKey(e));
    return found !== undefined && (permissionBits(found) & ~EXECUTE) === permissionBits(e) ? { ...e, execute: found.execute } : e;
  });
}
