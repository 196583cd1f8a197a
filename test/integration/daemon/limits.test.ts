// Intake limits in the running daemon: files that must wait stay in source_path untouched and are taken by
// themselves later; files that are refused stay with a logged reason; pauses show in `shuttle status`.
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StatusSnapshot } from '../../../src/status-server.js';
import { startClamd, type ClamdHarness } from '../../helpers/clamd.js';
import { listFiles, makeDirectories, SHUTTLE_BIN, startDaemonReady, stopDaemon, waitFor, writeConfig, type RunningDaemon } from '../../helpers/daemon.js';

let clamd: ClamdHarness;
const MiB = 1024 * 1024;

beforeAll(async () => {
  clamd = await startClamd();
});

afterAll(async () => {
  await clamd?.stop();
});

function statusOf(config: string): StatusSnapshot | null {
  const result = spawnSync(process.execPath, [SHUTTLE_BIN, 'status', '--config', config, '--json'], { encoding: 'utf8' });
  return result.status === 0 ? (JSON.parse(result.stdout) as StatusSnapshot) : null;
}

const released = async (destination: string): Promise<string[]> => (await listFiles(destination)).filter((name) => !name.includes('.shuttle-'));

async function stopped(daemon: RunningDaemon): Promise<void> {
  expect(await stopDaemon(daemon)).toBe(0);
}

