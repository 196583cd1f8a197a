// A private clamd for the benchmark: its own directory, a one-signature database built from the EICAR string
// with sigtool, and a unix socket. The same clamd.conf is given to clamdscan for the shell baseline.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

const CLAMD = process.env.SHUTTLE_TEST_CLAMD ?? '/usr/sbin/clamd';
const SIGTOOL = process.env.SHUTTLE_TEST_SIGTOOL ?? '/usr/bin/sigtool';
const EICAR = 'X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*';
const READY_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 10_000;

export interface BenchClamd {
  readonly socketPath: string;
  /** clamd.conf; clamdscan reads the same file to find the socket. */
  readonly conf: string;
  readonly pid: number;
  stop(): Promise<void>;
}

export async function startClamd(directory: string, maxThreads: number): Promise<BenchClamd> {
  const socketPath = path.join(directory, 'clamd.sock');
  const conf = path.join(directory, 'clamd.conf');
  const logPath = path.join(directory, 'clamd.log');
  await mkdir(path.join(directory, 'db'), { recursive: true });
  await mkdir(path.join(directory, 'tmp'), { recursive: true });
  const sample = path.join(directory, 'shuttle-bench-eicar');
  await writeFile(sample, EICAR, { encoding: 'latin1' });
  const { stdout } = await execFileAsync(SIGTOOL, ['--md5', sample]);
  await writeFile(path.join(directory, 'db', 'test.hdb'), stdout);
  const lines = [
    'Foreground yes',
    `LocalSocket ${socketPath}`,
    'FixStaleSocket yes',
    `PidFile ${path.join(directory, 'clamd.pid')}`,
    `LogFile ${logPath}`,
    'LogTime yes',
    `DatabaseDirectory ${path.join(directory, 'db')}`,
    `TemporaryDirectory ${path.join(directory, 'tmp')}`,
    'StreamMaxLength 200M',
    'MaxFileSize 200M',
    'MaxScanSize 200M',
    'AlertExceedsMax yes',
    `MaxThreads ${maxThreads}`,
    'SelfCheck 3600',
  ];
  // No User line: clamd keeps our identity and can read the files it is handed.
  await writeFile(conf, `${lines.join('\n')}\n`);

  const child = spawn(CLAMD, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  track(child);
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (text: string) => {
    stderr = (stderr + text).slice(-4000);
  });
  let spawnError: Error | null = null;
  child.once('error', (error) => {
    spawnError = error;
  });
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    if (!(await exitWithin(child, STOP_TIMEOUT_MS))) {
      child.kill('SIGKILL');
      await exitWithin(child, STOP_TIMEOUT_MS);
    }
  };

  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (spawnError !== null) throw new Error(`cannot run ${CLAMD}: ${(spawnError as Error).message}`);
    if (child.exitCode !== null || child.signalCode !== null) {
      const log = await readFile(logPath, 'utf8').catch(() => '');
      throw new Error(`clamd exited during startup (${child.exitCode ?? child.signalCode}):\n${stderr}\n${log.slice(-2000)}`);
    }
    if ((await clamdCommand(socketPath, 'PING').catch(() => '')) === 'PONG') break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`clamd did not answer PING within ${READY_TIMEOUT_MS} ms:\n${stderr}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return { socketPath, conf, pid: child.pid ?? -1, stop };
}

/** One z-command on a fresh connection; resolves with the reply without its NUL. */
export function clamdCommand(socketPath: string, command: string, timeoutMs = 2000): Promise<string> {
  return new Promise((resolve, reject) => {
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
      if (nul === -1) return;
      clearTimeout(timer);
      socket.destroy();
      resolve(all.subarray(0, nul).toString('utf8'));
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

/** Children still running; killed on any exit, so an interrupted benchmark leaves no clamd or daemon behind. */
const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

export function track(child: ChildProcess): void {
  children.add(child);
  child.once('exit', () => children.delete(child));
}

export function exitWithin(child: ChildProcess, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve(true);
    const timer = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}
