import { describe, expect, it } from 'vitest';

import { checkContentEntry, checkManagedPath } from '../../../src/permissions/checks.js';
import type { Finding } from '../../../src/permissions/finding.js';
import { verdictOf } from '../../../src/permissions/finding.js';
import type { PathState } from '../../../src/permissions/inspect.js';
import type { AclEntry } from '../../../src/native.js';
import { bitsText, minimalAcl, type ContentsModel } from '../../../src/permissions/model.js';
import { ACCOUNTS, GID, UID, conforming, e, managed, state } from './fixtures.js';

const source = managed('source_path');
const contents = source.contents as ContentsModel;
const ledger = managed('ledger_file_path');

const summary = (findings: readonly Finding[]): string[] => findings.map((f) => `${f.check} ${f.severity} ${f.expected} | ${f.found}`);

/** The conforming source directory with some fields replaced. */
function sourceWith(change: (actual: PathState) => Partial<PathState>): PathState {
  const actual = conforming(source);
  return { ...actual, ...change(actual) };
}

/** A subdirectory of source_path exactly as the model wants it. */
function subdirectory(): PathState {
  return { ...conforming(source), path: '/srv/shuttle/in/batch', uid: UID.alice };
}

/**
 * The access ACL of a file made in source_path and then chmod'ed to `mode`, as the kernel leaves it: the
 * owning group and the named entry as the default ACL gave them (rw-, rwx), the mask as the group digit.
 */
function madeInSource(mode: number): AclEntry[] {
  const digit = (shift: number): string => bitsText((mode >> shift) & 7);
  return [e('user_obj', digit(6)), e('group_obj', 'rw'), e('group', 'rwx', GID.shuttle_samba_in_users), e('mask', digit(3)), e('other', digit(0))];
}

function file(mode: number, access = madeInSource(mode), gid: number = GID.shuttle_owners): PathState {
  return state('/srv/shuttle/in/batch/x.csv', { type: 'file', uid: UID.alice, gid, mode, acl: { access, defaultAcl: [] } });
}

