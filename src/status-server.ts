// The daemon's status socket: `shuttle status` (and monitoring) connect to a unix socket in the runtime
// directory, send one JSON line, and get one JSON line back. {"command":"status"} answers with a
// StatusSnapshot, {"command":"metrics"} with the Prometheus text. The socket is mode 0660 in group
// shuttle_owners (when that group exists), inside /run/shuttle (0750), so only root and that group can ask.

import { existsSync, promises as fsp, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { lookupAccounts } from './acl-text.js';
import type { DailyCounts } from './metrics.js';

export type DaemonState = 'starting' | 'running' | 'reloading' | 'stopping';

/** Where files stand: seen in source_path but not taken yet, and quarantine items by journal state. */
export type QueueState = 'source' | 'quarantined' | 'clean' | 'suspect' | 'failed';
export const QUEUE_STATES: readonly QueueState[] = ['source', 'quarantined', 'clean', 'suspect', 'failed'];

export interface ScannerHealth {
  readonly name: string;
  /** The last request (scan, ping or version check) succeeded. */
  readonly healthy: boolean;
  readonly version: string | null;
  /** ISO time of the last request, null before the first. */
  readonly lastCheckedAt: string | null;
  readonly lastError: string | null;
}

export interface DegradedMode {
  /** Short stable name, e.g. "stability-window" (no CAP_LEASE) or "releases-paused" (untested scanner version). */
  readonly mode: string;
  readonly reason: string;
  /** ISO time it began. */
  readonly since: string;
}

export interface RecentError {
  /** ISO time. */
  readonly at: string;
  readonly message: string;
  readonly path?: string;
  readonly code?: string;
}

/** What the running daemon is doing; the daemon's snapshot() callback builds it on every request. */
export interface StatusSnapshot {
  readonly version: string;
  readonly pid: number;
  readonly state: DaemonState;
  readonly configFile: string;
  /** ISO time the daemon started. */
  readonly startedAt: string;
  readonly uptimeSeconds: number;
  readonly queue: Readonly<Record<QueueState, number>>;
  /** Outcomes since local midnight (counted by this run of the daemon). */
  readonly today: DailyCounts;
  readonly lastRelease: { readonly at: string; readonly path: string } | null;
  readonly scanners: readonly ScannerHealth[];
  /** Empty when everything runs as designed. */
  readonly degraded: readonly DegradedMode[];
  /** Newest last. */
  readonly lastErrors: readonly RecentError[];
}

export type StatusRequest = { readonly command: 'status' } | { readonly command: 'metrics' };

export type StatusResponse =
  | { readonly ok: true; readonly status: StatusSnapshot }
  | { readonly ok: true; readonly metrics: string }
  | { readonly ok: false; readonly error: string };

/** The group whose members may ask; the unit's Group=. */
export const STATUS_GROUP = 'shuttle_owners';
const SOCKET_MODE = 0o660;
const DIRECTORY_MODE = 0o750;
/** A request is one short line; anything longer is not a client of ours. */
export const MAX_REQUEST_BYTES = 4096;
const REQUEST_TIMEOUT_MS = 5_000;
const MAX_CONNECTIONS = 16;

/** The part of the daemon's logger the server uses. */
export type StatusLogger = { warn(message: string, meta?: object): unknown };

export interface StatusServerOptions {
  readonly socketPath: string;
  readonly snapshot: () => StatusSnapshot;
  readonly metrics: () => string;
  readonly logger?: StatusLogger;
  /** Group of the socket; STATUS_GROUP by default. When it does not exist the socket keeps the process's group. */
  readonly group?: string;
}

/** The socket cannot be served (another daemon answers on it, or the path is something else). */
export class StatusSocketError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
    this.name = 'StatusSocketError';
  }
}

export class StatusServer {
  private server: net.Server | null = null;
  private readonly connections = new Set<net.Socket>();

  constructor(private readonly options: StatusServerOptions) {}

