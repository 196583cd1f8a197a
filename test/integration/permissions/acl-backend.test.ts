// The two ACL backends on real files (ext4 under the system temp directory): one suite, run against
// both, and a cross-check that each reads exactly what the other wrote. Named entries use ids without
// accounts, so no users are needed.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { AclEntry } from '../../../src/native.js';
import { NativeAclBackend, SetfaclBackend, selectAclBackend, type AclBackend } from '../../../src/permissions/acl-backend.js';

const ID_A = 3_999_999_001;
const ID_B = 3_999_999_002;

const e = (tag: AclEntry['tag'], perms: string, id?: number): AclEntry => ({
  tag,
  ...(id === undefined ? {} : { id }),
  read: perms.includes('r'),
  write: perms.includes('w'),
  execute: perms.includes('x'),
});

let root: string;
let counter = 0;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'shuttle-acl-backend-'));
});

afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

function freshFile(mode = 0o640, name = `file-${++counter}`): string {
  const path = join(root, name);
  writeFileSync(path, 'content\n', { mode });
  execFileSync('chmod', [mode.toString(8), path]);
  return path;
}

function freshDirectory(mode = 0o2770): string {
  const path = join(root, `dir-${++counter}`);
  mkdirSync(path);
  execFileSync('chmod', [mode.toString(8), path]);
  return path;
}

function getfacl(path: string): string {
  return execFileSync('getfacl', ['--omit-header', '--absolute-names', '--numeric', '--no-effective', path], { encoding: 'utf8' }).trim().split('\n').join(',');
}

const backends: [string, () => AclBackend][] = [
  ['native', () => new NativeAclBackend()],
  ['setfacl', () => new SetfaclBackend()],
];