describe('checkManagedPath', () => {
  it('finds nothing when the path is exactly the model', () => {
    expect(checkManagedPath(source, conforming(source), ACCOUNTS)).toEqual([]);
    expect(checkManagedPath(ledger, conforming(ledger), ACCOUNTS)).toEqual([]);
  });

  it('reports a missing path, an unreadable one and the wrong type as could-not-check', () => {
    const missing = checkManagedPath(source, { status: 'missing', path: source.path }, ACCOUNTS);
    expect(missing).toEqual([
      { path: '/srv/shuttle/in', check: 'missing', expected: 'directory (source_path)', found: 'missing', severity: 'high', kind: 'unchecked', fixable: false },
    ]);
    const error = Object.assign(new Error("EACCES: permission denied, lstat '/srv/shuttle/in'"), { code: 'EACCES' });
    expect(checkManagedPath(source, { status: 'unreadable', path: source.path, error }, ACCOUNTS)[0]).toMatchObject({ check: 'unreadable', kind: 'unchecked' });
    const symlink = checkManagedPath(source, state(source.path, { type: 'symlink' }), ACCOUNTS);
    expect(summary(symlink)).toEqual(['type high directory | symbolic link']);
    expect(verdictOf(symlink)).toBe('unchecked');
  });

  it('reports owner and group by name', () => {
    const findings = checkManagedPath(source, sourceWith(() => ({ uid: UID.shuttle_runner, gid: 4242 })), ACCOUNTS);
    expect(summary(findings)).toEqual(['owner high root | shuttle_runner', 'group high shuttle_owners | 4242']);
  });

  it('reports a cleared setgid bit apart from the other mode bits', () => {
    expect(summary(checkManagedPath(source, sourceWith(() => ({ mode: 0o0770 })), ACCOUNTS))).toEqual(['setgid medium set | cleared']);
  });

  it('rates a mode that grants more as high, one that grants less as medium', () => {
    const wider = sourceWith((a) => ({ mode: 0o2777, acl: { access: a.acl?.access.map((x) => (x.tag === 'other' ? e('other', 'rwx') : x)) ?? [], defaultAcl: a.acl?.defaultAcl ?? [] } }));
    expect(summary(checkManagedPath(source, wider, ACCOUNTS))).toEqual(['mode high 2770 | 2777']);
    const quarantine = managed('quarantine_path');
    const narrower = { ...conforming(quarantine), mode: 0o2750, acl: { access: minimalAcl(0o2750), defaultAcl: [] } };
    expect(summary(checkManagedPath(quarantine, narrower, ACCOUNTS))).toEqual(['mode medium 2770 | 2750']);
  });

  it('reports a missing named entry, an extra one and one with other permissions', () => {
    const withEntries = (access: PathState['acl']): PathState => sourceWith(() => ({ acl: access }));
    const base = [e('user_obj', 'rwx'), e('group_obj', 'rwx')];
    const tail = [e('mask', 'rwx'), e('other', '')];
    const missing = withEntries({ access: [...base, ...tail], defaultAcl: source.defaultAcl.slice() });
    expect(summary(checkManagedPath(source, missing, ACCOUNTS))).toEqual(['acl-entry-missing medium group:shuttle_samba_in_users:rwx | (none)']);

    const extra = withEntries({ access: [...base, e('group', 'rwx', GID.shuttle_samba_in_users), e('group', 'r-x', GID.shuttle_out_users), ...tail], defaultAcl: source.defaultAcl.slice() });
    expect(summary(checkManagedPath(source, extra, ACCOUNTS))).toEqual(['acl-entry-extra high (none) | group:shuttle_out_users:r-x']);

    const weaker = withEntries({ access: [...base, e('group', 'r-x', GID.shuttle_samba_in_users), ...tail], defaultAcl: source.defaultAcl.slice() });
    expect(summary(checkManagedPath(source, weaker, ACCOUNTS))).toEqual(['acl-entry-permissions medium group:shuttle_samba_in_users:rwx | group:shuttle_samba_in_users:r-x']);
  });

  it('reports a wrong mask once, not again as a mode difference', () => {
    const masked = sourceWith((a) => ({ mode: 0o2750, acl: { access: a.acl?.access.map((x) => (x.tag === 'mask' ? e('mask', 'rx') : x)) ?? [], defaultAcl: source.defaultAcl.slice() } }));
    expect(summary(checkManagedPath(source, masked, ACCOUNTS))).toEqual(['mask medium mask::rwx | mask::r-x']);
  });

  it('reports a missing default ACL, an extra one, and a default entry that differs', () => {
    expect(summary(checkManagedPath(source, sourceWith((a) => ({ acl: { access: a.acl?.access ?? [], defaultAcl: [] } })), ACCOUNTS))).toEqual([
      'default-acl-missing medium default:user::rwx,default:group::rw-,default:group:shuttle_samba_in_users:rwx,default:mask::rwx,default:other::--- | (none)',
    ]);
    const quarantine = managed('quarantine_path');
    const withDefault = { ...conforming(quarantine), acl: { access: quarantine.access.slice(), defaultAcl: [e('user_obj', 'rwx'), e('group_obj', 'rwx'), e('other', 'r')] } };
    expect(checkManagedPath(quarantine, withDefault, ACCOUNTS).map((f) => `${f.check} ${f.severity}`)).toEqual(['default-acl-extra high']);
    const otherReads = sourceWith((a) => ({ acl: { access: a.acl?.access ?? [], defaultAcl: source.defaultAcl.map((x) => (x.tag === 'other' ? e('other', 'r') : x)) } }));
    expect(summary(checkManagedPath(source, otherReads, ACCOUNTS))).toEqual(['acl-entry-permissions high default:other::--- | default:other::r--']);
  });

  it('checks a managed file: the key file readable by all is high', () => {
    const key = managed('hazard_encryption_key_path');
    expect(summary(checkManagedPath(key, { ...conforming(key), mode: 0o644, acl: { access: minimalAcl(0o644), defaultAcl: [] } }, ACCOUNTS))).toEqual([
      'mode high 0640 | 0644',
    ]);
    const directory = state(key.path, { type: 'directory', mode: 0o750 });
    expect(verdictOf(checkManagedPath(key, directory, ACCOUNTS))).toBe('unchecked');
  });
});

