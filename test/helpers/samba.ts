// A private, real smbd for end-to-end tests: root runs it on 127.0.0.1 with a free TCP port, and every
// file it keeps (passdb, locks, state, cache, pid, log) lives in its own temp directory, so nothing is
// shared with a system Samba. The shares are the ones shipped in config/smb-shuttle.conf, with their
// paths pointed at the test's directories: what the tests exercise is the fragment admins install.
// Samba users are real Linux users (no home, no login shell) with a password in the private passdb;
// smbclient talks to the server as one of them.

import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { execa } from 'execa';
import { createThrowawayUser, removeUser } from './accounts.js';
import { freeTcpPort } from './clamd.js';
import { REPO_ROOT } from './daemon.js';

const SMBD = process.env.SHUTTLE_TEST_SMBD ?? '/usr/sbin/smbd';
const SMBCLIENT = process.env.SHUTTLE_TEST_SMBCLIENT ?? 'smbclient';
const SMBPASSWD = process.env.SHUTTLE_TEST_SMBPASSWD ?? 'smbpasswd';
const TESTPARM = process.env.SHUTTLE_TEST_TESTPARM ?? 'testparm';

export const SHIPPED_SHARES = path.join(REPO_ROOT, 'config/smb-shuttle.conf');
/** The share paths config/smb-shuttle.conf is written for (those of config/shuttle.yaml). */
export const SHIPPED_SHARE_PATHS = { inbound: '/srv/shuttle/in', outbound: '/srv/shuttle/out' } as const;

const READY_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 10_000;
const START_ATTEMPTS = 3;
const DEFAULT_CLIENT_TIMEOUT_MS = 180_000;

export interface SambaUser {
  readonly name: string;
  readonly uid: number;
  readonly password: string;
}

export interface SmbclientResult {
  readonly exitCode: number;
  /** stdout and stderr, interleaved as smbclient wrote them. */
  readonly output: string;
  /** Every NT_STATUS_* code smbclient printed; smbclient exits 0 after some failed commands (mkdir, rm). */
  readonly statuses: readonly string[];
  /** Exit status 0 and no NT_STATUS error anywhere in the output. */
  readonly ok: boolean;
}

export interface SmbclientOptions {
  /** Fed to smbclient's stdin (for `put - NAME`). */
  readonly input?: Readable | Buffer | string;
  readonly timeoutMs?: number;
}

export interface SambaHarness {
  readonly dir: string;
  readonly port: number;
  /** The generated smb.conf (a [global] section that includes the rewritten share fragment). */
  readonly conf: string;
  /** The shipped share fragment with the test's paths, as smbd reads it. */
  readonly shares: string;
  /** A new Linux user in `groups`, with a Samba password; removed again by stop(). */
  addUser(groups: readonly string[]): Promise<SambaUser>;
  /**
   * Runs smbclient's `--command` list on `share` as `user`; resolves once smbclient has exited and never
   * rejects for a failed command. With a stream as `input`, the test can feed `put - NAME` while it runs.
   */
  smbclient(share: string, user: SambaUser, commands: string, options?: SmbclientOptions): Promise<SmbclientResult>;
  /** What smbd wrote to its log, for failure messages. */
  log(): Promise<string>;
  /** Stops smbd, removes the users addUser made and the temp directory. Safe to call twice. */
  stop(): Promise<void>;
}

export interface SambaHarnessOptions {
  /** Where the inbound and outbound shares point instead of /srv/shuttle/in and /srv/shuttle/out. */
  readonly inbound: string;
  readonly outbound: string;
}

