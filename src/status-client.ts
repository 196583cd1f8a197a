// `shuttle status --config F [--json]`: asks the running daemon over its status socket
// (runtime.status_socket) and prints a summary, or the snapshot as JSON. Exit status 0 with an answer,
// 2 when the daemon is not running or cannot be reached, with one line that says why.

import net from 'node:net';

import type { ShuttleConfig } from './config.js';
import { MAX_REQUEST_BYTES, STATUS_GROUP, type StatusRequest, type StatusResponse, type StatusSnapshot } from './status-server.js';

const EXIT_UNREACHABLE = 2;
const DEFAULT_TIMEOUT_MS = 5_000;
/** A snapshot is a few KiB; a peer that sends far more is not the daemon. */
const MAX_RESPONSE_BYTES = 4 * 1024 * 1024;

/** Why the daemon could not be asked: the message is for the admin, the code for scripts and tests. */
export class StatusUnavailableError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
    this.name = 'StatusUnavailableError';
  }
}

/** One request, one response line. Rejects with StatusUnavailableError. */
export async function requestStatus(socketPath: string, request: StatusRequest, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<StatusResponse> {
  const line = `${JSON.stringify(request)}\n`;
  if (Buffer.byteLength(line) > MAX_REQUEST_BYTES) throw new StatusUnavailableError('request too long', 'E2BIG');
  return await new Promise<StatusResponse>((resolve, reject) => {
    const socket = net.createConnection({ path: socketPath });
    let received = Buffer.alloc(0);
    let settled = false;
    const finish = (outcome: { response: StatusResponse } | { error: StatusUnavailableError }): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if ('response' in outcome) resolve(outcome.response);
      else reject(outcome.error);
    };
    const timer = setTimeout(
      () => finish({ error: new StatusUnavailableError(`the daemon did not answer on ${socketPath} within ${timeoutMs / 1000} s`, 'ETIMEDOUT') }),
      timeoutMs,
    );
    socket.once('connect', () => socket.write(line));
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (received.length > MAX_RESPONSE_BYTES) {
        finish({ error: new StatusUnavailableError(`the answer on ${socketPath} is too long; is that Shuttle's status socket?`, 'EPROTO') });
        return;
      }
      const newline = received.indexOf(0x0a);
      if (newline !== -1) finish(parseResponse(received.subarray(0, newline).toString('utf8'), socketPath));
    });
    socket.once('end', () => {
      if (received.length > 0) finish(parseResponse(received.toString('utf8'), socketPath));
      else finish({ error: new StatusUnavailableError(`the daemon closed ${socketPath} without answering`, 'EPROTO') });
    });
    socket.once('error', (error: NodeJS.ErrnoException) => finish({ error: unreachable(socketPath, error) }));
  });
}

function parseResponse(text: string, socketPath: string): { response: StatusResponse } | { error: StatusUnavailableError } {
  try {
    const value = JSON.parse(text) as unknown;
    if (typeof value === 'object' && value !== null && typeof (value as { ok?: unknown }).ok === 'boolean') return { response: value as StatusResponse };
  } catch {
    // reported below
  }
  return { error: new StatusUnavailableError(`the answer on ${socketPath} is not Shuttle's status protocol`, 'EPROTO') };
}

function unreachable(socketPath: string, error: NodeJS.ErrnoException): StatusUnavailableError {
  const code = error.code ?? 'EIO';
  switch (code) {
    case 'ENOENT':
      return new StatusUnavailableError(`the daemon is not running (no status socket at ${socketPath})`, code);
    case 'ECONNREFUSED':
      return new StatusUnavailableError(`the daemon is not running (nothing answers on ${socketPath}; it was left by a daemon that stopped)`, code);
    case 'EACCES':
    case 'EPERM':
      return new StatusUnavailableError(`permission denied on ${socketPath}: run as root or as a member of ${STATUS_GROUP}`, code);
    default:
      return new StatusUnavailableError(`cannot reach the daemon on ${socketPath}: ${error.message}`, code);
  }
}

