import { describe, expect, it } from 'vitest';

import { planContentFix, planManagedPathFix } from '../../../src/permissions/fix.js';
import type { PathState } from '../../../src/permissions/inspect.js';
import type { AclEntry } from '../../../src/native.js';
import { bitsText, minimalAcl, type ContentsModel } from '../../../src/permissions/model.js';
import { ACCOUNTS, GID, UID, conforming, e, managed, state } from './fixtures.js';

const source = managed('source_path');
const contents = source.contents as ContentsModel;

const kinds = (plan: { steps: readonly { kind: string; description: string }[] }): string[] => plan.steps.map((s) => `${s.kind}: ${s.description}`);

describe('planManagedPathFix', () => {
  it('plans nothing for a conforming path', () => {
    expect(planManagedPathFix(source, conforming(source), ACCOUNTS).steps).toEqual([]);
  });

  it('chowns, sets the access ACL, restores the mode (setgid included) and the default ACL, in that order', () => {
    const drifted: PathState = {
      ...conforming(source),
      uid: UID.alice,
      gid: GID.users,
      mode: 0o755,
      acl: { access: minimalAcl(0o755), defaultAcl: [] },
    };
    const plan = planManagedPathFix(source, drifted, ACCOUNTS);
    expect(plan).toMatchObject({ path: drifted.path, dev: drifted.dev, ino: drifted.ino });
    expect(kinds(plan)).toEqual([
      'chown: owner root:shuttle_owners (was alice:users)',
      'set-acl: access ACL user::rwx,group::rwx,group:shuttle_samba_in_users:rwx,mask::rwx,other::--- (was user::rwx,group::r-x,other::r-x)',
      'chmod: mode 2770 (was 0755)',
      'set-acl: default ACL user::rwx,group::rw-,group:shuttle_samba_in_users:rwx,mask::rwx,other::--- (was (none))',
    ]);
  });

  it('only chmods when only setgid was cleared', () => {
    expect(kinds(planManagedPathFix(source, { ...conforming(source), mode: 0o770 }, ACCOUNTS))).toEqual(['chmod: mode 2770 (was 0770)']);
  });

  it('removes a default ACL the model does not have', () => {
    const quarantine = managed('quarantine_path');
    const plan = planManagedPathFix(quarantine, { ...conforming(quarantine), acl: { access: quarantine.access.slice(), defaultAcl: [e('user_obj', 'rw'), e('group_obj', 'rw'), e('other', '')] } }, ACCOUNTS);
    expect(plan.steps).toEqual([expect.objectContaining({ kind: 'set-acl', scope: 'default', entries: [] })]);
  });
});

