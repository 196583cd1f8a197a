// The daemon against the bad-input corpus (test/fixtures/bad-input.ts): odd names, links, special files,
// races between the uploader and the daemon, traps in destination, permissions that deny reading, and a
// directory of 100,000 entries. Each run checks that the daemon is still alive and answering, that every
// entry got its expected outcome, that nothing from outside the share reached destination or quarantine
// or was changed, and that no file was lost. Real clamd, real gpg, real file system.
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fsp, type Stats } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BAD_INPUT_CASES, BULK, SECRET_MARKER, uniqueContent, type BadInputCase, type CorpusContext, type CorpusEntry, type CorpusRun, type RelativePath } from '../../fixtures/bad-input.js';
import { startClamd, type ClamdHarness } from '../../helpers/clamd.js';
import {
  journalStates,
  listFiles,
  makeDirectories,
  quarantinedData,
  SHUTTLE_BIN,
  startDaemonReady,
  stopDaemon,
  waitFor,
  writeConfig,
  type RunningDaemon,
  type ShuttleDirectories,
} from '../../helpers/daemon.js';

const execFileAsync = promisify(execFile);
const sha256 = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const relativeText = (relative: RelativePath): string => (typeof relative === 'string' ? relative : relative.toString('utf8'));

/** Files the test itself puts into destination before the run (traps); they must stay as they are. */
const PLANTED_IN_DESTINATION = ['taken.txt', 'clash'];
/**
 * How long the daemon works on the 100,000-entry directory before it is stopped. Releasing all of it takes
 * several minutes on a 2-core machine; what must hold is steady progress, bounded memory, an answering
 * status socket, a clean stop, and every entry accounted for. Throughput is reported, not asserted.
 */
const BULK_WORK_MS = 90_000;
/** At least this many released in that time: the directory's size must not stall intake. */
const BULK_MIN_RELEASED = 2_000;
const BULK_MAX_RSS_MIB = 768;
/** systemd/shuttle.service: TimeoutStopSec=90s, after which systemd kills the daemon. */
const UNIT_STOP_TIMEOUT_MS = 90_000;
const CAP_DAC_OVERRIDE = 1;
const CAP_DAC_READ_SEARCH = 2;

let clamd: ClamdHarness;

beforeAll(async () => {
  clamd = await startClamd();
});

afterAll(async () => {
  await clamd?.stop();
});

type AuditRecord = Record<string, unknown> & { event: string };
type LogRecord = Record<string, unknown> & { message: string };

interface EntryIdentity {
  readonly ino: number;
  readonly type: string;
  readonly sha256: string | null;
}

interface OutsideEntry {
  readonly type: string;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly nlink: number;
  readonly size: number;
  readonly mtimeMs: number;
  readonly ctimeMs: number;
  readonly sha256: string | null;
}

function typeOf(stats: Stats): string {
  if (stats.isFile()) return 'file';
  if (stats.isDirectory()) return 'directory';
  if (stats.isSymbolicLink()) return 'symlink';
  if (stats.isFIFO()) return 'fifo';
  if (stats.isSocket()) return 'socket';
  return 'device';
}

async function lstatOrNull(target: string | Buffer): Promise<Stats | null> {
  try {
    return await fsp.lstat(target);
  } catch {
    return null;
  }
}

/**
 * Regular files below `directory` (symlinks never followed), with their SHA-256. Names are read as bytes,
 * so a name that is not valid UTF-8 is found too (its key shows the invalid bytes as U+FFFD).
 */
async function regularFiles(directory: string): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  const walk = async (current: Buffer, relative: string): Promise<void> => {
    for (const entry of await fsp.readdir(current, { withFileTypes: true, encoding: 'buffer' })) {
      const name = entry.name as unknown as Buffer;
      const full = Buffer.concat([current, Buffer.from('/'), name]);
      const key = relative === '' ? name.toString('utf8') : `${relative}/${name.toString('utf8')}`;
      if (entry.isDirectory()) await walk(full, key);
      else if (entry.isFile()) found.set(key, sha256(await fsp.readFile(full)));
    }
  };
  await walk(Buffer.from(directory), '');
  return found;
}

/** Type, owner, mode, times and bytes of everything below `directory`: any change by the daemon shows. */
async function snapshotTree(directory: string): Promise<Map<string, OutsideEntry>> {
  const snapshot = new Map<string, OutsideEntry>();
  const walk = async (current: string): Promise<void> => {
    for (const name of await fsp.readdir(current)) {
      const full = path.join(current, name);
      const stats = await fsp.lstat(full);
      snapshot.set(path.relative(directory, full), {
        type: typeOf(stats),
        mode: stats.mode,
        uid: stats.uid,
        gid: stats.gid,
        nlink: stats.nlink,
        size: stats.size,
        mtimeMs: stats.mtimeMs,
        ctimeMs: stats.ctimeMs,
        sha256: stats.isFile() ? sha256(await fsp.readFile(full)) : null,
      });
      if (stats.isDirectory()) await walk(full);
    }
  };
  await walk(directory);
  return snapshot;
}

