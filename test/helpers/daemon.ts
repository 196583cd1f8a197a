// Runs the real daemon (`node bin/shuttle.js run`) as a child process on a private set of directories,
// so tests can drop files, kill it with any signal, restart it, and look at what it left behind.

import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fsp, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateKeyPair, type TestKeyPair } from './gpg.js';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const SHUTTLE_BIN = path.join(REPO_ROOT, 'bin/shuttle.js');

export interface ShuttleDirectories {
  readonly root: string;
  readonly source: string;
  readonly destination: string;
  readonly quarantine: string;
  readonly hazard: string;
  readonly log: string;
  readonly etc: string;
}

export interface DaemonConfigOptions {
  /** clamd unix socket; mutually exclusive with clamdTcpPort. */
  clamdSocket?: string;
  clamdTcpPort?: number;
  fdpass?: boolean;
  maxFileSize?: string;
  mdatpCommand?: string;
  /** Extra YAML for the pipeline: section, e.g. { retry_base_seconds: 1 }. */
  pipeline?: Record<string, number>;
  /** scanners.require_tested_versions; false unless a test is about the ledger gate. */
  requireTestedVersions?: boolean;
  /**
   * The permissions: section as YAML lines (indented by two). By default every managed path belongs to the
   * user and group running the tests, with the modes and default ACLs of the real model; null leaves the
   * section out, so the daemon applies the shipped model (whose accounts must then exist).
   */
  permissions?: readonly string[] | null;
  /** More top-level YAML, appended as it is (e.g. a limits: section). */
  extraYaml?: string;
}

/** The user and group names the tests run as, for a permission model that needs no extra accounts. */
export function currentAccountNames(): { user: string; group: string } {
  const user = os.userInfo().username;
  const gid = process.getgid?.() ?? 0;
  const groupLine = readGroupLine(gid);
  return { user, group: groupLine ?? String(gid) };
}

function readGroupLine(gid: number): string | null {
  try {
    const text = readFileSync('/etc/group', 'utf8');
    for (const line of text.split('\n')) {
      const [name, , id] = line.split(':');
      if (id !== undefined && Number(id) === gid && name) return name;
    }
  } catch {
    // fall through: the number works as a group name for the model too
  }
  return null;
}

/** The permission model for test directories: the real modes and default ACLs, owned by whoever runs the tests. */
export function defaultTestPermissions(): string[] {
  const { user, group } = currentAccountNames();
  const owned = `owner: "${user}", group: "${group}"`;
  return [
    `  source_path: { ${owned}, mode: "2770", acl: [], default_acl: ["user::rw-", "group::rw-", "other::---"] }`,
    `  destination_path: { ${owned}, mode: "2770", acl: [], default_acl: ["user::rw-", "group::rw-", "other::---"] }`,
    `  quarantine_path: { ${owned}, mode: "2770" }`,
    `  hazard_archive_path: { ${owned}, mode: "2770" }`,
    `  log_path: { ${owned}, mode: "2770" }`,
    `  hazard_encryption_key_path: { ${owned}, mode: "0640" }`,
    `  ledger_file_path: { ${owned}, mode: "0640" }`,
  ];
}

let sharedKey: Promise<TestKeyPair> | null = null;

/**
 * One OpenPGP key pair for every daemon this test process starts (the daemon refuses to start without a
 * usable hazard key); its secret half decrypts their archives.
 */
export function sharedHazardKey(): Promise<TestKeyPair> {
  sharedKey ??= generateKeyPair({ name: 'Shuttle Test Daemon Key' });
  return sharedKey;
}

/** A fresh set of directories under the system temp dir (or `parent`), and a config that points at them. */
export async function makeDirectories(parent = os.tmpdir()): Promise<ShuttleDirectories> {
  const root = await fsp.mkdtemp(path.join(parent, 'shuttle-test-'));
  const directories = {
    root,
    source: path.join(root, 'in'),
    destination: path.join(root, 'out'),
    quarantine: path.join(root, 'quarantine'),
    hazard: path.join(root, 'hazard'),
    log: path.join(root, 'log'),
    etc: path.join(root, 'etc'),
  };
  for (const directory of [directories.source, directories.destination, directories.quarantine, directories.hazard, directories.log, directories.etc]) {
    await fsp.mkdir(directory, { mode: 0o2770 });
    await fsp.chmod(directory, 0o2770);
  }
  await fsp.copyFile((await sharedHazardKey()).publicKeyPath, path.join(directories.etc, 'hazard-public.asc'));
  await fsp.writeFile(path.join(directories.etc, 'ledger.yaml'), '');
  return directories;
}

export async function writeConfig(directories: ShuttleDirectories, options: DaemonConfigOptions): Promise<string> {
  const clamd =
    options.clamdSocket !== undefined
      ? `{ socket: ${options.clamdSocket}, fdpass: ${options.fdpass ?? true}, max_file_size: "${options.maxFileSize ?? '200M'}", timeout_seconds: 30 }`
      : options.clamdTcpPort !== undefined
        ? `{ host: 127.0.0.1, port: ${options.clamdTcpPort}, max_file_size: "${options.maxFileSize ?? '200M'}", timeout_seconds: 30 }`
        : '{ enabled: false }';
  const mdatp = options.mdatpCommand !== undefined ? `{ enabled: true, command: ${options.mdatpCommand} }` : '{ enabled: false }';
  const pipeline = { rescan_interval_seconds: 2, retry_base_seconds: 1, retry_max_seconds: 2, stability_window_seconds: 1, ...options.pipeline };
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
    `  clamd: ${clamd}`,
    `  mdatp: ${mdatp}`,
    `  require_tested_versions: ${options.requireTestedVersions ?? false}`,
    ...(options.permissions === null ? [] : ['permissions:', ...(options.permissions ?? defaultTestPermissions())]),
    'pipeline:',
    ...Object.entries(pipeline).map(([key, value]) => `  ${key}: ${value}`),
    'logging:',
    '  level: debug',
    'runtime:',
    `  status_socket: ${statusSocketPath(directories)}`,
    options.extraYaml ?? '',
    '',
  ].join('\n');
  const file = path.join(directories.etc, 'shuttle.yaml');
  await fsp.writeFile(file, text);
  return file;
}