describe('planContentFix', () => {
  /** A file made in source_path and chmod'ed to `mode`: the kernel leaves group::rw- and the named entry's rwx, the mask is the group digit. */
  const madeInSource = (mode: number): AclEntry[] => {
    const digit = (shift: number): string => bitsText((mode >> shift) & 7);
    return [e('user_obj', digit(6)), e('group_obj', 'rw'), e('group', 'rwx', GID.shuttle_samba_in_users), e('mask', digit(3)), e('other', digit(0))];
  };
  const file = (mode: number, access = madeInSource(mode), gid: number = GID.shuttle_owners): PathState =>
    state('/srv/shuttle/in/x.csv', { type: 'file', uid: UID.alice, gid, mode, acl: { access, defaultAcl: [] } });
  const quarantined = managed('quarantine_path').contents as ContentsModel;
  const plainFile = (mode: number): PathState => ({ ...file(mode, minimalAcl(mode)), path: '/srv/shuttle/quarantine/x.data' });

  it('tightens a file, never loosens it, and leaves its owner alone', () => {
    // No named default entries: the mode is all there is.
    expect(kinds(planContentFix(quarantined, plainFile(0o775), ACCOUNTS))).toEqual(['chmod: mode 0660 (was 0775)']);
    expect(kinds(planContentFix(quarantined, plainFile(0o4751), ACCOUNTS))).toEqual(['chmod: mode 0640 (was 4751)']);
    expect(planContentFix(quarantined, plainFile(0o600), ACCOUNTS).steps).toEqual([]);

    // In a share the group digit is the mask; the named entry keeps the execute bit the new mask hides.
    expect(kinds(planContentFix(contents, file(0o775), ACCOUNTS))).toEqual([
      'set-acl: access ACL user::rw-,group::rw-,group:shuttle_samba_in_users:rwx,mask::rw-,other::--- (was user::rwx,group::rw-,group:shuttle_samba_in_users:rwx,mask::rwx,other::r-x)',
      'chmod: mode 0660 (was 0775)',
    ]);
    // The mask had taken write from the owning group: raising it for the named entry must not give it back.
    expect(kinds(planContentFix(contents, file(0o4751), ACCOUNTS))).toEqual([
      'set-acl: access ACL user::rw-,group::r--,group:shuttle_samba_in_users:rwx,mask::rw-,other::--- (was user::rwx,group::rw-,group:shuttle_samba_in_users:rwx,mask::r-x,other::--x)',
      'chmod: mode 0660 (was 4751)',
    ]);
    expect(kinds(planContentFix(contents, file(0o640), ACCOUNTS))).toEqual([
      'set-acl: access ACL user::rw-,group::r--,group:shuttle_samba_in_users:rwx,mask::rw-,other::--- (was user::rw-,group::rw-,group:shuttle_samba_in_users:rwx,mask::r--,other::---)',
      'chmod: mode 0660 (was 0640)',
    ]);
    expect(planContentFix(contents, file(0o660), ACCOUNTS).steps).toEqual([]);
  });

  it('gives a file moved in without ACL the named entries of the default ACL, without execute', () => {
    expect(kinds(planContentFix(contents, file(0o640, minimalAcl(0o640)), ACCOUNTS))).toEqual([
      'set-acl: access ACL user::rw-,group::r--,group:shuttle_samba_in_users:rw-,mask::rw-,other::--- (was user::rw-,group::r--,other::---)',
      'chmod: mode 0660 (was 0640)',
    ]);
  });

  it('sets the group of a file to the directory group without touching the owner, or an ACL that conforms', () => {
    // group:shuttle_samba_in_users:rwx behind mask::rw- is what the kernel made, and it conforms: only the group changes.
    expect(planContentFix(contents, file(0o660, madeInSource(0o660), GID.users), ACCOUNTS).steps).toEqual([
      { kind: 'chown', uid: -1, gid: GID.shuttle_owners, description: 'group shuttle_owners (was users)' },
    ]);
  });

  it('drops named entries a file should not carry', () => {
    const access = [e('user_obj', 'rw'), e('user', 'rwx', UID.bob), e('group_obj', 'rw'), e('group', 'rwx', GID.shuttle_samba_in_users), e('mask', 'rwx'), e('other', 'r')];
    expect(kinds(planContentFix(contents, file(0o674, access), ACCOUNTS))).toEqual([
      'set-acl: access ACL user::rw-,group::rw-,group:shuttle_samba_in_users:rwx,mask::rw-,other::--- (was user::rw-,user:bob:rwx,group::rw-,group:shuttle_samba_in_users:rwx,mask::rwx,other::r--)',
      'chmod: mode 0660 (was 0674)',
    ]);
    // A named entry with other permissions than the default ACL gives is replaced, without execute.
    const wrong = [e('user_obj', 'rw'), e('group_obj', 'rw'), e('group', 'r-x', GID.shuttle_samba_in_users), e('mask', 'rw'), e('other', '')];
    expect(kinds(planContentFix(contents, file(0o660, wrong), ACCOUNTS))).toEqual([
      'set-acl: access ACL user::rw-,group::rw-,group:shuttle_samba_in_users:rw-,mask::rw-,other::--- (was user::rw-,group::rw-,group:shuttle_samba_in_users:r-x,mask::rw-,other::---)',
      'chmod: mode 0660 (was 0660)',
    ]);
  });

  it('gives a subdirectory the directory model', () => {
    const sub = { ...conforming(source), path: '/srv/shuttle/in/a', uid: UID.alice, mode: 0o2660, acl: { access: minimalAcl(0o660), defaultAcl: source.defaultAcl.slice() } };
    expect(kinds(planContentFix(contents, sub, ACCOUNTS))).toEqual([
      'set-acl: access ACL user::rwx,group::rwx,group:shuttle_samba_in_users:rwx,mask::rwx,other::--- (was user::rw-,group::rw-,other::---)',
      'chmod: mode 2770 (was 2660)',
    ]);
    // As the kernel makes it from the default ACL: group::rw-, which chmod alone would not change.
    const made = { ...sub, mode: 0o2770, acl: { access: [e('user_obj', 'rwx'), e('group_obj', 'rw'), e('group', 'rwx', GID.shuttle_samba_in_users), e('mask', 'rwx'), e('other', '')], defaultAcl: source.defaultAcl.slice() } };
    expect(kinds(planContentFix(contents, made, ACCOUNTS))).toEqual([
      'set-acl: access ACL user::rwx,group::rwx,group:shuttle_samba_in_users:rwx,mask::rwx,other::--- (was user::rwx,group::rw-,group:shuttle_samba_in_users:rwx,mask::rwx,other::---)',
      'chmod: mode 2770 (was 2770)',
    ]);
  });
});
