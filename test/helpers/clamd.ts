// A private, real clamd for tests: its own temp directory, a one-signature database built from the EICAR
// string with sigtool, a unix socket and optionally a TCP port on 127.0.0.1. Nothing is shared with a system
// clamd, and no clamd outlives the test process.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { ClamdDescriptorPasser } from '../../src/scanners/clamd.js';

const execFileAsync = promisify(execFile);

/** The 68-byte EICAR test string; no trailing newline, or some engines stop matching it. */
export const EICAR = 'X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*';

const CLAMD = process.env.SHUTTLE_TEST_CLAMD ?? '/usr/sbin/clamd';
const SIGTOOL = process.env.SHUTTLE_TEST_SIGTOOL ?? '/usr/bin/sigtool';
const READY_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 10_000;

export interface ClamdHarnessOptions {
  /** Also listen on a free TCP port on 127.0.0.1. */
  tcp?: boolean;
  /** clamd size settings, in clamd.conf syntax ("200M", "64K"). Default 200M each. */
  streamMaxLength?: string;
  maxFileSize?: string;
  maxScanSize?: string;
  /** Report files over the limits as Heuristics.Limits.Exceeded instead of OK. Default true. */
  alertExceedsMax?: boolean;
}

export interface ClamdHarness {
  readonly dir: string;
  readonly socketPath: string;
  /** null unless started with { tcp: true }. */
  readonly tcpPort: number | null;
  /** Path of the generated clamd.conf. */
  readonly conf: string;
  /** The name clamd reports for the EICAR test string ("<file>.UNOFFICIAL"). */
  readonly eicarSignature: string;
  /** Starts clamd again after stop() or kill(), with the same socket, port and configuration. */
  start(): Promise<void>;
  /** SIGTERM, wait for exit, and remove the temp directory. */
  stop(): Promise<void>;
  /** SIGKILL, as a crash would: the socket file stays behind. */
  kill(): Promise<void>;
  /** Text clamd wrote to its log file, for failure messages. */
  log(): Promise<string>;
}

