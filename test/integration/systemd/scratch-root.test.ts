// The shipped sysusers.d and tmpfiles.d files applied to scratch roots with systemd's own tools
// (`systemd-sysusers --root`, `systemd-tmpfiles --create --root`), no running systemd needed: the
// accounts appear in the root's passwd and group files, and the managed paths come out as the
// permission model says, which `shuttle verify-permissions` confirms.
import { execFileSync, spawnSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureModelAccounts, type ModelAccounts } from '../../helpers/accounts.js';
import { SHUTTLE_BIN } from '../../helpers/daemon.js';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const SYSUSERS = path.join(REPO, 'systemd/shuttle.sysusers.conf');
const TMPFILES = path.join(REPO, 'systemd/shuttle.tmpfiles.conf');
const SHIPPED_CONFIG = path.join(REPO, 'config/shuttle.yaml');
const PATH_KEYS = [
  'source_path',
  'destination_path',
  'quarantine_path',
  'hazard_archive_path',
  'log_path',
  'hazard_encryption_key_path',
  'ledger_file_path',
];

const roots: string[] = [];

async function scratchRoot(): Promise<string> {
  const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'shuttle-root-'));
  roots.push(root);
  await fsp.mkdir(path.join(root, 'etc'));
  return root;
}

function run(command: string, args: string[]): string {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  if (result.error) throw new Error(`${command} cannot run (${result.error.message}); Debian's systemd package provides it`);
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} exited ${result.status}:\n${result.stdout}${result.stderr}`);
  return result.stdout + result.stderr;
}

function parseDatabase(text: string): Map<string, string[]> {
  return new Map(
    text
      .split('\n')
      .filter((line) => line.includes(':'))
      .map((line) => {
        const fields = line.split(':');
        return [fields[0] as string, fields];
      }),
  );
}

/** getfacl's entries for a path, numeric ids, comments dropped. */
function acl(target: string): string[] {
  return execFileSync('getfacl', ['--numeric', '--absolute-names', '--omit-header', target], { encoding: 'utf8' })
    .split('\n')
    .filter((line) => line !== '' && !line.startsWith('#'));
}

afterAll(async () => {
  for (const root of roots) await fsp.rm(root, { recursive: true, force: true });
});

describe('systemd-sysusers --root with shuttle.sysusers.conf', () => {
  it('creates the groups, the service account without a login, and its memberships', async () => {
    const root = await scratchRoot();
    run('systemd-sysusers', [`--root=${root}`, SYSUSERS]);
    const passwd = parseDatabase(await fsp.readFile(path.join(root, 'etc/passwd'), 'utf8'));
    const group = parseDatabase(await fsp.readFile(path.join(root, 'etc/group'), 'utf8'));
    for (const name of ['shuttle_owners', 'shuttle_samba_in_users', 'shuttle_out_users', 'shuttle_log_owners', 'shuttle_config_readers']) {
      expect(group.has(name), name).toBe(true);
      expect(Number(group.get(name)?.[2])).toBeLessThan(1000);
    }
    const runner = passwd.get('shuttle_runner');
    expect(runner).toBeDefined();
    expect(runner?.[6]).toBe('/usr/sbin/nologin');
    expect(Number(runner?.[2])).toBeLessThan(1000);
    const members = (name: string): string[] => (group.get(name)?.[3] ?? '').split(',').filter(Boolean);
    expect(members('shuttle_owners')).toEqual(['shuttle_runner']);
    expect(members('shuttle_log_owners')).toEqual(['shuttle_runner']);
    expect(members('shuttle_config_readers')).toEqual(['shuttle_runner']);
    expect(members('shuttle_samba_in_users')).toEqual([]);
    expect(members('shuttle_out_users')).toEqual([]);

    // Applying it again changes nothing.
    const before = await fsp.readFile(path.join(root, 'etc/group'), 'utf8');
    run('systemd-sysusers', [`--root=${root}`, SYSUSERS]);
    expect(await fsp.readFile(path.join(root, 'etc/group'), 'utf8')).toBe(before);
  });
});

describe('systemd-tmpfiles --create --root with shuttle.tmpfiles.conf', () => {
  let accounts: ModelAccounts;
  let root: string;
  let configFile: string;
  const at = (absolute: string): string => path.join(root, absolute);

  beforeAll(async () => {
    // ACL entries name groups, and tmpfiles resolves those through the host's account databases, while
    // owners and groups come from the root's files. The root starts from the host's files so both agree,
    // as they do on a real host; sysusers then adds what is missing.
    accounts = ensureModelAccounts();
    root = await scratchRoot();
    for (const file of ['passwd', 'group', 'shadow', 'gshadow']) {
      await fsp.copyFile(path.join('/etc', file), at(`/etc/${file}`)).catch(() => undefined);
    }
    run('systemd-sysusers', [`--root=${root}`, SYSUSERS]);
    // tmpfiles only corrects the key file; the admin puts it in place.
    await fsp.mkdir(at('/etc/shuttle'), { recursive: true });
    await fsp.writeFile(at('/etc/shuttle/hazard-public.asc'), '-----BEGIN PGP PUBLIC KEY BLOCK-----\n', { mode: 0o600 });
    run('systemd-tmpfiles', ['--create', `--root=${root}`, TMPFILES]);

    let text = await fsp.readFile(SHIPPED_CONFIG, 'utf8');
    for (const key of PATH_KEYS) text = text.replace(new RegExp(`^(  ${key}: )(\\S+)`, 'm'), (_, prefix: string, value: string) => `${prefix}${at(value)}`);
    configFile = path.join(root, 'shuttle.yaml');
    await fsp.writeFile(configFile, text);
  });

  it('gives every managed path the model\'s owner, group and mode', async () => {
    const expected: [string, number, number][] = [
      ['/srv/shuttle/in', 0o2770, accounts.gids.shuttle_owners],
      ['/srv/shuttle/out', 0o2770, accounts.gids.shuttle_owners],
      ['/srv/shuttle/quarantine', 0o2770, accounts.gids.shuttle_owners],
      ['/srv/shuttle/hazard', 0o2770, accounts.gids.shuttle_owners],
      ['/var/log/shuttle', 0o2770, accounts.gids.shuttle_log_owners],
      ['/etc/shuttle/hazard-public.asc', 0o640, accounts.gids.shuttle_config_readers],
      // The mask (rw-, for the named group) is what the group digit shows.
      ['/etc/shuttle/ledger.yaml', 0o660, accounts.gids.shuttle_config_readers],
    ];
    for (const [target, mode, gid] of expected) {
      const stats = await fsp.stat(at(target));
      expect(stats.mode & 0o7777, target).toBe(mode);
      expect(stats.uid, target).toBe(0);
      expect(stats.gid, target).toBe(gid);
    }
    expect((await fsp.stat(at('/srv/shuttle/in'))).isDirectory()).toBe(true);
    expect((await fsp.stat(at('/etc/shuttle/ledger.yaml'))).isFile()).toBe(true);
  });

  it('sets the access and default ACLs of the shares and the ledger, and none elsewhere', () => {
    const { gids } = accounts;
    expect(acl(at('/srv/shuttle/in'))).toEqual([
      'user::rwx',
      'group::rwx',
      `group:${gids.shuttle_samba_in_users}:rwx`,
      'mask::rwx',
      'other::---',
      'default:user::rwx',
      'default:group::rw-',
      `default:group:${gids.shuttle_samba_in_users}:rwx`,
      'default:mask::rwx',
      'default:other::---',
    ]);
    // Released files are readable by the outbound group, never executable: r-X in a default ACL is r-x there,
    // and a new file's mode takes the execute bit away.
    expect(acl(at('/srv/shuttle/out'))).toEqual([
      'user::rwx',
      'group::rwx',
      `group:${gids.shuttle_out_users}:rwx`,
      'mask::rwx',
      'other::---',
      'default:user::rw-',
      'default:group::rw-',
      `default:group:${gids.shuttle_out_users}:r-x`,
      'default:mask::rwx',
      'default:other::---',
    ]);
    expect(acl(at('/srv/shuttle/quarantine'))).toEqual(['user::rwx', 'group::rwx', 'other::---']);
    expect(acl(at('/etc/shuttle/ledger.yaml'))).toEqual(['user::rw-', 'group::r--', `group:${gids.shuttle_log_owners}:rw-`, 'mask::rw-', 'other::---']);
  });

  it('passes shuttle verify-permissions', () => {
    const result = spawnSync(process.execPath, [SHUTTLE_BIN, 'verify-permissions', '--config', configFile, '--json'], { encoding: 'utf8' });
    expect(result.status, `${result.stdout}${result.stderr}`).toBe(0);
    const report = JSON.parse(result.stdout) as { findings?: unknown[] };
    expect(report.findings ?? []).toEqual([]);
  });

  it('repairs drift when applied again, as it is at every boot', async () => {
    await fsp.chmod(at('/srv/shuttle/quarantine'), 0o777);
    execFileSync('setfacl', ['-m', 'g:shuttle_out_users:rwx', at('/srv/shuttle/in')]);
    run('systemd-tmpfiles', ['--create', `--root=${root}`, TMPFILES]);
    expect((await fsp.stat(at('/srv/shuttle/quarantine'))).mode & 0o7777).toBe(0o2770);
    expect(acl(at('/srv/shuttle/in'))).not.toContain(`group:${accounts.gids.shuttle_out_users}:rwx`);
    const result = spawnSync(process.execPath, [SHUTTLE_BIN, 'verify-permissions', '--config', configFile], { encoding: 'utf8' });
    expect(result.status, `${result.stdout}${result.stderr}`).toBe(0);
  });
});
