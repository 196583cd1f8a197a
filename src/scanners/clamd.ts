// ClamAV's clamd over its socket protocol (unix or TCP): zINSTREAM with the bytes, or zFILDES with the open
// descriptor through the native addon. Only "OK" for exactly the intake bytes is clean; every limit clamd hits
// is "not scanned", because clamd reports oversized input as OK unless told otherwise.

import { createHash } from 'node:crypto';
import { closeSync, constants as fsc, fstatSync, openSync, type Stats } from 'node:fs';
import net from 'node:net';
import type { ClamdEndpoint, ClamdOptions } from '../config.js';
import { readAt, smallEnoughForSyncIo } from '../file-io.js';
import type { NativeAddon } from '../native.js';
import { Batches } from '../work-queue.js';
import {
  failed,
  ScannerError,
  VersionCache,
  type Clock,
  type ScanFailureCode,
  type ScanReport,
  type Scanner,
  type ScanTarget,
  type Verdict,
} from './scanner.js';

/** The one addon call this scanner needs; the full NativeAddon satisfies it. */
export type ClamdDescriptorPasser = Pick<NativeAddon, 'clamdScanDescriptor'>;

/** Files at most in one clamd session, and sessions open at once (see sessionDescriptorPasser). */
const FILES_PER_SESSION = 64;
const SESSIONS_AT_ONCE = 4;

/**
 * A passer that sends the descriptors asked for while earlier sessions run together in one clamd session (the
 * addon's clamdScanDescriptors): one connection and one worker-thread job per session instead of per file,
 * with clamd scanning a session's files in parallel. Each caller still gets clamd's reply to its own file.
 */
export function sessionDescriptorPasser(addon: Pick<NativeAddon, 'clamdScanDescriptors'>): ClamdDescriptorPasser {
  const sessions = new Map<string, Batches<number, string>>();
  return {
    clamdScanDescriptor(socketPath: string, fd: number, timeoutMs: number): Promise<string> {
      const key = `${timeoutMs} ${socketPath}`;
      let batches = sessions.get(key);
      if (batches === undefined) {
        batches = new Batches((fds) => addon.clamdScanDescriptors(socketPath, fds, timeoutMs), FILES_PER_SESSION, SESSIONS_AT_ONCE);
        sessions.set(key, batches);
      }
      return batches.run(fd);
    },
  };
}

export type ClamdMethod = 'descriptor' | 'stream';