const running = new Set<ChildProcess>();
const directories = new Set<string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort when a test file forgets stop() or the run is interrupted: only synchronous work is possible here.
  process.on('exit', () => {
    for (const child of running) {
      try {
        child.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
    for (const dir of directories) rmSync(dir, { recursive: true, force: true });
  });
}

export async function freeTcpPort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/** One z-command on a fresh connection; resolves with the reply text without its NUL. */
export async function clamdCommand(socketPath: string, command: string, timeoutMs = 2000): Promise<string> {
  return await new Promise((resolve, reject) => {
    const socket = net.createConnection({ path: socketPath });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no reply to ${command} within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.on('data', (data: Buffer) => {
      chunks.push(data);
      const all = Buffer.concat(chunks);
      const nul = all.indexOf(0);
      if (nul !== -1) {
        clearTimeout(timer);
        socket.destroy();
        resolve(all.subarray(0, nul).toString('utf8'));
      }
    });
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.on('end', () => {
      clearTimeout(timer);
      reject(new Error(`clamd closed the connection without answering ${command}`));
    });
    socket.write(`z${command}\0`);
  });
}

function configText(dir: string, socketPath: string, tcpPort: number | null, options: ClamdHarnessOptions): string {
  const lines = [
    'Foreground yes',
    `LocalSocket ${socketPath}`,
    'FixStaleSocket yes',
    `PidFile ${path.join(dir, 'clamd.pid')}`,
    `LogFile ${path.join(dir, 'clamd.log')}`,
    'LogTime yes',
    `DatabaseDirectory ${path.join(dir, 'db')}`,
    `TemporaryDirectory ${path.join(dir, 'tmp')}`,
    `StreamMaxLength ${options.streamMaxLength ?? '200M'}`,
    `MaxFileSize ${options.maxFileSize ?? '200M'}`,
    `MaxScanSize ${options.maxScanSize ?? '200M'}`,
    `AlertExceedsMax ${options.alertExceedsMax === false ? 'no' : 'yes'}`,
    'SelfCheck 3600',
  ];
  if (tcpPort !== null) lines.push(`TCPSocket ${tcpPort}`, 'TCPAddr 127.0.0.1');
  // No User line: clamd keeps the identity of the test process.
  return `${lines.join('\n')}\n`;
}

export async function startClamd(options: ClamdHarnessOptions = {}): Promise<ClamdHarness> {
  installExitHook();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'shuttle-clamd-'));
  directories.add(dir);
  const socketPath = path.join(dir, 'clamd.sock');
  const conf = path.join(dir, 'clamd.conf');
  const logPath = path.join(dir, 'clamd.log');
  const tcpPort = options.tcp ? await freeTcpPort() : null;
  const eicarName = 'shuttle-test-eicar';
  let child: ChildProcess | null = null;
  let stderr = '';

  const prepare = async () => {
    await mkdir(path.join(dir, 'db'), { recursive: true });
    await mkdir(path.join(dir, 'tmp'), { recursive: true });
    const sample = path.join(dir, eicarName);
    await writeFile(sample, EICAR, { encoding: 'latin1' });
    // sigtool prints "md5:size:name", exactly one line of an .hdb database.
    const { stdout } = await execFileAsync(SIGTOOL, ['--md5', sample]);
    await writeFile(path.join(dir, 'db', 'test.hdb'), stdout);
    await writeFile(conf, configText(dir, socketPath, tcpPort, options));
  };

  const waitForExit = (proc: ChildProcess, ms: number) =>
    new Promise<boolean>((resolve) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return resolve(true);
      const timer = setTimeout(() => resolve(false), ms);
      proc.once('exit', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });

  const start = async () => {
    if (child) throw new Error('clamd is already running');
    directories.add(dir);
    await prepare();
    stderr = '';
    const proc = spawn(CLAMD, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    child = proc;
    running.add(proc);
    proc.stderr?.setEncoding('utf8');
    proc.stderr?.on('data', (text: string) => {
      stderr = (stderr + text).slice(-4000);
    });
    let spawnError: Error | null = null;
    proc.once('error', (error) => {
      spawnError = error;
    });
    proc.once('exit', () => {
      running.delete(proc);
      if (child === proc) child = null;
    });

    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      if (spawnError) throw new Error(`cannot run ${CLAMD}: ${(spawnError as Error).message}`);
      if (proc.exitCode !== null || proc.signalCode !== null) {
        const log = await readFile(logPath, 'utf8').catch(() => '');
        throw new Error(`clamd exited during startup (${proc.exitCode ?? proc.signalCode}):\n${stderr}\n${log.slice(-2000)}`);
      }
      try {
        if ((await clamdCommand(socketPath, 'PING', 1000)) === 'PONG') return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) {
        proc.kill('SIGKILL');
        throw new Error(`clamd did not answer PING within ${READY_TIMEOUT_MS} ms:\n${stderr}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };

  const stopProcess = async (signal: NodeJS.Signals) => {
    const proc = child;
    if (!proc) return;
    proc.kill(signal);
    if (!(await waitForExit(proc, STOP_TIMEOUT_MS))) {
      proc.kill('SIGKILL');
      await waitForExit(proc, STOP_TIMEOUT_MS);
    }
    running.delete(proc);
    child = null;
  };

  const harness: ClamdHarness = {
    dir,
    socketPath,
    tcpPort,
    conf,
    eicarSignature: `${eicarName}.UNOFFICIAL`,
    start,
    async stop() {
      await stopProcess('SIGTERM');
      await rm(dir, { recursive: true, force: true });
      directories.delete(dir);
    },
    async kill() {
      await stopProcess('SIGKILL');
    },
    async log() {
      return await readFile(logPath, 'utf8').catch(() => '');
    },
  };

  try {
    await start();
  } catch (error) {
    await harness.stop();
    throw error;
  }
  return harness;
}

/**
 * A stand-in for the native addon's clamdScanDescriptor, for when the addon is not built: python3 receives
 * the descriptor as its fd 3 and sends it to clamd with zFILDES over SCM_RIGHTS, exactly as the addon does.
 * Returns null when no python3 with socket.send_fds (3.9+) is available.
 */
export async function pythonDescriptorPasser(): Promise<ClamdDescriptorPasser | null> {
  const python = process.env.SHUTTLE_TEST_PYTHON ?? 'python3';
  try {
    await execFileAsync(python, ['-c', 'import socket, sys; sys.exit(0 if hasattr(socket, "send_fds") else 1)']);
  } catch {
    return null;
  }
  const script = [
    'import socket, sys',
    's = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)',
    's.settimeout(float(sys.argv[2]))',
    's.connect(sys.argv[1])',
    "s.sendall(b'zFILDES\\0')",
    "socket.send_fds(s, [b'\\0'], [3])",
    "reply = b''",
    "while not reply.endswith(b'\\0'):",
    '    data = s.recv(4096)',
    '    if not data: break',
    '    reply += data',
    "sys.stdout.write(reply.rstrip(b'\\0').decode())",
  ].join('\n');
  return {
    clamdScanDescriptor: (socketPath: string, fd: number, timeoutMs: number) =>
      new Promise<string>((resolve, reject) => {
        const proc = spawn(python, ['-c', script, socketPath, String(timeoutMs / 1000)], {
          stdio: ['ignore', 'pipe', 'pipe', fd],
        });
        let out = '';
        let err = '';
        proc.stdout?.setEncoding('utf8').on('data', (text: string) => (out += text));
        proc.stderr?.setEncoding('utf8').on('data', (text: string) => (err += text));
        proc.once('error', reject);
        proc.once('exit', (code) => {
          if (code === 0) return resolve(out);
          const errno = /ConnectionRefused/.test(err)
            ? 'ECONNREFUSED'
            : /FileNotFound/.test(err)
              ? 'ENOENT'
              : /timed out|TimeoutError/.test(err)
                ? 'ETIMEDOUT'
                : 'EIO';
          reject(Object.assign(new Error(`${errno}: zFILDES through ${socketPath} failed: ${err.trim().split('\n').pop() ?? ''}`), { code: errno }));
        });
      }),
  };
}