  /**
   * Binds the socket (replacing a stale one a crashed daemon left), sets its mode and group. Rejects with
   * StatusSocketError when another process answers on it or the path is not a socket, and with the
   * fs error when the directory cannot be made or used.
   */
  async start(): Promise<void> {
    if (this.server !== null) return;
    const { socketPath } = this.options;
    await fsp.mkdir(path.dirname(socketPath), { recursive: true, mode: DIRECTORY_MODE });
    await this.clearStaleSocket();

    const server = net.createServer((socket) => this.serve(socket));
    server.maxConnections = MAX_CONNECTIONS;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (error) => this.options.logger?.warn('status socket error', { path: socketPath, code: (error as NodeJS.ErrnoException).code }));
    this.server = server;
    try {
      await fsp.chmod(socketPath, SOCKET_MODE);
      await this.giveToGroup(socketPath);
    } catch (error) {
      await this.close();
      throw error;
    }
  }

  private async giveToGroup(socketPath: string): Promise<void> {
    const group = this.options.group ?? STATUS_GROUP;
    const gid = (await lookupAccounts('group', [group])).byName.get(group);
    if (gid === undefined) return;
    try {
      await fsp.chown(socketPath, -1, gid);
    } catch (error) {
      this.options.logger?.warn("status socket keeps the daemon's group", { path: socketPath, group, code: (error as NodeJS.ErrnoException).code });
    }
  }

  /** Stops answering, drops open connections; the socket file goes with the server (libuv unlinks it). */
  async close(): Promise<void> {
    const server = this.server;
    if (server === null) return;
    this.server = null;
    for (const socket of this.connections) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private async clearStaleSocket(): Promise<void> {
    const { socketPath } = this.options;
    const stats = await fsp.lstat(socketPath).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return null;
      throw error;
    });
    if (stats === null) return;
    if (!stats.isSocket()) {
      throw new StatusSocketError(`${socketPath} exists and is not a socket; remove it or set runtime.status_socket`, 'EEXIST');
    }
    const answered = await new Promise<boolean>((resolve) => {
      const probe = net.createConnection({ path: socketPath });
      probe.once('connect', () => {
        probe.destroy();
        resolve(true);
      });
      probe.once('error', () => resolve(false));
    });
    if (answered) {
      throw new StatusSocketError(`another process answers on ${socketPath}; is a second daemon running with the same runtime.status_socket?`, 'EADDRINUSE');
    }
    // Left behind by a daemon that died without closing it.
    await fsp.rm(socketPath, { force: true });
  }

  private serve(socket: net.Socket): void {
    this.connections.add(socket);
    socket.once('close', () => this.connections.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.setTimeout(REQUEST_TIMEOUT_MS, () => socket.destroy());
    let received = Buffer.alloc(0);
    let answered = false;
    socket.on('data', (chunk: Buffer) => {
      if (answered) return;
      received = Buffer.concat([received, chunk]);
      const newline = received.indexOf(0x0a);
      if (newline === -1 && received.length <= MAX_REQUEST_BYTES) return;
      answered = true;
      const response =
        newline === -1 || newline > MAX_REQUEST_BYTES
          ? ({ ok: false, error: `request longer than ${MAX_REQUEST_BYTES} bytes` } as const)
          : this.answer(received.subarray(0, newline).toString('utf8'));
      socket.end(`${JSON.stringify(response)}\n`);
    });
  }

  private answer(line: string): StatusResponse {
    let request: unknown;
    try {
      request = JSON.parse(line);
    } catch {
      return { ok: false, error: 'the request is not JSON; send {"command":"status"} or {"command":"metrics"}' };
    }
    const command = typeof request === 'object' && request !== null ? (request as { command?: unknown }).command : undefined;
    try {
      if (command === 'status') return { ok: true, status: this.options.snapshot() };
      if (command === 'metrics') return { ok: true, metrics: this.options.metrics() };
    } catch (error) {
      this.options.logger?.warn('status request failed', { command, message: (error as Error).message });
      return { ok: false, error: `the daemon could not answer: ${(error as Error).message}` };
    }
    return { ok: false, error: `unknown command ${JSON.stringify(command)}; expected "status" or "metrics"` };
  }
}

/** The newest errors, for `shuttle status`; a small ring the daemon adds to as it logs errors. */
export class RecentErrors {
  private readonly entries: RecentError[] = [];

  constructor(
    private readonly limit = 10,
    private readonly now: () => Date = () => new Date(),
  ) {}

  add(message: string, meta: { path?: string; code?: string } = {}): void {
    this.entries.push({
      at: this.now().toISOString(),
      message,
      ...(meta.path === undefined ? {} : { path: meta.path }),
      ...(meta.code === undefined ? {} : { code: meta.code }),
    });
    if (this.entries.length > this.limit) this.entries.splice(0, this.entries.length - this.limit);
  }

  list(): readonly RecentError[] {
    return [...this.entries];
  }
}

/** One line for systemd's STATUS= (shown by `systemctl status`). */
export function systemdStatusLine(snapshot: StatusSnapshot): string {
  const { queue, today } = snapshot;
  const waiting = queue.source + queue.quarantined + queue.clean;
  const parts = [
    snapshot.state === 'running' ? 'watching' : snapshot.state,
    `${waiting} in flight`,
    `${today.released} released today`,
  ];
  if (today.hazarded > 0) parts.push(`${today.hazarded} hazarded`);
  if (queue.suspect + queue.failed > 0) parts.push(`${queue.suspect + queue.failed} held`);
  if (snapshot.lastRelease !== null) parts.push(`last release ${snapshot.lastRelease.at}`);
  if (snapshot.degraded.length > 0) parts.push(`degraded: ${snapshot.degraded.map((d) => d.mode).join(', ')}`);
  const down = snapshot.scanners.filter((s) => !s.healthy).map((s) => s.name);
  if (down.length > 0) parts.push(`scanner down: ${down.join(', ')}`);
  return parts.join('; ');
}

/** The package's version, from the package.json next to src/ (or dist/src/). */
export function packageVersion(): string {
  for (let directory = path.dirname(fileURLToPath(import.meta.url)); ; directory = path.dirname(directory)) {
    const candidate = path.join(directory, 'package.json');
    if (existsSync(candidate)) return String((JSON.parse(readFileSync(candidate, 'utf8')) as { version?: unknown }).version ?? 'unknown');
    if (path.dirname(directory) === directory) return 'unknown';
  }
}
