// Outages, limits, a second instance, a bad config, and kill -9: nothing lost, nothing released unscanned.
import { createHash, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startClamd, type ClamdHarness } from '../../helpers/clamd.js';
import {
  REPO_ROOT,
  journalStates,
  listFiles,
  makeDirectories,
  quarantinedData,
  startDaemon,
  startDaemonReady,
  stopDaemon,
  waitFor,
  waitForFiles,
  writeConfig,
  type RunningDaemon,
  type ShuttleDirectories,
} from '../../helpers/daemon.js';

let clamd: ClamdHarness;
const sha256 = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

beforeAll(async () => {
  clamd = await startClamd();
});

afterAll(async () => {
  await clamd?.stop();
});

describe('fail closed', () => {
  it('releases nothing while clamd is down, and everything once it is back', async () => {
    const directories = await makeDirectories();
    const daemon = await startDaemonReady(await writeConfig(directories, { clamdSocket: clamd.socketPath }));
    try {
      await clamd.kill();
      const contents = new Map<string, Buffer>();
      for (let index = 0; index < 10; index++) {
        const content = randomBytes(10_000 + index);
        contents.set(`outage-${index}.bin`, content);
        await fsp.writeFile(path.join(directories.source, `outage-${index}.bin`), content);
      }
      await waitFor(async () => (await quarantinedData(directories.quarantine)).length === 10, 20_000, () => daemon.output());
      await waitFor(() => (daemon.output().match(/not scanned; the file waits in quarantine.*code=unreachable/g) ?? []).length >= 20, 20_000, () => daemon.output());
      expect(await listFiles(directories.destination)).toEqual([]);
      await clamd.start();
      await waitForFiles(directories.destination, [...contents.keys()], 30_000, () => daemon.output());
      for (const [name, content] of contents) expect(sha256(await fsp.readFile(path.join(directories.destination, name)))).toBe(sha256(content));
      expect(await quarantinedData(directories.quarantine)).toEqual([]);
    } finally {
      expect(await stopDaemon(daemon)).toBe(0);
    }
  });

  it('never releases a file over clamd stream limit, and never deletes it', async () => {
    const limited = await startClamd({ streamMaxLength: '1M' });
    const directories = await makeDirectories();
    // fdpass off: the bytes are streamed, so clamd's StreamMaxLength applies.
    const daemon = await startDaemonReady(await writeConfig(directories, { clamdSocket: limited.socketPath, fdpass: false, maxFileSize: '200M' }));
    try {
      await fsp.writeFile(path.join(directories.source, 'big.bin'), randomBytes(3 * 1024 * 1024));
      await fsp.writeFile(path.join(directories.source, 'small.bin'), randomBytes(1000));
      await waitFor(async () => (await listFiles(directories.destination)).includes('small.bin'), 20_000, () => daemon.output());
      await waitFor(() => (daemon.output().match(/not scanned.*path=big\.bin code=limit/g) ?? []).length >= 2, 20_000, () => daemon.output());
      expect(await listFiles(directories.destination)).toEqual(['small.bin']);
      expect(await quarantinedData(directories.quarantine)).toHaveLength(1);
    } finally {
      expect(await stopDaemon(daemon)).toBe(0);
      await limited.stop();
    }
  });

  it('never calls a file over max_file_size clean, whatever clamd would say', async () => {
    const directories = await makeDirectories();
    const daemon = await startDaemonReady(await writeConfig(directories, { clamdSocket: clamd.socketPath, maxFileSize: '64K' }));
    try {
      await fsp.writeFile(path.join(directories.source, 'over.bin'), randomBytes(100 * 1024));
      await waitFor(() => /not scanned.*path=over\.bin code=limit/.test(daemon.output()), 20_000, () => daemon.output());
      expect(await listFiles(directories.destination)).toEqual([]);
      expect(await quarantinedData(directories.quarantine)).toHaveLength(1);
    } finally {
      expect(await stopDaemon(daemon)).toBe(0);
    }
  });
});

describe('start-up refusals', () => {
  it('a second instance exits 2 with a clear message and the first keeps running', async () => {
    const directories = await makeDirectories();
    const config = await writeConfig(directories, { clamdSocket: clamd.socketPath });
    const first = await startDaemonReady(config);
    try {
      const second = startDaemon(config);
      expect(await second.exited).toBe(2);
      expect(second.output()).toMatch(new RegExp(`another shuttle daemon \\(pid ${first.child.pid}\\) holds .*\\.shuttle\\.lock`));
      await fsp.writeFile(path.join(directories.source, 'after.txt'), 'still running');
      await waitFor(async () => (await listFiles(directories.destination)).includes('after.txt'), 20_000, () => first.output());
      expect(first.child.exitCode).toBeNull();
    } finally {
      expect(await stopDaemon(first)).toBe(0);
    }
  });

  it('a bad config is refused with exit 2, naming the file and the key, before anything is touched', async () => {
    const directories = await makeDirectories();
    const config = await writeConfig(directories, { clamdSocket: clamd.socketPath });
    await fsp.writeFile(config, (await fsp.readFile(config, 'utf8')).replace('pipeline:', 'pipeline:\n  scan_concurency: 4'));
    await fsp.writeFile(path.join(directories.source, 'waiting.txt'), 'not yet');
    const daemon = startDaemon(config);
    expect(await daemon.exited).toBe(2);
    expect(daemon.output()).toContain(config);
    expect(daemon.output()).toContain('pipeline.scan_concurency');
    expect(await fsp.readdir(directories.quarantine)).toEqual([]);
    expect(await listFiles(directories.source)).toEqual(['waiting.txt']);
  });
});

