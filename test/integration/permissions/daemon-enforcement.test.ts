// The permission model inside `shuttle run`: managed paths are verified and fixed at start, and what appears
// under source_path and destination_path while it runs is brought to the model.
import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startClamd, type ClamdHarness } from '../../helpers/clamd.js';
import { defaultTestPermissions, makeDirectories, startDaemon, startDaemonReady, stopDaemon, waitFor, writeConfig } from '../../helpers/daemon.js';

let clamd: ClamdHarness;

beforeAll(async () => {
  clamd = await startClamd();
});

afterAll(async () => {
  await clamd?.stop();
});

const defaultAcl = (target: string): string => execFileSync('getfacl', ['-p', '-d', '--omit-header', target], { encoding: 'utf8' }).trim();
const modeOf = async (target: string): Promise<string> => ((await fsp.lstat(target)).mode & 0o7777).toString(8).padStart(4, '0');

describe('permission enforcement in the daemon', () => {
  it('fixes drift of the managed paths at start, and logs each correction', async () => {
    const directories = await makeDirectories();
    const config = await writeConfig(directories, { clamdSocket: clamd.socketPath });
    await fsp.chmod(directories.source, 0o755);
    execFileSync('setfacl', ['-k', directories.destination]);
    await fsp.chmod(directories.quarantine, 0o777);
    const daemon = await startDaemonReady(config);
    try {
      expect(await modeOf(directories.source)).toBe('2770');
      expect(await modeOf(directories.quarantine)).toBe('2770');
      expect(defaultAcl(directories.destination)).toBe(['user::rw-', 'group::rw-', 'other::---'].join('\n'));
      expect(daemon.output()).toMatch(new RegExp(`permission drift corrected path=${directories.source} check=mode`));
      expect(daemon.output()).toMatch(new RegExp(`permission drift corrected path=${directories.quarantine} check=mode`));
    } finally {
      expect(await stopDaemon(daemon)).toBe(0);
    }
  });

  it('gives a directory made in source_path the setgid mode and default ACL, and corrects a file in destination_path', async () => {
    const directories = await makeDirectories();
    const config = await writeConfig(directories, { clamdSocket: clamd.socketPath });
    const daemon = await startDaemonReady(config);
    try {
      // Made without setgid or default ACL and moved in whole, as a folder dragged onto the share arrives.
      const elsewhereDirectory = path.join(directories.root, 'made-by-someone');
      await fsp.mkdir(elsewhereDirectory, { mode: 0o755 });
      await fsp.chmod(elsewhereDirectory, 0o755);
      expect(defaultAcl(elsewhereDirectory)).toBe('');
      const made = path.join(directories.source, 'made-by-someone');
      await fsp.rename(elsewhereDirectory, made);
      const started = Date.now();
      await waitFor(async () => (await modeOf(made)) === '2770' && defaultAcl(made) === defaultAcl(directories.source), 10_000, () => daemon.output());
      // Promptness is the benchmark's to measure; this records what the test saw.
      console.log(`source directory brought to the model after ${Date.now() - started} ms`);

      // Made elsewhere with the wrong group and mode, then moved in: it keeps both until corrected.
      const elsewhere = path.join(directories.root, 'stray.sh');
      await fsp.writeFile(elsewhere, '#!/bin/sh\n');
      await fsp.chmod(elsewhere, 0o777);
      execFileSync('chgrp', ['daemon', elsewhere]);
      const stray = path.join(directories.destination, 'stray.sh');
      await fsp.rename(elsewhere, stray);
      await waitFor(async () => {
        const stats = await fsp.lstat(stray);
        return (stats.mode & 0o777) === 0o660 && stats.gid === (await fsp.lstat(directories.destination)).gid;
      }, 10_000, () => daemon.output());
      await daemon.waitForOutput(new RegExp(`permission drift corrected path=${stray}`));
    } finally {
      expect(await stopDaemon(daemon)).toBe(0);
    }
  });

  it('corrects the group and mode of a file that waits in source_path', async () => {
    const directories = await makeDirectories();
    const config = await writeConfig(directories, { clamdSocket: clamd.socketPath });
    const daemon = await startDaemonReady(config);
    try {
      // An upload under a temporary name waits for its client to rename it; meanwhile it must not stay
      // open to others or in a foreign group.
      const staged = path.join(directories.root, 'report.tmp');
      await fsp.writeFile(staged, 'half an upload');
      await fsp.chmod(staged, 0o666);
      execFileSync('chgrp', ['daemon', staged]);
      const waiting = path.join(directories.source, 'report.tmp');
      await fsp.rename(staged, waiting);
      await waitFor(async () => {
        const stats = await fsp.lstat(waiting);
        return (stats.mode & 0o777) === 0o660 && stats.gid === (await fsp.lstat(directories.source)).gid;
      }, 10_000, () => daemon.output());
      expect(await fsp.readFile(waiting, 'utf8')).toBe('half an upload');
    } finally {
      expect(await stopDaemon(daemon)).toBe(0);
    }
  });

  it('refuses to start (exit 2) when the model names a group that does not exist, naming it', async () => {
    const directories = await makeDirectories();
    const permissions = defaultTestPermissions().map((line) =>
      line.startsWith('  log_path:') ? '  log_path: { owner: root, group: shuttle_no_such_group, mode: "2770" }' : line,
    );
    const config = await writeConfig(directories, { clamdSocket: clamd.socketPath, permissions });
    const daemon = startDaemon(config);
    expect(await daemon.exited).toBe(2);
    expect(daemon.output()).toMatch(/permissions: .*shuttle_no_such_group/);
    expect(daemon.output()).not.toMatch(/shuttle started/);
  });
});
