// POSIX ACLs on real files (ext4 with ACL support), checked against getfacl/setfacl. Runs as root:
// it creates throwaway groups with groupadd and removes them afterwards.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { aclFromText, aclToText, loadNative, type AclEntry } from '../../src/native.js';

const native = loadNative();
const suffix = randomBytes(3).toString('hex');
const inboundGroup = `shuttle_t_${suffix}_in`;
const outboundGroup = `shuttle_t_${suffix}_out`;
let inboundGid: number;
let outboundGid: number;
let directory: string;
let counter = 0;

beforeAll(() => {
  for (const group of [inboundGroup, outboundGroup]) execFileSync('groupadd', [group]);
  const gidOf = (group: string): number => Number(execFileSync('getent', ['group', group], { encoding: 'utf8' }).split(':')[2]);
  inboundGid = gidOf(inboundGroup);
  outboundGid = gidOf(outboundGroup);
  directory = mkdtempSync(join(tmpdir(), 'shuttle-acl-'));
});

afterAll(() => {
  rmSync(directory, { recursive: true, force: true });
  for (const group of [inboundGroup, outboundGroup]) execFileSync('groupdel', [group]);
});

function freshFile(mode = 0o640): string {
  const path = join(directory, `file-${++counter}`);
  writeFileSync(path, 'payload\n', { mode });
  return path;
}

function freshDirectory(): string {
  const path = join(directory, `dir-${++counter}`);
  mkdirSync(path, { mode: 0o770 });
  return path;
}

/** getfacl's view of one ACL, in the same short text form as aclToText. */
function getfacl(path: string, kind: 'access' | 'default'): string {
  const output = execFileSync('getfacl', ['--omit-header', '--absolute-names', '--no-effective', kind === 'access' ? '--access' : '--default', path], {
    encoding: 'utf8',
  });
  return output.split('\n').filter(Boolean).join(',');
}

const entry = (tag: AclEntry['tag'], perms: string, id?: number): AclEntry => ({
  tag,
  ...(id === undefined ? {} : { id }),
  read: perms.includes('r'),
  write: perms.includes('w'),
  execute: perms.includes('x'),
});

function caught(action: () => unknown): NodeJS.ErrnoException {
  try {
    action();
  } catch (error) {
    return error as NodeJS.ErrnoException;
  }
  throw new Error('expected an error');
}

describe('access ACLs', () => {
  it('sets a named group entry that getfacl then reports, and reads it back with names', async () => {
    const path = freshFile();
    await native.setAcl(path, 'access', [
      entry('user_obj', 'rw'),
      entry('group_obj', 'r'),
      entry('group', 'rw', inboundGid),
      entry('mask', 'rw'),
      entry('other', ''),
    ]);

    expect(getfacl(path, 'access')).toBe(`user::rw-,group::r--,group:${inboundGroup}:rw-,mask::rw-,other::---`);
    const entries = await native.getAcl(path, 'access');
    expect(entries).toContainEqual({ tag: 'group', id: inboundGid, qualifier: inboundGroup, read: true, write: true, execute: false });
    expect(aclToText(entries)).toBe(getfacl(path, 'access'));
    expect(native.getAclSync(path, 'access')).toEqual(entries);
    // The access ACL is the mode: the mask became the group bits.
    expect(statSync(path).mode & 0o777).toBe(0o660);
  });

  it('reads what setfacl wrote', () => {
    const path = freshFile();
    execFileSync('setfacl', ['-m', `g:${outboundGroup}:r-x,u:0:rw-`, path]);
    const entries = native.getAclSync(path, 'access');
    expect(aclToText(entries)).toBe(getfacl(path, 'access'));
    expect(entries).toContainEqual({ tag: 'user', id: 0, qualifier: 'root', read: true, write: true, execute: false });
    expect(entries).toContainEqual({ tag: 'group', id: outboundGid, qualifier: outboundGroup, read: true, write: false, execute: true });
  });

  it('adds the mask setfacl would compute when named entries come without one', () => {
    const path = freshFile();
    native.setAclSync(path, 'access', [entry('user_obj', 'rw'), entry('group_obj', 'r'), entry('group', 'rwx', inboundGid), entry('other', '')]);
    expect(getfacl(path, 'access')).toBe(`user::rw-,group::r--,group:${inboundGroup}:rwx,mask::rwx,other::---`);
  });

  it('reports ids without an account numerically, as getfacl does', () => {
    const path = freshFile();
    native.setAclSync(path, 'access', [entry('user_obj', 'rw'), entry('user', 'r', 3_999_999_001), entry('group_obj', ''), entry('other', '')]);
    const entries = native.getAclSync(path, 'access');
    expect(entries.find((e) => e.tag === 'user')).toEqual({ tag: 'user', id: 3_999_999_001, read: true, write: false, execute: false });
    expect(aclToText(entries)).toBe(getfacl(path, 'access'));
  });

  it('reads the minimal ACL of a file that has none, from its mode', async () => {
    const path = freshFile(0o640);
    expect(await native.getAcl(path, 'access')).toEqual([entry('user_obj', 'rw'), entry('group_obj', 'r'), entry('other', '')]);
    expect(await native.hasExtendedAcl(path)).toBe(false);
  });

  it('applies text from the config format end to end', () => {
    const path = freshDirectory();
    const entries = aclFromText(`u::rwx,g::rwx,group:${inboundGroup}:rwX,o::---`, { isDirectory: true });
    native.setAclSync(path, 'access', entries);
    expect(getfacl(path, 'access')).toBe(`user::rwx,group::rwx,group:${inboundGroup}:rwx,mask::rwx,other::---`);
  });
});