export interface StatusCommandOptions {
  readonly json: boolean;
  readonly write?: (text: string) => void;
  readonly writeError?: (text: string) => void;
  readonly timeoutMs?: number;
}

/** The `shuttle status` command; returns the exit status. */
export async function statusCommand(config: ShuttleConfig, options: StatusCommandOptions): Promise<number> {
  const write = options.write ?? ((text: string) => process.stdout.write(text));
  const writeError = options.writeError ?? ((text: string) => process.stderr.write(text));
  const socketPath = config.runtime.statusSocket;
  let response: StatusResponse;
  try {
    response = await requestStatus(socketPath, { command: 'status' }, options.timeoutMs);
  } catch (error) {
    if (!(error instanceof StatusUnavailableError)) throw error;
    writeError(`shuttle status: ${error.message}\n`);
    return EXIT_UNREACHABLE;
  }
  if (!response.ok) {
    writeError(`shuttle status: the daemon answered with an error: ${response.error}\n`);
    return EXIT_UNREACHABLE;
  }
  if (!('status' in response)) {
    writeError(`shuttle status: the daemon's answer holds no status\n`);
    return EXIT_UNREACHABLE;
  }
  write(options.json ? `${JSON.stringify(response.status, null, 2)}\n` : formatStatus(response.status));
  return 0;
}

/** The human summary: one aligned row per topic, then the latest errors. */
export function formatStatus(snapshot: StatusSnapshot): string {
  const { queue, today } = snapshot;
  const row = (label: string, text: string): string => `${`${label}:`.padEnd(14)}${text}`;
  const scanners = snapshot.scanners.map((scanner) => {
    const version = scanner.version === null ? '' : ` ${scanner.version}`;
    return scanner.healthy ? `${scanner.name}${version} ok` : `${scanner.name}${version} FAILING (${scanner.lastError ?? 'no answer'})`;
  });
  const lines = [
    `shuttle ${snapshot.version} ${snapshot.state}, up ${formatDuration(snapshot.uptimeSeconds)} (pid ${snapshot.pid}, since ${snapshot.startedAt})`,
    row('config', snapshot.configFile),
    row('queue', `${queue.source} in source, ${queue.quarantined} quarantined, ${queue.clean} being released, ${queue.suspect} suspect, ${queue.failed} failed`),
    row('today', `${today.released} released, ${today.hazarded} hazarded, ${today.rejected} rejected, ${today.failed} failed (${today.date})`),
    row('last release', snapshot.lastRelease === null ? 'none since start' : `${snapshot.lastRelease.at} ${snapshot.lastRelease.path}`),
    row('scanners', scanners.length === 0 ? 'none' : scanners.join(', ')),
    row('degraded', snapshot.degraded.length === 0 ? 'no' : ''),
  ];
  for (const mode of snapshot.degraded) lines.push(`  ${mode.mode} since ${mode.since}: ${mode.reason}`);
  lines.push(row('last errors', snapshot.lastErrors.length === 0 ? 'none' : ''));
  for (const error of snapshot.lastErrors) {
    const details = [error.path === undefined ? '' : ` path=${error.path}`, error.code === undefined ? '' : ` code=${error.code}`].join('');
    lines.push(`  ${error.at} ${error.message}${details}`);
  }
  return `${lines.map((line) => line.trimEnd()).join('\n')}\n`;
}

function formatDuration(totalSeconds: number): string {
  const seconds = Math.max(0, Math.floor(totalSeconds));
  const days = Math.floor(seconds / 86_400);
  const hours = Math.floor((seconds % 86_400) / 3_600);
  const minutes = Math.floor((seconds % 3_600) / 60);
  if (days > 0) return `${days}d ${hours}h ${minutes}m`;
  if (hours > 0) return `${hours}h ${minutes}m`;
  if (minutes > 0) return `${minutes}m ${seconds % 60}s`;
  return `${seconds}s`;
}