async function readJsonLines<T>(file: string): Promise<T[]> {
  const text = await fsp.readFile(file, 'utf8').catch(() => '');
  const records: T[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    try {
      records.push(JSON.parse(line) as T);
    } catch {
      // a line being written while we read
    }
  }
  return records;
}

async function auditRecords(logDirectory: string): Promise<AuditRecord[]> {
  const names = (await fsp.readdir(logDirectory)).filter((name) => /^audit-.*\.jsonl$/.test(name)).sort();
  return (await Promise.all(names.map((name) => readJsonLines<AuditRecord>(path.join(logDirectory, name))))).flat();
}

/** Exit status and JSON of `shuttle status --config F --json`. */
async function shuttleStatus(configFile: string): Promise<{ code: number; status: Record<string, unknown> | null; stderr: string }> {
  try {
    const { stdout } = await execFileAsync(process.execPath, [SHUTTLE_BIN, 'status', '--config', configFile, '--json'], { timeout: 20_000 });
    return { code: 0, status: JSON.parse(stdout) as Record<string, unknown>, stderr: '' };
  } catch (error) {
    const failure = error as { code?: number; stderr?: string };
    return { code: typeof failure.code === 'number' ? failure.code : -1, status: null, stderr: failure.stderr ?? String(error) };
  }
}

/**
 * The daemon as uid 0 without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (dropped from the bounding set
 * before exec, so root's full permitted set at exec excludes them): file modes bind it like any owner,
 * and a file it may not read stays unreadable however it tries.
 */
function startWithoutDacOverride(configFile: string): Promise<RunningDaemon> {
  const dropped = '-dac_override,-dac_read_search';
  const child = spawn(
    'setpriv',
    [`--inh-caps=${dropped}`, `--bounding-set=${dropped}`, '--', process.execPath, SHUTTLE_BIN, 'run', '--config', configFile],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NOTIFY_SOCKET: '' } },
  );
  let text = '';
  const listeners = new Set<() => void>();
  const collect = (chunk: Buffer): void => {
    text += chunk.toString();
    listeners.forEach((listener) => listener());
  };
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  const exited = new Promise<number | string>((resolve) => {
    child.on('exit', (code, signal) => {
      resolve(code ?? signal ?? 'unknown');
      listeners.forEach((listener) => listener());
    });
  });
  process.once('exit', () => child.kill('SIGKILL'));
  const daemon: RunningDaemon = {
    child,
    output: () => text,
    exited,
    signal: (name) => child.kill(name),
    waitForOutput: (pattern, timeoutMs = 30_000) =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          listeners.delete(check);
          reject(new Error(`timed out waiting for ${pattern}:\n${text}`));
        }, timeoutMs);
        const check = (): void => {
          const done = pattern.test(text);
          const dead = child.exitCode !== null || child.signalCode !== null;
          if (!done && !dead) return;
          clearTimeout(timer);
          listeners.delete(check);
          if (done) resolve();
          else reject(new Error(`daemon exited before printing ${pattern}:\n${text}`));
        };
        listeners.add(check);
        check();
      }),
  };
  return daemon.waitForOutput(/shuttle started/).then(() => daemon);
}

/** The corpus context on real directories, recording what each regular file must be released with. */
class Corpus implements CorpusContext {
  readonly source: string;
  readonly destination: string;
  readonly quarantine: string;
  readonly outside: string;
  readonly staging: string;
  private readonly versions = new Map<string, Buffer[]>();

  constructor(readonly directories: ShuttleDirectories) {
    this.source = directories.source;
    this.destination = directories.destination;
    this.quarantine = directories.quarantine;
    this.outside = path.join(directories.root, 'outside');
    this.staging = path.join(directories.root, 'staging');
  }

  async prepare(): Promise<void> {
    await fsp.mkdir(this.outside, { recursive: true });
    await fsp.mkdir(this.staging, { recursive: true });
  }

  at(relative: RelativePath): string | Buffer {
    return typeof relative === 'string' ? path.join(this.source, relative) : Buffer.concat([Buffer.from(`${this.source}/`), relative]);
  }

  async file(relative: RelativePath, data: Buffer | string = uniqueContent(relativeText(relative)), options: { mode?: number; uid?: number; gid?: number } = {}): Promise<Buffer> {
    const bytes = Buffer.isBuffer(data) ? data : Buffer.from(data);
    const target = this.at(relative);
    if (typeof target === 'string') await fsp.mkdir(path.dirname(target), { recursive: true });
    await fsp.writeFile(target, bytes);
    if (options.uid !== undefined || options.gid !== undefined) await fsp.chown(target, options.uid ?? 0, options.gid ?? 0);
    if (options.mode !== undefined) await fsp.chmod(target, options.mode);
    this.record(relative, bytes);
    return bytes;
  }