describe('checkContentEntry', () => {
  it('accepts a subdirectory like its parent, whoever owns it, and files at 0660 or tighter', () => {
    expect(checkContentEntry(contents, subdirectory(), ACCOUNTS)).toEqual([]);
    // As the kernel makes it: group:shuttle_samba_in_users:rwx behind mask::rw-.
    expect(checkContentEntry(contents, file(0o660), ACCOUNTS)).toEqual([]);
    // As a fix writes it, and tighter for the owner and the owning group.
    const named = e('group', 'rw', GID.shuttle_samba_in_users);
    expect(checkContentEntry(contents, file(0o660, [e('user_obj', 'rw'), e('group_obj', 'rw'), named, e('mask', 'rw'), e('other', '')]), ACCOUNTS)).toEqual([]);
    expect(checkContentEntry(contents, file(0o660, [e('user_obj', 'rw'), e('group_obj', 'r'), named, e('mask', 'rw'), e('other', '')]), ACCOUNTS)).toEqual([]);
    expect(checkContentEntry(contents, file(0o460, [e('user_obj', 'r'), e('group_obj', ''), named, e('mask', 'rw'), e('other', '')]), ACCOUNTS)).toEqual([]);
    // Where the default ACL names nobody, files have no extended entries and may be tighter still.
    const quarantined = managed('quarantine_path').contents as ContentsModel;
    for (const mode of [0o660, 0o600, 0o400]) {
      expect(checkContentEntry(quarantined, { ...file(mode, minimalAcl(mode)), path: '/srv/shuttle/quarantine/x.data' }, ACCOUNTS)).toEqual([]);
    }
  });

  it('skips entries that vanished during the walk', () => {
    expect(checkContentEntry(contents, { status: 'missing', path: '/srv/shuttle/in/gone' }, ACCOUNTS)).toEqual([]);
  });

  it('reports a subdirectory without setgid, without default ACL, or in another group', () => {
    expect(summary(checkContentEntry(contents, { ...subdirectory(), mode: 0o770 }, ACCOUNTS))).toEqual(['setgid medium set | cleared']);
    const noDefault = subdirectory();
    expect(summary(checkContentEntry(contents, { ...noDefault, acl: { access: noDefault.acl?.access ?? [], defaultAcl: [] } }, ACCOUNTS))).toEqual([
      'default-acl-missing medium default:user::rwx,default:group::rw-,default:group:shuttle_samba_in_users:rwx,default:mask::rwx,default:other::--- | (none)',
    ]);
    expect(summary(checkContentEntry(contents, { ...subdirectory(), gid: GID.users }, ACCOUNTS))).toEqual(['group high shuttle_owners | users']);
  });

  it('reports a world-readable file, an executable file and a setgid file as high', () => {
    for (const mode of [0o664, 0o670, 0o760, 0o2660]) {
      expect(summary(checkContentEntry(contents, file(mode), ACCOUNTS))).toEqual([
        `file-mode high 0660 or tighter (no execute, nothing for other) | ${mode.toString(8).padStart(4, '0')}`,
      ]);
    }
  });

  it('reports a file in another group', () => {
    expect(summary(checkContentEntry(contents, file(0o660, madeInSource(0o660), GID.users), ACCOUNTS))).toEqual(['group high shuttle_owners | users']);
  });

  it('reports named entries a file should not have', () => {
    const access = [e('user_obj', 'rw'), e('user', 'rw', UID.bob), e('group_obj', 'rw'), e('group', 'rwx', GID.shuttle_samba_in_users), e('mask', 'rw'), e('other', '')];
    expect(summary(checkContentEntry(contents, file(0o660, access), ACCOUNTS))).toEqual(['acl-entry-extra high (none) | user:bob:rw-']);
  });

  it('expects the named entries of the default ACL on files, ignoring an execute bit the mask hides', () => {
    // The shipped destination_path: default ACL group:shuttle_out_users:r-X.
    const withNamed = managed('destination_path').contents as ContentsModel;
    const inherited = [e('user_obj', 'rw'), e('group_obj', 'rw'), e('group', 'rx', GID.shuttle_out_users), e('mask', 'rw'), e('other', '')];
    expect(checkContentEntry(withNamed, file(0o660, inherited), ACCOUNTS)).toEqual([]);
    expect(summary(checkContentEntry(withNamed, file(0o660, minimalAcl(0o660)), ACCOUNTS))).toEqual(['acl-entry-missing medium group:shuttle_out_users:r-- | (none)']);
    const masked = [e('user_obj', 'rw'), e('group_obj', 'rw'), e('group', 'r', GID.shuttle_out_users), e('mask', ''), e('other', '')];
    expect(summary(checkContentEntry(withNamed, file(0o600, masked), ACCOUNTS))).toEqual(['mask medium mask::r-- or more (within 0660) | mask::---']);
  });

  it('reports symlinks and special files as drift that --fix leaves alone', () => {
    const link = checkContentEntry(contents, state('/srv/shuttle/in/link', { type: 'symlink' }), ACCOUNTS);
    expect(link).toMatchObject([{ check: 'symlink', severity: 'high', kind: 'drift', fixable: false }]);
    const fifo = checkContentEntry(contents, state('/srv/shuttle/in/pipe', { type: 'special' }), ACCOUNTS);
    expect(fifo).toMatchObject([{ check: 'special-file', kind: 'drift', fixable: false }]);
    expect(verdictOf([...link, ...fifo])).toBe('drift');
  });
});

describe('verdictOf', () => {
  it('is conforms for no findings, drift for drift, unchecked as soon as one check could not be made', () => {
    expect(verdictOf([])).toBe('conforms');
    const drifted = checkContentEntry(contents, file(0o664), ACCOUNTS);
    expect(verdictOf(drifted)).toBe('drift');
    expect(verdictOf([...drifted, ...checkManagedPath(source, { status: 'missing', path: source.path }, ACCOUNTS)])).toBe('unchecked');
  });
});
