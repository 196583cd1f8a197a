// The real daemon (`node bin/shuttle.js run --config F`) as a child process, on a private set of directories.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, chmod, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { exitWithin, track } from './clamd.js';

/** dist/bench/ → the repository root. */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SHUTTLE_BIN = path.join(REPO_ROOT, 'bin/shuttle.js');
const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 60_000;

export interface ShuttleDirectories {
  readonly source: string;
  readonly destination: string;
  readonly quarantine: string;
  readonly hazard: string;
  readonly log: string;
  readonly etc: string;
}

export interface ShuttleSettings {
  readonly clamdSocket: string;
  /** Only the keys given are written; everything else keeps the daemon's defaults. */
  readonly pipeline: Readonly<Record<string, number>>;
  readonly logLevel: string | null;
}

export async function makeDirectories(root: string): Promise<ShuttleDirectories> {
  const directories = {
    source: path.join(root, 'in'),
    destination: path.join(root, 'out'),
    quarantine: path.join(root, 'quarantine'),
    hazard: path.join(root, 'hazard'),
    log: path.join(root, 'log'),
    etc: path.join(root, 'etc'),
  };
  for (const directory of Object.values(directories)) {
    await mkdir(directory, { recursive: true });
    await chmod(directory, 0o2770);
  }
  // The daemon checks the hazard key at start: it must be a real OpenPGP public key.
  await writeFile(path.join(directories.etc, 'hazard-public.asc'), await benchPublicKey());
  await writeFile(path.join(directories.etc, 'ledger.yaml'), '');
  return directories;
}

export async function writeConfig(directories: ShuttleDirectories, settings: ShuttleSettings): Promise<string> {
  const pipeline = Object.entries(settings.pipeline);
  const text = [
    'paths:',
    `  source_path: ${directories.source}`,
    `  destination_path: ${directories.destination}`,
    `  quarantine_path: ${directories.quarantine}`,
    `  hazard_archive_path: ${directories.hazard}`,
    `  log_path: ${directories.log}`,
    `  hazard_encryption_key_path: ${path.join(directories.etc, 'hazard-public.asc')}`,
    `  ledger_file_path: ${path.join(directories.etc, 'ledger.yaml')}`,
    'scanners:',
    `  clamd: { socket: ${settings.clamdSocket}, fdpass: true, max_file_size: "200M" }`,
    '  mdatp: { enabled: false }',
    ...(pipeline.length > 0 ? ['pipeline:', ...pipeline.map(([key, value]) => `  ${key}: ${value}`)] : []),
    ...(settings.logLevel !== null ? ['logging:', `  level: ${settings.logLevel}`] : []),
    '',
  ].join('\n');
  const file = path.join(directories.etc, 'shuttle.yaml');
  await writeFile(file, text);
  // The daemon releases nothing with scanner versions that were never tested: record them, as an admin would.
  await execFileAsync(process.execPath, [SHUTTLE_BIN, 'scanner-test', '--config', file]).catch((error: Error & { stdout?: string; stderr?: string }) => {
    throw new Error(`shuttle scanner-test failed: ${error.message}\n${error.stdout ?? ''}${error.stderr ?? ''}`);
  });
  return file;
}

export class ShuttleProcess {
  private output = '';

  private constructor(private readonly child: ChildProcess) {}

  /** Start the daemon and wait until it logs that it is watching. `nodeArgs` go to node itself (--cpu-prof). */
  static async start(configFile: string, nodeArgs: readonly string[]): Promise<ShuttleProcess> {
    const child = spawn(process.execPath, [...nodeArgs, SHUTTLE_BIN, 'run', '--config', configFile], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NOTIFY_SOCKET: '' },
    });
    track(child);
    const daemon = new ShuttleProcess(child);
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`shuttle did not start within ${READY_TIMEOUT_MS / 1000} s:\n${daemon.tail()}`)), READY_TIMEOUT_MS);
      const collect = (chunk: Buffer): void => {
        // Keep only a tail: at info level the daemon logs two lines per file.
        daemon.output = (daemon.output + chunk.toString()).slice(-20_000);
        if (daemon.output.includes('shuttle started')) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout?.on('data', collect);
      child.stderr?.on('data', collect);
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`shuttle exited during startup (${code ?? signal}):\n${daemon.tail()}`));
      });
    });
    try {
      await ready;
    } catch (error) {
      await daemon.stop();
      throw error;
    }
    return daemon;
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  tail(): string {
    return this.output.slice(-4000);
  }

  /** Peak resident set size so far (VmHWM), in bytes. */
  peakRss(): number {
    const status = readFileSync(`/proc/${this.pid}/status`, 'utf8');
    const kib = /^VmHWM:\s+(\d+) kB$/m.exec(status)?.[1];
    if (kib === undefined) throw new Error(`no VmHWM in /proc/${this.pid}/status`);
    return Number(kib) * 1024;
  }

  /** SIGTERM, as systemd would; SIGKILL if it does not stop in time. Resolves with the exit status. */
  async stop(): Promise<number | string> {
    const child = this.child;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      if (!(await exitWithin(child, STOP_TIMEOUT_MS))) {
        child.kill('SIGKILL');
        await exitWithin(child, STOP_TIMEOUT_MS);
      }
    }
    return child.exitCode ?? child.signalCode ?? 'unknown';
  }
}