  record(relative: RelativePath, data: Buffer): void {
    const key = relativeText(relative);
    this.versions.set(key, [...(this.versions.get(key) ?? []), data]);
  }

  versionsOf(relative: RelativePath): Buffer[] {
    return this.versions.get(relativeText(relative)) ?? [];
  }

  async secret(relative: string, data?: string): Promise<string> {
    const target = path.join(this.outside, relative);
    await fsp.mkdir(path.dirname(target), { recursive: true });
    await fsp.writeFile(target, data ?? `${SECRET_MARKER} ${relative} ${uniqueContent('secret').toString('hex')}\n`);
    return target;
  }

  async mkdir(relative: string, mode?: number): Promise<void> {
    await fsp.mkdir(path.join(this.source, relative), { recursive: true, ...(mode === undefined ? {} : { mode }) });
  }

  async symlink(relative: RelativePath, target: string): Promise<void> {
    const link = this.at(relative);
    if (typeof link === 'string') await fsp.mkdir(path.dirname(link), { recursive: true });
    await fsp.symlink(target, link);
  }

  async exec(command: string, args: readonly string[]): Promise<void> {
    await execFileAsync(command, [...args]);
  }

  async whenTaken(relative: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while ((await lstatOrNull(path.join(this.source, relative))) !== null) {
      if (Date.now() > deadline) throw new Error(`'${relative}' was not taken within ${timeoutMs} ms`);
      await sleep(2);
    }
  }

  sleep(ms: number): Promise<void> {
    return sleep(ms);
  }
}

/** Everything the checks look at once the daemon has settled. */
interface Settled {
  readonly audit: AuditRecord[];
  readonly log: LogRecord[];
  readonly journal: Awaited<ReturnType<typeof journalStates>>;
  readonly destinationFiles: Map<string, string>;
  readonly sourceFiles: Map<string, string>;
  readonly quarantineNames: string[];
}

/** One daemon over a set of cases: made, run, settled, and checked entry by entry. */
class CorpusRunner {
  directories!: ShuttleDirectories;
  corpus!: Corpus;
  configFile!: string;
  daemon: RunningDaemon | null = null;
  settled!: Settled;
  outsideBefore!: Map<string, OutsideEntry>;
  shadowBefore!: { mode: number; uid: number; gid: number; firstLine: string };
  readonly identities = new Map<string, EntryIdentity>();
  readonly cases: readonly BadInputCase[];

  constructor(readonly run: CorpusRun) {
    this.cases = BAD_INPUT_CASES.filter((candidate) => candidate.run === run);
  }

  get entries(): { testCase: BadInputCase; entry: CorpusEntry }[] {
    return this.cases.flatMap((testCase) => testCase.entries.map((entry) => ({ testCase, entry })));
  }

  async start(startDaemon: (configFile: string) => Promise<RunningDaemon>): Promise<void> {
    this.directories = await makeDirectories();
    this.corpus = new Corpus(this.directories);
    await this.corpus.prepare();
    this.configFile = await writeConfig(this.directories, { clamdSocket: clamd.socketPath });
    const shadow = await fsp.stat('/etc/shadow');
    this.shadowBefore = { mode: shadow.mode, uid: shadow.uid, gid: shadow.gid, firstLine: (await fsp.readFile('/etc/shadow', 'utf8')).split('\n')[0] ?? '' };

    const before = this.cases.filter((testCase) => testCase.when === 'before');
    for (const testCase of before) await testCase.create(this.corpus);
    await this.recordIdentities(before);
    this.outsideBefore = await snapshotTree(this.corpus.outside);
    this.daemon = await startDaemon(this.configFile);

    const live = this.cases.filter((testCase) => testCase.when === 'live');
    await Promise.all(live.map((testCase) => testCase.create(this.corpus)));
    await this.recordIdentities(live);
    // The live cases add decoys outside; what was there before the daemon started keeps its first snapshot.
    for (const [name, entry] of await snapshotTree(this.corpus.outside)) if (!this.outsideBefore.has(name)) this.outsideBefore.set(name, entry);
    await this.settle();
  }