describe.each(backends)('%s backend', (name, make) => {
  const backend = make();

  it('is the backend it says', () => {
    expect(backend.name).toBe(name);
  });

  it('reads the minimal ACL of a plain file from its mode, and no default ACL', async () => {
    const path = freshFile(0o640);
    expect(await backend.getAcl(path, 'access')).toEqual([e('user_obj', 'rw'), e('group_obj', 'r'), e('other', '')]);
    expect(await backend.hasExtendedAcl(path)).toBe(false);
  });

  it('writes exactly the entries given, adds the mask named entries need, and reads them back with ids only', async () => {
    const path = freshFile();
    await backend.setAcl(path, 'access', [e('user_obj', 'rw'), e('group_obj', 'r'), e('group', 'rw', ID_A), e('other', '')]);
    expect(getfacl(path)).toBe(`user::rw-,group::r--,group:${ID_A}:rw-,mask::rw-,other::---`);
    expect(await backend.getAcl(path, 'access')).toEqual([e('user_obj', 'rw'), e('group_obj', 'r'), e('group', 'rw', ID_A), e('mask', 'rw'), e('other', '')]);
    expect(await backend.hasExtendedAcl(path)).toBe(true);

    // An explicit mask is kept as given, not recomputed.
    await backend.setAcl(path, 'access', [e('user_obj', 'rw'), e('user', 'rw', ID_B), e('group_obj', 'rw'), e('mask', 'r'), e('other', '')]);
    expect(getfacl(path)).toBe(`user::rw-,user:${ID_B}:rw-,group::rw-,mask::r--,other::---`);
  });

  it('sets, reads and removes a default ACL on a directory', async () => {
    const path = freshDirectory();
    const defaults = [e('user_obj', 'rw'), e('group_obj', 'rw'), e('group', 'r', ID_A), e('mask', 'rw'), e('other', '')];
    await backend.setAcl(path, 'default', defaults);
    expect(await backend.getAcl(path, 'default')).toEqual(defaults);
    expect(await backend.hasExtendedAcl(path)).toBe(true);
    await backend.setAcl(path, 'default', []);
    expect(await backend.getAcl(path, 'default')).toEqual([]);
    await backend.setAcl(path, 'default', defaults);
    await backend.deleteDefaultAcl(path);
    expect(await backend.getAcl(path, 'default')).toEqual([]);
    expect(await backend.hasExtendedAcl(path)).toBe(false);
  });

  it('keeps the setgid bit when it writes an access ACL', async () => {
    const path = freshDirectory(0o2770);
    await backend.setAcl(path, 'access', [e('user_obj', 'rwx'), e('group_obj', 'rwx'), e('group', 'rwx', ID_A), e('other', '')]);
    expect(execFileSync('stat', ['-c', '%a', path], { encoding: 'utf8' }).trim()).toBe('2770');
  });

  it('refuses a default ACL on a file with EACCES, as the kernel does', async () => {
    const path = freshFile();
    await expect(backend.getAcl(path, 'default')).rejects.toMatchObject({ code: 'EACCES', syscall: 'acl_get_file', path });
    await expect(backend.setAcl(path, 'default', [e('user_obj', 'rw'), e('group_obj', 'r'), e('other', '')])).rejects.toMatchObject({
      code: 'EACCES',
      syscall: 'acl_set_file',
    });
  });

  it('reports a missing path as ENOENT and never follows a symlink (ELOOP, target untouched)', async () => {
    const gone = join(root, 'does-not-exist');
    await expect(backend.getAcl(gone, 'access')).rejects.toMatchObject({ code: 'ENOENT', syscall: 'acl_get_file', path: gone });
    await expect(backend.hasExtendedAcl(gone)).rejects.toMatchObject({ code: 'ENOENT' });

    const target = freshFile(0o600);
    const before = getfacl(target);
    const link = join(root, `link-${++counter}`);
    symlinkSync(target, link);
    await expect(backend.getAcl(link, 'access')).rejects.toMatchObject({ code: 'ELOOP', syscall: 'acl_get_file', path: link });
    await expect(backend.setAcl(link, 'access', [e('user_obj', 'rwx'), e('group_obj', 'rwx'), e('other', 'rwx')])).rejects.toMatchObject({ code: 'ELOOP' });
    await expect(backend.deleteDefaultAcl(link)).rejects.toMatchObject({ code: 'ELOOP' });
    await expect(backend.hasExtendedAcl(link)).rejects.toMatchObject({ code: 'ELOOP' });
    expect(getfacl(target)).toBe(before);
  });

  it('reads many paths at once, one result per target, errors in place', async () => {
    const directory = freshDirectory();
    await backend.setAcl(directory, 'default', [e('user_obj', 'rw'), e('group_obj', 'rw'), e('other', '')]);
    const plain = freshFile(0o600);
    const odd = freshFile(0o660, `odd name\nwith newline \\ and ü ${++counter}`);
    await backend.setAcl(odd, 'access', [e('user_obj', 'rw'), e('group_obj', 'rw'), e('group', 'r', ID_B), e('other', '')]);
    const gone = join(root, 'vanished');

    const results = await backend.readAcls([
      { path: directory, isDirectory: true },
      { path: plain, isDirectory: false, mode: 0o600 },
      { path: odd, isDirectory: false },
      { path: gone, isDirectory: false },
    ]);
    expect(results[0]).toEqual({ access: [e('user_obj', 'rwx'), e('group_obj', 'rwx'), e('other', '')], defaultAcl: [e('user_obj', 'rw'), e('group_obj', 'rw'), e('other', '')] });
    expect(results[1]).toEqual({ access: [e('user_obj', 'rw'), e('group_obj', ''), e('other', '')], defaultAcl: [] });
    expect(results[2]).toEqual({ access: [e('user_obj', 'rw'), e('group_obj', 'rw'), e('group', 'r', ID_B), e('mask', 'rw'), e('other', '')], defaultAcl: [] });
    expect(results[3]).toMatchObject({ code: 'ENOENT', path: gone });
  });
});

describe('both backends agree', () => {
  const native = new NativeAclBackend();
  const setfacl = new SetfaclBackend();

  it('each reads exactly what the other wrote', async () => {
    const acl = [e('user_obj', 'rwx'), e('user', 'r', ID_A), e('group_obj', 'rx'), e('group', 'rwx', ID_B), e('mask', 'rwx'), e('other', '')];
    const defaults = [e('user_obj', 'rw'), e('group_obj', 'rw'), e('group', 'rw', ID_B), e('mask', 'rw'), e('other', '')];
    for (const [writer, reader] of [
      [native, setfacl],
      [setfacl, native],
    ] as const) {
      const path = freshDirectory();
      await writer.setAcl(path, 'access', acl);
      await writer.setAcl(path, 'default', defaults);
      expect(await reader.getAcl(path, 'access')).toEqual(acl);
      expect(await reader.getAcl(path, 'default')).toEqual(defaults);
      expect(await reader.readAcls([{ path, isDirectory: true }])).toEqual(await writer.readAcls([{ path, isDirectory: true }]));
    }
  });

  it('auto selects the addon when it is built', () => {
    expect(selectAclBackend('auto').name).toBe('native');
    expect(selectAclBackend('setfacl').name).toBe('setfacl');
  });
});
