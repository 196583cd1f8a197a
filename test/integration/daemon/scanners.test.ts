// The daemon with several scanners: clamd over TCP and (fake) Microsoft Defender. Clean needs every one.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EICAR, startClamd, type ClamdHarness } from '../../helpers/clamd.js';
import { journalStates, listFiles, makeDirectories, quarantinedData, REPO_ROOT, startDaemonReady, stopDaemon, waitFor, writeConfig } from '../../helpers/daemon.js';

const FAKE_MDATP = path.join(REPO_ROOT, 'test/fixtures/bin/mdatp');
let clamd: ClamdHarness;

beforeAll(async () => {
  clamd = await startClamd({ tcp: true });
});

afterAll(async () => {
  await clamd?.stop();
});

describe('several scanners', () => {
  it('releases what clamd (over TCP) and mdatp both call clean, archives what either calls suspect', async () => {
    const directories = await makeDirectories();
    const config = await writeConfig(directories, { clamdTcpPort: clamd.tcpPort!, mdatpCommand: FAKE_MDATP });
    const daemon = await startDaemonReady(config);
    try {
      await fsp.writeFile(path.join(directories.source, 'clean.txt'), 'nothing to see');
      await fsp.writeFile(path.join(directories.source, 'eicar.com'), EICAR);
      await waitFor(async () => (await listFiles(directories.destination)).includes('clean.txt'), 20_000, () => daemon.output());
      const sidecars = async (): Promise<string[]> => (await fsp.readdir(directories.hazard)).filter((name) => name.endsWith('.json'));
      await waitFor(async () => (await sidecars()).length === 1, 30_000, () => daemon.output());
      const [sidecar] = await sidecars();
      const triage = JSON.parse(await fsp.readFile(path.join(directories.hazard, sidecar!), 'utf8')) as { signature: string };
      expect(triage.signature).toContain('(clamd)');
      expect(triage.signature).toContain('(mdatp)');
      await waitFor(async () => (await journalStates(directories.quarantine)).size === 0, 20_000, () => daemon.output());
      expect(await listFiles(directories.destination)).toEqual(['clean.txt']);
    } finally {
      expect(await stopDaemon(daemon)).toBe(0);
    }
  });

  it('releases nothing while one scanner fails, even though the other says clean', async () => {
    const directories = await makeDirectories();
    const config = await writeConfig(directories, { clamdSocket: clamd.socketPath, mdatpCommand: FAKE_MDATP });
    const daemon = await startDaemonReady(config, { FAKE_MDATP_MODE: 'broken' });
    try {
      await fsp.writeFile(path.join(directories.source, 'clean.txt'), 'nothing to see');
      await waitFor(() => (daemon.output().match(/not scanned; the file waits in quarantine/g) ?? []).length >= 2, 20_000, () => daemon.output());
      expect(daemon.output()).toMatch(/not scanned.*mdatp/);
      expect(await listFiles(directories.destination)).toEqual([]);
      expect(await quarantinedData(directories.quarantine)).toHaveLength(1);
    } finally {
      expect(await stopDaemon(daemon)).toBe(0);
    }
  });

  it('runs at most pipeline.scan_concurrency scans at once while more files are in flight', async () => {
    const directories = await makeDirectories();
    const running = await fsp.mkdtemp(path.join(directories.root, 'mdatp-running-'));
    const config = await writeConfig(directories, { clamdSocket: clamd.socketPath, mdatpCommand: FAKE_MDATP, pipeline: { scan_concurrency: 2 } });
    const daemon = await startDaemonReady(config, { FAKE_MDATP_RUNNING: running, FAKE_MDATP_SCAN_SECONDS: '0.4' });
    const names = Array.from({ length: 8 }, (_, index) => `file-${index}.txt`);
    try {
      await Promise.all(names.map((name) => fsp.writeFile(path.join(directories.source, name), `contents of ${name}`)));
      await waitFor(async () => (await listFiles(directories.destination)).length === names.length && (await journalStates(directories.quarantine)).size === 0, 30_000, () => daemon.output());
      expect((await listFiles(directories.destination)).sort()).toEqual(names);
      const counts = (await fsp.readFile(path.join(running, 'counts'), 'utf8')).trim().split('\n').map(Number);
      expect(counts).toHaveLength(names.length);
      // Two at once, never three: the bound holds, and it is not a bound of one.
      expect(Math.max(...counts)).toBe(2);
    } finally {
      expect(await stopDaemon(daemon)).toBe(0);
    }
  });
});
