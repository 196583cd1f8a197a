import { describe, expect, it } from 'vitest';

import { planContentFix, planManagedPathFix } from '../../../src/permissions/fix.js';
import type { PathState } from '../../../src/permissions/inspect.js';
import { minimalAcl, type ContentsModel } from '../../../src/permissions/model.js';
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
      'set-acl: default ACL user::rw-,group::rw-,other::--- (was (none))',
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
  const file = (mode: number, access = minimalAcl(mode), gid: number = GID.shuttle_owners): PathState =>
    state('/srv/shuttle/in/x.csv', { type: 'file', uid: UID.alice, gid, mode, acl: { access, defaultAcl: [] } });

  it('tightens a file, never loosens it, and leaves its owner alone', () => {
    expect(kinds(planContentFix(contents, file(0o775), ACCOUNTS))).toEqual(['chmod: mode 0660 (was 0775)']);
    expect(kinds(planContentFix(contents, file(0o4751), ACCOUNTS))).toEqual(['chmod: mode 0640 (was 4751)']);
    expect(planContentFix(contents, file(0o600), ACCOUNTS).steps).toEqual([]);
  });

  it('sets the group of a file to the directory group without touching the owner', () => {
    expect(planContentFix(contents, file(0o660, minimalAcl(0o660), GID.users), ACCOUNTS).steps).toEqual([
      { kind: 'chown', uid: -1, gid: GID.shuttle_owners, description: 'group shuttle_owners (was users)' },
    ]);
  });

  it('drops named entries a file should not carry', () => {
    const access = [e('user_obj', 'rw'), e('user', 'rwx', UID.bob), e('group_obj', 'rw'), e('mask', 'rwx'), e('other', 'r')];
    expect(kinds(planContentFix(contents, file(0o674, access), ACCOUNTS))).toEqual([
      'set-acl: access ACL user::rw-,group::rw-,other::--- (was user::rw-,user:bob:rwx,group::rw-,mask::rwx,other::r--)',
      'chmod: mode 0660 (was 0674)',
    ]);
  });

  it('gives a subdirectory the directory model', () => {
    const sub = { ...conforming(source), path: '/srv/shuttle/in/a', uid: UID.alice, mode: 0o2660, acl: { access: minimalAcl(0o660), defaultAcl: source.defaultAcl.slice() } };
    expect(kinds(planContentFix(contents, sub, ACCOUNTS))).toEqual([
      'set-acl: access ACL user::rwx,group::rwx,group:shuttle_samba_in_users:rwx,mask::rwx,other::--- (was user::rw-,group::rw-,other::---)',
      'chmod: mode 2770 (was 2660)',
    ]);
  });
});