/** Large chunks keep the per-chunk overhead (a header, a write, a wakeup in clamd) negligible. */
const CHUNK_BYTES = 1024 * 1024;
/** clamd replies are one short line; anything longer is not clamd. */
const MAX_REPLY_BYTES = 8192;
/** Grace on top of the addon's own timeout, in case its worker never returns. */
const DESCRIPTOR_GRACE_MS = 1000;
const OPEN_FLAGS = fsc.O_RDONLY | fsc.O_NOFOLLOW;
/** Why the hashing beside a descriptor scan is stopped once the verdict is in. */
const SCAN_SETTLED = new Error('scan settled');
const LIMIT_HEURISTIC = 'Heuristics.Limits.Exceeded';
const UNREACHABLE_CODES = new Set(['ENOENT', 'ECONNREFUSED', 'EACCES', 'ECONNRESET', 'EPIPE', 'ENOTSOCK', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNABORTED']);

/**
 * What a clamd reply means. Replies look like "stream: OK", "fd[10]: Eicar-Signature FOUND",
 * "INSTREAM size limit exceeded. ERROR" or "<something> ERROR"; the trailing NUL may or may not be there.
 */
export function verdictFromClamdReply(reply: string): Verdict {
  const text = reply.replace(/\0+$/, '').trim();
  if (/size limit exceeded/i.test(text)) return failed('limit', `clamd: ${text}`);
  const tagged = /^(?:stream|fd\[\d+\]): (.+)$/s.exec(text);
  const body = tagged?.[1]?.trim();
  if (body === undefined) {
    if (text.endsWith('ERROR')) return failed('protocol', `clamd reported an error: ${text}`);
    return failed('protocol', `unexpected reply from clamd: ${JSON.stringify(text.slice(0, 200))}`);
  }
  if (body === 'OK') return { kind: 'clean' };
  const found = /^(.+) FOUND$/s.exec(body);
  const signature = found?.[1]?.trim();
  if (signature) {
    if (signature.startsWith(LIMIT_HEURISTIC)) return failed('limit', `clamd stopped at a limit: ${signature}`);
    return { kind: 'suspect', signature };
  }
  if (body.endsWith('ERROR')) return failed('protocol', `clamd reported an error: ${text}`);
  return failed('protocol', `unexpected reply from clamd: ${JSON.stringify(text.slice(0, 200))}`);
}

export function describeEndpoint(endpoint: ClamdEndpoint): string {
  return endpoint.kind === 'unix' ? endpoint.socket : `${endpoint.host}:${endpoint.port}`;
}

function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

type ExchangeOutcome = { kind: 'reply'; text: string } | { kind: 'failed'; code: ScanFailureCode; reason: string };

/**
 * One request/reply on a fresh clamd connection. The outcome settles exactly once: on the NUL that ends the
 * reply, on an error, on `timeoutMs` without traffic in either direction, or on abort. The socket is destroyed
 * as soon as it settles.
 */
class ClamdExchange {
  readonly outcome: Promise<ExchangeOutcome>;
  private resolveOutcome!: (outcome: ExchangeOutcome) => void;
  private done = false;
  private connected = false;
  private writeRefused = false;
  private readonly received: Buffer[] = [];
  private receivedBytes = 0;
  private readonly socket: net.Socket;
  private readonly onAbort = () => this.settle({ kind: 'failed', code: 'aborted', reason: 'scan aborted' });

  constructor(
    endpoint: ClamdEndpoint,
    timeoutMs: number,
    private readonly signal: AbortSignal,
  ) {
    this.outcome = new Promise((resolve) => {
      this.resolveOutcome = resolve;
    });
    const where = describeEndpoint(endpoint);
    this.socket =
      endpoint.kind === 'unix'
        ? net.createConnection({ path: endpoint.socket })
        : net.createConnection({ host: endpoint.host, port: endpoint.port });
    this.socket.setTimeout(timeoutMs, () =>
      this.settle({
        kind: 'failed',
        code: 'timeout',
        reason: this.connected
          ? `clamd at ${where} did not answer within ${timeoutMs} ms`
          : `could not connect to clamd at ${where} within ${timeoutMs} ms`,
      }),
    );
    this.socket.on('connect', () => {
      this.connected = true;
    });
    this.socket.on('data', (data: Buffer) => this.collect(data));
    this.socket.on('end', () => {
      if (this.receivedBytes > 0) {
        const partial = Buffer.concat(this.received).toString('utf8');
        this.settle({ kind: 'failed', code: 'protocol', reason: `clamd reply not terminated: ${JSON.stringify(partial.slice(0, 200))}` });
      } else {
        this.settle({ kind: 'failed', code: 'unreachable', reason: `clamd at ${where} closed the connection without a reply` });
      }
    });
    this.socket.on('error', (error) => {
      const code = errorCode(error);
      if ((error as { syscall?: unknown }).syscall === 'write') this.writeRefused = true;
      if (!this.connected) {
        this.settle({ kind: 'failed', code: 'unreachable', reason: `cannot connect to clamd at ${where}: ${errorMessage(error)}` });
      } else if (code !== undefined && UNREACHABLE_CODES.has(code)) {
        this.settle({ kind: 'failed', code: 'unreachable', reason: `connection to clamd at ${where} lost: ${errorMessage(error)}` });
      } else {
        this.settle({ kind: 'failed', code: 'protocol', reason: `clamd at ${where}: ${errorMessage(error)}` });
      }
    });
    if (signal.aborted) this.onAbort();
    else signal.addEventListener('abort', this.onAbort, { once: true });
  }

  get settled(): boolean {
    return this.done;
  }

  /** Whether the connection was ever established (a later failure then means clamd dropped it). */
  get wasConnected(): boolean {
    return this.connected;
  }

  /** Whether clamd closed its side while we were still sending (EPIPE, ECONNRESET on write). */
  get wasWriteRefused(): boolean {
    return this.writeRefused;
  }

  /** Writes and waits for the socket to drain; false once the exchange has already ended (early reply, error). */
  async send(data: Buffer): Promise<boolean> {
    if (this.done) return false;
    if (this.socket.write(data)) return true;
    await Promise.race([new Promise<void>((resolve) => this.socket.once('drain', resolve)), this.outcome]);
    return !this.done;
  }

  close(): void {
    this.settle({ kind: 'failed', code: 'aborted', reason: 'exchange closed by the scanner' });
  }

  private collect(data: Buffer): void {
    if (this.done) return;
    const nul = data.indexOf(0);
    const part = nul === -1 ? data : data.subarray(0, nul);
    this.received.push(part);
    this.receivedBytes += part.length;
    if (nul !== -1) {
      this.settle({ kind: 'reply', text: Buffer.concat(this.received).toString('utf8') });
    } else if (this.receivedBytes > MAX_REPLY_BYTES) {
      this.settle({ kind: 'failed', code: 'protocol', reason: `clamd reply longer than ${MAX_REPLY_BYTES} bytes` });
    }
  }

  private settle(outcome: ExchangeOutcome): void {
    if (this.done) return;
    this.done = true;
    this.signal.removeEventListener('abort', this.onAbort);
    this.socket.destroy();
    this.resolveOutcome(outcome);
  }
}

/**
 * Hashes the file through `fd` by position, so a descriptor shared with clamd keeps its offset. Stops one
 * byte past `expectedSize`: that is enough to know the file is not the one taken at intake.
 */
async function hashByPosition(fd: number, expectedSize: number, signal: AbortSignal): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  // Sized to the file plus the one byte that tells a longer file apart: most files are far below a chunk.
  const buffer = Buffer.allocUnsafe(Math.min(CHUNK_BYTES, expectedSize + 1));
  const sync = smallEnoughForSyncIo(expectedSize);
  let position = 0;
  while (position <= expectedSize) {
    signal.throwIfAborted();
    const bytesRead = await readAt(fd, buffer, 0, buffer.length, position, sync);
    if (bytesRead === 0) break;
    hash.update(buffer.subarray(0, bytesRead));
    position += bytesRead;
    // A short read is the end of a regular file; the caller compares the size with fstat afterwards.
    if (bytesRead < buffer.length) break;
  }
  return { sha256: hash.digest('hex'), bytes: position };
}

function sameFile(before: Stats, after: Stats): boolean {
  return before.size === after.size && before.mtimeMs === after.mtimeMs && before.ctimeMs === after.ctimeMs;
}

export class ClamdScanner implements Scanner {
  readonly name = 'clamd';
  /** How file contents reach clamd: the open descriptor (no copy) or streamed bytes. */
  readonly method: ClamdMethod;
  private readonly versions: VersionCache;

  constructor(
    private readonly options: ClamdOptions,
    private readonly addon: ClamdDescriptorPasser | null,
    private readonly clock: Clock = () => performance.now(),
  ) {
    this.method = options.endpoint.kind === 'unix' && options.fdpass && addon !== null ? 'descriptor' : 'stream';
    this.versions = new VersionCache((signal) => this.queryVersion(signal), clock);
  }

  async version(signal: AbortSignal): Promise<string> {
    const version = await this.queryVersion(signal);
    this.versions.remember(version);
    return version;
  }

  async scan(target: ScanTarget, signal: AbortSignal): Promise<ScanReport> {
    const started = this.clock();
    // Refreshed only alongside a real exchange: a file refused before contacting clamd does not contact it.
    let version: Promise<string | null> = Promise.resolve(this.versions.known);
    const contacting = () => {
      version = this.versions.current(signal);
    };
    let verdict: Verdict;
    try {
      verdict = await this.scanFile(target, signal, contacting);
    } catch (error) {
      // scanFile maps every expected failure itself; this is the net under it, and it still fails closed.
      verdict = failed('io', `scanning '${target.path}' failed: ${errorMessage(error)}`);
    }
    return { scanner: this.name, version: await version, verdict, durationMs: this.clock() - started };
  }

  private async scanFile(target: ScanTarget, signal: AbortSignal, contacting: () => void): Promise<Verdict> {
    if (signal.aborted) return failed('aborted', 'scan aborted before it started');
    if (target.size > this.options.maxFileSize) return this.overLimit(target.size);

    let fd: number;
    try {
      // Opening and fstat of a file in quarantine never wait on the disk: synchronous saves thread wake-ups.
      fd = openSync(target.path, OPEN_FLAGS);
    } catch (error) {
      const code = errorCode(error);
      if (code === 'ELOOP') return failed('io', `'${target.path}' is a symbolic link; refusing to scan it`);
      return failed('io', `cannot open '${target.path}': ${errorMessage(error)}`);
    }
    // The descriptor path hands this descriptor to a worker thread; it must stay open until that returns.
    let closeAfter: Promise<unknown> = Promise.resolve();
    try {
      const stats = fstatSync(fd);
      if (!stats.isFile()) return failed('io', `'${target.path}' is not a regular file`);
      if (stats.size !== target.size) {
        return failed('io', `'${target.path}' is ${stats.size} bytes, but ${target.size} bytes were taken at intake`);
      }
      if (stats.size > this.options.maxFileSize) return this.overLimit(stats.size);
      if (signal.aborted) return failed('aborted', 'scan aborted before clamd was contacted');
      contacting();
      if (this.method === 'descriptor' && this.addon && this.options.endpoint.kind === 'unix') {
        const scanning = this.addon.clamdScanDescriptor(this.options.endpoint.socket, fd, this.options.timeoutMs);
        closeAfter = scanning;
        return await this.scanByDescriptor(scanning, fd, stats, target, signal);
      }
      return await this.scanByStream(fd, target, signal);
    } finally {
      void closeAfter
        .catch(() => undefined)
        .then(() => closeSync(fd))
        .catch(() => undefined);
    }
  }

  private overLimit(size: number): Verdict {
    return failed('limit', `${size} bytes is over the ${this.options.maxFileSize} bytes clamd is configured to scan in full`);
  }

  private async scanByStream(fd: number, target: ScanTarget, signal: AbortSignal): Promise<Verdict> {
    const exchange = new ClamdExchange(this.options.endpoint, this.options.timeoutMs, signal);
    const hash = createHash('sha256');
    const sync = smallEnoughForSyncIo(target.size);
    let sent = 0;
    let complete = false;
    try {
      if (await exchange.send(Buffer.from('zINSTREAM\0', 'latin1'))) {
        for (;;) {
          // One allocation per chunk: the socket keeps a reference until the bytes are flushed. No larger
          // than what is left plus one byte, which is enough to see a file that grew.
          const want = Math.min(CHUNK_BYTES, Math.max(target.size - sent, 0) + 1);
          const frame = Buffer.allocUnsafe(4 + want);
          const bytesRead = await readAt(fd, frame, 4, want, sent, sync);
          if (bytesRead === 0) {
            complete = true;
            break;
          }
          sent += bytesRead;
          if (sent > target.size) {
            exchange.close();
            return failed('io', `'${target.path}' grew past the ${target.size} bytes taken at intake while being scanned`);
          }
          const data = frame.subarray(4, 4 + bytesRead);
          hash.update(data);
          frame.writeUInt32BE(bytesRead, 0);
          if (!(await exchange.send(frame.subarray(0, 4 + bytesRead)))) break;
        }
      }
    } catch (error) {
      exchange.close();
      return failed('io', `reading '${target.path}' failed: ${errorMessage(error)}`);
    }

    if (complete && !exchange.settled) {
      const sha256 = hash.digest('hex');
      if (sent !== target.size || sha256 !== target.sha256) {
        exchange.close();
        return failed(
          'io',
          `'${target.path}' is not the file taken at intake (read ${sent} bytes, sha256 ${sha256}; expected ${target.size} bytes, sha256 ${target.sha256})`,
        );
      }
      await exchange.send(Buffer.alloc(4));
    }

    const outcome = await exchange.outcome;
    if (outcome.kind === 'failed') {
      // Bytes still unsent, or still in flight when clamd hung up: it stopped reading mid-stream.
      if (outcome.code === 'unreachable' && exchange.wasConnected && (!complete || exchange.wasWriteRefused)) {
        return await this.explainDroppedStream(sent, outcome.reason, signal);
      }
      return failed(outcome.code, outcome.reason);
    }
    const verdict = verdictFromClamdReply(outcome.text);
    // A reply before the terminating chunk was sent covers only part of the file: never clean.
    if (verdict.kind === 'clean' && !complete) {
      return failed('protocol', `clamd answered '${outcome.text}' before the whole file was sent (${sent} of ${target.size} bytes)`);
    }
    return verdict;
  }

  /**
   * clamd answers a stream over its StreamMaxLength with "INSTREAM size limit exceeded" and closes at once. When
   * that close fails one of our writes first, Node drops the socket before the reply is read. If clamd still
   * answers PING, it is alive and refused this stream: report the limit rather than an outage.
   */
  private async explainDroppedStream(sent: number, reason: string, signal: AbortSignal): Promise<Verdict> {
    const probe = new ClamdExchange(this.options.endpoint, this.options.timeoutMs, signal);
    await probe.send(Buffer.from('zPING\0', 'latin1'));
    const answer = await probe.outcome;
    if (answer.kind === 'reply' && answer.text.trim() === 'PONG') {
      return failed(
        'limit',
        `clamd closed the stream after ${sent} bytes but still answers PING: the file is most likely over its StreamMaxLength (${reason})`,
      );
    }
    if (answer.kind === 'failed' && answer.code === 'aborted') return failed('aborted', 'scan aborted');
    return failed('unreachable', reason);
  }

  private async scanByDescriptor(
    scanning: Promise<string>,
    fd: number,
    before: Stats,
    target: ScanTarget,
    signal: AbortSignal,
  ): Promise<Verdict> {
    const socket = describeEndpoint(this.options.endpoint);
    const local = new AbortController();
    const onAbort = () => local.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    let timer: NodeJS.Timeout | undefined;
    try {
      const stopped = new Promise<Verdict>((resolve) => {
        local.signal.addEventListener('abort', () => resolve(failed('aborted', 'scan aborted')), { once: true });
        timer = setTimeout(
          () => resolve(failed('timeout', `clamd at ${socket} did not answer within ${this.options.timeoutMs} ms`)),
          this.options.timeoutMs + DESCRIPTOR_GRACE_MS,
        );
      });
      const scanned = scanning.then(
        (reply) => verdictFromClamdReply(reply),
        (error: unknown) => this.descriptorFailure(error, socket),
      );
      // clamd reads through its own copy of the descriptor; hashing through ours proves what it could see.
      const hashed = hashByPosition(fd, target.size, local.signal);
      hashed.catch(() => undefined);
      const verdict = await Promise.race([scanned, stopped]);
      if (verdict.kind === 'failed') return verdict;
      clearTimeout(timer);

      const { sha256, bytes } = await hashed;
      const after = fstatSync(fd);
      if (bytes !== target.size || sha256 !== target.sha256 || !sameFile(before, after)) {
        return failed(
          'io',
          `'${target.path}' is not the file taken at intake (read ${bytes} bytes, sha256 ${sha256}; expected ${target.size} bytes, sha256 ${target.sha256})`,
        );
      }
      return verdict;
    } catch (error) {
      if (local.signal.aborted) return failed('aborted', 'scan aborted');
      return failed('io', `reading '${target.path}' failed: ${errorMessage(error)}`);
    } finally {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      // With a reason of our own: the default builds an AbortError, stack trace included, per file.
      local.abort(SCAN_SETTLED);
    }
  }

  private descriptorFailure(error: unknown, socket: string): Verdict {
    const code = errorCode(error);
    if (code === 'ETIMEDOUT') return failed('timeout', `clamd at ${socket} did not answer within ${this.options.timeoutMs} ms`);
    if (code !== undefined && UNREACHABLE_CODES.has(code)) {
      return failed('unreachable', `cannot reach clamd at ${socket}: ${errorMessage(error)}`);
    }
    return failed('protocol', `descriptor scan through ${socket} failed: ${errorMessage(error)}`);
  }

  private async queryVersion(signal: AbortSignal): Promise<string> {
    const exchange = new ClamdExchange(this.options.endpoint, this.options.timeoutMs, signal);
    await exchange.send(Buffer.from('zVERSION\0', 'latin1'));
    const outcome = await exchange.outcome;
    if (outcome.kind === 'failed') throw new ScannerError(this.name, outcome.code, outcome.reason);
    const line = outcome.text.trim();
    if (!line.startsWith('ClamAV ')) {
      throw new ScannerError(this.name, 'protocol', `unexpected reply to zVERSION: ${JSON.stringify(line.slice(0, 200))}`);
    }
    return line;
  }
}
