import { describe, expect, it } from 'vitest';

import { ConfigError } from '../../../src/config.js';
import { snapshotFrom } from '../../../src/permissions/accounts.js';
import { aclText } from '../../../src/permissions/checks.js';
import { buildPermissionModel, fileAclFor, statModeOf, withComputedMask } from '../../../src/permissions/model.js';
import { ACCOUNTS, GID, GROUPS, USERS, config, e, managed, model } from './fixtures.js';

describe('buildPermissionModel: the shipped model', () => {
  it('resolves owners and groups to ids and writes the whole access ACL, mask included', () => {
    const source = managed('source_path');
    expect(source).toMatchObject({ path: '/srv/shuttle/in', type: 'directory', owner: { name: 'root', id: 0 }, group: { name: 'shuttle_owners', id: GID.shuttle_owners } });
    expect(source.mode).toBe(0o2770);
    // X on a directory is execute; the mask is the union of the group class, as setfacl computes it.
    expect(aclText(source.access, ACCOUNTS)).toBe('user::rwx,group::rwx,group:shuttle_samba_in_users:rwx,mask::rwx,other::---');
    // In a default ACL X is execute too: whoever makes a folder in the share can enter it, and so can the inbound group.
    expect(aclText(source.defaultAcl, ACCOUNTS)).toBe('user::rwx,group::rw-,group:shuttle_samba_in_users:rwx,mask::rwx,other::---');
    const destination = managed('destination_path');
    expect(aclText(destination.access, ACCOUNTS)).toBe('user::rwx,group::rwx,group:shuttle_out_users:rwx,mask::rwx,other::---');
    expect(aclText(destination.defaultAcl, ACCOUNTS)).toBe('user::rw-,group::rw-,group:shuttle_out_users:r-x,mask::rwx,other::---');
  });

  it('gives data directories a contents model: subdirectories like the directory, files at most 0660 with the named default entries', () => {
    const destination = managed('destination_path');
    expect(destination.contents).toMatchObject({ key: 'destination_path', root: '/srv/shuttle/out', group: { id: GID.shuttle_owners }, fileMaxMode: 0o660 });
    expect(destination.contents?.directory).toEqual({ mode: destination.mode, access: destination.access, defaultAcl: destination.defaultAcl });
    // Released files are readable by the outbound group; files in source_path stay writable for the inbound one. Never execute.
    expect(destination.contents?.fileNamedEntries).toEqual([e('group', 'r', GID.shuttle_out_users)]);
    expect(managed('source_path').contents?.fileNamedEntries).toEqual([e('group', 'rw', GID.shuttle_samba_in_users)]);
    expect(managed('quarantine_path').contents?.fileNamedEntries).toEqual([]);
    expect(managed('log_path').contents).toBeNull();
    expect(managed('ledger_file_path').contents).toBeNull();
  });

  it('shows the mask in the expected stat mode of a file with a named entry (0640 + rw- entry is 0660)', () => {
    const ledger = managed('ledger_file_path');
    expect(ledger.type).toBe('file');
    expect(aclText(ledger.access, ACCOUNTS)).toBe('user::rw-,group::r--,group:shuttle_log_owners:rw-,mask::rw-,other::---');
    expect(ledger.mode).toBe(0o660);
    expect(managed('hazard_encryption_key_path').mode).toBe(0o640);
  });

  it('fills base entries a default ACL leaves out from the access ACL, and adds its mask', () => {
    const source = managed(
      'source_path',
      `permissions:\n  source_path: { owner: root, group: shuttle_owners, mode: "2770", default_acl: ["group:shuttle_out_users:r-X"] }\n`,
    );
    expect(aclText(source.defaultAcl, ACCOUNTS)).toBe('user::rwx,group::rwx,group:shuttle_out_users:r-x,mask::rwx,other::---');
    // Files carry the named default entries, without execute.
    expect(aclText(source.contents?.fileNamedEntries ?? [], ACCOUNTS)).toBe('group:shuttle_out_users:r--');
  });

  it('keeps an explicit mask, and takes numeric qualifiers as ids', () => {
    const log = managed('log_path', `permissions:\n  log_path: { owner: "0", group: shuttle_log_owners, mode: "2770", acl: ["user:4242:rwx", "mask::r-x"] }\n`);
    expect(log.owner).toEqual({ name: '0', id: 0 });
    expect(aclText(log.access, ACCOUNTS)).toBe('user::rwx,user:4242:rwx,group::rwx,mask::r-x,other::---');
    expect(log.mode).toBe(0o2750);
  });

  it('honours file_mode for the contents of a data directory', () => {
    const hazard = managed('hazard_archive_path', `permissions:\n  hazard_archive_path: { owner: root, group: shuttle_owners, mode: "2770", file_mode: "0640" }\n`);
    expect(hazard.contents?.fileMaxMode).toBe(0o640);
  });

  it('manages only the listed paths when the config has a permissions section', () => {
    const listed = model(`permissions:\n  quarantine_path: { owner: root, group: shuttle_owners, mode: "2770" }\n`);
    expect(listed.paths.map((p) => p.key)).toEqual(['quarantine_path']);
  });

  it('names the Samba groups (named groups in the shares\' access ACLs) and every group of the model', () => {
    const built = model();
    expect([...built.sambaGroups].sort()).toEqual(['shuttle_out_users', 'shuttle_samba_in_users']);
    expect([...built.modelGroups].sort()).toEqual([
      'shuttle_config_readers',
      'shuttle_log_owners',
      'shuttle_out_users',
      'shuttle_owners',
      'shuttle_samba_in_users',
    ]);
  });
});