describe('intake limits', () => {
  it('leaves a file over limits.max_file_size in source with a logged and audited reason', async () => {
    const directories = await makeDirectories();
    const config = await writeConfig(directories, { clamdSocket: clamd.socketPath, extraYaml: 'limits: { max_file_size: "1K" }' });
    const daemon = await startDaemonReady(config);
    try {
      await fsp.writeFile(path.join(directories.source, 'big.bin'), randomBytes(4096));
      await fsp.writeFile(path.join(directories.source, 'small.txt'), 'fits');
      await waitFor(async () => (await released(directories.destination)).includes('small.txt'), 20_000, () => daemon.output());
      await daemon.waitForOutput(/left in source path=.*big\.bin reason=".*max_file_size/);
      expect(await listFiles(directories.source)).toEqual(['big.bin']);
      const audit = await fsp.readFile(path.join(directories.log, (await fsp.readdir(directories.log)).find((name) => name.startsWith('audit-'))!), 'utf8');
      expect(audit).toMatch(/"event":"rejected","path":"big\.bin"/);
    } finally {
      await stopped(daemon);
    }
  });

  it('pauses at the daily file limit, says so in status, and still counts today\'s files after a restart', async () => {
    const directories = await makeDirectories();
    const config = await writeConfig(directories, { clamdSocket: clamd.socketPath, extraYaml: 'limits: { daily_max_files: 3 }' });
    let daemon = await startDaemonReady(config);
    try {
      for (let index = 0; index < 5; index++) await fsp.writeFile(path.join(directories.source, `day-${index}.txt`), `file ${index}`);
      await waitFor(async () => (await released(directories.destination)).length === 3, 20_000, () => daemon.output());
      await waitFor(() => statusOf(config)?.degraded.some((mode) => mode.mode === 'intake-paused') ?? false, 10_000, () => daemon.output());
      expect(await listFiles(directories.source)).toHaveLength(2);
      await stopped(daemon);

      daemon = await startDaemonReady(config);
      await daemon.waitForOutput(/daily quota: files already taken today files=3/);
      // Rescans every 2 s: long enough for a wrongly reset quota to let the two waiting files through.
      await new Promise((resolve) => setTimeout(resolve, 5000));
      expect(await listFiles(directories.source)).toHaveLength(2);
      expect(await released(directories.destination)).toHaveLength(3);
    } finally {
      await stopped(daemon);
    }
  });

  it('lets another uploader\'s files through while one uploader is over its rate', async () => {
    const directories = await makeDirectories();
    const config = await writeConfig(directories, { clamdSocket: clamd.socketPath, extraYaml: 'limits: { uploader_max_files_per_minute: 2 }' });
    const daemon = await startDaemonReady(config);
    try {
      for (let index = 0; index < 4; index++) await fsp.writeFile(path.join(directories.source, `root-${index}.txt`), `root ${index}`);
      await waitFor(async () => (await released(directories.destination)).length === 2, 20_000, async () => `released: ${(await released(directories.destination)).join(', ')}\n${daemon.output().slice(-3000)}`);
      // Owned by the other uploader from the moment it appears, as a file written over Samba would be.
      const staged = path.join(directories.root, 'other-user.txt');
      await fsp.writeFile(staged, 'from someone else');
      execFileSync('chown', ['daemon', staged]);
      await fsp.rename(staged, path.join(directories.source, 'other-user.txt'));
      await waitFor(async () => (await released(directories.destination)).includes('other-user.txt'), 20_000, () => daemon.output());
      // The first uploader's bucket refills at 2 a minute: its last two are still waiting.
      expect((await listFiles(directories.source)).filter((name) => name.startsWith('root-'))).toHaveLength(2);
    } finally {
      await stopped(daemon);
    }
  });

  it('renames a name the destination share cannot hold, and leaves temporary upload names alone', async () => {
    const directories = await makeDirectories();
    const config = await writeConfig(directories, { clamdSocket: clamd.socketPath });
    const daemon = await startDaemonReady(config);
    try {
      await fsp.mkdir(path.join(directories.source, 'CON'));
      await fsp.writeFile(path.join(directories.source, 'CON', 'what?.txt'), 'odd names');
      await fsp.writeFile(path.join(directories.source, '~$draft.docx'), 'owner file');
      await fsp.writeFile(path.join(directories.source, 'upload.tmp'), 'half an upload');
      await waitFor(async () => (await released(directories.destination)).includes('CON_/what_.txt'), 20_000, () => daemon.output());
      expect(daemon.output()).toMatch(/name cannot be used on the destination share.*releaseAs=CON_\/what_\.txt/);
      await new Promise((resolve) => setTimeout(resolve, 3000));
      expect((await listFiles(directories.source)).sort()).toEqual(['upload.tmp', '~$draft.docx']);
      // Renamed by the client when the upload is complete: taken under the final name.
      await fsp.rename(path.join(directories.source, 'upload.tmp'), path.join(directories.source, 'upload.csv'));
      await waitFor(async () => (await released(directories.destination)).includes('upload.csv'), 20_000, () => daemon.output());
    } finally {
      await stopped(daemon);
    }
  });

  it('pauses intake while quarantine lacks space, and resumes by itself when space returns', async () => {
    const directories = await makeDirectories();
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=24m,mode=2770', 'shuttle-test-quarantine', directories.quarantine]);
    try {
      const config = await writeConfig(directories, { clamdSocket: clamd.socketPath, extraYaml: 'limits: { free_space_reserve: "8M" }' });
      const daemon = await startDaemonReady(config);
      try {
        const content = randomBytes(20 * MiB);
        await fsp.writeFile(path.join(directories.source, 'large.bin'), content);
        await waitFor(() => statusOf(config)?.degraded.some((mode) => mode.mode === 'intake-paused') ?? false, 20_000, () => daemon.output());
        expect(await listFiles(directories.source)).toEqual(['large.bin']);
        await daemon.waitForOutput(/intake paused: .*free/);

        execFileSync('mount', ['-o', 'remount,size=64m', directories.quarantine]);
        await waitFor(async () => (await released(directories.destination)).includes('large.bin'), 60_000, () => daemon.output());
        expect((await fsp.readFile(path.join(directories.destination, 'large.bin'))).equals(content)).toBe(true);
        await daemon.waitForOutput(/intake resumed/, 20_000);
      } finally {
        await stopped(daemon);
      }
    } finally {
      execFileSync('umount', [directories.quarantine]);
    }
  });
});