/** Double quotes keep a name with spaces (or `~$`) as one smbclient argument; `"` and `;` cannot be quoted. */
export function smbQuote(name: string): string {
  if (/["\n;]/.test(name)) throw new Error(`smbclient cannot be given ${JSON.stringify(name)} in a command`);
  return `"${name}"`;
}

/**
 * config/smb-shuttle.conf with its `path =` lines pointed elsewhere. Every path line must be one of the
 * shipped paths: a fragment that grew a share this does not know about fails here rather than being
 * tested half.
 */
export async function shippedShareDefinitions(paths: { inbound: string; outbound: string }): Promise<string> {
  const text = await readFile(SHIPPED_SHARES, 'utf8');
  const replacements = new Map<string, string>([
    [SHIPPED_SHARE_PATHS.inbound, paths.inbound],
    [SHIPPED_SHARE_PATHS.outbound, paths.outbound],
  ]);
  const seen = new Set<string>();
  const rewritten = text.split('\n').map((line) => {
    const match = /^(\s*path\s*=\s*)(\S.*?)\s*$/i.exec(line);
    if (match === null) return line;
    const [, prefix = '', shipped = ''] = match;
    const replacement = replacements.get(shipped);
    if (replacement === undefined) throw new Error(`${SHIPPED_SHARES}: unexpected share path "${shipped}"`);
    seen.add(shipped);
    return `${prefix}${replacement}`;
  });
  for (const shipped of replacements.keys()) {
    if (!seen.has(shipped)) throw new Error(`${SHIPPED_SHARES}: no share with path = ${shipped}`);
  }
  return rewritten.join('\n');
}

function globalSection(dir: string, port: number, sharesFile: string): string {
  const sub = (name: string): string => path.join(dir, name);
  return [
    '[global]',
    '   server role = standalone server',
    '   workgroup = SHUTTLETEST',
    '   netbios name = SHUTTLESMBD',
    `   smb ports = ${port}`,
    '   interfaces = 127.0.0.1',
    '   bind interfaces only = yes',
    '   disable netbios = yes',
    '   security = user',
    '   map to guest = never',
    `   passdb backend = tdbsam:${sub('private/passdb.tdb')}`,
    `   private dir = ${sub('private')}`,
    `   lock directory = ${sub('lock')}`,
    `   state directory = ${sub('state')}`,
    `   cache directory = ${sub('cache')}`,
    `   pid directory = ${sub('run')}`,
    `   ncalrpc dir = ${sub('run/ncalrpc')}`,
    `   log file = ${sub('log.smbd')}`,
    '   max log size = 0',
    '   log level = 1',
    // No printing, no user shares, no RPC helper daemons: smbd alone, nothing that outlives it.
    '   load printers = no',
    '   printing = bsd',
    '   printcap name = /dev/null',
    '   disable spoolss = yes',
    '   usershare max shares = 0',
    '   rpc start on demand helpers = no',
    `   include = ${sharesFile}`,
    '',
  ].join('\n');
}

const running = new Set<ChildProcess>();
const directories = new Set<string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort when a test file forgets stop(): only synchronous work is possible here.
  process.on('exit', () => {
    for (const child of running) killGroup(child, 'SIGKILL');
    for (const dir of directories) rmSync(dir, { recursive: true, force: true });
  });
}

/** smbd runs in a process group of its own (spawned detached); its helpers and per-client children share it. */
function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // the group is gone
  }
}

function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