describe('buildPermissionModel: problems', () => {
  it('reports each missing account once, with every key that needs it, and leaves those paths out', () => {
    const accounts = snapshotFrom(USERS, GROUPS.filter((g) => g.name !== 'shuttle_owners'));
    const { model: built, problems } = buildPermissionModel(config(), accounts);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatchObject({ path: 'group:shuttle_owners', check: 'account-missing', kind: 'unchecked', fixable: false });
    expect(problems[0]?.found).toContain('permissions.source_path, permissions.destination_path, permissions.quarantine_path, permissions.hazard_archive_path');
    expect(built.paths.map((p) => p.key)).toEqual(['log_path', 'hazard_encryption_key_path', 'ledger_file_path']);
  });

  it('reports a named ACL entry whose account is missing', () => {
    const { problems } = buildPermissionModel(config(`permissions:\n  log_path: { owner: root, group: shuttle_log_owners, mode: "2770", acl: ["user:nobody_here:r--"] }\n`), ACCOUNTS);
    expect(problems.map((p) => p.path)).toEqual(['user:nobody_here']);
  });

  it('refuses base entries that contradict the mode', () => {
    const { model: built, problems } = buildPermissionModel(
      config(`permissions:\n  log_path: { owner: root, group: shuttle_log_owners, mode: "2770", acl: ["other::r--"] }\n`),
      ACCOUNTS,
    );
    expect(problems[0]).toMatchObject({ path: 'permissions.log_path', check: 'model', kind: 'unchecked' });
    expect(problems[0]?.found).toContain('contradicts mode "2770"');
    expect(built.paths).toHaveLength(0);
  });
});

describe('config keys for permissions', () => {
  it('defaults permissions_backend to auto and accepts native and setfacl', () => {
    expect(config().permissionsBackend).toBe('auto');
    expect(config('permissions_backend: setfacl\n').permissionsBackend).toBe('setfacl');
    expect(config('permissions_backend: native\n').permissionsBackend).toBe('native');
    expect(() => config('permissions_backend: getfacl\n')).toThrow(ConfigError);
    expect(() => config('permissions_backend: getfacl\n')).toThrow(/permissions_backend: expected one of auto, native, setfacl/);
  });

  it('accepts file_mode only on data directories, quoted, and never beyond 0660', () => {
    const spec = (key: string, mode: string): string => `permissions:\n  ${key}: { owner: root, group: g, mode: "2770", file_mode: ${mode} }\n`;
    expect(config(spec('source_path', '"0600"')).permissions.source_path?.fileMode).toBe(0o600);
    expect(config().permissions.source_path?.fileMode).toBeUndefined();
    expect(() => config(spec('log_path', '"0600"'))).toThrow(/permissions\.log_path\.file_mode: applies only to the data directories/);
    expect(() => config(spec('source_path', '660'))).toThrow(/file_mode: must be a quoted octal string/);
    expect(() => config(spec('source_path', '"0664"'))).toThrow(/file_mode: "0664" allows more than "0660"/);
    expect(() => config(spec('source_path', '"0770"'))).toThrow(/allows more than/);
  });
});

