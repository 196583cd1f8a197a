// The daemon as systemd/shuttle.service runs it, without systemd: user shuttle_runner, group
// shuttle_owners plus its supplementary groups, only CAP_CHOWN, CAP_FOWNER, CAP_FSETID and CAP_LEASE
// (ambient and bounding set), no_new_privs and the unit's system call filter. The directories come from
// the tmpfiles.d rendering of the model and the accounts from the model's names. A Samba user's file
// must travel the whole pipeline, and start-up must not report a degraded writer check.
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/config-load.js';
import { renderTmpfiles } from '../../../src/systemd-files.js';
import { ensureModelAccounts, type ModelAccounts } from '../../helpers/accounts.js';
import { EICAR, startClamd, type ClamdHarness } from '../../helpers/clamd.js';
import { journalStates, listFiles, quarantinedData, SHUTTLE_BIN, waitFor } from '../../helpers/daemon.js';
import { generateKeyPair, type TestKeyPair } from '../../helpers/gpg.js';
import { buildSeccompLauncher, capabilityNumbers, procStatusField, spawnAsService, type RestrictedProcess } from './sandbox.js';

const CAP_CHOWN = 0;
const CAP_FOWNER = 3;
const CAP_FSETID = 4;
const CAP_LEASE = 28;

let accounts: ModelAccounts;
let clamd: ClamdHarness;
let key: TestKeyPair;
let root: string;
let configFile: string;
let launcher: string;
let daemon: RestrictedProcess | null = null;

const directory = (name: string): string => path.join(root, 'srv', name);
const sha256 = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');

/** Runs a shell command as a Samba user would act: that user's identity and groups, no capabilities. */
function shellAs(user: string, script: string, ...args: string[]): void {
  execFileSync('setpriv', [`--reuid=${user}`, '--regid=users', '--init-groups', '--inh-caps=-all', '--bounding-set=-all', '--', '/bin/sh', '-c', script, 'sh', ...args]);
}

function dropAs(user: string, relativePath: string, content: string): void {
  shellAs(user, 'printf %s "$2" > "$1"', path.join(directory('in'), relativePath), content);
}

beforeAll(async () => {
  accounts = ensureModelAccounts();
  clamd = await startClamd();
  // The private clamd runs as root in a private directory; shuttle_runner must reach its socket.
  await fsp.chmod(clamd.dir, 0o755);
  await fsp.chmod(clamd.socketPath, 0o666);
  key = await generateKeyPair();

  root = await fsp.mkdtemp(path.join(os.tmpdir(), 'shuttle-least-privilege-'));
  await fsp.chmod(root, 0o755);
  const etc = path.join(root, 'etc');
  await fsp.mkdir(etc, { mode: 0o755 });
  await fsp.copyFile(key.publicKeyPath, path.join(etc, 'hazard-public.asc'));
  // RuntimeDirectory=shuttle: made by systemd for the service's user and group.
  const run = path.join(root, 'run');
  await fsp.mkdir(run, { mode: 0o750 });
  await fsp.chown(run, accounts.runner.uid, accounts.gids.shuttle_owners);

  const text = [
    'paths:',
    `  source_path: ${directory('in')}`,
    `  destination_path: ${directory('out')}`,
    `  quarantine_path: ${directory('quarantine')}`,
    `  hazard_archive_path: ${directory('hazard')}`,
    `  log_path: ${path.join(root, 'log')}`,
    `  hazard_encryption_key_path: ${path.join(etc, 'hazard-public.asc')}`,
    `  ledger_file_path: ${path.join(etc, 'ledger.yaml')}`,
    'scanners:',
    `  clamd: { socket: ${clamd.socketPath}, fdpass: true, max_file_size: "200M", timeout_seconds: 30 }`,
    '  require_tested_versions: false',
    'pipeline: { rescan_interval_seconds: 2, retry_base_seconds: 1, retry_max_seconds: 2, stability_window_seconds: 1 }',
    'logging: { level: debug }',
    `runtime: { status_socket: ${path.join(run, 'status.sock')} }`,
    '',
  ].join('\n');
  configFile = path.join(etc, 'shuttle.yaml');
  await fsp.writeFile(configFile, text, { mode: 0o644 });

  // The managed paths exactly as the shipped tmpfiles.d rendering of the default model makes them.
  const tmpfiles = path.join(root, 'shuttle.tmpfiles.conf');
  await fsp.writeFile(tmpfiles, renderTmpfiles(parseConfig(text, configFile)));
  execFileSync('systemd-tmpfiles', ['--create', tmpfiles]);

  launcher = await buildSeccompLauncher(root);
  daemon = spawnAsService({ user: 'shuttle_runner', group: 'shuttle_owners', launcher }, [process.execPath, SHUTTLE_BIN, 'run', '--config', configFile]);
  await daemon.waitForOutput(/shuttle started/);
});

afterAll(async () => {
  if (daemon !== null && daemon.child.exitCode === null && daemon.child.signalCode === null) {
    daemon.child.kill('SIGTERM');
    await daemon.exited;
  }
  await clamd?.stop();
  await key?.remove();
  if (root) await fsp.rm(root, { recursive: true, force: true });
});

