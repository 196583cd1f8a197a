// The accounts the permission model names: a snapshot of the user and group databases (read once,
// through getent, so NSS sources such as LDAP or winbind count), and the pure checks on it: Samba users
// have no login shell and belong to no shuttle group but their own.

import path from 'node:path';
import { execa } from 'execa';

import { drift, type Finding } from './finding.js';

export interface UserAccount {
  readonly name: string;
  readonly uid: number;
  /** Primary group. */
  readonly gid: number;
  readonly shell: string;
}

export interface GroupAccount {
  readonly name: string;
  readonly gid: number;
  /** Supplementary members, as listed in the group database. */
  readonly members: readonly string[];
}

export interface AccountsSnapshot {
  readonly usersByName: ReadonlyMap<string, UserAccount>;
  readonly usersById: ReadonlyMap<number, UserAccount>;
  readonly groupsByName: ReadonlyMap<string, GroupAccount>;
  readonly groupsById: ReadonlyMap<number, GroupAccount>;
}

/** Shells that refuse an interactive login. */
const NO_LOGIN_SHELLS: ReadonlySet<string> = new Set(['nologin', 'false']);

/** Group names with this prefix belong to Shuttle even when the model does not name them. */
export const SHUTTLE_GROUP_PREFIX = 'shuttle_';

export function snapshotFrom(users: readonly UserAccount[], groups: readonly GroupAccount[]): AccountsSnapshot {
  const usersByName = new Map<string, UserAccount>();
  const usersById = new Map<number, UserAccount>();
  for (const user of users) {
    if (!usersByName.has(user.name)) usersByName.set(user.name, user);
    if (!usersById.has(user.uid)) usersById.set(user.uid, user);
  }
  const groupsByName = new Map<string, GroupAccount>();
  const groupsById = new Map<number, GroupAccount>();
  for (const group of groups) {
    if (!groupsByName.has(group.name)) groupsByName.set(group.name, group);
    if (!groupsById.has(group.gid)) groupsById.set(group.gid, group);
  }
  return { usersByName, usersById, groupsByName, groupsById };
}

export function parsePasswd(text: string): UserAccount[] {
  const users: UserAccount[] = [];
  for (const line of text.split('\n')) {
    const [name, , uid, gid, , , shell] = line.split(':');
    if (!name || !isId(uid) || !isId(gid)) continue;
    users.push({ name, uid: Number(uid), gid: Number(gid), shell: shell ?? '' });
  }
  return users;
}

export function parseGroups(text: string): GroupAccount[] {
  const groups: GroupAccount[] = [];
  for (const line of text.split('\n')) {
    const [name, , gid, members] = line.split(':');
    if (!name || !isId(gid)) continue;
    groups.push({ name, gid: Number(gid), members: (members ?? '').split(',').filter(Boolean) });
  }
  return groups;
}

function isId(text: string | undefined): text is string {
  return text !== undefined && /^\d+$/.test(text);
}

async function getent(database: 'passwd' | 'group', keys: readonly string[] = []): Promise<string> {
  // Exit status 2 means some key was not found; the lines for the keys that were are still printed.
  const result = await execa('getent', [database, ...(keys.length > 0 ? ['--', ...keys] : [])], { reject: false });
  if (result.exitCode !== 0 && result.exitCode !== 2) {
    throw new Error(`getent ${database} failed (exit status ${result.exitCode}): ${String(result.stderr).trim()}`);
  }
  return typeof result.stdout === 'string' ? result.stdout : '';
}

/**
 * Every account the databases will enumerate, plus the named ones looked up one by one (directory
 * services often refuse enumeration but answer direct queries).
 */