  /** Waits until source, destination, quarantine and the journal stay the same for several rescans. */
  private async settle(quietMs = 6_000, maxMs = 120_000): Promise<void> {
    const deadline = Date.now() + maxMs;
    let last = '';
    let since = Date.now();
    for (;;) {
      const journal = await journalStates(this.directories.quarantine);
      const snapshot = JSON.stringify([
        await listFiles(this.directories.source),
        await listFiles(this.directories.destination),
        await quarantinedData(this.directories.quarantine),
        [...journal.entries()].map(([id, { state }]) => `${id}:${state}`),
      ]);
      if (snapshot !== last) {
        last = snapshot;
        since = Date.now();
      } else if (Date.now() - since >= quietMs) {
        break;
      }
      if (Date.now() > deadline) break;
      await sleep(500);
    }
    this.settled = {
      audit: await auditRecords(this.directories.log),
      log: await readJsonLines<LogRecord>(path.join(this.directories.log, 'shuttle.log')),
      journal: await journalStates(this.directories.quarantine),
      destinationFiles: await regularFiles(this.directories.destination),
      sourceFiles: await regularFiles(this.directories.source),
      quarantineNames: await fsp.readdir(this.directories.quarantine),
    };
  }

  private async recordIdentities(cases: readonly BadInputCase[]): Promise<void> {
    for (const testCase of cases) {
      for (const entry of testCase.entries) {
        const stats = await lstatOrNull(this.corpus.at(entry.path));
        if (stats === null) continue;
        // A live file the daemon may take can go between the lstat and the read. Only entries it must leave
        // alone need an identity, and for those a missing one fails expectUntouched.
        const bytes = stats.isFile() ? await fsp.readFile(this.corpus.at(entry.path)).catch(vanished) : null;
        if (stats.isFile() && bytes === null) continue;
        this.identities.set(relativeText(entry.path), {
          ino: stats.ino,
          type: typeOf(stats),
          sha256: bytes === null ? null : sha256(bytes),
        });
      }
    }
  }

  async stop(): Promise<number | string | null> {
    const code = this.daemon === null ? null : await stopDaemon(this.daemon);
    this.daemon = null;
    return code;
  }

  async remove(): Promise<void> {
    await this.stop();
    if (this.directories === undefined) return;
    // An immutable file would make the removal fail half way.
    await execFileAsync('chattr', ['-R', '-i', this.directories.source]).catch(() => undefined);
    await fsp.rm(this.directories.root, { recursive: true, force: true });
  }

  // ---- what the checks use ----

  destinationsWith(sha: string): string[] {
    return [...this.settled.destinationFiles].filter(([, digest]) => digest === sha).map(([name]) => name);
  }

  sourcesWith(sha: string): string[] {
    return [...this.settled.sourceFiles].filter(([, digest]) => digest === sha).map(([name]) => name);
  }

  auditFor(event: string, field: string, value: unknown): AuditRecord[] {
    return this.settled.audit.filter((record) => record.event === event && record[field] === value);
  }

  /** Log lines (shuttle.log) that name `relative` (relative or absolute, or with `ancestors`, one of its directories) and match `reason`. */
  loggedAbout(relative: string, reason: RegExp, ancestors = false): LogRecord[] {
    const names = new Set([relative, path.join(this.directories.source, relative)]);
    if (ancestors) {
      for (let directory = path.dirname(relative); directory !== '.'; directory = path.dirname(directory)) {
        names.add(directory);
        names.add(path.join(this.directories.source, directory));
      }
    }
    return this.settled.log.filter((record) => Object.values(record).some((value) => typeof value === 'string' && names.has(value)) && reason.test(JSON.stringify(record)));
  }

  describe(entry: CorpusEntry): string {
    const relative = relativeText(entry.path);
    const audit = this.settled.audit.filter((record) => Object.values(record).some((value) => value === relative));
    const log = this.settled.log.filter((record) => Object.values(record).some((value) => typeof value === 'string' && value.includes(relative))).slice(-5);
    return [
      `entry ${JSON.stringify(relative)}`,
      `audit: ${JSON.stringify(audit)}`,
      `log: ${JSON.stringify(log)}`,
      `destination: ${JSON.stringify([...this.settled.destinationFiles.keys()].filter((name) => !name.startsWith(BULK.directory)).slice(0, 200))}`,
    ].join('\n');
  }