const CLOCK_TICKS_PER_SECOND = 100;

/** User + system CPU seconds a process has used so far, from /proc/<pid>/stat. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name may hold spaces and parentheses: count fields after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
}

/**
 * The main thread's time on a CPU and time spent runnable but waiting for one, in seconds
 * (/proc/PID/task/PID/schedstat). A thread that waits long for a core gains nothing from shedding work.
 */
export function mainThreadSchedule(pid: number): { onCpuSeconds: number; waitingSeconds: number } {
  const [onCpuNs = '0', waitingNs = '0'] = readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').trim().split(' ');
  return { onCpuSeconds: Number(onCpuNs) / 1e9, waitingSeconds: Number(waitingNs) / 1e9 };
}

export interface StageMarks {
  /** Epoch milliseconds of the daemon's 'quarantined' and 'released' log entries for one file. */
  quarantinedAt?: number;
  releasedAt?: number;
}

/**
 * When each file (by source file name) was quarantined and released, from the daemon's JSON log
 * (<log_path>/shuttle.log). Timestamps have millisecond precision, which is plenty beside a scan.
 */
export function stageMarks(logFile: string): Map<string, StageMarks> {
  const byId = new Map<string, string>();
  const marks = new Map<string, StageMarks>();
  for (const line of readFileSync(logFile, 'utf8').split('\n')) {
    if (!line.includes('"quarantined"') && !line.includes('"released"')) continue;
    const entry = JSON.parse(line) as { timestamp: string; message: string; id?: string; path?: string };
    if (entry.id === undefined || entry.path === undefined) continue;
    const at = Date.parse(entry.timestamp);
    if (entry.message === 'quarantined') {
      const name = path.basename(entry.path);
      byId.set(entry.id, name);
      marks.set(name, { ...marks.get(name), quarantinedAt: at });
    } else if (entry.message === 'released') {
      const name = byId.get(entry.id) ?? path.basename(entry.path);
      marks.set(name, { ...marks.get(name), releasedAt: at });
    }
  }
  return marks;
}

const execFileAsync = promisify(execFile);
let publicKey: Promise<string> | null = null;

/** An armored OpenPGP public key (ed25519/cv25519, fast to make), made once per benchmark process. */
export function benchPublicKey(): Promise<string> {
  publicKey ??= (async () => {
    const home = await mkdtemp(path.join(os.tmpdir(), 'shuttle-bench-gpg-'));
    const gpg = (args: readonly string[]) => execFileAsync('gpg', ['--homedir', home, '--batch', '--no-tty', '--pinentry-mode', 'loopback', '--passphrase', '', ...args]);
    try {
      await gpg(['--quick-gen-key', 'Shuttle Bench <bench@localhost>', 'ed25519', 'sign', 'never']);
      const { stdout: listing } = await gpg(['--with-colons', '--list-keys']);
      const fingerprint = /^fpr:+([0-9A-F]+):/m.exec(listing)?.[1];
      if (fingerprint === undefined) throw new Error(`gpg made no key in ${home}`);
      await gpg(['--quick-add-key', fingerprint, 'cv25519', 'encr', 'never']);
      const { stdout } = await gpg(['--armor', '--export', fingerprint]);
      return stdout;
    } finally {
      // gpg started an agent for this home: stop it, or it outlives the benchmark.
      await execFileAsync('gpgconf', ['--homedir', home, '--kill', 'all']).catch(() => undefined);
      await rm(home, { recursive: true, force: true });
    }
  })();
  return publicKey;
}