/** Where a test daemon serves `shuttle status`: inside its own directories, short enough for a socket path. */
export function statusSocketPath(directories: ShuttleDirectories): string {
  return path.join(directories.root, 'run', 'status.sock');
}

export interface RunningDaemon {
  readonly child: ChildProcess;
  /** Everything the daemon printed so far (stdout and stderr). */
  output(): string;
  /** Resolves with the exit code (or the signal name). */
  readonly exited: Promise<number | string>;
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<void>;
  signal(name: NodeJS.Signals): void;
}

const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

export function startDaemon(configFile: string, env: Record<string, string> = {}): RunningDaemon {
  const child = spawn(process.execPath, [SHUTTLE_BIN, 'run', '--config', configFile], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NOTIFY_SOCKET: '', ...env },
  });
  children.add(child);
  let text = '';
  const listeners = new Set<() => void>();
  const collect = (chunk: Buffer): void => {
    text += chunk.toString();
    listeners.forEach((listener) => listener());
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const exited = new Promise<number | string>((resolve) => {
    child.on('exit', (code, signal) => {
      children.delete(child);
      resolve(code ?? signal ?? 'unknown');
      listeners.forEach((listener) => listener());
    });
  });
  return {
    child,
    output: () => text,
    exited,
    signal: (name) => child.kill(name),
    waitForOutput: (pattern, timeoutMs = 30_000) =>
      new Promise<void>((resolve, reject) => {
        const check = (): void => {
          if (pattern.test(text)) {
            cleanup();
            resolve();
          } else if (child.exitCode !== null || child.signalCode !== null) {
            cleanup();
            reject(new Error(`daemon exited before printing ${pattern}:\n${text}`));
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`timed out waiting for ${pattern}:\n${text}`));
        }, timeoutMs);
        const cleanup = (): void => {
          clearTimeout(timer);
          listeners.delete(check);
        };
        listeners.add(check);
        check();
      }),
  };
}

/** Start the daemon and wait until it is watching. */
export async function startDaemonReady(configFile: string, env: Record<string, string> = {}): Promise<RunningDaemon> {
  const daemon = startDaemon(configFile, env);
  await daemon.waitForOutput(/shuttle started/);
  return daemon;
}

export async function stopDaemon(daemon: RunningDaemon): Promise<number | string> {
  if (daemon.child.exitCode !== null || daemon.child.signalCode !== null) return daemon.exited;
  daemon.signal('SIGTERM');
  return daemon.exited;
}

/** Poll `predicate` until it holds; fail with `describe()` after the timeout. */
export async function waitFor(predicate: () => Promise<boolean> | boolean, timeoutMs = 30_000, describe: () => Promise<string> | string = () => ''): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await predicate()) return;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms ${await describe()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Every regular file below `directory`, as paths relative to it, sorted. */
/**
 * Wait until `directory` holds exactly `names` (relative paths). Counting files is not enough: while a
 * release is under way its temporary name is in the directory too.
 */
export async function waitForFiles(directory: string, names: readonly string[], timeoutMs: number, describe: () => Promise<string> | string = () => ''): Promise<void> {
  const expected = JSON.stringify([...names].sort());
  await waitFor(async () => JSON.stringify(await listFiles(directory)) === expected, timeoutMs, async () => `${directory} holds ${(await listFiles(directory)).join(', ')}\n${await describe()}`);
}

export async function listFiles(directory: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (current: string): Promise<void> => {
    for (const entry of await fsp.readdir(current, { withFileTypes: true })) {
      const full = path.join(current, entry.name);
      if (entry.isDirectory()) await walk(full);
      else found.push(path.relative(directory, full));
    }
  };
  await walk(directory);
  return found.sort();
}

/** Quarantine entries holding file bytes (the journal and lock are bookkeeping). */
export async function quarantinedData(quarantine: string): Promise<string[]> {
  return (await fsp.readdir(quarantine)).filter((name) => name.endsWith('.data')).sort();
}

/** Items in the journal with their latest state, replayed the way the daemon replays it. */
export async function journalStates(quarantine: string): Promise<Map<string, { state: string; relativePath: string; signature?: string }>> {
  const states = new Map<string, { state: string; relativePath: string; signature?: string }>();
  let text = '';
  try {
    text = await fsp.readFile(path.join(quarantine, 'journal.jsonl'), 'utf8');
  } catch {
    return states;
  }
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const entry = JSON.parse(line) as { op: string; id?: string; item?: { id: string; state: string; relativePath: string }; state?: string; signature?: string };
    if (entry.op === 'item' && entry.item) states.set(entry.item.id, { state: entry.item.state, relativePath: entry.item.relativePath });
    const known = entry.id !== undefined ? states.get(entry.id) : undefined;
    if (known === undefined) continue;
    if (entry.op === 'scanned' && entry.state) states.set(entry.id as string, { ...known, state: entry.state, ...(entry.signature ? { signature: entry.signature } : {}) });
    if (entry.op === 'failed') states.set(entry.id as string, { ...known, state: 'failed' });
    if (entry.op === 'released') states.set(entry.id as string, { ...known, state: 'released' });
    if (entry.op === 'done') states.delete(entry.id as string);
  }
  return states;
}
