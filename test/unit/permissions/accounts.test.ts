import { describe, expect, it } from 'vitest';

import { checkAccounts, parseGroups, parsePasswd, snapshotFrom } from '../../../src/permissions/accounts.js';
import { GID, GROUPS, USERS, model } from './fixtures.js';

describe('parsePasswd / parseGroups', () => {
  it('reads getent lines and skips malformed ones', () => {
    expect(parsePasswd('root:x:0:0:root:/root:/bin/bash\nbroken line\nalice:x:1002:100::/home/alice:/usr/sbin/nologin\n')).toEqual([
      { name: 'root', uid: 0, gid: 0, shell: '/bin/bash' },
      { name: 'alice', uid: 1002, gid: 100, shell: '/usr/sbin/nologin' },
    ]);
    expect(parseGroups('shuttle_owners:x:2001:shuttle_runner,alice\nempty:x:7:\n:x:9:\n')).toEqual([
      { name: 'shuttle_owners', gid: 2001, members: ['shuttle_runner', 'alice'] },
      { name: 'empty', gid: 7, members: [] },
    ]);
  });
});

describe('checkAccounts', () => {
  it('accepts Samba users with nologin or false in their own group only', () => {
    expect(checkAccounts(model(), snapshotFrom(USERS, GROUPS))).toEqual([]);
  });

  it('reports a Samba user with a login shell', () => {
    const users = USERS.map((u) => (u.name === 'alice' ? { ...u, shell: '/bin/bash' } : u));
    expect(checkAccounts(model(), snapshotFrom(users, GROUPS))).toEqual([
      {
        path: 'user:alice',
        check: 'login-shell',
        expected: 'no login shell (nologin or false)',
        found: '/bin/bash, member of shuttle_samba_in_users',
        severity: 'high',
        kind: 'drift',
        fixable: false,
      },
    ]);
  });

  it('reports a Samba user in another shuttle group, once per pair, primary group included', () => {
    const groups = GROUPS.map((g) => (g.name === 'shuttle_out_users' ? { ...g, members: ['bob', 'alice'] } : g));
    const users = [...USERS, { name: 'carol', uid: 1004, gid: GID.shuttle_samba_in_users, shell: '/usr/sbin/nologin' }];
    const withOwners = groups.map((g) => (g.name === 'shuttle_owners' ? { ...g, members: ['carol'] } : g));
    expect(checkAccounts(model(), snapshotFrom(users, withOwners)).map((f) => `${f.path} ${f.check} ${f.found}`)).toEqual([
      'user:alice extra-group also in shuttle_out_users',
      'user:carol extra-group also in shuttle_owners',
    ]);
  });

  it('counts groups named shuttle_* as shuttle groups even when the model does not name them', () => {
    const groups = [...GROUPS, { name: 'shuttle_admins', gid: 2100, members: ['bob'] }, { name: 'staff', gid: 50, members: ['bob'] }];
    expect(checkAccounts(model(), snapshotFrom(USERS, groups)).map((f) => `${f.path} ${f.found}`)).toEqual(['user:bob also in shuttle_admins']);
  });
});