export async function readAccounts(wanted: { users: readonly string[]; groups: readonly string[] }): Promise<AccountsSnapshot> {
  const [allUsers, allGroups] = await Promise.all([getent('passwd'), getent('group')]);
  const users = parsePasswd(allUsers);
  const groups = parseGroups(allGroups);
  const knownUsers = new Set(users.map((user) => user.name));
  const knownGroups = new Set(groups.map((group) => group.name));
  const missingUsers = [...new Set(wanted.users)].filter((name) => !knownUsers.has(name));
  const missingGroups = [...new Set(wanted.groups)].filter((name) => !knownGroups.has(name));
  if (missingUsers.length > 0) users.push(...parsePasswd(await getent('passwd', missingUsers)));
  if (missingGroups.length > 0) groups.push(...parseGroups(await getent('group', missingGroups)));
  return snapshotFrom(users, groups);
}

export function userLabel(accounts: AccountsSnapshot, uid: number): string {
  return accounts.usersById.get(uid)?.name ?? String(uid);
}

export function groupLabel(accounts: AccountsSnapshot, gid: number): string {
  return accounts.groupsById.get(gid)?.name ?? String(gid);
}

/** What the account checks need from the model. */
export interface AccountPolicy {
  /** Groups of Samba users (named in the access ACLs of source_path and destination_path). */
  readonly sambaGroups: readonly string[];
  /** Every group the model names; with the shuttle_ prefix, these are "shuttle groups". */
  readonly modelGroups: readonly string[];
}

/**
 * Members of each Samba group (supplementary members and users whose primary group it is) must have no
 * login shell and belong to no other shuttle group. Missing groups are the model's to report.
 */
export function checkAccounts(policy: AccountPolicy, accounts: AccountsSnapshot): Finding[] {
  const findings: Finding[] = [];
  const reported = new Set<string>();
  const modelGroups = new Set(policy.modelGroups);
  const isShuttleGroup = (name: string): boolean => modelGroups.has(name) || name.startsWith(SHUTTLE_GROUP_PREFIX);
  const groupsOf = membershipIndex(accounts);

  for (const sambaGroupName of policy.sambaGroups) {
    const sambaGroup = accounts.groupsByName.get(sambaGroupName);
    if (sambaGroup === undefined) continue;
    for (const user of membersOf(sambaGroup, accounts)) {
      const subject = `user:${user.name}`;
      const shell = path.basename(user.shell);
      if (!NO_LOGIN_SHELLS.has(shell) && !reported.has(`${subject} shell`)) {
        reported.add(`${subject} shell`);
        findings.push(
          drift(subject, 'login-shell', 'no login shell (nologin or false)', `${user.shell || '(empty: /bin/sh)'}, member of ${sambaGroupName}`, 'high', false),
        );
      }
      for (const other of groupsOf.get(user.name) ?? []) {
        if (other === sambaGroupName || !isShuttleGroup(other)) continue;
        const key = `${subject} ${[sambaGroupName, other].sort().join(' ')}`;
        if (reported.has(key)) continue;
        reported.add(key);
        findings.push(drift(subject, 'extra-group', `only ${sambaGroupName} among shuttle groups`, `also in ${other}`, 'high', false));
      }
    }
  }
  return findings;
}

function membersOf(group: GroupAccount, accounts: AccountsSnapshot): UserAccount[] {
  const members = new Map<string, UserAccount>();
  for (const name of group.members) {
    const user = accounts.usersByName.get(name);
    // A listed member without a passwd entry cannot log in; nothing to check.
    if (user !== undefined) members.set(name, user);
  }
  for (const user of accounts.usersByName.values()) {
    if (user.gid === group.gid) members.set(user.name, user);
  }
  return [...members.values()];
}

/** Group names per user name, primary group included. */
function membershipIndex(accounts: AccountsSnapshot): Map<string, Set<string>> {
  const index = new Map<string, Set<string>>();
  const add = (user: string, group: string): void => {
    let groups = index.get(user);
    if (groups === undefined) index.set(user, (groups = new Set()));
    groups.add(group);
  };
  for (const group of accounts.groupsByName.values()) {
    for (const member of group.members) add(member, group.name);
  }
  for (const user of accounts.usersByName.values()) {
    const primary = accounts.groupsById.get(user.gid);
    if (primary !== undefined) add(user.name, primary.name);
  }
  return index;
}
