import { describe, expect, it } from 'vitest';

import { parseGetfaclOutput, systemError } from '../../../src/permissions/acl-backend.js';
import { e } from './fixtures.js';

describe('parseGetfaclOutput', () => {
  it('splits blocks by file and reads access and default entries with numeric ids', () => {
    const output = [
      '# file: /srv/in',
      '# owner: 0',
      '# group: 2001',
      '# flags: -s-',
      'user::rwx',
      'group::rwx',
      'group:2002:rwx',
      'mask::rwx',
      'other::---',
      'default:user::rwx',
      'default:group::rw-',
      'default:group:2002:rwx',
      'default:mask::rwx',
      'default:other::---',
      '',
      '# file: /srv/in/a.csv',
      '# owner: 1002',
      '# group: 2001',
      'user::rw-',
      'group::rw-',
      'group:2002:rwx',
      'mask::rw-',
      'other::---',
      '',
    ].join('\n');
    const readings = parseGetfaclOutput(output);
    expect([...readings.keys()]).toEqual(['/srv/in', '/srv/in/a.csv']);
    expect(readings.get('/srv/in')).toEqual({
      access: [e('user_obj', 'rwx'), e('group_obj', 'rwx'), e('group', 'rwx', 2002), e('mask', 'rwx'), e('other', '')],
      defaultAcl: [e('user_obj', 'rwx'), e('group_obj', 'rw'), e('group', 'rwx', 2002), e('mask', 'rwx'), e('other', '')],
    });
    expect(readings.get('/srv/in/a.csv')).toEqual({
      access: [e('user_obj', 'rw'), e('group_obj', 'rw'), e('group', 'rwx', 2002), e('mask', 'rw'), e('other', '')],
      defaultAcl: [],
    });
  });

  it('undoes getfacl\'s escapes: backslashes and control characters as octal', () => {
    const output = '# file: /srv/in/new\\012line\n# file: x\n\n# file: /srv/in/back\\\\slash \\303\\274\nuser::rw-\ngroup::r--\nother::---\n';
    const readings = parseGetfaclOutput(output);
    expect(readings.has('/srv/in/new\nline')).toBe(true);
    expect(readings.has('/srv/in/back\\slash ü')).toBe(true);
  });

  it('refuses an entry type it does not know rather than guess', () => {
    expect(() => parseGetfaclOutput('# file: /x\nowner::rwx\n')).toThrow(/unknown type/);
  });
});

describe('systemError', () => {
  it('looks like a Node fs error', () => {
    const error = systemError('ELOOP', 'acl_get_file', '/srv/in/link');
    expect(error.message).toBe("ELOOP: too many symbolic links encountered, acl_get_file '/srv/in/link'");
    expect(error).toMatchObject({ code: 'ELOOP', errno: -40, syscall: 'acl_get_file', path: '/srv/in/link' });
  });
});