describe('shuttle run as shuttle_runner with only the unit\'s capabilities and system call filter', () => {
  it('runs with exactly that identity, those capabilities, no_new_privs and a seccomp filter, and is not degraded', () => {
    const pid = daemon!.child.pid as number;
    const uid = String(accounts.runner.uid);
    expect(procStatusField(pid, 'Uid').split(/\s+/)).toEqual([uid, uid, uid, uid]);
    expect(procStatusField(pid, 'Gid').split(/\s+/)[0]).toBe(String(accounts.gids.shuttle_owners));
    const groups = procStatusField(pid, 'Groups').split(/\s+/).map(Number);
    for (const group of ['shuttle_owners', 'shuttle_log_owners', 'shuttle_config_readers'] as const) {
      expect(groups).toContain(accounts.gids[group]);
    }
    const wanted = [CAP_CHOWN, CAP_FOWNER, CAP_FSETID, CAP_LEASE];
    for (const field of ['CapEff', 'CapPrm', 'CapAmb', 'CapBnd'] as const) expect(capabilityNumbers(pid, field), field).toEqual(wanted);
    expect(procStatusField(pid, 'NoNewPrivs')).toBe('1');
    expect(procStatusField(pid, 'Seccomp')).toBe('2');
    expect(daemon!.output()).toMatch(/writerCheck=lease/);
    expect(daemon!.output()).not.toMatch(/degraded/i);
  });

  it('releases a file a Samba user dropped, with the same bytes, mode 0660 and the destination group', async () => {
    const content = randomBytes(64 * 1024).toString('base64');
    dropAs(accounts.inUser.name, 'report.csv', content);
    const owner = (await fsp.stat(path.join(directory('in'), 'report.csv')).catch(() => null))?.uid;
    if (owner !== undefined) expect(owner).toBe(accounts.inUser.uid);
    const out = directory('out');
    await waitFor(async () => (await listFiles(out)).includes('report.csv'), 30_000, () => daemon!.output());
    const released = path.join(out, 'report.csv');
    expect(sha256(await fsp.readFile(released))).toBe(sha256(content));
    const stats = await fsp.stat(released);
    expect(stats.mode & 0o7777).toBe(0o660);
    expect(stats.gid).toBe(accounts.gids.shuttle_owners);
    expect(await listFiles(directory('in'))).toEqual([]);
    expect(await quarantinedData(directory('quarantine'))).toEqual([]);
  });

  it('encrypts the EICAR test file into the hazard archive and removes the plaintext, never releasing it', async () => {
    dropAs(accounts.inUser.name, 'invoice.pdf', EICAR);
    const archives = async (): Promise<string[]> => (await listFiles(directory('hazard'))).filter((name) => name.endsWith('.gpg'));
    await waitFor(async () => (await archives()).length === 1, 30_000, () => daemon!.output());
    await waitFor(async () => (await journalStates(directory('quarantine'))).size === 0, 30_000, () => daemon!.output());
    expect(await quarantinedData(directory('quarantine'))).toEqual([]);
    expect(await listFiles(directory('out'))).not.toContain('invoice.pdf');
    const [archive] = await archives();
    const stats = await fsp.stat(path.join(directory('hazard'), archive!));
    expect(stats.mode & 0o7777).toBe(0o660);
    expect(stats.gid).toBe(accounts.gids.shuttle_owners);
    const decrypted = await key.decrypt(path.join(directory('hazard'), archive!));
    expect(decrypted.subarray(decrypted.indexOf(10) + 1).toString('latin1')).toBe(EICAR);
  });

  // A directory a Samba user creates gets the default ACL as its mode (user::rw-, group::rw-: no search
  // bit, so nobody can enter it); the enforcer, through CAP_FOWNER, gives it the model's 2770, after which
  // the user can write inside and the file travels like any other.
  it('brings a Samba user\'s new directory to the model, and releases the file then written inside it', async () => {
    const made = path.join(directory('in'), 'from-samba');
    shellAs(accounts.inUser.name, 'mkdir "$1"', made);
    await waitFor(async () => ((await fsp.stat(made)).mode & 0o7777) === 0o2770, 10_000, () => daemon!.output());
    expect((await fsp.stat(made)).gid).toBe(accounts.gids.shuttle_owners);
    dropAs(accounts.inUser.name, 'from-samba/inner.txt', 'written inside a new folder');
    await waitFor(async () => (await listFiles(directory('out'))).includes('from-samba/inner.txt'), 30_000, () => daemon!.output());
    expect(await fsp.readFile(path.join(directory('out'), 'from-samba/inner.txt'), 'utf8')).toBe('written inside a new folder');
    expect(((await fsp.stat(path.join(directory('out'), 'from-samba'))).mode & 0o7777).toString(8)).toBe('2770');
  });

  it('stops cleanly on SIGTERM', async () => {
    daemon!.child.kill('SIGTERM');
    expect(await daemon!.exited).toBe(0);
  });
});
