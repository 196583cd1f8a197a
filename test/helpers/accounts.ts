// Real users and groups for permission tests (needs root). The names of the shipped permission model
// (shuttle_owners, shuttle_samba_in_users, ...) are created when absent and left in place afterwards:
// other test files, possibly running at the same moment, rely on the same fixed names, and removing
// them under their feet would break those runs. They have no home and no login shell. Accounts with
// names of a test's own making (throwaway users) are removed by the test that made them.

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

export const MODEL_GROUPS = [
  'shuttle_owners',
  'shuttle_samba_in_users',
  'shuttle_out_users',
  'shuttle_log_owners',
  'shuttle_config_readers',
] as const;

export type ModelGroup = (typeof MODEL_GROUPS)[number];

const NOLOGIN = '/usr/sbin/nologin';

export interface ModelAccounts {
  readonly gids: Readonly<Record<ModelGroup, number>>;
  /** The service account: shuttle_owners, shuttle_log_owners, shuttle_config_readers. */
  readonly runner: { readonly name: string; readonly uid: number };
  /** A Samba user of the inbound share (shuttle_samba_in_users only). */
  readonly inUser: { readonly name: string; readonly uid: number };
  /** A Samba user of the outbound share (shuttle_out_users only). */
  readonly outUser: { readonly name: string; readonly uid: number };
}

function getent(database: 'passwd' | 'group', name: string): string[] | null {
  try {
    return execFileSync('getent', [database, name], { encoding: 'utf8' }).trim().split(':');
  } catch {
    return null;
  }
}

export function gidOf(group: string): number {
  const fields = getent('group', group);
  if (fields === null) throw new Error(`no such group: ${group}`);
  return Number(fields[2]);
}

export function uidOf(user: string): number {
  const fields = getent('passwd', user);
  if (fields === null) throw new Error(`no such user: ${user}`);
  return Number(fields[2]);
}

/** Creates the group unless it exists; true when this call created it. */
export function ensureGroup(name: string): boolean {
  if (getent('group', name) !== null) return false;
  // -f: succeed when a concurrent run created it first.
  execFileSync('groupadd', ['-f', name]);
  return true;
}

/**
 * Creates a user without home or login shell (unless `shell` says otherwise), in `groups` as
 * supplementary groups, unless it exists. true when this call created it.
 */
export function ensureUser(name: string, groups: readonly string[], shell = NOLOGIN): boolean {
  if (getent('passwd', name) !== null) return false;
  try {
    execFileSync('useradd', ['-M', '-N', '-s', shell, ...(groups.length > 0 ? ['-G', groups.join(',')] : []), name], { stdio: 'pipe' });
  } catch (error) {
    // Exit status 9: created meanwhile by a concurrent run.
    if ((error as { status?: number }).status !== 9) throw error;
    return false;
  }
  return true;
}

/** The accounts the shipped model names, plus one user per role; idempotent. */
export function ensureModelAccounts(): ModelAccounts {
  for (const group of MODEL_GROUPS) ensureGroup(group);
  ensureUser('shuttle_runner', ['shuttle_owners', 'shuttle_log_owners', 'shuttle_config_readers']);
  ensureUser('shuttle_test_in', ['shuttle_samba_in_users']);
  ensureUser('shuttle_test_out', ['shuttle_out_users']);
  const gids = Object.fromEntries(MODEL_GROUPS.map((group) => [group, gidOf(group)])) as Record<ModelGroup, number>;
  const account = (name: string): { name: string; uid: number } => ({ name, uid: uidOf(name) });
  return { gids, runner: account('shuttle_runner'), inUser: account('shuttle_test_in'), outUser: account('shuttle_test_out') };
}

/** A user with a name of its own, for one test; remove it with removeUser. */
export function createThrowawayUser(groups: readonly string[], shell = NOLOGIN): { name: string; uid: number } {
  const name = `shuttle_t${randomBytes(3).toString('hex')}`;
  ensureUser(name, groups, shell);
  return { name, uid: uidOf(name) };
}

export function removeUser(name: string): void {
  execFileSync('userdel', [name], { stdio: 'pipe' });
}
