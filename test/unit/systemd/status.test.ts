// The status socket and `shuttle status` against a fake snapshot provider: the protocol, the socket's
// mode and group, stale sockets, and the messages and exit statuses when no daemon answers.
import { execFileSync, spawnSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/config-load.js';
import { ShuttleMetrics } from '../../../src/metrics.js';
import { formatStatus, requestStatus, statusCommand, StatusUnavailableError } from '../../../src/status-client.js';
import { RecentErrors, StatusServer, StatusSocketError, systemdStatusLine, type StatusSnapshot } from '../../../src/status-server.js';

const SNAPSHOT: StatusSnapshot = {
  version: '0.1.0',
  pid: 4242,
  state: 'running',
  configFile: '/etc/shuttle/shuttle.yaml',
  startedAt: '2026-03-01T08:00:00.000Z',
  uptimeSeconds: 7384,
  queue: { source: 2, quarantined: 1, clean: 0, suspect: 1, failed: 0 },
  today: { date: '2026-03-01', released: 12, hazarded: 1, rejected: 0, failed: 0 },
  lastRelease: { at: '2026-03-01T10:02:11.000Z', path: '/srv/shuttle/out/a/report.csv' },
  scanners: [
    { name: 'clamd', healthy: true, version: 'ClamAV 1.0.7', lastCheckedAt: '2026-03-01T10:02:10.000Z', lastError: null },
    { name: 'mdatp', healthy: false, version: null, lastCheckedAt: '2026-03-01T10:01:00.000Z', lastError: 'timed out after 300 s' },
  ],
  degraded: [{ mode: 'stability-window', reason: 'no CAP_LEASE: files owned by others wait for a quiet period', since: '2026-03-01T08:00:00.000Z' }],
  lastErrors: [{ at: '2026-03-01T10:01:00.000Z', message: 'scan failed; the file stays in quarantine', path: '/srv/shuttle/quarantine/x.data', code: 'ETIMEDOUT' }],
};

let directory: string;
let socketPath: string;
let server: StatusServer | null = null;

function configText(socket: string): string {
  return [
    'paths:',
    '  source_path: /srv/shuttle/in',
    '  destination_path: /srv/shuttle/out',
    '  quarantine_path: /srv/shuttle/quarantine',
    '  hazard_archive_path: /srv/shuttle/hazard',
    '  log_path: /var/log/shuttle',
    '  hazard_encryption_key_path: /etc/shuttle/hazard-public.asc',
    '  ledger_file_path: /etc/shuttle/ledger.yaml',
    'scanners:',
    '  clamd: { socket: /run/clamav/clamd.ctl }',
    'runtime:',
    `  status_socket: ${socket}`,
    '',
  ].join('\n');
}

async function startServer(snapshot: () => StatusSnapshot = () => SNAPSHOT, metrics = () => 'shuttle_up 1\n'): Promise<StatusServer> {
  server = new StatusServer({ socketPath, snapshot, metrics });
  await server.start();
  return server;
}

/** Sends raw bytes and collects everything the server answers until it closes. */
async function exchange(bytes: string): Promise<string> {
  return await new Promise((resolve, reject) => {
    const socket = net.createConnection({ path: socketPath });
    let text = '';
    socket.on('data', (chunk) => (text += chunk.toString()));
    socket.on('end', () => resolve(text));
    socket.on('error', reject);
    socket.write(bytes);
  });
}

function groupExists(name: string): boolean {
  return spawnSync('getent', ['group', name]).status === 0;
}

beforeEach(async () => {
  directory = await fsp.mkdtemp(path.join(os.tmpdir(), 'shuttle-status-'));
  socketPath = path.join(directory, 'run', 'status.sock');
});

afterEach(async () => {
  await server?.close();
  server = null;
  await fsp.rm(directory, { recursive: true, force: true });
});

describe('StatusServer', () => {
  it('answers one JSON line with the snapshot, and metrics with the Prometheus text', async () => {
    await startServer();
    expect(await requestStatus(socketPath, { command: 'status' })).toEqual({ ok: true, status: SNAPSHOT });
    const metrics = new ShuttleMetrics({ version: '0.1.0' });
    await server?.close();
    await startServer(undefined, () => metrics.render());
    const answer = await requestStatus(socketPath, { command: 'metrics' });
    expect(answer).toEqual({ ok: true, metrics: metrics.render() });
  });

  it('makes the directory 0750 and the socket 0660 in shuttle_owners (or the process group without it)', async () => {
    await startServer();
    const socketStats = await fsp.stat(socketPath);
    expect(socketStats.isSocket()).toBe(true);
    expect(socketStats.mode & 0o777).toBe(0o660);
    const expectedGid = groupExists('shuttle_owners')
      ? Number(execFileSync('getent', ['group', 'shuttle_owners'], { encoding: 'utf8' }).split(':')[2])
      : process.getegid?.();
    expect(socketStats.gid).toBe(expectedGid);
    expect((await fsp.stat(path.dirname(socketPath))).mode & 0o777).toBe(0o750);
  });

  it('answers malformed, unknown and oversized requests with an error, and keeps serving', async () => {
    await startServer();
    expect(JSON.parse(await exchange('hello\n'))).toEqual({ ok: false, error: expect.stringContaining('not JSON') });
    expect(JSON.parse(await exchange('{"command":"shutdown"}\n'))).toEqual({ ok: false, error: expect.stringContaining('unknown command "shutdown"') });
    expect(JSON.parse(await exchange(`${'x'.repeat(5000)}\n`))).toEqual({ ok: false, error: 'request longer than 4096 bytes' });
    expect((await requestStatus(socketPath, { command: 'status' })).ok).toBe(true);
  });

  it('answers with an error when the snapshot provider throws', async () => {
    await startServer(() => {
      throw new Error('journal closed');
    });
    expect(await requestStatus(socketPath, { command: 'status' })).toEqual({ ok: false, error: 'the daemon could not answer: journal closed' });
  });

  it('replaces a stale socket, refuses one that answers, and never removes a file that is not a socket', async () => {
    await fsp.mkdir(path.dirname(socketPath), { recursive: true });
    // A socket bound by a process that is gone: the file stays, nobody listens.
    execFileSync('python3', ['-c', 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', socketPath]);
    await startServer();
    expect((await requestStatus(socketPath, { command: 'status' })).ok).toBe(true);

    const second = new StatusServer({ socketPath, snapshot: () => SNAPSHOT, metrics: () => '' });
    await expect(second.start()).rejects.toThrow(StatusSocketError);
    await expect(second.start()).rejects.toMatchObject({ code: 'EADDRINUSE' });
    expect((await requestStatus(socketPath, { command: 'status' })).ok).toBe(true);

    await server?.close();
    server = null;
    await fsp.writeFile(socketPath, 'not a socket');
    const third = new StatusServer({ socketPath, snapshot: () => SNAPSHOT, metrics: () => '' });
    await expect(third.start()).rejects.toMatchObject({ code: 'EEXIST' });
    expect(await fsp.readFile(socketPath, 'utf8')).toBe('not a socket');
  });

  it('removes its socket on close and drops connections still open', async () => {
    await startServer();
    const idle = net.createConnection({ path: socketPath });
    await new Promise((resolve) => idle.once('connect', resolve));
    const closed = new Promise((resolve) => idle.once('close', resolve));
    await server?.close();
    server = null;
    await closed;
    await expect(fsp.stat(socketPath)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('shuttle status', () => {
  function capture(): { out: string[]; err: string[]; write: (t: string) => void; writeError: (t: string) => void } {
    const out: string[] = [];
    const err: string[] = [];
    return { out, err, write: (t) => out.push(t), writeError: (t) => err.push(t) };
  }

  it('prints the summary, or the snapshot as JSON, and exits 0', async () => {
    await startServer();
    const config = parseConfig(configText(socketPath), path.join(directory, 'shuttle.yaml'));
    const human = capture();
    expect(await statusCommand(config, { json: false, ...human })).toBe(0);
    expect(human.out.join('')).toBe(formatStatus(SNAPSHOT));
    const json = capture();
    expect(await statusCommand(config, { json: true, ...json })).toBe(0);
    expect(JSON.parse(json.out.join(''))).toEqual(SNAPSHOT);
    expect(human.err).toEqual([]);
  });

  it('exits 2 with a clear message when no daemon runs, or only its stale socket is left', async () => {
    const config = parseConfig(configText(socketPath), path.join(directory, 'shuttle.yaml'));
    const absent = capture();
    expect(await statusCommand(config, { json: false, ...absent })).toBe(2);
    expect(absent.err.join('')).toBe(`shuttle status: the daemon is not running (no status socket at ${socketPath})\n`);

    await fsp.mkdir(path.dirname(socketPath), { recursive: true });
    execFileSync('python3', ['-c', 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', socketPath]);
    const stale = capture();
    expect(await statusCommand(config, { json: true, ...stale })).toBe(2);
    expect(stale.err.join('')).toContain('the daemon is not running (nothing answers on');
    expect(stale.out).toEqual([]);
  });

  it('exits 2 when the peer never answers, or answers something else', async () => {
    await fsp.mkdir(path.dirname(socketPath), { recursive: true });
    // Accepts and never reads: the client's own timeout must end the wait.
    const held: net.Socket[] = [];
    const silent = net.createServer((socket) => held.push(socket));
    await new Promise<void>((resolve) => silent.listen(socketPath, resolve));
    try {
      await expect(requestStatus(socketPath, { command: 'status' }, 200)).rejects.toMatchObject({ code: 'ETIMEDOUT' });
      const config = parseConfig(configText(socketPath), path.join(directory, 'shuttle.yaml'));
      const quiet = capture();
      expect(await statusCommand(config, { json: false, timeoutMs: 200, ...quiet })).toBe(2);
      expect(quiet.err.join('')).toContain('did not answer');
    } finally {
      held.forEach((socket) => socket.destroy());
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
    const chatty = net.createServer((socket) => socket.resume().end('HTTP/1.1 400 Bad Request\r\n\r\n'));
    await new Promise<void>((resolve) => chatty.listen(socketPath, resolve));
    try {
      const error = await requestStatus(socketPath, { command: 'status' }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(StatusUnavailableError);
      expect(error).toMatchObject({ code: 'EPROTO' });
    } finally {
      await new Promise<void>((resolve) => chatty.close(() => resolve()));
    }
  });

  it('formats every part of the snapshot for people', () => {
    const text = formatStatus(SNAPSHOT);
    expect(text).toContain('shuttle 0.1.0 running, up 2h 3m (pid 4242');
    expect(text).toContain('queue:        2 in source, 1 quarantined, 0 being released, 1 suspect, 0 failed');
    expect(text).toContain('today:        12 released, 1 hazarded, 0 rejected, 0 failed (2026-03-01)');
    expect(text).toContain('scanners:     clamd ClamAV 1.0.7 ok, mdatp FAILING (timed out after 300 s)');
    expect(text).toContain('  stability-window since 2026-03-01T08:00:00.000Z: no CAP_LEASE');
    expect(text).toContain('  2026-03-01T10:01:00.000Z scan failed; the file stays in quarantine path=/srv/shuttle/quarantine/x.data code=ETIMEDOUT');
    const quiet = formatStatus({ ...SNAPSHOT, degraded: [], lastErrors: [], lastRelease: null, uptimeSeconds: 42 });
    expect(quiet).toContain('degraded:     no\n');
    expect(quiet).toContain('last errors:  none\n');
    expect(quiet).toContain('last release: none since start');
    expect(quiet).toContain('up 42s');
  });
});

describe('helpers for the daemon', () => {
  it('keeps the newest errors only', () => {
    let second = 0;
    const errors = new RecentErrors(2, () => new Date(Date.UTC(2026, 2, 1, 10, 0, second++)));
    errors.add('first');
    errors.add('second', { path: '/x', code: 'EIO' });
    errors.add('third');
    expect(errors.list()).toEqual([
      { at: '2026-03-01T10:00:01.000Z', message: 'second', path: '/x', code: 'EIO' },
      { at: '2026-03-01T10:00:02.000Z', message: 'third' },
    ]);
  });

  it('sums the snapshot up in one STATUS= line', () => {
    expect(systemdStatusLine(SNAPSHOT)).toBe(
      'watching; 3 in flight; 12 released today; 1 hazarded; 1 held; last release 2026-03-01T10:02:11.000Z; degraded: stability-window; scanner down: mdatp',
    );
  });
});
