// The shipped sysusers.d and tmpfiles.d files are exactly what the permission model in
// config/shuttle.yaml renders to, and the unit agrees with both (account, group, writable paths).
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { DEFAULT_PERMISSIONS, loadConfig, parseConfig } from '../../../src/config-load.js';
import { INSTALL_LAYOUT, UNIT_NODE } from '../../../src/install.js';
import { renderSysusers, renderTmpfiles, SERVICE_GROUP, SERVICE_USER, serviceGroups } from '../../../src/systemd-files.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const SHIPPED_CONFIG = path.join(ROOT, 'config/shuttle.yaml');
const REGENERATE = 'regenerate them: npm run build && node dist/src/systemd-files.js systemd';

/** Values of one key in the unit, in order, each split into words. */
function unitValues(unitText: string, key: string): string[] {
  return unitText
    .split('\n')
    .filter((line) => line.startsWith(`${key}=`))
    .flatMap((line) => line.slice(key.length + 1).trim().split(/\s+/))
    .filter((word) => word !== '');
}

describe('shipped sysusers.d and tmpfiles.d files', () => {
  it('are rendered from the model in config/shuttle.yaml, which is DEFAULT_PERMISSIONS', async () => {
    const config = await loadConfig(SHIPPED_CONFIG);
    expect(config.permissions).toEqual(DEFAULT_PERMISSIONS);
    expect(await readFile(path.join(ROOT, 'systemd/shuttle.sysusers.conf'), 'utf8'), REGENERATE).toBe(renderSysusers(config));
    expect(await readFile(path.join(ROOT, 'systemd/shuttle.tmpfiles.conf'), 'utf8'), REGENERATE).toBe(renderTmpfiles(config));
  });

  it('create every group of the model and put the service account in the owning groups', async () => {
    const text = renderSysusers(await loadConfig(SHIPPED_CONFIG));
    const lines = text.split('\n').filter((line) => line !== '' && !line.startsWith('#'));
    expect(lines).toEqual([
      'g shuttle_owners -',
      'g shuttle_samba_in_users -',
      'g shuttle_out_users -',
      'g shuttle_log_owners -',
      'g shuttle_config_readers -',
      'u shuttle_runner - "Shuttle file transfer daemon" / -',
      'm shuttle_runner shuttle_owners',
      'm shuttle_runner shuttle_log_owners',
      'm shuttle_runner shuttle_config_readers',
    ]);
  });

  it('give each managed path its mode, owner and ACLs, with X and masks resolved for tmpfiles', async () => {
    const text = renderTmpfiles(await loadConfig(SHIPPED_CONFIG));
    const lines = text.split('\n').filter((line) => line !== '' && !line.startsWith('#'));
    expect(lines).toEqual([
      'd /srv/shuttle/in 2770 root shuttle_owners -',
      'a /srv/shuttle/in - - - - group:shuttle_samba_in_users:rwx,mask::rwx,default:user::rwx,default:group::rw-,default:group:shuttle_samba_in_users:rwx,default:mask::rwx,default:other::---',
      'd /srv/shuttle/out 2770 root shuttle_owners -',
      'a /srv/shuttle/out - - - - group:shuttle_out_users:rwx,mask::rwx,default:user::rw-,default:group::rw-,default:group:shuttle_out_users:r-x,default:mask::rwx,default:other::---',
      'd /srv/shuttle/quarantine 2770 root shuttle_owners -',
      'd /srv/shuttle/hazard 2770 root shuttle_owners -',
      'd /var/log/shuttle 2770 root shuttle_log_owners -',
      'z /etc/shuttle/hazard-public.asc 0640 root shuttle_config_readers -',
      'f /etc/shuttle/ledger.yaml 0640 root shuttle_config_readers -',
      'a /etc/shuttle/ledger.yaml - - - - group:shuttle_log_owners:rw-,mask::rw-',
    ]);
  });

  it('follow a custom model: named users, default masks, X on files, odd path characters, numeric groups', () => {
    const config = parseConfig(
      [
        'paths:',
        '  source_path: "/srv/drop box/in"',
        '  destination_path: /srv/100%/out',
        '  quarantine_path: /srv/q',
        '  hazard_archive_path: /srv/h',
        '  log_path: /var/log/s',
        '  hazard_encryption_key_path: /etc/s/key.asc',
        '  ledger_file_path: /etc/s/ledger.yaml',
        'scanners:',
        '  clamd: { socket: /run/clamav/clamd.ctl }',
        'permissions:',
        '  source_path:',
        '    { owner: root, group: inbound, mode: "2750", acl: ["u:alice:rwX", "g:1234:r-X"], default_acl: ["g:auditors:r-X", "o::---"] }',
        '  destination_path: { owner: root, group: outbound, mode: "2770" }',
        '  ledger_file_path: { owner: root, group: readers, mode: "0640", acl: ["g:writers:rwX"] }',
        '',
      ].join('\n'),
      '/etc/s/shuttle.yaml',
    );
    expect(renderTmpfiles(config).split('\n').filter((line) => line !== '' && !line.startsWith('#'))).toEqual([
      'd "/srv/drop box/in" 2750 root inbound -',
      'a "/srv/drop box/in" - - - - user:alice:rwx,group:1234:r-x,mask::rwx,default:user::rwx,default:group::r-x,default:group:auditors:r-x,default:mask::r-x,default:other::---',
      'd /srv/100%%/out 2770 root outbound -',
      'f /etc/s/ledger.yaml 0640 root readers -',
      'a /etc/s/ledger.yaml - - - - group:writers:rw-,mask::rw-',
    ]);
    const sysusers = renderSysusers(config);
    expect(sysusers).toContain('g inbound -\ng auditors -\ng outbound -\ng readers -\ng writers -\n');
    expect(sysusers).not.toMatch(/^g 1234/m);
    expect(serviceGroups(config)).toEqual(['inbound', 'outbound', 'readers']);
  });
});

describe('systemd/shuttle.service agrees with the model and the install layout', () => {
  it('runs as the account and group the sysusers file creates', async () => {
    const unit = await readFile(path.join(ROOT, 'systemd/shuttle.service'), 'utf8');
    expect(unitValues(unit, 'User')).toEqual([SERVICE_USER]);
    expect(unitValues(unit, 'Group')).toEqual([SERVICE_GROUP]);
    expect(serviceGroups(await loadConfig(SHIPPED_CONFIG))).toContain(SERVICE_GROUP);
  });

  it('makes exactly the shipped config\'s directories and ledger writable', async () => {
    const unit = await readFile(path.join(ROOT, 'systemd/shuttle.service'), 'utf8');
    const { paths } = await loadConfig(SHIPPED_CONFIG);
    expect(unitValues(unit, 'ReadWritePaths').sort()).toEqual(
      [paths.sourcePath, paths.destinationPath, paths.quarantinePath, paths.hazardArchivePath, paths.logPath, paths.ledgerFilePath]
        .map((p) => `-${p}`)
        .sort(),
    );
  });

  it('starts the installed program with the shipped config path', async () => {
    const unit = await readFile(path.join(ROOT, 'systemd/shuttle.service'), 'utf8');
    expect(unitValues(unit, 'ExecStart')).toEqual([UNIT_NODE, `/${INSTALL_LAYOUT.program}/bin/shuttle.js`, 'run', '--config', `/${INSTALL_LAYOUT.config}`]);
  });
});