describe('shutdown', () => {
  const hangingScanner = { mdatpCommand: path.join(REPO_ROOT, 'test/fixtures/bin/mdatp') };

  /**
   * A daemon on `config` with one file in `directories` whose scan never answers, once that scan is running.
   * A copy in quarantine is not enough: the intake may not have ended yet, and a stop would then find no
   * scan to wait for.
   */
  async function startHangingScan(directories: ShuttleDirectories, config: string): Promise<RunningDaemon> {
    const running = await fsp.mkdtemp(path.join(directories.root, 'mdatp-running-'));
    const daemon = await startDaemonReady(config, { FAKE_MDATP_MODE: 'hang', FAKE_MDATP_RUNNING: running });
    await fsp.writeFile(path.join(directories.source, 'slow-scan.txt'), 'takes forever');
    await waitFor(async () => (await fsp.readdir(running)).some((name) => name.startsWith('running.')), 20_000, () => daemon.output());
    return daemon;
  }

  it('parks a scan still running at the deadline and exits 0; the item is scanned again after restart', async () => {
    const directories = await makeDirectories();
    const config = await writeConfig(directories, { ...hangingScanner, pipeline: { shutdown_timeout_seconds: 2 } });
    const daemon = await startHangingScan(directories, config);
    const stoppedAt = Date.now();
    expect(await stopDaemon(daemon)).toBe(0);
    expect(Date.now() - stoppedAt).toBeLessThan(8000);
    expect(daemon.output()).toMatch(/stopped at the deadline; unfinished items stay in quarantine/);
    expect([...(await journalStates(directories.quarantine)).values()]).toEqual([{ state: 'quarantined', relativePath: 'slow-scan.txt' }]);

    const restarted = await startDaemonReady(config);
    try {
      await waitFor(async () => (await listFiles(directories.destination)).includes('slow-scan.txt'), 20_000, () => restarted.output());
    } finally {
      expect(await stopDaemon(restarted)).toBe(0);
    }
  });

  it('exits at once on a second stop signal', async () => {
    const directories = await makeDirectories();
    const config = await writeConfig(directories, { ...hangingScanner, pipeline: { shutdown_timeout_seconds: 60 } });
    const daemon = await startHangingScan(directories, config);
    daemon.signal('SIGTERM');
    await daemon.waitForOutput(/stopping/);
    daemon.signal('SIGTERM');
    expect(await daemon.exited).toBe(1);
    expect(daemon.output()).toMatch(/second stop signal: exiting now/);
    expect(await quarantinedData(directories.quarantine)).toHaveLength(1);
  });
});

describe('crash safety', () => {
  it('kill -9 at random moments, restarted each time: every file released exactly once, bytes intact', async () => {
    const directories = await makeDirectories();
    const config = await writeConfig(directories, { clamdSocket: clamd.socketPath });
    const contents = new Map<string, Buffer>();
    let daemon: RunningDaemon = await startDaemonReady(config);
    let kills = 0;
    for (let round = 0; round < 6; round++) {
      for (let index = 0; index < 40; index++) {
        const name = `round-${round}/file-${index}.bin`;
        const content = randomBytes(1 + Math.floor(Math.random() * 300_000));
        contents.set(name, content);
        await fsp.mkdir(path.join(directories.source, `round-${round}`), { recursive: true });
        await fsp.writeFile(path.join(directories.source, name), content);
      }
      await sleep(50 + Math.random() * 400);
      daemon.signal('SIGKILL');
      expect(await daemon.exited).toBe('SIGKILL');
      kills++;
      daemon = await startDaemonReady(config);
    }
    try {
      await waitFor(async () => (await listFiles(directories.destination)).length >= contents.size, 60_000, async () => `${(await listFiles(directories.destination)).length} of ${contents.size}\n${daemon.output()}`);
      // Give a duplicate, if there were to be one, the time to show up.
      await sleep(3000);
      const released = await listFiles(directories.destination);
      expect(released).toEqual([...contents.keys()].sort());
      for (const [name, content] of contents) expect(sha256(await fsp.readFile(path.join(directories.destination, name))), name).toBe(sha256(content));
      expect((await listFiles(directories.source)).length).toBe(0);
      expect(await quarantinedData(directories.quarantine)).toEqual([]);
      expect(kills).toBe(6);
    } finally {
      expect(await stopDaemon(daemon)).toBe(0);
    }
  });
});
