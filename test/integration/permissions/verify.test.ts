// verify-permissions on a real tree with real users and groups: every kind of drift is found, fixed by
// --fix and absent afterwards, with the same suite against both ACL backends. Then the command line
// itself, for its exit statuses and --json. Runs as root.
import { spawnSync } from 'node:child_process';
import { rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';

import { NativeAclBackend, SetfaclBackend, type AclBackend } from '../../../src/permissions/acl-backend.js';
import { verifyPermissions } from '../../../src/permissions/verify.js';
import { createThrowawayUser, ensureModelAccounts, removeUser, type ModelAccounts } from '../../helpers/accounts.js';
import { REPO_ROOT, SHUTTLE_BIN } from '../../helpers/daemon.js';
import { buildModelTree, configOf, sh, snapshot, type ModelTree } from './model-tree.js';

let accounts: ModelAccounts;

beforeAll(() => {
  accounts = ensureModelAccounts();
});

interface Drift {
  readonly name: string;
  /** Changes the tree the way an admin, a Samba user or a stray script might. */
  readonly apply: (tree: ModelTree) => void;
  /** The path the finding is about. */
  readonly at: (tree: ModelTree) => string;
  readonly check: string;
}

const DRIFTS: readonly Drift[] = [
  { name: 'a directory mode that lets others in', apply: (t) => sh('chmod', '2775', t.source), at: (t) => t.source, check: 'mode' },
  { name: 'setgid cleared on a share', apply: (t) => sh('chmod', 'g-s', t.destination), at: (t) => t.destination, check: 'setgid' },
  { name: 'the wrong owner', apply: (t) => sh('chown', 'shuttle_runner', t.quarantine), at: (t) => t.quarantine, check: 'owner' },
  { name: 'the wrong group', apply: (t) => sh('chgrp', 'shuttle_out_users', t.hazard), at: (t) => t.hazard, check: 'group' },
  { name: 'a missing named ACL entry', apply: (t) => sh('setfacl', '-x', 'group:shuttle_samba_in_users', t.source), at: (t) => t.source, check: 'acl-entry-missing' },
  { name: 'an extra named ACL entry', apply: (t) => sh('setfacl', '-m', 'group:shuttle_out_users:r-x', t.source), at: (t) => t.source, check: 'acl-entry-extra' },
  { name: 'an extra user entry on the log directory', apply: (t) => sh('setfacl', '-m', 'user:shuttle_test_in:rwx', t.log), at: (t) => t.log, check: 'acl-entry-extra' },
  { name: 'a missing default ACL', apply: (t) => sh('setfacl', '-k', t.destination), at: (t) => t.destination, check: 'default-acl-missing' },
  // Without it, files released from then on are unreadable through the outbound share.
  { name: 'the outbound group missing from the default ACL', apply: (t) => sh('setfacl', '-d', '-x', 'group:shuttle_out_users', t.destination), at: (t) => t.destination, check: 'acl-entry-missing' },
  { name: 'an extra default ACL entry', apply: (t) => sh('setfacl', '-d', '-m', 'group:shuttle_samba_in_users:rwx', t.destination), at: (t) => t.destination, check: 'acl-entry-extra' },
  { name: 'a wrong mask', apply: (t) => sh('setfacl', '-m', 'mask::r-x', t.source), at: (t) => t.source, check: 'mask' },
  { name: 'a world-readable file', apply: (t) => sh('chmod', 'o+r', path.join(t.source, 'batch', 'a.csv')), at: (t) => path.join(t.source, 'batch', 'a.csv'), check: 'file-mode' },
  { name: 'an executable file', apply: (t) => sh('chmod', 'u+x', path.join(t.destination, 'r.csv')), at: (t) => path.join(t.destination, 'r.csv'), check: 'file-mode' },
  { name: 'a file in another group', apply: (t) => sh('chgrp', 'users', path.join(t.destination, 'r.csv')), at: (t) => path.join(t.destination, 'r.csv'), check: 'group' },
  { name: 'an extra ACL entry on a file', apply: (t) => sh('setfacl', '-m', 'user:shuttle_test_out:rw-', path.join(t.destination, 'r.csv')), at: (t) => path.join(t.destination, 'r.csv'), check: 'acl-entry-extra' },
  { name: 'a subdirectory without setgid', apply: (t) => sh('chmod', 'g-s', path.join(t.source, 'batch')), at: (t) => path.join(t.source, 'batch'), check: 'setgid' },
  // What a directory made in the share gets from the default ACL, until the enforcer corrects it.
  { name: 'a subdirectory with the owning group of the default ACL', apply: (t) => sh('setfacl', '-m', 'group::rw-', path.join(t.source, 'batch')), at: (t) => path.join(t.source, 'batch'), check: 'acl-entry-permissions' },
  { name: 'a subdirectory without default ACL', apply: (t) => sh('setfacl', '-k', path.join(t.source, 'batch')), at: (t) => path.join(t.source, 'batch'), check: 'default-acl-missing' },
  { name: 'a world-readable key file', apply: (t) => sh('chmod', 'o+r', t.key), at: (t) => t.key, check: 'mode' },
  { name: 'the ledger without its named entry', apply: (t) => sh('setfacl', '-b', t.ledger), at: (t) => t.ledger, check: 'acl-entry-missing' },
];

const BACKENDS: [string, () => AclBackend][] = [
  ['native', () => new NativeAclBackend()],
  ['setfacl', () => new SetfaclBackend()],
];

describe.each(BACKENDS)('verify-permissions with the %s backend', (_name, makeBackend) => {
  const backend = makeBackend();
  let tree: ModelTree;

  beforeEach(() => {
    tree = buildModelTree();
  });

  afterEach(() => {
    rmSync(tree.root, { recursive: true, force: true });
  });

  it('finds nothing in a tree built to the model, and walks every entry', async () => {
    const result = await verifyPermissions(configOf(tree), { fix: false, backend });
    expect(result.findings).toEqual([]);
    expect(result).toMatchObject({ verdict: 'conforms', backend: backend.name });
    // 7 managed paths; in: batch, batch/a.csv, b.csv; out: r.csv; quarantine: x.data; log is not walked.
    expect(result.pathsChecked).toBe(12);
  });

  it.each(DRIFTS)('finds, fixes and then no longer finds $name', async (drift) => {
    const config = configOf(tree);
    const before = snapshot(tree);
    drift.apply(tree);

    const found = await verifyPermissions(config, { fix: false, backend });
    expect(found.verdict).toBe('drift');
    expect(found.findings.map((f) => `${f.path} ${f.check}`)).toContain(`${drift.at(tree)} ${drift.check}`);
    expect(found.findings.every((f) => f.fixable)).toBe(true);

    const fixed = await verifyPermissions(config, { fix: true, backend });
    expect(fixed.foundBeforeFix?.map((f) => `${f.path} ${f.check}`)).toContain(`${drift.at(tree)} ${drift.check}`);
    expect(fixed.fixes.length).toBeGreaterThan(0);
    expect(fixed.fixes.every((fix) => fix.ok)).toBe(true);
    expect(fixed.findings).toEqual([]);
    expect(fixed.verdict).toBe('conforms');

    const again = await verifyPermissions(config, { fix: false, backend });
    expect(again.findings).toEqual([]);
    // Back to exactly what it was: owner, group, mode and every ACL entry of every path.
    expect(snapshot(tree)).toBe(before);
  });

  it('repairs many kinds of drift at once, content untouched', async () => {
    const config = configOf(tree);
    const before = snapshot(tree);
    for (const drift of DRIFTS) drift.apply(tree);
    const found = await verifyPermissions(config, { fix: false, backend });
    // Drifts on the same path combine (a default entry added where the default ACL was removed), so
    // look for the paths rather than each check.
    for (const drift of DRIFTS) expect(found.findings.map((f) => f.path)).toContain(drift.at(tree));

    const fixed = await verifyPermissions(config, { fix: true, backend });
    expect(fixed.findings).toEqual([]);
    expect(snapshot(tree)).toBe(before);
    expect(sh('cat', path.join(tree.source, 'batch', 'a.csv'))).toBe('content\n');
  });

  it('gives a released file that lost the outbound group\'s entry its read access back, without execute', async () => {
    const released = path.join(tree.destination, 'r.csv');
    const readAsOutbound = (): string => sh('runuser', '-u', accounts.outUser.name, '--', 'cat', released);
    expect(readAsOutbound()).toBe('content\n');
    sh('setfacl', '-x', 'group:shuttle_out_users', released);
    expect(readAsOutbound).toThrow();

    const found = await verifyPermissions(configOf(tree), { fix: false, backend });
    expect(found.findings.map((f) => `${f.path} ${f.check} ${f.expected}`)).toEqual([`${released} acl-entry-missing group:shuttle_out_users:r--`]);
    const fixed = await verifyPermissions(configOf(tree), { fix: true, backend });
    expect(fixed.findings).toEqual([]);
    expect(sh('getfacl', '--omit-header', '--absolute-names', '--no-effective', released).trim().split('\n').join(',')).toBe(
      'user::rw-,group::rw-,group:shuttle_out_users:r--,mask::rw-,other::---',
    );
    expect(readAsOutbound()).toBe('content\n');
  });

  it('reports a symlink in a data directory, never follows it, and --fix leaves it (exit 1)', async () => {
    const target = path.join(tree.root, 'outside.txt');
    writeFileSync(target, 'secret\n', { mode: 0o600 });
    symlinkSync(target, path.join(tree.source, 'link'));
    symlinkSync(tree.root, path.join(tree.source, 'batch', 'loop'));
    const beforeTarget = sh('stat', '-c', '%a %U:%G', target);

    const result = await verifyPermissions(configOf(tree), { fix: true, backend });
    expect(result.verdict).toBe('drift');
    expect(result.findings.map((f) => `${path.relative(tree.root, f.path)} ${f.check}`).sort()).toEqual(['in/batch/loop symlink', 'in/link symlink']);
    expect(result.fixes).toEqual([]);
    expect(sh('stat', '-c', '%a %U:%G', target)).toBe(beforeTarget);
    expect(sh('readlink', path.join(tree.source, 'link')).trim()).toBe(target);
  });

  it('cannot check a missing data directory (exit 2) and says which', async () => {
    rmSync(tree.hazard, { recursive: true });
    const result = await verifyPermissions(configOf(tree), { fix: true, backend });
    expect(result.verdict).toBe('unchecked');
    expect(result.findings).toEqual([expect.objectContaining({ path: tree.hazard, check: 'missing', kind: 'unchecked' })]);
  });

  it('cannot check paths whose model names an unknown group (exit 2), and checks the rest', async () => {
    const config = configOf(tree, 'permissions:\n  source_path: { owner: root, group: shuttle_no_such_group, mode: "2770" }\n  quarantine_path: { owner: root, group: shuttle_owners, mode: "2770" }\n');
    sh('chmod', '2777', tree.quarantine);
    const result = await verifyPermissions(config, { fix: false, backend });
    expect(result.verdict).toBe('unchecked');
    expect(result.findings.map((f) => `${f.path} ${f.check} ${f.kind}`)).toEqual([
      'group:shuttle_no_such_group account-missing unchecked',
      `${tree.quarantine} mode drift`,
    ]);
  });
});

describe('accounts named by the model', () => {
  let tree: ModelTree;

  beforeAll(() => {
    tree = buildModelTree();
  });

  afterAll(() => {
    rmSync(tree.root, { recursive: true, force: true });
  });

  it('reports a Samba user with a login shell who is also in another shuttle group; --fix does not touch accounts', async () => {
    const user = createThrowawayUser(['shuttle_samba_in_users', 'shuttle_owners'], '/bin/bash');
    try {
      const result = await verifyPermissions(configOf(tree), { fix: true });
      const mine = result.findings.filter((f) => f.path === `user:${user.name}`);
      expect(mine.map((f) => `${f.check}: ${f.found}`)).toEqual(['login-shell: /bin/bash, member of shuttle_samba_in_users', 'extra-group: also in shuttle_owners']);
      expect(result.verdict).toBe('drift');
      expect(result.fixes).toEqual([]);
    } finally {
      removeUser(user.name);
    }
    expect((await verifyPermissions(configOf(tree), { fix: false })).verdict).toBe('conforms');
  });
});

describe('the command line: shuttle verify-permissions', () => {
  let tree: ModelTree;

  beforeEach(() => {
    tree = buildModelTree();
  });

  afterEach(() => {
    rmSync(tree.root, { recursive: true, force: true });
  });

  function shuttle(...args: string[]): { status: number | null; stdout: string; stderr: string } {
    const result = spawnSync(process.execPath, [SHUTTLE_BIN, 'verify-permissions', '--config', tree.configFile, ...args], { cwd: REPO_ROOT, encoding: 'utf8' });
    return { status: result.status, stdout: result.stdout, stderr: result.stderr };
  }

  it('exits 0 when everything conforms, with a summary line', () => {
    const { status, stdout } = shuttle();
    expect(status).toBe(0);
    expect(stdout).toMatch(/^permissions conform to the model: 12 paths checked, backend native \(exit status 0\)\n$/);
  });

  it('exits 1 on drift with a table row per finding; --json carries the same findings; --fix repairs and exits 0', () => {
    sh('chmod', '2777', tree.source);
    sh('chmod', 'g-s', path.join(tree.source, 'batch'));

    const table = shuttle();
    expect(table.status).toBe(1);
    const lines = table.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^SEVERITY +PATH +CHECK +EXPECTED +FOUND$/);
    expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^high +${tree.source} +mode +2770 +2777$`)));
    expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^medium +${tree.source}/batch +setgid +set +cleared$`)));
    expect(lines.at(-1)).toMatch(/^permissions drift: 2 findings \(1 high, 1 medium\) on 2 paths; 12 paths checked/);

    const json = shuttle('--json');
    expect(json.status).toBe(1);
    const report = JSON.parse(json.stdout);
    expect(report).toMatchObject({ verdict: 'drift', exitStatus: 1, backend: 'native', pathsChecked: 12 });
    expect(report.findings).toEqual([
      { path: tree.source, check: 'mode', expected: '2770', found: '2777', severity: 'high', kind: 'drift', fixable: true },
      { path: `${tree.source}/batch`, check: 'setgid', expected: 'set', found: 'cleared', severity: 'medium', kind: 'drift', fixable: true },
    ]);

    const fixed = shuttle('--fix');
    expect(fixed.status).toBe(0);
    expect(fixed.stdout).toContain('Changed:\n');
    expect(fixed.stdout).toContain(`  ${tree.source}: mode 2770 (was 2777)\n`);
    expect(fixed.stdout).toContain(`  ${tree.source}/batch: mode 2770 (was 0770)\n`);
    expect(fixed.stdout.trimEnd().split('\n').at(-1)).toMatch(/^permissions conform to the model after fixing: 3 changes made; 12 paths checked/);
    expect(shuttle().status).toBe(0);
  });

  it('uses the getfacl/setfacl backend when the config asks for it', () => {
    writeFileSync(tree.configFile, `${sh('cat', tree.configFile)}permissions_backend: setfacl\n`);
    sh('setfacl', '-m', 'group:shuttle_out_users:r-x', tree.source);
    const json = JSON.parse(shuttle('--json').stdout);
    expect(json).toMatchObject({ verdict: 'drift', backend: 'setfacl' });
    expect(json.findings.map((f: { check: string }) => f.check)).toEqual(['acl-entry-extra']);
    expect(shuttle('--fix', '--json').status).toBe(0);
  });

  it('exits 2 when it could not check: a missing path, an unknown group, a bad config', () => {
    rmSync(tree.quarantine, { recursive: true });
    const missing = shuttle();
    expect(missing.status).toBe(2);
    expect(missing.stdout).toMatch(new RegExp(`^unchecked +${tree.quarantine} +missing`, 'm'));
    expect(missing.stdout.trimEnd().split('\n').at(-1)).toMatch(/^permissions could not be fully checked: 1 problem/);
    expect(shuttle('--fix').status).toBe(2);

    writeFileSync(tree.configFile, `${sh('cat', tree.configFile)}permissions:\n  log_path: { owner: root, group: shuttle_no_such_group, mode: "2770" }\n`);
    const unknown = shuttle('--json');
    expect(unknown.status).toBe(2);
    expect(JSON.parse(unknown.stdout).findings).toEqual([expect.objectContaining({ path: 'group:shuttle_no_such_group', check: 'account-missing' })]);

    writeFileSync(tree.configFile, `${sh('cat', tree.configFile)}permissions_backed: native\n`);
    const bad = shuttle();
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain(`${tree.configFile}: permissions_backed: unknown key (did you mean "permissions_backend"?)`);
  });
});
