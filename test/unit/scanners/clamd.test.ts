// ClamdScanner against a scripted clamd on a unix socket: the framing it sends, and how every kind of answer
// (or silence) becomes a verdict. The real clamd is exercised in test/integration/scanners/clamd.test.ts.

import { createHash, randomBytes } from 'node:crypto';
import { fstatSync } from 'node:fs';
import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ClamdOptions } from '../../../src/config.js';
import { ClamdScanner, verdictFromClamdReply, type ClamdDescriptorPasser } from '../../../src/scanners/clamd.js';
import { ScannerError, type ScanTarget } from '../../../src/scanners/scanner.js';

const MiB = 1024 * 1024;

interface Session {
  command: string;
  chunks: number[];
  bytes: Buffer;
  terminated: boolean;
  closed: boolean;
}

type Reply = (session: Session, socket: net.Socket) => void;

/**
 * A clamd that decodes what it is sent. `onCommand` runs once the command is read (and, for INSTREAM, after
 * each chunk and at the terminator), and may answer through the socket.
 */
class ScriptedClamd {
  readonly sessions: Session[] = [];
  private server: net.Server | null = null;

  constructor(
    readonly socketPath: string,
    private readonly onEvent: (event: 'command' | 'chunk' | 'end', session: Session, socket: net.Socket) => void,
  ) {}

  async listen(): Promise<void> {
    this.server = net.createServer((socket) => this.serve(socket));
    await new Promise<void>((resolve) => this.server!.listen(this.socketPath, resolve));
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private serve(socket: net.Socket): void {
    const session: Session = { command: '', chunks: [], bytes: Buffer.alloc(0), terminated: false, closed: false };
    this.sessions.push(session);
    let pending = Buffer.alloc(0);
    let commandRead = false;
    const received: Buffer[] = [];
    socket.on('error', () => undefined);
    socket.on('close', () => {
      session.closed = true;
    });
    socket.on('data', (data: Buffer) => {
      pending = Buffer.concat([pending, data]);
      if (!commandRead) {
        const nul = pending.indexOf(0);
        if (nul === -1) return;
        session.command = pending.subarray(0, nul).toString('latin1');
        pending = pending.subarray(nul + 1);
        commandRead = true;
        this.onEvent('command', session, socket);
      }
      if (session.command !== 'zINSTREAM') return;
      while (!session.terminated && pending.length >= 4) {
        const length = pending.readUInt32BE(0);
        if (length === 0) {
          session.terminated = true;
          session.bytes = Buffer.concat(received);
          pending = pending.subarray(4);
          this.onEvent('end', session, socket);
          return;
        }
        if (pending.length < 4 + length) return;
        received.push(pending.subarray(4, 4 + length));
        session.chunks.push(length);
        pending = pending.subarray(4 + length);
        session.bytes = Buffer.concat(received);
        this.onEvent('chunk', session, socket);
      }
    });
  }
}

const VERSION_LINE = 'ClamAV 1.4.6/27500/Mon Jan  5 09:00:00 2026';

const answerAtEnd =
  (reply: string): ((event: string, s: Session, socket: net.Socket) => void) =>
  (event, _session, socket) => {
    if (event === 'end') socket.end(`${reply}\0`);
  };

let dir: string;
let socketPath: string;
let server: ScriptedClamd | null;

function options(overrides: Partial<ClamdOptions> = {}): ClamdOptions {
  return { endpoint: { kind: 'unix', socket: socketPath }, fdpass: false, maxFileSize: 64 * MiB, timeoutMs: 2000, ...overrides };
}

/** Every scripted clamd answers zVERSION and zPING like a real one unless told not to. */
async function serve(
  onEvent: ConstructorParameters<typeof ScriptedClamd>[1],
  answers: { version?: boolean; ping?: boolean } = {},
): Promise<ScriptedClamd> {
  const { version = true, ping = true } = answers;
  server = new ScriptedClamd(socketPath, (event, session, socket) => {
    if (version && event === 'command' && session.command === 'zVERSION') socket.end(`${VERSION_LINE}\0`);
    else if (ping && event === 'command' && session.command === 'zPING') socket.end('PONG\0');
    else onEvent(event, session, socket);
  });
  await server.listen();
  return server;
}

async function fileWith(name: string, content: Buffer): Promise<ScanTarget> {
  const file = path.join(dir, name);
  await writeFile(file, content);
  return { path: file, size: content.length, sha256: createHash('sha256').update(content).digest('hex') };
}

const never = () => new AbortController().signal;

beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'shuttle-clamd-unit-'));
  socketPath = path.join(dir, 'clamd.sock');
  server = null;
});

