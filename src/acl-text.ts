// The short text form of POSIX ACLs ("user::rw-,group:staff:rwX,other::---"), as admins write them in
// the config and as getfacl prints them, and the account-name lookups that text needs.
//
// Names are resolved through `getent`, so accounts from NSS sources other than /etc (winbind, LDAP,
// sssd) resolve exactly as they do for setfacl and Samba.

import { execa, execaSync } from 'execa';

import type { AclEntry } from './native.js';

type AclTag = AclEntry['tag'];

const TAG_ORDER: readonly AclTag[] = ['user_obj', 'user', 'group_obj', 'group', 'mask', 'other'];

const TAG_WORDS: Readonly<Record<string, 'user' | 'group' | 'mask' | 'other'>> = {
  u: 'user',
  user: 'user',
  g: 'group',
  group: 'group',
  m: 'mask',
  mask: 'mask',
  o: 'other',
  other: 'other',
};

export interface AclTextOptions {
  /**
   * What a capital X means: execute for directories, nothing for files. (setfacl also grants it to
   * files that already have an execute bit; files Shuttle manages never do.)
   */
  readonly isDirectory: boolean;
}

type AccountDatabase = 'passwd' | 'group';

function databaseFor(tag: AclTag): AccountDatabase {
  return tag === 'user' ? 'passwd' : 'group';
}

function hasQualifier(entry: AclEntry): boolean {
  return entry.tag === 'user' || entry.tag === 'group';
}

function compareEntries(a: AclEntry, b: AclEntry): number {
  const byTag = TAG_ORDER.indexOf(a.tag) - TAG_ORDER.indexOf(b.tag);
  return byTag !== 0 ? byTag : (a.id ?? -1) - (b.id ?? -1);
}

function permissionText(entry: AclEntry): string {
  return `${entry.read ? 'r' : '-'}${entry.write ? 'w' : '-'}${entry.execute ? 'x' : '-'}`;
}

/**
 * Entries as "user::rw-,group::r--,group:staff:rwx,mask::rwx,other::---", in the kernel's canonical
 * order so that equal ACLs give equal text. Named entries show their qualifier when known, else the id.
 */
export function aclToText(entries: readonly AclEntry[]): string {
  return [...entries]
    .sort(compareEntries)
    .map((entry) => {
      const word = entry.tag === 'user_obj' ? 'user' : entry.tag === 'group_obj' ? 'group' : entry.tag;
      const qualifier = hasQualifier(entry) ? (entry.qualifier ?? String(entry.id ?? '')) : '';
      return `${word}:${qualifier}:${permissionText(entry)}`;
    })
    .join(',');
}

function parsePermissions(text: string, entryText: string, options: AclTextOptions): Pick<AclEntry, 'read' | 'write' | 'execute'> {
  const permissions = { read: false, write: false, execute: false };
  const seen = new Set<string>();
  if (text === '') throw new Error(`ACL entry '${entryText}' has no permissions (write '---' for none)`);
  for (const character of text) {
    if (character === '-') continue;
    if (seen.has(character)) throw new Error(`ACL entry '${entryText}' repeats permission '${character}'`);
    seen.add(character);
    switch (character) {
      case 'r':
        permissions.read = true;
        break;
      case 'w':
        permissions.write = true;
        break;
      case 'x':
        permissions.execute = true;
        break;
      case 'X':
        if (options.isDirectory) permissions.execute = true;
        break;
      default:
        throw new Error(`ACL entry '${entryText}' has unknown permission '${character}'`);
    }
  }
  return permissions;
}

/**
 * Parses ACL text without touching the account databases: named entries carry `id` when the qualifier
 * is numeric and `qualifier` (a name, not yet resolved) otherwise. Entries are separated by commas or
 * newlines; blank lines and '#' comments (as in getfacl output) are skipped.
 */
export function parseAclText(text: string, options: AclTextOptions): AclEntry[] {
  const entries: AclEntry[] = [];
  for (const raw of text.split(/[,\n]/)) {
    const entryText = raw.trim();
    if (entryText === '' || entryText.startsWith('#')) continue;

    const parts = entryText.split(':');
    if (parts.length !== 3) throw new Error(`ACL entry '${entryText}' is not of the form type:qualifier:permissions`);
    const [word = '', qualifier = '', permissions = ''] = parts.map((part) => part.trim());

    const kind = TAG_WORDS[word];
    if (kind === undefined) throw new Error(`ACL entry '${entryText}' has unknown type '${word}'`);
    const perms = parsePermissions(permissions, entryText, options);

    if (kind === 'mask' || kind === 'other') {
      if (qualifier !== '') throw new Error(`ACL entry '${entryText}': ${kind} entries take no qualifier`);
      entries.push({ tag: kind, ...perms });
    } else if (qualifier === '') {
      entries.push({ tag: kind === 'user' ? 'user_obj' : 'group_obj', ...perms });
    } else if (/^\d+$/.test(qualifier)) {
      entries.push({ tag: kind, id: Number(qualifier), ...perms });
    } else {
      entries.push({ tag: kind, qualifier, ...perms });
    }
  }
  return entries;
}