describe('default ACLs', () => {
  it('sets a default ACL on a directory, which new files inherit', async () => {
    const path = freshDirectory();
    await native.setAcl(path, 'default', [entry('user_obj', 'rw'), entry('group_obj', 'rw'), entry('group', 'rw', outboundGid), entry('other', '')]);

    expect(getfacl(path, 'default')).toBe(`user::rw-,group::rw-,group:${outboundGroup}:rw-,mask::rw-,other::---`);
    expect(aclToText(await native.getAcl(path, 'default'))).toBe(getfacl(path, 'default'));
    expect(native.hasExtendedAclSync(path)).toBe(true);

    const child = join(path, 'arrived.csv');
    writeFileSync(child, 'x', { mode: 0o666 });
    expect(aclToText(native.getAclSync(child, 'access'))).toBe(`user::rw-,group::rw-,group:${outboundGroup}:rw-,mask::rw-,other::---`);
  });

  it('deletes a default ACL, and treats an empty default entry list the same way', async () => {
    const path = freshDirectory();
    const defaults = [entry('user_obj', 'rw'), entry('group_obj', 'rw'), entry('other', '')];

    native.setAclSync(path, 'default', defaults);
    expect(await native.hasExtendedAcl(path)).toBe(true);
    await native.deleteDefaultAcl(path);
    expect(await native.getAcl(path, 'default')).toEqual([]);
    expect(getfacl(path, 'default')).toBe('');
    expect(await native.hasExtendedAcl(path)).toBe(false);

    native.setAclSync(path, 'default', defaults);
    native.setAclSync(path, 'default', []);
    expect(native.getAclSync(path, 'default')).toEqual([]);
    // Deleting what is not there is not an error.
    expect(() => native.deleteDefaultAclSync(path)).not.toThrow();
  });

  it('refuses a default ACL on a regular file with EACCES', () => {
    const path = freshFile();
    const error = caught(() => native.setAclSync(path, 'default', [entry('user_obj', 'rw'), entry('group_obj', 'r'), entry('other', '')]));
    expect(error).toMatchObject({ code: 'EACCES', syscall: 'acl_set_file', path });
  });
});