describe('ACL arithmetic', () => {
  it('computes a missing mask from the group class only', () => {
    expect(aclText(withComputedMask([e('user_obj', 'rwx'), e('group_obj', 'r'), e('group', 'w', 7), e('other', 'rwx')]), ACCOUNTS)).toBe(
      'user::rwx,group::r--,group:7:-w-,mask::rw-,other::rwx',
    );
  });

  it('reads the stat mode off an ACL: the group digit is the mask when there is one', () => {
    expect(statModeOf([e('user_obj', 'rw'), e('group_obj', 'r'), e('group', 'rw', 7), e('mask', 'rw'), e('other', '')], 0o2000)).toBe(0o2660);
    expect(statModeOf([e('user_obj', 'rw'), e('group_obj', 'r'), e('other', 'r')], 0)).toBe(0o644);
  });

  it('derives a file ACL that never loosens the owner or group and carries the named default entries', () => {
    const contents = { fileMaxMode: 0o660, fileNamedEntries: [e('group', 'r', GID.shuttle_out_users)] };
    expect(aclText(fileAclFor(contents, [e('user_obj', 'rwx'), e('group_obj', 'r'), e('other', 'rwx')]), ACCOUNTS)).toBe(
      'user::rw-,group::r--,group:shuttle_out_users:r--,mask::r--,other::---',
    );
    expect(aclText(fileAclFor({ fileMaxMode: 0o600, fileNamedEntries: [] }, [e('user_obj', 'rw'), e('group_obj', 'rw'), e('other', '')]), ACCOUNTS)).toBe(
      'user::rw-,group::---,other::---',
    );
  });

  it('keeps for the owning group only what the mask let through, when the mask is raised for the named entries', () => {
    // A file made 0640 in source_path: the kernel leaves group::rw- behind a mask of r--.
    const contents = { fileMaxMode: 0o660, fileNamedEntries: [e('group', 'rw', GID.shuttle_samba_in_users)] };
    const made0640 = [e('user_obj', 'rw'), e('group_obj', 'rw'), e('group', 'rwx', GID.shuttle_samba_in_users), e('mask', 'r'), e('other', '')];
    const wanted = fileAclFor(contents, made0640);
    expect(aclText(wanted, ACCOUNTS)).toBe('user::rw-,group::r--,group:shuttle_samba_in_users:rwx,mask::rw-,other::---');
    expect(statModeOf(wanted, 0)).toBe(0o660);
    // Without a mask the owning group's entry is the group digit itself.
    expect(aclText(fileAclFor(contents, [e('user_obj', 'rw'), e('group_obj', 'r'), e('other', 'r')]), ACCOUNTS)).toBe(
      'user::rw-,group::r--,group:shuttle_samba_in_users:rw-,mask::rw-,other::---',
    );
  });

  it('keeps an execute bit the new mask hides on a named entry that is otherwise right, and replaces an entry that is not', () => {
    const contents = { fileMaxMode: 0o660, fileNamedEntries: [e('group', 'r', GID.shuttle_out_users)] };
    // As the kernel makes a file from a default ACL with group:shuttle_out_users:r-X, then made executable.
    const inherited = [e('user_obj', 'rwx'), e('group_obj', 'rw'), e('group', 'rx', GID.shuttle_out_users), e('mask', 'rwx'), e('other', '')];
    const kept = fileAclFor(contents, inherited);
    expect(aclText(kept, ACCOUNTS)).toBe('user::rw-,group::rw-,group:shuttle_out_users:r-x,mask::rw-,other::---');
    expect(statModeOf(kept, 0)).toBe(0o660);
    const wrong = [e('user_obj', 'rw'), e('group_obj', 'rw'), e('group', 'rwx', GID.shuttle_out_users), e('mask', 'rw'), e('other', '')];
    expect(aclText(fileAclFor(contents, wrong), ACCOUNTS)).toBe('user::rw-,group::rw-,group:shuttle_out_users:r--,mask::rw-,other::---');
  });
});