/**
 * Parses ACL text and resolves account names to ids. Throws when a name has no account, naming the
 * entry; numeric qualifiers are taken as ids as they are.
 */
export function aclFromText(text: string, options: AclTextOptions): AclEntry[] {
  const entries = parseAclText(text, options);
  const wanted = (database: AccountDatabase): string[] =>
    entries.filter((e) => hasQualifier(e) && e.id === undefined && databaseFor(e.tag) === database).map((e) => e.qualifier ?? '');
  const ids = {
    passwd: lookupAccountsSync('passwd', wanted('passwd')).byName,
    group: lookupAccountsSync('group', wanted('group')).byName,
  };

  return entries.map((entry) => {
    if (!hasQualifier(entry) || entry.id !== undefined) return entry;
    const name = entry.qualifier ?? '';
    const id = ids[databaseFor(entry.tag)].get(name);
    if (id === undefined) {
      const what = entry.tag === 'user' ? 'user' : 'group';
      throw new Error(`ACL entry '${entry.tag}:${name}:${permissionText(entry)}' names unknown ${what} '${name}'`);
    }
    return { ...entry, id };
  });
}

interface AccountIndex {
  readonly byName: ReadonlyMap<string, number>;
  readonly byId: ReadonlyMap<number, string>;
}

// getent prints one "name:password:id:..." line per key it found, and exits 2 when some key was not
// found; both databases keep the name first and the id third.
function parseGetent(stdout: string): AccountIndex {
  const byName = new Map<string, number>();
  const byId = new Map<number, string>();
  for (const line of stdout.split('\n')) {
    const [name, , idText] = line.split(':');
    if (!name || idText === undefined || !/^\d+$/.test(idText)) continue;
    byName.set(name, Number(idText));
    if (!byId.has(Number(idText))) byId.set(Number(idText), name);
  }
  return { byName, byId };
}

const EMPTY_INDEX: AccountIndex = { byName: new Map(), byId: new Map() };

/** Looks keys (names or numeric ids) up in one account database, in a single getent call. */
export function lookupAccountsSync(database: AccountDatabase, keys: readonly (string | number)[]): AccountIndex {
  if (keys.length === 0) return EMPTY_INDEX;
  const result = execaSync('getent', [database, '--', ...new Set(keys.map(String))], { reject: false });
  return parseGetent(typeof result.stdout === 'string' ? result.stdout : '');
}

export async function lookupAccounts(database: AccountDatabase, keys: readonly (string | number)[]): Promise<AccountIndex> {
  if (keys.length === 0) return EMPTY_INDEX;
  const result = await execa('getent', [database, '--', ...new Set(keys.map(String))], { reject: false });
  return parseGetent(typeof result.stdout === 'string' ? result.stdout : '');
}

function namedIds(entries: readonly AclEntry[], tag: 'user' | 'group'): number[] {
  return entries.filter((e) => e.tag === tag && e.id !== undefined).map((e) => e.id as number);
}

function withQualifiers(entries: AclEntry[], users: AccountIndex, groups: AccountIndex): AclEntry[] {
  return entries.map((entry) => {
    if (!hasQualifier(entry) || entry.id === undefined) return entry;
    const name = (entry.tag === 'user' ? users : groups).byId.get(entry.id);
    return name === undefined ? entry : { ...entry, qualifier: name };
  });
}

/** Adds account names to named entries whose id has an account; others keep qualifier undefined. */
export async function resolveQualifiers(entries: AclEntry[]): Promise<AclEntry[]> {
  const [users, groups] = await Promise.all([
    lookupAccounts('passwd', namedIds(entries, 'user')),
    lookupAccounts('group', namedIds(entries, 'group')),
  ]);
  return withQualifiers(entries, users, groups);
}

export function resolveQualifiersSync(entries: AclEntry[]): AclEntry[] {
  return withQualifiers(
    entries,
    lookupAccountsSync('passwd', namedIds(entries, 'user')),
    lookupAccountsSync('group', namedIds(entries, 'group')),
  );
}
