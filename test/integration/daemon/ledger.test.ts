// The scanner ledger in the running daemon: `shuttle run` starts only with scanner versions that passed
// `shuttle scanner-test`, and releases pause while the running scanner's version has no passing test.
import { spawnSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StatusSnapshot } from '../../../src/status-server.js';
import { startClamd, type ClamdHarness } from '../../helpers/clamd.js';
import {
  journalStates,
  listFiles,
  makeDirectories,
  SHUTTLE_BIN,
  startDaemon,
  startDaemonReady,
  stopDaemon,
  waitFor,
  writeConfig,
} from '../../helpers/daemon.js';

let clamd: ClamdHarness;

beforeAll(async () => {
  clamd = await startClamd();
});

afterAll(async () => {
  await clamd?.stop();
});

function shuttle(...args: string[]): { status: number | null; output: string } {
  const result = spawnSync(process.execPath, [SHUTTLE_BIN, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return { status: result.status, output: result.stdout + result.stderr };
}

describe('the scanner ledger gate', () => {
  it('refuses to start (exit 2) with an untested clamd version, and starts once scanner-test passed', async () => {
    const directories = await makeDirectories();
    const config = await writeConfig(directories, { clamdSocket: clamd.socketPath, requireTestedVersions: true });

    const refused = startDaemon(config);
    expect(await refused.exited).toBe(2);
    expect(refused.output()).toMatch(/scanners: clamd .+ not recorded as tested in .*ledger\.yaml; run `shuttle scanner-test --config /);

    const tested = shuttle('scanner-test', '--config', config);
    expect(tested.status, tested.output).toBe(0);
    const daemon = await startDaemonReady(config);
    try {
      await fsp.writeFile(path.join(directories.source, 'after-test.txt'), 'tested scanner');
      await waitFor(async () => (await listFiles(directories.destination)).includes('after-test.txt'), 20_000, () => daemon.output());
    } finally {
      expect(await stopDaemon(daemon)).toBe(0);
    }
  });

  it('pauses releases while the running version has no passing test, says so in status, and resumes after scanner-test', async () => {
    const directories = await makeDirectories();
    const config = await writeConfig(directories, { clamdSocket: clamd.socketPath, requireTestedVersions: true });
    const ledgerPath = path.join(directories.etc, 'ledger.yaml');
    expect(shuttle('scanner-test', '--config', config).status).toBe(0);
    const daemon = await startDaemonReady(config);
    try {
      // As if clamd had been upgraded under the daemon: the ledger knows only another version now.
      const ledger = await fsp.readFile(ledgerPath, 'utf8');
      const edited = ledger.replace(/^(\s*version: ).*$/m, '$1ClamAV 0.0.1');
      expect(edited).not.toBe(ledger);
      await fsp.writeFile(ledgerPath, edited);

      await fsp.writeFile(path.join(directories.source, 'waits.txt'), 'held back');
      await daemon.waitForOutput(/releases paused: scanner version not tested/);
      await waitFor(async () => [...(await journalStates(directories.quarantine)).values()].some((item) => item.state === 'clean'), 20_000, () => daemon.output());
      await waitFor(
        () => {
          const status = shuttle('status', '--config', config, '--json');
          if (status.status !== 0) return false;
          const snapshot = JSON.parse(status.output) as StatusSnapshot;
          return snapshot.degraded.some((mode) => mode.mode === 'untested-scanner');
        },
        10_000,
        () => daemon.output(),
      );
      expect(await listFiles(directories.destination)).toEqual([]);

      expect(shuttle('scanner-test', '--config', config).status).toBe(0);
      await waitFor(async () => (await listFiles(directories.destination)).includes('waits.txt'), 20_000, () => daemon.output());
      await daemon.waitForOutput(/releases resumed/);
    } finally {
      expect(await stopDaemon(daemon)).toBe(0);
    }
  });
});
