// `shuttle status`, the metrics request and SIGHUP against a running daemon.
//
// These pass once src/daemon.ts serves src/status-server.ts's StatusServer on runtime.status_socket (with
// a snapshot and ShuttleMetrics) and handles SIGHUP with src/reload.ts. Until then there is no socket,
// and SIGHUP ends the process, so they fail on purpose.
import { spawnSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { packageVersion, type StatusSnapshot } from '../../../src/status-server.js';
import { requestStatus } from '../../../src/status-client.js';
import { listFiles, SHUTTLE_BIN, startDaemonReady, stopDaemon, waitFor, type RunningDaemon } from '../../helpers/daemon.js';
import { prepareDaemon, type DaemonSetup } from './daemon-setup.js';

let setup: DaemonSetup;
let daemon: RunningDaemon | null = null;

beforeAll(async () => {
  setup = await prepareDaemon();
});

afterEach(async () => {
  if (daemon) await stopDaemon(daemon);
  daemon = null;
});

afterAll(async () => {
  await setup?.remove();
});

function status(...flags: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [SHUTTLE_BIN, 'status', '--config', setup.configFile, ...flags], { encoding: 'utf8' });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** Started, and answering on its status socket: it is past start-up and handles signals. */
async function startAnswering(): Promise<RunningDaemon> {
  const started = await startDaemonReady(setup.configFile);
  await waitFor(() => status().status === 0, 10_000, () => started.output());
  return started;
}

function alive(running: RunningDaemon): boolean {
  return running.child.exitCode === null && running.child.signalCode === null;
}

async function dropAndWait(name: string): Promise<void> {
  await fsp.writeFile(path.join(setup.directories.source, name), `content of ${name}`);
  await waitFor(async () => (await listFiles(setup.directories.destination)).includes(name), 20_000, () => daemon!.output());
}

describe('shuttle status against the running daemon', () => {
  it('reports the queue, today\'s counts, scanners and uptime, as text and as JSON', async () => {
    daemon = await startDaemonReady(setup.configFile);
    await dropAndWait('status-one.txt');

    const json = status('--json');
    expect(json.status, json.stderr).toBe(0);
    const snapshot = JSON.parse(json.stdout) as StatusSnapshot;
    expect(snapshot).toMatchObject({ version: packageVersion(), pid: daemon.child.pid, state: 'running', configFile: setup.configFile });
    expect(Object.keys(snapshot.queue).sort()).toEqual(['clean', 'failed', 'quarantined', 'source', 'suspect']);
    expect(snapshot.today.released).toBeGreaterThanOrEqual(1);
    expect(snapshot.lastRelease?.path).toMatch(/status-one\.txt$/);
    expect(snapshot.scanners.map((scanner) => scanner.name)).toEqual(['clamd']);
    expect(snapshot.uptimeSeconds).toBeGreaterThanOrEqual(0);

    const text = status();
    expect(text.status, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/^shuttle \S+ running, up /);
    expect(text.stdout).toMatch(/today: +\d+ released/);

    const socket = await fsp.stat(setup.statusSocket);
    expect(socket.isSocket()).toBe(true);
    expect(socket.mode & 0o777).toBe(0o660);
  });

  it('serves Prometheus metrics on the same socket', async () => {
    daemon = await startDaemonReady(setup.configFile);
    await dropAndWait('metrics-one.txt');
    const answer = await requestStatus(setup.statusSocket, { command: 'metrics' });
    expect(answer.ok).toBe(true);
    const text = 'metrics' in answer ? answer.metrics : '';
    expect(text).toMatch(/^shuttle_files_total\{outcome="released"\} [1-9]/m);
    expect(text).toMatch(/^shuttle_scan_duration_seconds_count\{scanner="clamd",verdict="clean"\} [1-9]/m);
    expect(text).toMatch(/^shuttle_queue_depth\{state="\w+"\} \d+/m);
  });

  it('exits 0 while the daemon runs, and 2 with a clear message once it has stopped', async () => {
    daemon = await startDaemonReady(setup.configFile);
    expect(status().status).toBe(0);
    expect(await stopDaemon(daemon)).toBe(0);
    daemon = null;
    const after = status();
    expect(after.status).toBe(2);
    expect(after.stderr).toContain('the daemon is not running');
  });
});

describe('SIGHUP', () => {
  it('applies a new log level without a restart, and keeps working', async () => {
    daemon = await startAnswering();
    const original = await fsp.readFile(setup.configFile, 'utf8');
    try {
      await fsp.writeFile(setup.configFile, original.replace(/^  level: debug$/m, '  level: warn'));
      daemon.signal('SIGHUP');
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const mark = daemon.output().length;
      await dropAndWait('after-reload.txt');
      expect(alive(daemon)).toBe(true);
      // Releases are logged at info: no longer shown at warn.
      expect(daemon.output().slice(mark)).not.toMatch(/^info: released/m);
      expect(status('--json').status).toBe(0);
    } finally {
      await fsp.writeFile(setup.configFile, original);
    }
  });

  it('refuses a config that does not load and keeps running with the old one', async () => {
    daemon = await startAnswering();
    const original = await fsp.readFile(setup.configFile, 'utf8');
    try {
      await fsp.writeFile(setup.configFile, `${original}pipeline_typo: 1\n`);
      daemon.signal('SIGHUP');
      await new Promise((resolve) => setTimeout(resolve, 1000));
      expect(alive(daemon)).toBe(true);
      expect(daemon.output()).toContain('pipeline_typo');
      const mark = daemon.output().length;
      await dropAndWait('after-refused-reload.txt');
      // Still at debug: the old config is in force.
      expect(daemon.output().slice(mark)).toMatch(/^debug: clean/m);
    } finally {
      await fsp.writeFile(setup.configFile, original);
    }
  });
});