  async checkEntry(entry: CorpusEntry): Promise<void> {
    const relative = relativeText(entry.path);
    const context = this.describe(entry);
    const expected = entry.expect;
    switch (expected.kind) {
      case 'released': {
        const bytes = this.corpus.versionsOf(entry.path).at(-1);
        expect(bytes, `no bytes recorded for ${relative}`).toBeDefined();
        const digest = sha256(bytes as Buffer);
        const copies = this.destinationsWith(digest);
        expect(copies, `released exactly once under one of ${JSON.stringify(expected.as)}\n${context}`).toHaveLength(1);
        const releasedAs = copies[0] as string;
        expect(expected.as, context).toContain(releasedAs);
        const stats = await fsp.lstat(path.join(this.directories.destination, releasedAs));
        expect(stats.mode & 0o7777, `mode of ${releasedAs}`).toBe(0o660);
        const release = this.auditFor('released', 'path', releasedAs);
        expect(release, `audit record of the release\n${context}`).toHaveLength(1);
        const intake = this.auditFor('quarantined', 'id', release[0]?.id);
        expect(intake[0]?.sha256, 'the SHA-256 taken at intake is the one released').toBe(digest);
        if (expected.sourceRemains === undefined) {
          expect(this.sourcesWith(digest), `gone from source\n${context}`).toEqual([]);
        } else {
          expect(this.sourcesWith(digest), 'the source stays').toEqual([relative]);
          expect(this.loggedAbout(relative, expected.sourceRemains).length, `a logged reason for the source left behind\n${context}`).toBeGreaterThan(0);
        }
        return;
      }
      case 'rejected': {
        await this.expectUntouched(entry, context);
        const refusals = this.auditFor('rejected', 'path', relative);
        expect(refusals, `exactly one audit 'rejected' record\n${context}`).toHaveLength(1);
        expect(String(refusals[0]?.reason)).toMatch(expected.reason);
        const written = this.corpus.versionsOf(entry.path).map((data) => sha256(data));
        const taken = this.auditFor('quarantined', 'path', relative).map((record) => String(record.sha256));
        expect(taken.filter((digest) => !written.includes(digest)), `nothing but bytes written as a regular file under this name was taken\n${context}`).toEqual([]);
        return;
      }
      case 'waits': {
        await this.expectUntouched(entry, context);
        expect(this.auditFor('quarantined', 'path', relative), 'not taken').toEqual([]);
        const audited = this.settled.audit.filter((record) => record.path === relative && expected.reason.test(JSON.stringify(record)));
        expect(this.loggedAbout(relative, expected.reason, true).length + audited.length, `a logged reason matching ${expected.reason}\n${context}`).toBeGreaterThan(0);
        return;
      }
      case 'held': {
        const items = [...this.settled.journal.entries()].filter(([, item]) => item.relativePath === relative);
        expect(items, `one live item in the journal\n${context}`).toHaveLength(1);
        const [id, item] = items[0] as [string, { state: string }];
        expect(item.state).not.toBe('released');
        const data = await fsp.readFile(path.join(this.directories.quarantine, `${id}.data`));
        const digest = sha256(this.corpus.versionsOf(entry.path).at(-1) as Buffer);
        expect(sha256(data), 'the quarantine copy holds the bytes').toBe(digest);
        expect(this.destinationsWith(digest), 'not released').toEqual([]);
        expect(this.sourcesWith(digest), 'gone from source').toEqual([]);
        expect(this.loggedAbout(relative, expected.reason).length, `a logged reason matching ${expected.reason}\n${context}`).toBeGreaterThan(0);
        return;
      }
      case 'hazarded': {
        const digest = sha256(this.corpus.versionsOf(entry.path).at(-1) as Buffer);
        const intake = this.auditFor('quarantined', 'path', relative);
        expect(intake, `taken once\n${context}`).toHaveLength(1);
        expect(intake[0]?.sha256).toBe(digest);
        const hazarded = this.auditFor('hazarded', 'id', intake[0]?.id);
        expect(hazarded, `archived\n${context}`).toHaveLength(1);
        expect(await lstatOrNull(path.join(this.directories.hazard, String(hazarded[0]?.archive))), 'the archive exists').not.toBeNull();
        expect(this.destinationsWith(digest), 'never released').toEqual([]);
        expect(this.sourcesWith(digest), 'gone from source').toEqual([]);
        expect(this.settled.quarantineNames, 'plaintext removed').not.toContain(`${String(intake[0]?.id)}.data`);
        return;
      }
      case 'vanished': {
        expect(await lstatOrNull(this.corpus.at(entry.path))).toBeNull();
        expect(this.auditFor('quarantined', 'path', relative), `never taken\n${context}`).toEqual([]);
        expect([...this.settled.destinationFiles.keys()].filter((name) => name === relative)).toEqual([]);
        return;
      }
      case 'versions': {
        const versions = this.corpus.versionsOf(entry.path).map((data) => sha256(data));
        const released = [...this.settled.destinationFiles].filter(([name]) => expected.names.test(name));
        const digests = released.map(([, digest]) => digest);
        expect(released.length, `released at least once\n${context}`).toBeGreaterThan(0);
        for (const [name, digest] of released) expect(versions, `${name} holds one whole version that was written`).toContain(digest);
        expect(new Set(digests).size, 'no version released twice').toBe(digests.length);
        if (expected.every) expect(new Set(digests)).toEqual(new Set(versions));
        else expect(digests, 'the last version is released').toContain(versions.at(-1));
        for (const [name, digest] of released) {
          const release = this.auditFor('released', 'path', name);
          expect(release, `audit record for ${name}`).toHaveLength(1);
          expect(this.auditFor('quarantined', 'id', release[0]?.id)[0]?.sha256, `${name}: the SHA-256 taken at intake`).toBe(digest);
        }
        expect(await lstatOrNull(this.corpus.at(entry.path)), 'nothing left in source').toBeNull();
        return;
      }
    }
  }