describe('errors', () => {
  it('reports a missing path as Node would: ENOENT with syscall and path', async () => {
    const path = join(directory, 'does-not-exist');
    const error = caught(() => native.getAclSync(path, 'access'));
    expect(error).toBeInstanceOf(Error);
    expect(error.message).toBe(`ENOENT: no such file or directory, acl_get_file '${path}'`);
    expect(error).toMatchObject({ code: 'ENOENT', errno: -2, syscall: 'acl_get_file', path });

    await expect(native.getAcl(path, 'default')).rejects.toMatchObject({ code: 'ENOENT', syscall: 'acl_get_file', path });
    await expect(native.hasExtendedAcl(path)).rejects.toMatchObject({ code: 'ENOENT', syscall: 'acl_extended_file', path });
    await expect(native.deleteDefaultAcl(path)).rejects.toMatchObject({ code: 'ENOENT', syscall: 'acl_delete_def_file', path });
    expect(caught(() => native.setAclSync(path, 'access', [entry('user_obj', 'rw'), entry('group_obj', ''), entry('other', '')]))).toMatchObject({
      code: 'ENOENT',
      syscall: 'acl_set_file',
      path,
    });
  });

  it('never follows a symlink: every operation fails with ELOOP and the target is untouched', async () => {
    const target = freshDirectory();
    native.setAclSync(target, 'default', [entry('user_obj', 'rw'), entry('group_obj', 'rw'), entry('other', '')]);
    const before = { access: getfacl(target, 'access'), default: getfacl(target, 'default') };
    const link = join(directory, `link-${++counter}`);
    symlinkSync(target, link);

    const acl = [entry('user_obj', 'rwx'), entry('group_obj', 'rwx'), entry('group', 'rwx', inboundGid), entry('other', 'rwx')];
    const loop = (syscall: string): Record<string, unknown> => ({ code: 'ELOOP', syscall, path: link });
    expect(caught(() => native.getAclSync(link, 'access'))).toMatchObject(loop('acl_get_file'));
    expect(caught(() => native.setAclSync(link, 'access', acl))).toMatchObject(loop('acl_set_file'));
    expect(caught(() => native.setAclSync(link, 'default', acl))).toMatchObject(loop('acl_set_file'));
    expect(caught(() => native.deleteDefaultAclSync(link))).toMatchObject(loop('acl_delete_def_file'));
    expect(caught(() => native.hasExtendedAclSync(link))).toMatchObject(loop('acl_extended_file'));
    await expect(native.getAcl(link, 'default')).rejects.toMatchObject(loop('acl_get_file'));
    await expect(native.setAcl(link, 'access', acl)).rejects.toMatchObject(loop('acl_set_file'));
    await expect(native.deleteDefaultAcl(link)).rejects.toMatchObject(loop('acl_delete_def_file'));
    await expect(native.hasExtendedAcl(link)).rejects.toMatchObject(loop('acl_extended_file'));

    expect({ access: getfacl(target, 'access'), default: getfacl(target, 'default') }).toEqual(before);
  });

  it('still resolves symlinks in the parent directories, which the daemon configures itself', () => {
    const real = freshDirectory();
    const file = join(real, 'inside.csv');
    writeFileSync(file, 'x');
    const alias = join(directory, `alias-${++counter}`);
    symlinkSync(real, alias);
    expect(native.getAclSync(join(alias, 'inside.csv'), 'access').length).toBe(3);
  });

  it('rejects malformed entries in TypeScript, before C++ sees them', async () => {
    const path = freshFile();
    const before = readFileSync(path, 'utf8');
    const invalid = { code: 'ERR_INVALID_ARG_VALUE' };
    expect(() => native.setAclSync(path, 'access', [entry('user_obj', 'rw'), entry('other', '')])).toThrow(/exactly one 'group_obj'/);
    expect(() => native.setAclSync(path, 'access', [entry('user_obj', 'rw'), entry('group_obj', 'r'), entry('group', 'r'), entry('other', '')])).toThrow(
      expect.objectContaining(invalid),
    );
    expect(() =>
      native.setAclSync(path, 'access', [
        entry('user_obj', 'rw'),
        entry('group_obj', 'r'),
        entry('group', 'r', inboundGid),
        entry('group', 'w', inboundGid),
        entry('other', ''),
      ]),
    ).toThrow(/one entry per named user or group/);
    expect(() => native.setAclSync(path, 'access', [{ tag: 'owner' } as unknown as AclEntry])).toThrow(expect.objectContaining(invalid));
    expect(() => native.setAclSync(path, 'access', [])).toThrow(expect.objectContaining(invalid));
    expect(() => native.getAclSync(path, 'both' as 'access')).toThrow(/"kind" argument/);
    expect(() => native.getAclSync(`${path}\0.evil`, 'access')).toThrow(/"path" argument/);
    await expect(native.setAcl(path, 'access', 'u::rw-' as unknown as AclEntry[])).rejects.toMatchObject(invalid);
    expect(readFileSync(path, 'utf8')).toBe(before);
    expect(getfacl(path, 'access')).toBe('user::rw-,group::r--,other::---');
  });
});