function waitForExit(child: ChildProcess, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    if (hasExited(child)) return resolve(true);
    const timer = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.createConnection({ host: '127.0.0.1', port });
    const done = (result: boolean): void => {
      socket.destroy();
      resolve(result);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

export async function startSamba(options: SambaHarnessOptions): Promise<SambaHarness> {
  installExitHook();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'shuttle-samba-'));
  directories.add(dir);
  for (const sub of ['private', 'lock', 'state', 'cache', 'run', 'run/ncalrpc', 'auth']) await mkdir(path.join(dir, sub), { recursive: true });
  // smbd insists that its private dir is not readable by others.
  await chmod(path.join(dir, 'private'), 0o700);
  await chmod(path.join(dir, 'auth'), 0o700);
  const sharesFile = path.join(dir, 'smb-shuttle.conf');
  await writeFile(sharesFile, await shippedShareDefinitions(options));
  const conf = path.join(dir, 'smb.conf');
  const logPath = path.join(dir, 'log.smbd');
  const users: SambaUser[] = [];
  let child: ChildProcess | null = null;
  let port = 0;
  let stderr = '';

  const readLog = async (): Promise<string> => (await readFile(logPath, 'utf8').catch(() => '')).slice(-6000);

  const stopSmbd = async (): Promise<void> => {
    const proc = child;
    if (proc === null) return;
    child = null;
    proc.kill('SIGTERM');
    if (!(await waitForExit(proc, STOP_TIMEOUT_MS))) {
      killGroup(proc, 'SIGKILL');
      await waitForExit(proc, STOP_TIMEOUT_MS);
    }
    // Per-connection children and helpers end with their parent; anything left of this group goes now.
    killGroup(proc, 'SIGKILL');
    running.delete(proc);
  };

  const startOnce = async (): Promise<'ready' | 'port-taken'> => {
    port = await freeTcpPort();
    await writeFile(conf, globalSection(dir, port, sharesFile));
    stderr = '';
    const proc = spawn(SMBD, ['--foreground', '--no-process-group', `--configfile=${conf}`], {
      detached: true,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    child = proc;
    running.add(proc);
    proc.stderr?.setEncoding('utf8').on('data', (text: string) => {
      stderr = (stderr + text).slice(-4000);
    });
    let spawnError: Error | null = null;
    proc.once('error', (error) => {
      spawnError = error;
    });
    proc.once('exit', () => running.delete(proc));

    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      if (spawnError !== null) throw new Error(`cannot run ${SMBD}: ${(spawnError as Error).message}`);
      if (hasExited(proc)) {
        child = null;
        const log = await readLog();
        // Another process took the free port between the probe and smbd's bind: try another one.
        if (/Address already in use/i.test(log + stderr)) return 'port-taken';
        throw new Error(`smbd exited during startup (${proc.exitCode ?? proc.signalCode}):\n${stderr}\n${log}`);
      }
      if (await canConnect(port)) return 'ready';
      if (Date.now() > deadline) {
        await stopSmbd();
        throw new Error(`smbd did not accept connections on 127.0.0.1:${port} within ${READY_TIMEOUT_MS} ms:\n${stderr}\n${await readLog()}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };

  const clientArguments = (share: string, user: SambaUser, commands: string): string[] => [
    `//127.0.0.1/${share}`,
    '--port',
    String(port),
    `--configfile=${conf}`,
    // The password goes in a file only root can read, not on a command line every user can see.
    `--authentication-file=${path.join(dir, 'auth', user.name)}`,
    '--command',
    commands,
  ];

  let stopped = false;
  const harness: SambaHarness = {
    dir,
    get port() {
      return port;
    },
    conf,
    shares: sharesFile,

    async addUser(groups) {
      const { name, uid } = createThrowawayUser(groups);
      const user = { name, uid, password: randomBytes(12).toString('base64url') };
      users.push(user);
      await execa(SMBPASSWD, ['-c', conf, '-a', '-s', name], { input: `${user.password}\n${user.password}\n` });
      await writeFile(path.join(dir, 'auth', name), `username = ${name}\npassword = ${user.password}\ndomain = SHUTTLETEST\n`, { mode: 0o600 });
      return user;
    },

    async smbclient(share, user, commands, clientOptions = {}) {
      const result = await execa(SMBCLIENT, clientArguments(share, user, commands), {
        all: true,
        reject: false,
        timeout: clientOptions.timeoutMs ?? DEFAULT_CLIENT_TIMEOUT_MS,
        ...(clientOptions.input === undefined ? { stdin: 'ignore' as const } : { input: clientOptions.input }),
      });
      const output = result.all ?? '';
      const statuses = output.match(/NT_STATUS_[A-Z0-9_]+/g) ?? [];
      const exitCode = result.exitCode ?? -1;
      return { exitCode, output, statuses, ok: exitCode === 0 && statuses.length === 0 };
    },

    log: readLog,

    async stop() {
      if (stopped) return;
      stopped = true;
      const problems: string[] = [];
      await stopSmbd();
      for (const user of users.splice(0)) {
        try {
          removeUser(user.name);
        } catch (error) {
          problems.push(`userdel ${user.name}: ${(error as Error).message}`);
        }
      }
      await rm(dir, { recursive: true, force: true });
      directories.delete(dir);
      if (problems.length > 0) throw new Error(problems.join('\n'));
    },
  };

  try {
    let outcome: 'ready' | 'port-taken' = 'port-taken';
    for (let attempt = 0; attempt < START_ATTEMPTS && outcome === 'port-taken'; attempt++) outcome = await startOnce();
    if (outcome !== 'ready') throw new Error(`smbd found no free port in ${START_ATTEMPTS} attempts`);
  } catch (error) {
    await harness.stop();
    throw error;
  }
  return harness;
}

/** testparm's verdict on a config: the warnings it printed (unknown parameters, globals in a share...). */
export async function testparmWarnings(conf: string): Promise<string[]> {
  const result = await execa(TESTPARM, ['--suppress-prompt', conf], { all: true, reject: false });
  if (result.exitCode !== 0) return [`testparm exited ${result.exitCode}: ${result.all ?? ''}`];
  return (result.all ?? '')
    .split('\n')
    .filter((line) => /unknown parameter|ignoring|global parameter .* found in service section|warning|error/i.test(line))
    .filter((line) => !/weak crypto is allowed/i.test(line));
}
