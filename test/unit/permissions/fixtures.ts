// Shared fixtures for the permission unit tests: a config, a made-up account database, and builders
// for actual states. Nothing here touches the file system.

import { parseConfig } from '../../../src/config-load.js';
import type { ShuttleConfig } from '../../../src/config.js';
import type { AclEntry } from '../../../src/native.js';
import { snapshotFrom, type AccountsSnapshot, type GroupAccount, type UserAccount } from '../../../src/permissions/accounts.js';
import type { PathState } from '../../../src/permissions/inspect.js';
import { buildPermissionModel, minimalAcl, type ManagedPath, type PermissionModel } from '../../../src/permissions/model.js';

export const GID = {
  root: 0,
  users: 100,
  shuttle_owners: 2001,
  shuttle_samba_in_users: 2002,
  shuttle_out_users: 2003,
  shuttle_log_owners: 2004,
  shuttle_config_readers: 2005,
} as const;

export const UID = { root: 0, shuttle_runner: 1001, alice: 1002, bob: 1003 } as const;

export const USERS: UserAccount[] = [
  { name: 'root', uid: UID.root, gid: GID.root, shell: '/bin/bash' },
  { name: 'shuttle_runner', uid: UID.shuttle_runner, gid: GID.shuttle_owners, shell: '/usr/sbin/nologin' },
  { name: 'alice', uid: UID.alice, gid: GID.users, shell: '/usr/sbin/nologin' },
  { name: 'bob', uid: UID.bob, gid: GID.users, shell: '/bin/false' },
];

export const GROUPS: GroupAccount[] = [
  { name: 'root', gid: GID.root, members: [] },
  { name: 'users', gid: GID.users, members: [] },
  { name: 'shuttle_owners', gid: GID.shuttle_owners, members: [] },
  { name: 'shuttle_samba_in_users', gid: GID.shuttle_samba_in_users, members: ['alice'] },
  { name: 'shuttle_out_users', gid: GID.shuttle_out_users, members: ['bob'] },
  { name: 'shuttle_log_owners', gid: GID.shuttle_log_owners, members: ['shuttle_runner'] },
  { name: 'shuttle_config_readers', gid: GID.shuttle_config_readers, members: ['shuttle_runner'] },
];

export const ACCOUNTS: AccountsSnapshot = snapshotFrom(USERS, GROUPS);

export const CONFIG_TEXT = `paths:
  source_path: /srv/shuttle/in
  destination_path: /srv/shuttle/out
  quarantine_path: /srv/shuttle/quarantine
  hazard_archive_path: /srv/shuttle/hazard
  log_path: /var/log/shuttle
  hazard_encryption_key_path: /etc/shuttle/hazard-public.asc
  ledger_file_path: /etc/shuttle/ledger.yaml
scanners:
  clamd: { socket: /run/clamav/clamd.ctl }
`;

export function config(extra = ''): ShuttleConfig {
  return parseConfig(CONFIG_TEXT + extra, '/etc/shuttle/test.yaml');
}

export function model(extra = '', accounts: AccountsSnapshot = ACCOUNTS): PermissionModel {
  const built = buildPermissionModel(config(extra), accounts);
  if (built.problems.length > 0) throw new Error(`unexpected model problems: ${JSON.stringify(built.problems)}`);
  return built.model;
}

export function managed(key: ManagedPath['key'], extra = ''): ManagedPath {
  const found = model(extra).paths.find((p) => p.key === key);
  if (found === undefined) throw new Error(`no ${key} in the model`);
  return found;
}

/** Entry shorthand: e('group', 'rwx', 2002). */
export function e(tag: AclEntry['tag'], perms: string, id?: number): AclEntry {
  return { tag, ...(id === undefined ? {} : { id }), read: perms.includes('r'), write: perms.includes('w'), execute: perms.includes('x') };
}

let inode = 1;

export function state(target: string, fields: Partial<Omit<PathState, 'status' | 'path'>> & { type: PathState['type'] }): PathState {
  const mode = fields.mode ?? 0o660;
  return {
    status: 'present',
    path: target,
    dev: 1,
    ino: inode++,
    nlink: 1,
    uid: 0,
    gid: 0,
    mode,
    acl: fields.type === 'symlink' || fields.type === 'special' ? null : { access: minimalAcl(mode), defaultAcl: [] },
    ...fields,
  };
}

/** The actual state that matches a managed path exactly. */
export function conforming(desired: ManagedPath): PathState {
  return state(desired.path, {
    type: desired.type,
    uid: desired.owner.id,
    gid: desired.group.id,
    mode: desired.mode,
    acl: { access: desired.access.map((x) => ({ ...x })), defaultAcl: desired.defaultAcl.map((x) => ({ ...x })) },
  });
}
