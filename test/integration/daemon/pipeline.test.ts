// The daemon end to end against a real clamd: what gets released, what is held, what is refused.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { EICAR, startClamd, type ClamdHarness } from '../../helpers/clamd.js';
import { splitHazardPayload } from '../../helpers/gpg.js';
import {
  defaultTestPermissions,
  journalStates,
  listFiles,
  makeDirectories,
  sharedHazardKey,
  SHUTTLE_BIN,
  quarantinedData,
  startDaemonReady,
  stopDaemon,
  waitFor,
  waitForFiles,
  writeConfig,
  type RunningDaemon,
  type ShuttleDirectories,
} from '../../helpers/daemon.js';

let clamd: ClamdHarness;
let directories: ShuttleDirectories;
let daemon: RunningDaemon | null = null;

const sha256 = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');

beforeAll(async () => {
  clamd = await startClamd();
});

afterAll(async () => {
  await clamd?.stop();
});

afterEach(async () => {
  if (daemon) expect(await stopDaemon(daemon)).toBe(0);
  daemon = null;
  if (directories) await fsp.rm(directories.root, { recursive: true, force: true });
});

async function startWith(options: Parameters<typeof writeConfig>[1] = {}): Promise<RunningDaemon> {
  directories ??= await makeDirectories();
  const config = await writeConfig(directories, { clamdSocket: clamd.socketPath, ...options });
  daemon = await startDaemonReady(config);
  return daemon;
}

/** Every record of the audit log in `logDirectory`, oldest first. */
async function auditRecords(logDirectory: string): Promise<Array<Record<string, unknown> & { event: string }>> {
  const names = (await fsp.readdir(logDirectory)).filter((name) => /^audit-.*\.jsonl$/.test(name)).sort();
  const lines = (await Promise.all(names.map((name) => fsp.readFile(path.join(logDirectory, name), 'utf8')))).join('').split('\n');
  return lines.filter((line) => line !== '').map((line) => JSON.parse(line) as Record<string, unknown> & { event: string });
}

async function fresh(): Promise<void> {
  directories = await makeDirectories();
}

/** The test model, with destination_path's entry replaced by `destination`. */
function destinationModel(destination: string): string[] {
  return defaultTestPermissions().map((line) => (line.startsWith('  destination_path:') ? destination : line));
}