  /** The entry is still in source as it was made: same inode and type, and for a file the same bytes. */
  private async expectUntouched(entry: CorpusEntry, context: string): Promise<void> {
    const before = this.identities.get(relativeText(entry.path));
    expect(before, `the case made ${relativeText(entry.path)}`).toBeDefined();
    const stats = await lstatOrNull(this.corpus.at(entry.path));
    expect(stats, `still in source\n${context}`).not.toBeNull();
    expect({ ino: stats?.ino, type: stats ? typeOf(stats) : null }).toEqual({ ino: before?.ino, type: before?.type });
    if (before?.sha256 != null) {
      expect(sha256(await fsp.readFile(this.corpus.at(entry.path))), 'bytes unchanged').toBe(before.sha256);
      expect(this.destinationsWith(before.sha256), 'its bytes never reached destination').toEqual([]);
    }
  }

  // ---- the checks every run gets ----

  async expectAliveAndAnswering(): Promise<void> {
    const daemon = this.daemon as RunningDaemon;
    expect(daemon.child.exitCode, daemon.output().slice(-4000)).toBeNull();
    expect(daemon.child.signalCode).toBeNull();
    const answer = await shuttleStatus(this.configFile);
    expect(answer.code, answer.stderr).toBe(0);
    expect(answer.status?.pid).toBe(daemon.child.pid);
    expect(answer.status?.state).toBe('running');
  }

  /** No byte from outside the share in destination or quarantine, and nothing outside changed. */
  async expectNothingFromOutside(): Promise<void> {
    const markers = [SECRET_MARKER, this.shadowBefore.firstLine].filter((marker) => marker !== '');
    const outsideDigests = new Set([...this.outsideBefore.values()].map((entry) => entry.sha256).filter((digest) => digest !== null));
    for (const directory of [this.directories.destination, this.directories.quarantine]) {
      for (const relative of await listFiles(directory)) {
        const full = path.join(directory, relative);
        if (!(await lstatOrNull(full))?.isFile()) continue;
        const data = await fsp.readFile(full);
        expect(outsideDigests.has(sha256(data)), `${full} holds the bytes of a file outside the share`).toBe(false);
        for (const marker of markers) expect(data.includes(marker), `${full} holds bytes from outside the share`).toBe(false);
      }
    }
    expect(await snapshotTree(this.corpus.outside)).toEqual(this.outsideBefore);
    const shadow = await fsp.stat('/etc/shadow');
    expect({ mode: shadow.mode, uid: shadow.uid, gid: shadow.gid }).toEqual({ mode: this.shadowBefore.mode, uid: this.shadowBefore.uid, gid: this.shadowBefore.gid });
    // Nothing of the daemon's own outside its directories: no temporary names in the outside tree or staging.
    expect([...this.outsideBefore.keys()].filter((name) => name.includes('.shuttle-'))).toEqual([]);
  }

  /**
   * Every regular file left in source is one the corpus expects there; every item taken ended released,
   * hazarded, or is still held in quarantine; every file in destination came there by an audited release.
   */
  async expectNothingLost(): Promise<void> {
    const staying = new Set(
      this.entries
        .filter(({ entry }) => entry.expect.kind === 'rejected' || entry.expect.kind === 'waits' || (entry.expect.kind === 'released' && entry.expect.sourceRemains !== undefined))
        .map(({ entry }) => relativeText(entry.path)),
    );
    const unexplained = [...this.settled.sourceFiles.keys()].filter((name) => !staying.has(name));
    expect(unexplained, 'regular files left in source without a reason the corpus expects').toEqual([]);

    const live = this.settled.journal;
    for (const intake of this.settled.audit.filter((record) => record.event === 'quarantined')) {
      const id = String(intake.id);
      const finished = this.settled.audit.some((record) => (record.event === 'released' || record.event === 'hazarded') && record.id === id);
      if (finished) continue;
      expect(live.has(id), `item ${id} (${String(intake.path)}) neither released, hazarded nor held`).toBe(true);
      expect(this.settled.quarantineNames, `quarantine copy of held item ${id}`).toContain(`${id}.data`);
    }
    const dataNames = this.settled.quarantineNames.filter((name) => name.endsWith('.data'));
    expect(dataNames.filter((name) => !live.has(name.slice(0, -'.data'.length))), 'quarantine copies nobody tracks').toEqual([]);

    const releasedPaths = new Set(this.settled.audit.filter((record) => record.event === 'released').map((record) => String(record.path)));
    const unaccounted = [...this.settled.destinationFiles.keys()].filter((name) => !releasedPaths.has(name) && !PLANTED_IN_DESTINATION.includes(name));
    expect(unaccounted, 'files in destination that no audited release put there').toEqual([]);
  }
}

