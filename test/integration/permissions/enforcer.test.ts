// The enforcer on a real tree, with real users: directories and files that Samba users create or move
// into the shares are brought to the model while it runs; files the daemon moves get group, ACL and
// mode; the managed paths are fixed at start, or the start fails naming path and problem. Same suite
// against both ACL backends. Runs as root.
import { closeSync, constants as fsc, mkdirSync, openSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';

import { Zone } from '../../../src/zone.js';
import { NativeAclBackend, SetfaclBackend, type AclBackend } from '../../../src/permissions/acl-backend.js';
import { PermissionEnforcementError, PermissionEnforcer, inheritForFile, type EnforcerLogger } from '../../../src/permissions/enforcer.js';
import { ensureModelAccounts, type ModelAccounts } from '../../helpers/accounts.js';
import { buildModelTree, configOf, sh, type ModelTree } from './model-tree.js';

interface LogLine {
  readonly level: string;
  readonly message: string;
  readonly meta: Record<string, unknown>;
}

function recordingLogger(lines: LogLine[]): EnforcerLogger {
  const at =
    (level: string) =>
    (message: unknown, meta?: unknown): EnforcerLogger => {
      lines.push({ level, message: String(message), meta: (meta ?? {}) as Record<string, unknown> });
      return logger;
    };
  const logger = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') } as unknown as EnforcerLogger;
  return logger;
}

/** Polls until `condition` holds; fails after `timeoutMs`. Returns the time it took. */
async function within(timeoutMs: number, condition: () => boolean): Promise<number> {
  const started = Date.now();
  while (!condition()) {
    if (Date.now() - started > timeoutMs) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return Date.now() - started;
}

const modeOf = (target: string): string => (statSync(target).mode & 0o7777).toString(8).padStart(4, '0');
const acl = (target: string): string => sh('getfacl', '--omit-header', '--absolute-names', '--no-effective', target).trim().split('\n').join(',');

const BACKENDS: [string, () => AclBackend][] = [
  ['native', () => new NativeAclBackend()],
  ['setfacl', () => new SetfaclBackend()],
];

let accounts: ModelAccounts;

beforeAll(() => {
  accounts = ensureModelAccounts();
});

describe.each(BACKENDS)('PermissionEnforcer with the %s backend', (_name, makeBackend) => {
  let tree: ModelTree;
  let lines: LogLine[];
  let enforcer: PermissionEnforcer;

  async function makeEnforcer(extraConfig = ''): Promise<PermissionEnforcer> {
    // The daemon's zone: the managed directories. create() lets the managed files through as well.
    const zone = new Zone([tree.source, tree.destination, tree.quarantine, tree.hazard, tree.log]);
    return PermissionEnforcer.create(configOf(tree, extraConfig), { logger: recordingLogger(lines), guard: zone, backend: makeBackend() });
  }

  beforeEach(async () => {
    tree = buildModelTree();
    lines = [];
    enforcer = await makeEnforcer();
  });

  afterEach(async () => {
    await enforcer.close();
    rmSync(tree.root, { recursive: true, force: true });
  });

  it('gives a directory a Samba user creates in source_path the mode and ACLs of its parent within a second, and logs each correction once', async () => {
    await enforcer.start();
    const created = path.join(tree.source, 'from-samba');
    sh('runuser', '-u', accounts.inUser.name, '--', 'mkdir', created);
    // The kernel gives it mode 2770, the named entry and the default ACL, but group::rw- from the default
    // ACL, where the model wants group::rwx on directories as on source_path itself.
    const elapsed = await within(1000, () => acl(created) === acl(path.join(tree.source, 'batch')));
    expect(elapsed).toBeLessThan(1000);
    expect(modeOf(created)).toBe('2770');
    expect(acl(created)).toContain('group::rwx');
    expect(statSync(created).uid).toBe(accounts.inUser.uid);
    expect(statSync(created).gid).toBe(accounts.gids.shuttle_owners);

    await new Promise((resolve) => setTimeout(resolve, 300));
    const corrections = lines.filter((line) => line.message === 'permission drift corrected' && line.meta.path === created);
    expect(corrections.length).toBeGreaterThan(0);
    const checks = corrections.map((line) => line.meta.check);
    expect(new Set(checks).size).toBe(checks.length);
    expect(corrections.find((line) => line.meta.check === 'acl-entry-permissions')?.meta).toMatchObject({ expected: 'group::rwx', found: 'group::rw-' });
    // The uploader can enter the folder it made and put a file in it.
    sh('runuser', '-u', accounts.inUser.name, '--', 'sh', '-c', `echo data > ${created}/inside.csv`);
    expect(sh('cat', path.join(created, 'inside.csv'))).toBe('data\n');
  });

  it('corrects nested directories made at once (mkdir -p) and a file moved in with the wrong group and mode', async () => {
    await enforcer.start();
    const staging = path.join(tree.root, 'staging');
    mkdirSync(staging);
    sh('chown', accounts.inUser.name, staging);
    sh('runuser', '-u', accounts.inUser.name, '--', 'sh', '-c', `umask 022 && echo data > ${staging}/report.csv && chmod 0755 ${staging}/report.csv`);
    const nested = path.join(tree.destination, 'a', 'b', 'c');
    sh('mkdir', '-p', nested);
    sh('mv', path.join(staging, 'report.csv'), path.join(tree.source, 'report.csv'));

    await within(1000, () => ['a', 'a/b', 'a/b/c'].every((relative) => modeOf(path.join(tree.destination, relative)) === '2770'));
    expect(acl(nested)).toBe(acl(tree.destination));
    const moved = path.join(tree.source, 'report.csv');
    // It arrived 0755 without ACL: it gets the named entry of the default ACL (so the mask, and the group
    // digit, become rw-), while the owner and the owning group lose execute and keep no more than they had.
    await within(1000, () => statSync(moved).gid === accounts.gids.shuttle_owners && modeOf(moved) === '0660');
    expect(acl(moved)).toBe('user::rw-,group::r--,group:shuttle_samba_in_users:rw-,mask::rw-,other::---');
    expect(sh('cat', moved)).toBe('data\n');
  });

  it('looks again at a file it found right once, when its mode or its ACL changes later', async () => {
    await enforcer.start();
    const file = path.join(tree.destination, 'kept.csv');
    writeFileSync(file, 'data', { mode: 0o600 });
    sh('chmod', '0755', file);
    await within(2000, () => modeOf(file) !== '0755');
    const fixedMode = modeOf(file);
    const fixedAcl = acl(file);
    expect(fixedMode).not.toMatch(/[1357]/);
    // Remembered as right now. A mode change must still be seen...
    await new Promise((resolve) => setTimeout(resolve, 300));
    sh('chmod', '0777', file);
    await within(2000, () => modeOf(file) === fixedMode);
    // ...and so must an ACL change that leaves the mode as it is (-n: the mask is not recalculated).
    await new Promise((resolve) => setTimeout(resolve, 300));
    sh('setfacl', '-n', '-m', `u:${accounts.inUser.name}:rw-`, file);
    expect(modeOf(file)).toBe(fixedMode);
    await within(2000, () => acl(file) === fixedAcl);
  });

  it('enforceFile and enforceDirectory correct a path on demand and return what they corrected', async () => {
    const file = path.join(tree.source, 'b.csv');
    const aclBefore = acl(file);
    sh('chmod', '0775', file);
    sh('chgrp', 'users', file);
    const corrected = await enforcer.enforceFile(file);
    expect(corrected.map((f) => f.check).sort()).toEqual(['file-mode', 'group']);
    expect(modeOf(file)).toBe('0660');
    // group::r-- stays r--: raising the mask back to rw- for the named entry gives the owning group nothing.
    expect(acl(file)).toBe(aclBefore);
    expect(statSync(file).gid).toBe(accounts.gids.shuttle_owners);
    expect(await enforcer.enforceFile(file)).toEqual([]);

    const directory = path.join(tree.source, 'batch');
    sh('setfacl', '-k', directory);
    sh('chmod', 'g-s', directory);
    expect((await enforcer.enforceDirectory(directory)).map((f) => f.check).sort()).toEqual(['default-acl-missing', 'setgid']);
    expect(acl(directory)).toBe(acl(tree.source));
    // Outside the data directories nothing happens.
    expect(await enforcer.enforceFile(tree.key)).toEqual([]);
    // A path that is gone is not an error.
    expect(await enforcer.enforceFile(path.join(tree.source, 'gone.csv'))).toEqual([]);
  });

  it('leaves symlinks alone and says so', async () => {
    await enforcer.start();
    const link = path.join(tree.source, 'link');
    sh('ln', '-s', '/etc/shadow', link);
    const before = sh('stat', '-c', '%a %U:%G', '/etc/shadow');
    await within(1000, () => lines.some((line) => line.message === 'permission drift cannot be corrected' && line.meta.path === link));
    expect(sh('stat', '-c', '%a %U:%G', '/etc/shadow')).toBe(before);
  });

  it('applyAfterMove gives a moved file the directory group, mode 0660 and the directory default ACL, readable by the outbound group', async () => {
    const quarantined = path.join(tree.quarantine, 'item.data');
    writeFileSync(quarantined, 'clean bytes\n', { mode: 0o600 });
    sh('chgrp', 'root', quarantined);
    const released = path.join(tree.destination, 'released.csv');
    sh('mv', quarantined, released);
    await enforcer.applyAfterMove(released);
    expect(modeOf(released)).toBe('0660');
    expect(statSync(released).gid).toBe(accounts.gids.shuttle_owners);
    // group:shuttle_out_users:r-X in the default ACL: read, never execute.
    expect(acl(released)).toBe('user::rw-,group::rw-,group:shuttle_out_users:r--,mask::rw-,other::---');
    expect(sh('runuser', '-u', accounts.outUser.name, '--', 'cat', released)).toBe('clean bytes\n');
    expect(await enforcer.enforceFile(released)).toEqual([]);
  });

  it('applyAfterMove leaves a plain 0660 file where the default ACL names nobody, dropping entries it came with', async () => {
    await enforcer.close();
    const extra = `permissions:\n  destination_path: { owner: root, group: shuttle_owners, mode: "2770", acl: ["group:shuttle_out_users:rwX"], default_acl: ["user::rw-", "group::rw-", "other::---"] }\n`;
    enforcer = await makeEnforcer(extra);
    sh('setfacl', '-d', '--set', 'user::rw-,group::rw-,other::---', tree.destination);
    const quarantined = path.join(tree.quarantine, 'plain.data');
    writeFileSync(quarantined, 'x', { mode: 0o600 });
    sh('setfacl', '-m', `user:${accounts.outUser.name}:rwx`, quarantined);
    const released = path.join(tree.destination, 'plain.csv');
    sh('mv', quarantined, released);
    await enforcer.applyAfterMove(released);
    expect(acl(released)).toBe('user::rw-,group::rw-,other::---');
    expect(modeOf(released)).toBe('0660');
    expect(await enforcer.enforceFile(released)).toEqual([]);
  });

  it('applyAfterMove through an open descriptor, and a changed default ACL reaches the next moved file', async () => {
    const moveIn = (name: string): string => {
      const quarantined = path.join(tree.quarantine, `${name}.data`);
      writeFileSync(quarantined, name, { mode: 0o600 });
      sh('chgrp', 'root', quarantined);
      const released = path.join(tree.destination, name);
      sh('mv', quarantined, released);
      return released;
    };
    const first = moveIn('first.csv');
    const descriptor = openSync(first, fsc.O_RDONLY | fsc.O_NOFOLLOW);
    try {
      await enforcer.applyAfterMove(first, descriptor);
    } finally {
      closeSync(descriptor);
    }
    expect(modeOf(first)).toBe('0660');
    expect(statSync(first).gid).toBe(accounts.gids.shuttle_owners);
    expect(acl(first)).toBe('user::rw-,group::rw-,group:shuttle_out_users:r--,mask::rw-,other::---');

    // The directory's default ACL is remembered between moves; changing it must not leave the old one in use.
    sh('setfacl', '-d', '--set', 'user::rw-,group::rw-,other::---', tree.destination);
    const second = moveIn('second.csv');
    await enforcer.applyAfterMove(second);
    expect(acl(second)).toBe('user::rw-,group::rw-,other::---');
    expect(modeOf(second)).toBe('0660');
  });

  it('verifyAndFixManagedPaths fixes the managed paths at start and returns what it fixed', async () => {
    sh('chmod', '0755', tree.source);
    sh('chmod', 'o+r', tree.key);
    sh('setfacl', '-b', tree.ledger);
    const fixed = await enforcer.verifyAndFixManagedPaths();
    expect(new Set(fixed.map((f) => f.path))).toEqual(new Set([tree.source, tree.key, tree.ledger]));
    expect(modeOf(tree.source)).toBe('2770');
    expect(modeOf(tree.key)).toBe('0640');
    expect(acl(tree.ledger)).toContain('group:shuttle_log_owners:rw-');
    expect(await enforcer.verifyAndFixManagedPaths()).toEqual([]);
  });

  it('verifyAndFixManagedPaths refuses to start with a message that names the path and the problem', async () => {
    rmSync(tree.hazard, { recursive: true });
    const failure = await enforcer.verifyAndFixManagedPaths().catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(PermissionEnforcementError);
    expect((failure as Error).message).toContain(`${tree.hazard}: missing: expected directory (hazard_archive_path), found missing`);
  });

  it('refuses to be created when the model names an account that does not exist', async () => {
    const config = configOf(tree, 'permissions:\n  log_path: { owner: root, group: shuttle_no_such_group, mode: "2770" }\n');
    const failure = await PermissionEnforcer.create(config, { logger: recordingLogger(lines), guard: { assertWritable: () => undefined } }).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(PermissionEnforcementError);
    expect((failure as Error).message).toContain('group:shuttle_no_such_group: account-missing');
  });

  it('refuses, through the guard, to change anything outside the zone', async () => {
    const zone = new Zone([tree.destination]);
    const guarded = new PermissionEnforcer({
      model: enforcer.model,
      accounts: enforcer.accounts,
      backend: makeBackend(),
      logger: recordingLogger(lines),
      guard: zone,
    });
    const file = path.join(tree.source, 'b.csv');
    sh('chmod', '0664', file);
    expect(await guarded.enforceFile(file)).toEqual([]);
    expect(modeOf(file)).toBe('0664');
    expect(lines.some((line) => line.message === 'cannot correct permissions' && String(line.meta.error).includes('outside the directories shuttle manages'))).toBe(true);
  });
});

describe('inheritForFile', () => {
  it('limits owner, mask and other by the mode and drops execute from named entries, as a new file would get', () => {
    const entry = (tag: 'user_obj' | 'group_obj' | 'group' | 'mask' | 'other', bits: string, id?: number) => ({
      tag,
      ...(id === undefined ? {} : { id }),
      read: bits.includes('r'),
      write: bits.includes('w'),
      execute: bits.includes('x'),
    });
    expect(inheritForFile([entry('user_obj', 'rwx'), entry('group_obj', 'rwx'), entry('group', 'rwx', 9), entry('mask', 'rwx'), entry('other', 'rwx')], 0o660)).toEqual([
      entry('user_obj', 'rw'),
      entry('group_obj', 'rw'),
      entry('group', 'rw', 9),
      entry('mask', 'rw'),
      entry('other', ''),
    ]);
  });
});