describe('shuttle run with a real clamd', () => {
  it('releases a clean file with the same bytes, mode 0660, the destination group and its default ACL entries', async () => {
    await fresh();
    const out = directories.destination;
    await startWith({
      permissions: destinationModel(
        '  destination_path: { owner: root, group: daemon, mode: "2770", acl: [], default_acl: ["user::rw-", "group::rw-", "group:bin:r--", "other::---"] }',
      ),
    });
    const content = randomBytes(100_000);
    await fsp.writeFile(path.join(directories.source, 'report.csv'), content);
    await waitFor(async () => (await listFiles(out)).includes('report.csv'), 20_000, () => daemon!.output());
    const released = await fsp.readFile(path.join(out, 'report.csv'));
    expect(sha256(released)).toBe(sha256(content));
    const stats = await fsp.stat(path.join(out, 'report.csv'));
    expect(stats.mode & 0o7777).toBe(0o660);
    expect(stats.gid).toBe(Number(execFileSync('getent', ['group', 'daemon'], { encoding: 'utf8' }).split(':')[2]));
    expect(stats.gid).toBe((await fsp.stat(out)).gid);
    // Moved from quarantine, it still carries what the directory's default ACL gives new files.
    const acl = execFileSync('getfacl', ['-p', '--omit-header', path.join(out, 'report.csv')], { encoding: 'utf8' });
    expect(acl).toMatch(/^group:bin:r--$/m);
    expect(acl).toMatch(/^other::---$/m);
    expect(stats.nlink).toBe(1);
    expect(await listFiles(directories.source)).toEqual([]);
    expect(await quarantinedData(directories.quarantine)).toEqual([]);
    expect(daemon!.output()).toMatch(new RegExp(`released.*sha256=${sha256(content)}`));
  });

  it('encrypts the EICAR test file into the hazard archive, removes the plaintext, and never releases it', async () => {
    await fresh();
    await startWith();
    await fsp.mkdir(path.join(directories.source, 'billing'));
    await fsp.writeFile(path.join(directories.source, 'billing/invoice.pdf'), EICAR);
    await fsp.writeFile(path.join(directories.source, 'clean.txt'), 'hello');
    await waitFor(async () => (await listFiles(directories.destination)).includes('clean.txt'), 20_000, () => daemon!.output());
    await waitFor(async () => (await fsp.readdir(directories.hazard)).some((name) => name.endsWith('.gpg')), 30_000, () => daemon!.output());
    await waitFor(async () => (await journalStates(directories.quarantine)).size === 0, 20_000, () => daemon!.output());
    expect(await listFiles(directories.destination)).toEqual(['clean.txt']);
    expect(await quarantinedData(directories.quarantine)).toEqual([]);

    const names = await fsp.readdir(directories.hazard);
    const archive = names.find((name) => name.endsWith('.gpg'))!;
    const decrypted = splitHazardPayload(await (await sharedHazardKey()).decrypt(path.join(directories.hazard, archive)));
    expect(decrypted.payload.toString('latin1')).toBe(EICAR);
    expect(decrypted.header).toMatchObject({ relativePath: 'billing/invoice.pdf', size: EICAR.length, sha256: sha256(EICAR), signature: `${clamd.eicarSignature} (clamd)` });
    const sidecar = names.find((name) => name.endsWith('.json'))!;
    expect(JSON.parse(await fsp.readFile(path.join(directories.hazard, sidecar), 'utf8'))).toMatchObject({ archive, sha256: sha256(EICAR) });
    for (const name of names) expect((await fsp.stat(path.join(directories.hazard, name))).mode & 0o7777).toBe(0o660);

    // Every step of both files is in the audit log, and its chain holds.
    const audit = await auditRecords(directories.log);
    expect(audit.filter((record) => record.event === 'hazarded')).toHaveLength(1);
    expect(audit.filter((record) => record.event === 'released').map((record) => record.path)).toEqual(['clean.txt']);
    const events = audit.filter((record) => record.event !== 'audit-repaired').map((record) => record.event);
    for (const event of ['detected', 'quarantined', 'scanned']) expect(events.filter((name) => name === event)).toHaveLength(2);
    const verify = spawnSync(process.execPath, [SHUTTLE_BIN, 'audit', 'verify', '--config', path.join(directories.etc, 'shuttle.yaml')], { encoding: 'utf8' });
    expect(verify.status, verify.stdout + verify.stderr).toBe(0);
  });

  it('keeps subdirectories, creating them with the parent mode and default ACL', async () => {
    await fresh();
    await startWith({
      permissions: destinationModel(
        '  destination_path: { owner: root, group: root, mode: "2770", acl: [], default_acl: ["user::rwX", "group::rwX", "group:daemon:rwX", "other::---"] }',
      ),
    });
    await fsp.mkdir(path.join(directories.source, 'a/b'), { recursive: true });
    await fsp.writeFile(path.join(directories.source, 'a/b/x.csv'), 'nested');
    await fsp.writeFile(path.join(directories.source, 'a/y.csv'), 'less nested');
    await waitForFiles(directories.destination, ['a/b/x.csv', 'a/y.csv'], 20_000, () => daemon!.output());
    expect(await listFiles(directories.destination)).toEqual(['a/b/x.csv', 'a/y.csv']);
    expect(await fsp.readFile(path.join(directories.destination, 'a/b/x.csv'), 'utf8')).toBe('nested');
    const parentDefaults = execFileSync('getfacl', ['-p', '-d', '--omit-header', directories.destination], { encoding: 'utf8' });
    expect(parentDefaults).toContain('group:daemon:rwx');
    expect(parentDefaults).toContain('user::rwx');
    for (const directory of ['a', 'a/b']) {
      const full = path.join(directories.destination, directory);
      const stats = await fsp.stat(full);
      expect((stats.mode & 0o7777).toString(8)).toBe('2770');
      expect(execFileSync('getfacl', ['-p', '-d', '--omit-header', full], { encoding: 'utf8' })).toBe(parentDefaults);
    }
  });

  it('never overwrites: a name already in the destination gets a distinct one, and the log says which', async () => {
    await fresh();
    await fsp.writeFile(path.join(directories.destination, 'data.csv'), 'already here');
    await startWith();
    await fsp.writeFile(path.join(directories.source, 'data.csv'), 'new upload');
    // Waiting for the final name: until then the release's temporary name is there too.
    await waitFor(async () => (await listFiles(directories.destination)).includes('data (1).csv'), 20_000, () => daemon!.output());
    expect(await listFiles(directories.destination)).toEqual(['data (1).csv', 'data.csv']);
    expect(await fsp.readFile(path.join(directories.destination, 'data.csv'), 'utf8')).toBe('already here');
    expect(await fsp.readFile(path.join(directories.destination, 'data (1).csv'), 'utf8')).toBe('new upload');
    expect(daemon!.output()).toMatch(/name already taken.*releasedAs=.*data \(1\)\.csv/);
  });

  it('takes files that were already there when it started', async () => {
    await fresh();
    for (let index = 0; index < 20; index++) await fsp.writeFile(path.join(directories.source, `early-${index}.bin`), randomBytes(1000));
    await startWith();
    await waitForFiles(directories.destination, Array.from({ length: 20 }, (_, index) => `early-${index}.bin`), 30_000, () => daemon!.output());
    expect(await listFiles(directories.source)).toEqual([]);
  });

  it('refuses symlinks, hard links and FIFOs, leaves them in place and logs each once', async () => {
    await fresh();
    const outside = path.join(directories.root, 'outside-secret.txt');
    await fsp.writeFile(outside, 'secret');
    const outsideDirectory = path.join(directories.root, 'outside-dir');
    await fsp.mkdir(outsideDirectory);
    await fsp.writeFile(path.join(outsideDirectory, 'inner.txt'), 'inner secret');
    await fsp.symlink(outside, path.join(directories.source, 'link.txt'));
    await fsp.symlink(outsideDirectory, path.join(directories.source, 'linked-dir'));
    await fsp.writeFile(path.join(directories.source, 'hard.txt'), 'two names');
    await fsp.link(path.join(directories.source, 'hard.txt'), path.join(directories.root, 'hard-elsewhere.txt'));
    execFileSync('mkfifo', [path.join(directories.source, 'pipe')]);
    await startWith();
    await fsp.writeFile(path.join(directories.source, 'ok.txt'), 'fine');
    await waitFor(async () => (await listFiles(directories.destination)).includes('ok.txt'), 20_000, () => daemon!.output());
    // Let the periodic rescan (every 2 s here) see them again: still refused, still logged only once.
    await new Promise((resolve) => setTimeout(resolve, 4500));
    expect(await listFiles(directories.destination)).toEqual(['ok.txt']);
    expect((await listFiles(directories.source)).sort()).toEqual(['hard.txt', 'link.txt', 'linked-dir', 'pipe']);
    expect(await fsp.readFile(outside, 'utf8')).toBe('secret');
    expect(await fsp.readFile(path.join(outsideDirectory, 'inner.txt'), 'utf8')).toBe('inner secret');
    const output = daemon!.output();
    for (const [name, reason] of [
      ['link.txt', 'symbolic link'],
      ['linked-dir', 'symbolic link'],
      ['hard.txt', 'more than one hard link'],
      ['pipe', 'FIFO'],
    ] as const) {
      const lines = output.split('\n').filter((line) => line.includes('left in source') && line.includes(`/${name} `));
      expect(lines, name).toHaveLength(1);
      expect(lines[0]).toContain(reason);
    }
  });

  it('never takes a file while a writer holds it open, however long the writer pauses', async () => {
    await fresh();
    await startWith();
    const target = path.join(directories.source, 'slow.bin');
    const first = randomBytes(64 * 1024);
    const second = randomBytes(64 * 1024);
    const firstFile = path.join(directories.root, 'first.part');
    const secondFile = path.join(directories.root, 'second.part');
    await fsp.writeFile(firstFile, first);
    await fsp.writeFile(secondFile, second);
    // A real writer process: writes half, pauses far longer than the 1 s stability window, writes the rest.
    const writer = spawn('python3', [
      '-c',
      'import sys,time\nf=open(sys.argv[1],"wb")\nf.write(open(sys.argv[2],"rb").read()); f.flush()\ntime.sleep(6)\nf.write(open(sys.argv[3],"rb").read()); f.close()',
      target,
      firstFile,
      secondFile,
    ]);
    const writerDone = new Promise((resolve) => writer.on('exit', resolve));
    await new Promise((resolve) => setTimeout(resolve, 4000));
    expect(await listFiles(directories.destination)).toEqual([]);
    expect(await quarantinedData(directories.quarantine)).toEqual([]);
    expect(await listFiles(directories.source)).toEqual(['slow.bin']);
    expect(await writerDone).toBe(0);
    await waitFor(async () => (await listFiles(directories.destination)).includes('slow.bin'), 20_000, () => daemon!.output());
    expect(sha256(await fsp.readFile(path.join(directories.destination, 'slow.bin')))).toBe(sha256(Buffer.concat([first, second])));
  });

  it('runs with 16 threads in its libuv pool when UV_THREADPOOL_SIZE is not set', async () => {
    // bin/shuttle.js sets the size before anything starts the pool; an entry point loaded as an ES module
    // would already have started it with 4. The difference to a node process with a pool of one thread is
    // the pool's size less one, whatever other threads node itself runs.
    await fresh();
    const config = await writeConfig(directories, { clamdSocket: clamd.socketPath });
    daemon = await startDaemonReady(config, { UV_THREADPOOL_SIZE: '' });
    await fsp.writeFile(path.join(directories.source, 'first.txt'), 'first');
    await waitFor(async () => (await listFiles(directories.destination)).includes('first.txt'), 20_000, () => daemon!.output());
    const daemonThreads = (await fsp.readdir(`/proc/${daemon.child.pid}/task`)).length;
    const probe = spawnSync(
      process.execPath,
      ['-e', "require('fs').promises.readFile('/proc/self/stat').then(() => console.log(require('fs').readdirSync('/proc/self/task').length))"],
      { env: { ...process.env, UV_THREADPOOL_SIZE: '1' }, encoding: 'utf8' },
    );
    expect(probe.status, probe.stderr).toBe(0);
    const probeThreads = Number(probe.stdout.trim());
    expect(daemonThreads - probeThreads, `the daemon runs ${daemonThreads} threads, a node with a pool of one ${probeThreads}`).toBeGreaterThanOrEqual(15);
  });

  it('stops on SIGTERM with exit status 0', async () => {
    await fresh();
    const running = await startWith();
    await fsp.writeFile(path.join(directories.source, 'last.txt'), 'last');
    await waitFor(async () => (await listFiles(directories.destination)).includes('last.txt'), 20_000, () => running.output());
    expect(await stopDaemon(running)).toBe(0);
    expect(running.output()).toMatch(/stopped/);
    daemon = null;
  });
});