describe('the daemon over the shared bad-input corpus', () => {
  const runner = new CorpusRunner('shared');

  beforeAll(async () => {
    await runner.start((configFile) => startDaemonReady(configFile));
  }, 300_000);

  afterAll(async () => {
    await runner.remove();
  });

  it('has at least 40 cases', () => {
    expect(BAD_INPUT_CASES.length).toBeGreaterThanOrEqual(40);
  });

  it('is still running and answers shuttle status', async () => {
    await runner.expectAliveAndAnswering();
  });

  it.each(runner.entries.map(({ testCase, entry }) => ({ label: `${testCase.name}: ${JSON.stringify(relativeText(entry.path))} ${entry.expect.kind}`, entry })))('$label', async ({ entry }) => {
    await runner.checkEntry(entry);
  });

  it('read nothing from outside the share into destination or quarantine, and changed nothing there', async () => {
    await runner.expectNothingFromOutside();
  });

  it('lost no file', async () => {
    await runner.expectNothingLost();
  });

  it('left the files that were in destination first as they were', async () => {
    expect(await fsp.readFile(path.join(runner.directories.destination, 'taken.txt'), 'utf8')).toBe('already here\n');
    expect((await fsp.lstat(path.join(runner.directories.destination, 'fifo-clash.txt'))).isFIFO()).toBe(true);
    expect((await fsp.lstat(path.join(runner.directories.destination, 'planted'))).isSymbolicLink()).toBe(true);
    expect(await fsp.readFile(path.join(runner.directories.destination, 'clash'), 'utf8')).toBe('a file\n');
  });

  it('stops cleanly', async () => {
    expect(await runner.stop()).toBe(0);
  });
});

describe('the daemon without CAP_DAC_OVERRIDE over files it may not read', () => {
  const runner = new CorpusRunner('denied-read');

  beforeAll(async () => {
    await runner.start(startWithoutDacOverride);
  }, 300_000);

  afterAll(async () => {
    await runner.remove();
  });

  it('runs as uid 0 without the capabilities that bypass file modes', async () => {
    const pid = runner.daemon?.child.pid as number;
    const status = await fsp.readFile(`/proc/${pid}/status`, 'utf8');
    const field = (name: string): string => new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(status)?.[1] ?? '';
    expect(field('Uid').split(/\s+/)[1]).toBe('0');
    const effective = BigInt(`0x${field('CapEff')}`);
    expect((effective >> BigInt(CAP_DAC_OVERRIDE)) & 1n).toBe(0n);
    expect((effective >> BigInt(CAP_DAC_READ_SEARCH)) & 1n).toBe(0n);
  });

  it('is still running and answers shuttle status', async () => {
    await runner.expectAliveAndAnswering();
  });

  it.each(runner.entries.map(({ testCase, entry }) => ({ label: `${testCase.name}: ${JSON.stringify(relativeText(entry.path))} ${entry.expect.kind}`, entry })))('$label', async ({ entry }) => {
    await runner.checkEntry(entry);
  });

  it('lost no file', async () => {
    await runner.expectNothingLost();
  });

  it('stops cleanly', async () => {
    expect(await runner.stop()).toBe(0);
  });
});