afterEach(async () => {
  await server?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('verdictFromClamdReply', () => {
  it.each([
    ['stream: OK\0', { kind: 'clean' }],
    ['fd[10]: OK', { kind: 'clean' }],
    ['stream: Eicar-Test-Signature FOUND\0', { kind: 'suspect', signature: 'Eicar-Test-Signature' }],
    ['fd[12]: Win.Test.EICAR_HDB-1 FOUND', { kind: 'suspect', signature: 'Win.Test.EICAR_HDB-1' }],
  ])('%j', (reply, verdict) => {
    expect(verdictFromClamdReply(reply)).toEqual(verdict);
  });

  it.each([
    'stream: Heuristics.Limits.Exceeded.MaxFileSize FOUND',
    'fd[10]: Heuristics.Limits.Exceeded.MaxScanSize FOUND',
    'INSTREAM size limit exceeded. ERROR\0',
  ])('treats %j as a limit, never clean', (reply) => {
    expect(verdictFromClamdReply(reply)).toMatchObject({ kind: 'failed', code: 'limit' });
  });

  it.each(['fd[10]: lstat() failed: No such file or directory. ERROR', 'UNKNOWN COMMAND', 'PONG', '', 'stream:', 'stream: FOUND'])(
    'treats %j as a protocol failure',
    (reply) => {
      expect(verdictFromClamdReply(reply)).toMatchObject({ kind: 'failed', code: 'protocol' });
    },
  );
});

describe('ClamdScanner over INSTREAM', () => {
  it('sends the exact bytes in chunks of at most 1 MiB, ends with a zero-length chunk, and reads OK as clean', async () => {
    const clamd = await serve(answerAtEnd('stream: OK'));
    const content = randomBytes(2 * MiB + 12345);
    const target = await fileWith('data.bin', content);
    const report = await new ClamdScanner(options(), null).scan(target, never());

    expect(report.verdict).toEqual({ kind: 'clean' });
    expect(report.scanner).toBe('clamd');
    const session = clamd.sessions.find((s) => s.command === 'zINSTREAM');
    expect(session?.terminated).toBe(true);
    expect(session?.bytes.equals(content)).toBe(true);
    expect(session?.chunks.every((n) => n > 0 && n <= MiB)).toBe(true);
    expect(session?.chunks.length).toBe(3);
  });

  it('scans an empty file', async () => {
    const clamd = await serve(answerAtEnd('stream: OK'));
    const target = await fileWith('empty', Buffer.alloc(0));
    const report = await new ClamdScanner(options(), null).scan(target, never());
    expect(report.verdict).toEqual({ kind: 'clean' });
    expect(clamd.sessions.find((s) => s.command === 'zINSTREAM')?.terminated).toBe(true);
  });

  it('reports FOUND as suspect with the signature', async () => {
    await serve(answerAtEnd('stream: Win.Test.EICAR_HDB-1 FOUND'));
    const target = await fileWith('x', Buffer.from('anything'));
    const report = await new ClamdScanner(options(), null).scan(target, never());
    expect(report.verdict).toEqual({ kind: 'suspect', signature: 'Win.Test.EICAR_HDB-1' });
  });

  it('reports Heuristics.Limits.Exceeded as a limit, not as suspect or clean', async () => {
    await serve(answerAtEnd('stream: Heuristics.Limits.Exceeded.MaxFileSize FOUND'));
    const target = await fileWith('x', Buffer.from('anything'));
    const report = await new ClamdScanner(options(), null).scan(target, never());
    expect(report.verdict).toMatchObject({ kind: 'failed', code: 'limit' });
  });

  it('never lets clamd judge bytes that differ from the intake sha256: no terminator is sent', async () => {
    const clamd = await serve(answerAtEnd('stream: OK'));
    const target = await fileWith('x', Buffer.from('the bytes on disk'));
    const report = await new ClamdScanner(options(), null).scan({ ...target, sha256: '0'.repeat(64) }, never());
    expect(report.verdict).toMatchObject({ kind: 'failed', code: 'io' });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(clamd.sessions.some((s) => s.terminated)).toBe(false);
  });

  it('fails with io when the file size no longer matches the intake size, without contacting clamd', async () => {
    const clamd = await serve(answerAtEnd('stream: OK'));
    const target = await fileWith('x', Buffer.from('12345'));
    const report = await new ClamdScanner(options(), null).scan({ ...target, size: 4 }, never());
    expect(report.verdict).toMatchObject({ kind: 'failed', code: 'io' });
    expect(clamd.sessions).toHaveLength(0);
  });

  it('refuses a file over maxFileSize as a limit without contacting clamd', async () => {
    const clamd = await serve(answerAtEnd('stream: OK'));
    const target = await fileWith('big', Buffer.alloc(4096, 1));
    const report = await new ClamdScanner(options({ maxFileSize: 4095 }), null).scan(target, never());
    expect(report.verdict).toMatchObject({ kind: 'failed', code: 'limit' });
    expect(clamd.sessions).toHaveLength(0);
  });

  it('refuses to follow a symbolic link', async () => {
    await serve(answerAtEnd('stream: OK'));
    const target = await fileWith('real', Buffer.from('data'));
    const link = path.join(dir, 'link');
    await symlink(target.path, link);
    const report = await new ClamdScanner(options(), null).scan({ ...target, path: link }, never());
    expect(report.verdict).toMatchObject({ kind: 'failed', code: 'io' });
    expect(report.verdict.kind === 'failed' && report.verdict.reason).toMatch(/symbolic link/);
  });

  it('times out when clamd takes everything and never answers, and drops the connection', async () => {
    const clamd = await serve(() => undefined);
    const target = await fileWith('x', Buffer.from('data'));
    const started = Date.now();
    const report = await new ClamdScanner(options({ timeoutMs: 300 }), null).scan(target, never());
    expect(report.verdict).toMatchObject({ kind: 'failed', code: 'timeout' });
    expect(Date.now() - started).toBeLessThan(2000);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(clamd.sessions.every((s) => s.closed)).toBe(true);
  });

  it('stops promptly with aborted when the signal fires mid-scan', async () => {
    await serve(() => undefined);
    const target = await fileWith('x', Buffer.from('data'));
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    const started = Date.now();
    const report = await new ClamdScanner(options({ timeoutMs: 10_000 }), null).scan(target, controller.signal);
    expect(report.verdict).toMatchObject({ kind: 'failed', code: 'aborted' });
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('does not start when the signal is already aborted', async () => {
    const clamd = await serve(answerAtEnd('stream: OK'));
    const target = await fileWith('x', Buffer.from('data'));
    const controller = new AbortController();
    controller.abort();
    const report = await new ClamdScanner(options(), null).scan(target, controller.signal);
    expect(report.verdict).toMatchObject({ kind: 'failed', code: 'aborted' });
    expect(clamd.sessions).toHaveLength(0);
  });

  it('reads a garbage reply as a protocol failure', async () => {
    await serve(answerAtEnd('HELLO THERE'));
    const target = await fileWith('x', Buffer.from('data'));
    const report = await new ClamdScanner(options(), null).scan(target, never());
    expect(report.verdict).toMatchObject({ kind: 'failed', code: 'protocol' });
  });

  it('reads a reply without its NUL terminator as a protocol failure', async () => {
    await serve((event, _s, socket) => event === 'end' && socket.end('stream: OK'));
    const target = await fileWith('x', Buffer.from('data'));
    const report = await new ClamdScanner(options(), null).scan(target, never());
    expect(report.verdict).toMatchObject({ kind: 'failed', code: 'protocol' });
  });

  it('reports a connection closed without a reply as unreachable', async () => {
    await serve((event, _s, socket) => event === 'end' && socket.end());
    const target = await fileWith('x', Buffer.from('data'));
    const report = await new ClamdScanner(options(), null).scan(target, never());
    expect(report.verdict).toMatchObject({ kind: 'failed', code: 'unreachable' });
  });

  it('reports a missing socket as unreachable, and version() rejects', async () => {
    const target = await fileWith('x', Buffer.from('data'));
    const scanner = new ClamdScanner(options(), null);
    const report = await scanner.scan(target, never());
    expect(report.verdict).toMatchObject({ kind: 'failed', code: 'unreachable' });
    expect(report.version).toBeNull();
    await expect(scanner.version(never())).rejects.toMatchObject({ name: 'ScannerError', code: 'unreachable' });
  });

  it('takes an early size-limit reply as a limit and stops sending', async () => {
    const clamd = await serve((event, _s, socket) => event === 'chunk' && socket.end('INSTREAM size limit exceeded. ERROR\0'));
    const target = await fileWith('big', randomBytes(5 * MiB));
    const report = await new ClamdScanner(options(), null).scan(target, never());
    expect(report.verdict).toMatchObject({ kind: 'failed', code: 'limit' });
    expect(clamd.sessions[0]?.terminated).toBe(false);
  });

  it('reads a stream dropped mid-way by a clamd that still answers PING as a limit (its StreamMaxLength)', async () => {
    const clamd = await serve((event, _s, socket) => event === 'chunk' && socket.destroy());
    const target = await fileWith('big', randomBytes(5 * MiB));
    const report = await new ClamdScanner(options(), null).scan(target, never());
    expect(report.verdict).toMatchObject({ kind: 'failed', code: 'limit' });
    expect(report.verdict.kind === 'failed' && report.verdict.reason).toMatch(/StreamMaxLength/);
    expect(clamd.sessions.some((s) => s.command === 'zPING')).toBe(true);
  });

  it('reads a stream dropped mid-way by a clamd that no longer answers as unreachable', async () => {
    await serve((event, session, socket) => (event === 'chunk' || session.command === 'zPING') && socket.destroy(), { ping: false });
    const target = await fileWith('big', randomBytes(5 * MiB));
    const report = await new ClamdScanner(options(), null).scan(target, never());
    expect(report.verdict).toMatchObject({ kind: 'failed', code: 'unreachable' });
  });

  it('never calls a file clean on an OK that arrives before the whole file was sent', async () => {
    await serve((event, _s, socket) => event === 'chunk' && socket.end('stream: OK\0'));
    const target = await fileWith('big', randomBytes(5 * MiB));
    const report = await new ClamdScanner(options(), null).scan(target, never());
    expect(report.verdict.kind).toBe('failed');
  });
});

describe('ClamdScanner version', () => {
  it('returns the zVERSION line and stamps it on reports, asking again only after 60 s', async () => {
    const clamd = await serve(answerAtEnd('stream: OK'));
    let now = 0;
    const scanner = new ClamdScanner(options(), null, () => now);
    const target = await fileWith('x', Buffer.from('data'));
    const versionRequests = () => clamd.sessions.filter((s) => s.command === 'zVERSION').length;

    const first = await scanner.scan(target, never());
    expect(first.version).toBe(VERSION_LINE);
    now = 59_000;
    const second = await scanner.scan(target, never());
    expect(second.version).toBe(first.version);
    expect(versionRequests()).toBe(1);
    now = 61_000;
    await scanner.scan(target, never());
    expect(versionRequests()).toBe(2);

    await expect(scanner.version(never())).resolves.toMatch(/^ClamAV 1\.4\.6\//);
    expect(versionRequests()).toBe(3);
  });

  it('rejects a reply that is not a ClamAV version line', async () => {
    await serve((event, _s, socket) => event === 'command' && socket.end('PONG\0'), { version: false });
    const error = await new ClamdScanner(options(), null).version(never()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ScannerError);
    expect(error).toMatchObject({ code: 'protocol' });
  });
});

describe('ClamdScanner over zFILDES (descriptor passing)', () => {
  function passer(answer: (socketPath: string, fd: number, timeoutMs: number) => Promise<string>) {
    const calls: Array<{ socketPath: string; fd: number; timeoutMs: number; size: number }> = [];
    const fake: ClamdDescriptorPasser = {
      clamdScanDescriptor: (socket, fd, timeoutMs) => {
        calls.push({ socketPath: socket, fd, timeoutMs, size: fstatSync(fd).size });
        return answer(socket, fd, timeoutMs);
      },
    };
    return { fake, calls };
  }

  it('hands clamd an open descriptor of the file and reads fd[N]: OK as clean', async () => {
    const { fake, calls } = passer(async (_s, fd) => `fd[${fd}]: OK`);
    const target = await fileWith('x', Buffer.from('descriptor data'));
    const scanner = new ClamdScanner(options({ fdpass: true, timeoutMs: 1234 }), fake);
    expect(scanner.method).toBe('descriptor');
    const report = await scanner.scan(target, never());
    expect(report.verdict).toEqual({ kind: 'clean' });
    expect(calls).toEqual([{ socketPath, fd: expect.any(Number), timeoutMs: 1234, size: target.size }]);
  });

  it.each([
    ['fd[10]: Win.Test.EICAR_HDB-1 FOUND', { kind: 'suspect', signature: 'Win.Test.EICAR_HDB-1' }],
    ['fd[10]: Heuristics.Limits.Exceeded.MaxFileSize FOUND', { kind: 'failed', code: 'limit' }],
    ['fd[10]: lstat() failed ERROR', { kind: 'failed', code: 'protocol' }],
  ])('maps %j', async (reply, verdict) => {
    const { fake } = passer(async () => reply);
    const target = await fileWith('x', Buffer.from('data'));
    const report = await new ClamdScanner(options({ fdpass: true }), fake).scan(target, never());
    expect(report.verdict).toMatchObject(verdict);
  });

  it.each([
    ['ETIMEDOUT', 'timeout'],
    ['ECONNREFUSED', 'unreachable'],
    ['ENOENT', 'unreachable'],
    ['EPROTO', 'protocol'],
  ])('maps an addon %s error to %s', async (code, expected) => {
    const { fake } = passer(async () => {
      throw Object.assign(new Error(`${code}: failed, clamdScanDescriptor`), { code });
    });
    const target = await fileWith('x', Buffer.from('data'));
    const report = await new ClamdScanner(options({ fdpass: true }), fake).scan(target, never());
    expect(report.verdict).toMatchObject({ kind: 'failed', code: expected });
  });

  it('is not clean when the file behind the descriptor is not the intake file', async () => {
    const { fake } = passer(async () => 'fd[10]: OK');
    const target = await fileWith('x', Buffer.from('data'));
    const report = await new ClamdScanner(options({ fdpass: true }), fake).scan({ ...target, sha256: 'f'.repeat(64) }, never());
    expect(report.verdict).toMatchObject({ kind: 'failed', code: 'io' });
  });

  it('streams instead when descriptor passing is off, the endpoint is TCP, or there is no addon', async () => {
    const { fake, calls } = passer(async () => 'fd[10]: OK');
    expect(new ClamdScanner(options({ fdpass: false }), fake).method).toBe('stream');
    expect(new ClamdScanner(options({ fdpass: true, endpoint: { kind: 'tcp', host: '127.0.0.1', port: 1 } }), fake).method).toBe('stream');
    expect(new ClamdScanner(options({ fdpass: true }), null).method).toBe('stream');

    await serve(answerAtEnd('stream: OK'));
    const target = await fileWith('x', Buffer.from('data'));
    const report = await new ClamdScanner(options({ fdpass: false }), fake).scan(target, never());
    expect(report.verdict).toEqual({ kind: 'clean' });
    expect(calls).toHaveLength(0);
  });

  it('returns aborted at once, but keeps the descriptor open until the addon is done with it', async () => {
    let finish: (reply: string) => void = () => undefined;
    const { fake, calls } = passer(() => new Promise<string>((resolve) => (finish = resolve)));
    const target = await fileWith('x', Buffer.from('data'));
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    const report = await new ClamdScanner(options({ fdpass: true, timeoutMs: 10_000 }), fake).scan(target, controller.signal);
    expect(report.verdict).toMatchObject({ kind: 'failed', code: 'aborted' });

    const fd = calls[0]!.fd;
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(fstatSync(fd).size).toBe(target.size);
    finish('fd[10]: OK');
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(() => fstatSync(fd)).toThrow(expect.objectContaining({ code: 'EBADF' }));
  });
});
