// The ACL text form: formatting, parsing, and name resolution through the account databases.
import { describe, expect, it } from 'vitest';

import { aclFromText, aclToText, parseAclText, type AclEntry } from '../../src/native.js';

const rw = { read: true, write: true, execute: false };
const r = { read: true, write: false, execute: false };
const rwx = { read: true, write: true, execute: true };
const none = { read: false, write: false, execute: false };

describe('aclToText', () => {
  it('writes the short form in canonical order, with names where known and ids otherwise', () => {
    const entries: AclEntry[] = [
      { tag: 'other', ...none },
      { tag: 'mask', ...rwx },
      { tag: 'group', id: 1200, qualifier: 'staff', ...rwx },
      { tag: 'group', id: 1100, ...r },
      { tag: 'group_obj', ...r },
      { tag: 'user_obj', ...rw },
    ];
    expect(aclToText(entries)).toBe('user::rw-,group::r--,group:1100:r--,group:staff:rwx,mask::rwx,other::---');
  });

  it('writes nothing for an empty ACL', () => {
    expect(aclToText([])).toBe('');
  });
});

describe('parseAclText', () => {
  it('accepts short and long tag words', () => {
    expect(parseAclText('u::rw-,g::rw-,o::---', { isDirectory: false })).toEqual([
      { tag: 'user_obj', ...rw },
      { tag: 'group_obj', ...rw },
      { tag: 'other', ...none },
    ]);
    expect(parseAclText('user::rw-, group::r--, mask::rw-, other::---', { isDirectory: false })).toEqual([
      { tag: 'user_obj', ...rw },
      { tag: 'group_obj', ...r },
      { tag: 'mask', ...rw },
      { tag: 'other', ...none },
    ]);
  });

  it('gives X execute on directories only', () => {
    expect(parseAclText('group:staff:rwX', { isDirectory: true })).toEqual([{ tag: 'group', qualifier: 'staff', ...rwx }]);
    expect(parseAclText('group:staff:rwX', { isDirectory: false })).toEqual([{ tag: 'group', qualifier: 'staff', ...rw }]);
  });

  it('keeps numeric qualifiers as ids and leaves names unresolved', () => {
    expect(parseAclText('u:1001:r,g:web:rw', { isDirectory: false })).toEqual([
      { tag: 'user', id: 1001, ...r },
      { tag: 'group', qualifier: 'web', ...rw },
    ]);
  });

  it('reads getfacl output, skipping its comments', () => {
    const output = '# file: /srv/shuttle/in\n# owner: root\nuser::rwx\ngroup::rwx\nmask::rwx\nother::---\n\n';
    expect(aclToText(parseAclText(output, { isDirectory: true }))).toBe('user::rwx,group::rwx,mask::rwx,other::---');
  });

  it('names the entry it cannot read', () => {
    const parse = (text: string): AclEntry[] => parseAclText(text, { isDirectory: true });
    expect(() => parse('group:staff')).toThrow(`ACL entry 'group:staff' is not of the form type:qualifier:permissions`);
    expect(() => parse('owner::rw-')).toThrow(/unknown type 'owner'/);
    expect(() => parse('g::rwz')).toThrow(/unknown permission 'z'/);
    expect(() => parse('g::rr')).toThrow(/repeats permission 'r'/);
    expect(() => parse('g::')).toThrow(/no permissions/);
    expect(() => parse('mask:staff:rwx')).toThrow(/mask entries take no qualifier/);
    expect(() => parse('o:nobody:r--')).toThrow(/other entries take no qualifier/);
  });
});

describe('aclFromText', () => {
  it('resolves names to ids through the account databases', () => {
    expect(aclFromText('u::rw-,user:root:rw-,g::r--,group:root:r-X,o::---', { isDirectory: true })).toEqual([
      { tag: 'user_obj', ...rw },
      { tag: 'user', id: 0, qualifier: 'root', ...rw },
      { tag: 'group_obj', ...r },
      { tag: 'group', id: 0, qualifier: 'root', read: true, write: false, execute: true },
      { tag: 'other', ...none },
    ]);
  });

  it('refuses a name that has no account, naming it', () => {
    expect(() => aclFromText('g::r--,group:shuttle_no_such_group_x:rwX', { isDirectory: true })).toThrow(
      "names unknown group 'shuttle_no_such_group_x'",
    );
  });

  it('does not mistake an option-like name for an option', () => {
    expect(() => aclFromText('group:--help:r--', { isDirectory: false })).toThrow("names unknown group '--help'");
  });
});