describe(`a directory of ${BULK.count.toLocaleString('en')} entries`, () => {
  let directories: ShuttleDirectories | undefined;
  let daemon: RunningDaemon | null = null;

  afterAll(async () => {
    if (daemon !== null && daemon.child.exitCode === null && daemon.child.signalCode === null) {
      daemon.signal('SIGKILL');
      await daemon.exited;
    }
    if (directories !== undefined) await fsp.rm(directories.root, { recursive: true, force: true });
  }, 180_000);

  it('takes entries steadily, keeps its memory bounded, answers status, stops in time and loses none', async () => {
    directories = await makeDirectories();
    const { source, destination, quarantine } = directories;
    const configFile = await writeConfig(directories, { clamdSocket: clamd.socketPath });
    // Per-file debug lines would measure the logger; production logs at info.
    await fsp.writeFile(configFile, (await fsp.readFile(configFile, 'utf8')).replace('level: debug', 'level: info'));
    const bulk = path.join(source, BULK.directory);

    const createdAt = Date.now();
    await execFileAsync('python3', ['-c', BULK.script, bulk, String(BULK.count)]);
    const createSeconds = (Date.now() - createdAt) / 1000;
    expect((await fsp.readdir(bulk)).length).toBe(BULK.count);

    const startedAt = Date.now();
    const running = await startDaemonReady(configFile);
    daemon = running;
    const pid = running.child.pid as number;
    let peakRssKiB = 0;
    let statusAsked = 0;
    let statusAnswered = 0;
    const releasedTarget = path.join(destination, BULK.directory);
    const countReleased = async (): Promise<number> => (await fsp.readdir(releasedTarget).catch(() => [] as string[])).filter((name) => !name.startsWith('.')).length;
    let released = 0;
    const deadline = startedAt + BULK_WORK_MS;
    while (released < BULK.count && Date.now() < deadline && running.child.exitCode === null) {
      const status = await fsp.readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
      peakRssKiB = Math.max(peakRssKiB, Number(/^VmRSS:\s*(\d+)/m.exec(status)?.[1] ?? 0));
      statusAsked++;
      if ((await shuttleStatus(configFile)).code === 0) statusAnswered++;
      released = await countReleased();
      await sleep(1000);
    }
    const releaseSeconds = (Date.now() - startedAt) / 1000;
    const highWaterKiB = Number(/^VmHWM:\s*(\d+)/m.exec(await fsp.readFile(`/proc/${pid}/status`, 'utf8').catch(() => ''))?.[1] ?? 0);
    const alive = running.child.exitCode === null && running.child.signalCode === null;
    const finalStatus = alive ? await shuttleStatus(configFile) : { code: -1 };

    const stopAt = Date.now();
    running.signal('SIGTERM');
    const stopped = await Promise.race([running.exited, sleep(UNIT_STOP_TIMEOUT_MS).then(() => 'still running' as const)]);
    const stopSeconds = (Date.now() - stopAt) / 1000;
    if (stopped === 'still running') {
      running.signal('SIGKILL');
      await running.exited;
    }
    daemon = null;

    const figures =
      `${BULK.count} files made in ${createSeconds.toFixed(1)} s; ${released} released in ${releaseSeconds.toFixed(1)} s from daemon start ` +
      `(${(released / releaseSeconds).toFixed(1)} files/s); peak RSS ${(Math.max(peakRssKiB, highWaterKiB) / 1024).toFixed(0)} MiB; ` +
      `status answered ${statusAnswered}/${statusAsked}; SIGTERM to exit ${stopSeconds.toFixed(1)} s (${String(stopped)})`;
    console.log(`bulk: ${figures}`);

    expect(alive, `the daemon died: ${running.output().slice(-3000)}`).toBe(true);
    expect(finalStatus.code, 'shuttle status at the end').toBe(0);
    expect(statusAnswered, 'shuttle status answered every time it was asked while the daemon worked').toBe(statusAsked);
    // The listing and one queue entry per name are in memory at once; file contents never are.
    expect(Math.max(peakRssKiB, highWaterKiB) / 1024, `peak RSS in MiB (${figures})`).toBeLessThan(BULK_MAX_RSS_MIB);
    expect(released, `released in ${BULK_WORK_MS / 1000} s (${figures})`).toBeGreaterThanOrEqual(BULK_MIN_RELEASED);
    expect(stopped, `a clean stop within systemd's TimeoutStopSec (${figures})`).toBe(0);

    // Nothing lost on the way: every name exactly once, released with its own bytes, still in source,
    // or in quarantine with a journal record that the next start resumes.
    const releasedNames = (await fsp.readdir(releasedTarget).catch(() => [] as string[])).filter((name) => !name.startsWith('.'));
    const waitingNames = await fsp.readdir(bulk);
    const inQuarantine = [...(await journalStates(quarantine)).values()].map((item) => path.basename(item.relativePath));
    const seen = [...releasedNames, ...waitingNames, ...inQuarantine].sort();
    expect(seen).toEqual(Array.from({ length: BULK.count }, (_, index) => BULK.fileName(index)).sort());
    expect((await quarantinedData(quarantine)).length).toBeLessThanOrEqual(inQuarantine.length);
    const indexOf = new Map(Array.from({ length: BULK.count }, (_, index) => [BULK.fileName(index), index]));
    const wrong: string[] = [];
    for (let first = 0; first < releasedNames.length; first += 200) {
      await Promise.all(
        releasedNames.slice(first, first + 200).map(async (name) => {
          if ((await fsp.readFile(path.join(releasedTarget, name), 'utf8')) !== BULK.content(indexOf.get(name) ?? -1)) wrong.push(name);
        }),
      );
    }
    expect(wrong).toEqual([]);
  }, 600_000);
});

/** For a read that may find its file gone: null for ENOENT, any other error rethrown. */
function vanished(error: NodeJS.ErrnoException): null {
  if (error.code === 'ENOENT') return null;
  throw error;
}
