// Fault injection for the daemon: a seeded schedule of files and faults (so a failing run can be replayed
// with the seed it printed), a producer that writes files the way clients do, and an accounting that says
// where every file pushed ended up: released byte-equal, encrypted into the hazard archive, held as failed
// with a reason, or left in source with a reason. Anything else is lost, or a duplicate.

import { execFile } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { collisionName } from '../../src/release.js';
import { EICAR } from './clamd.js';
import { SHUTTLE_BIN } from './daemon.js';
import { splitHazardPayload, type TestKeyPair } from './gpg.js';

const execFileAsync = promisify(execFile);

export const sha256 = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');
export const EICAR_BYTES = Buffer.from(EICAR, 'latin1');
export const EICAR_SHA256 = sha256(EICAR_BYTES);
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

// ---- the seed ----

/** Set it to replay a run: the schedule of files, sizes, names and fault delays follows from it alone. */
export const SEED_VARIABLE = 'SHUTTLE_FAULT_SEED';

/** The seed from SHUTTLE_FAULT_SEED, or a fresh one; printed by the caller so a failure can be replayed. */
export function faultSeed(): number {
  const given = process.env[SEED_VARIABLE];
  if (given !== undefined && given !== '') {
    const seed = Number(given);
    if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`${SEED_VARIABLE} must be a non-negative integer, not '${given}'`);
    return seed >>> 0;
  }
  return Math.floor(Math.random() * 2 ** 32) >>> 0;
}

/** A small, fast, seedable generator (mulberry32): the same seed gives the same sequence on any machine. */
export class SeededRandom {
  private state: number;

  constructor(readonly seed: number) {
    this.state = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  }

  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  chance(probability: number): boolean {
    return this.next() < probability;
  }

  pick<T>(choices: readonly T[]): T {
    if (choices.length === 0) throw new Error('nothing to pick from');
    return choices[Math.floor(this.next() * choices.length)] as T;
  }

  /** A copy of `items` in random order (Fisher-Yates). */
  shuffle<T>(items: readonly T[]): T[] {
    const shuffled = [...items];
    for (let index = shuffled.length - 1; index > 0; index--) {
      const other = this.int(0, index);
      [shuffled[index], shuffled[other]] = [shuffled[other] as T, shuffled[index] as T];
    }
    return shuffled;
  }

  /** An independent stream for one purpose, so adding draws to one part of a test leaves the others alone. */
  derive(label: string): SeededRandom {
    return new SeededRandom(createHash('sha256').update(`${this.seed}:${label}`).digest().readUInt32BE(0));
  }
}

/** `size` bytes that depend only on (seed, label): AES-CTR over zeros, fast for megabytes. */
export function seededBytes(seed: number, label: string, size: number): Buffer {
  const key = createHash('sha256').update(`${seed}:${label}`).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  return Buffer.concat([cipher.update(Buffer.alloc(size)), cipher.final()]);
}

// ---- what gets pushed ----

export interface PlannedFile {
  /** Path under source_path, and under destination_path once released. */
  readonly relativePath: string;
  readonly content: Buffer;
  readonly sha256: string;
  readonly eicar: boolean;
}

export interface FilePlanOptions {
  readonly count: number;
  /** Share of files that are the EICAR test string. */
  readonly eicarShare: number;
  readonly maxBytes: number;
  /** Folders to spread files over; nested one to three levels below them at random. */
  readonly folders: readonly string[];
  readonly label: string;
}

const EXTENSIONS = ['.bin', '.csv', '.dat', '.txt', '.pdf', '.tar.gz', ''];
const SUBFOLDERS = ['raw', 'run-01', 'run-02', 'export', 'deep'];

/**
 * Sizes spread the way an inbound share sees them: a few empty files, mostly small ones, a fifth around a
 * megabyte and some up to `maxBytes`. Names are unique; every file's bytes are unique except EICAR's and
 * the empty ones.
 */
export function planFiles(random: SeededRandom, options: FilePlanOptions): PlannedFile[] {
  const files: PlannedFile[] = [];
  for (let index = 0; index < options.count; index++) {
    const eicar = random.chance(options.eicarShare);
    const depth = random.int(0, 3);
    const folders = depth === 0 ? [] : [random.pick(options.folders), ...Array.from({ length: depth - 1 }, () => random.pick(SUBFOLDERS))];
    const extension = eicar ? random.pick(['.exe', '.com', '.doc']) : random.pick(EXTENSIONS);
    const relativePath = path.join(...folders, `${options.label}-${String(index).padStart(4, '0')}${extension}`);
    const content = eicar ? EICAR_BYTES : seededBytes(random.seed, `${options.label}:${index}`, plannedSize(random, options.maxBytes));
    files.push({ relativePath, content, sha256: sha256(content), eicar });
  }
  return files;
}

function plannedSize(random: SeededRandom, maxBytes: number): number {
  const bucket = random.next();
  const logUniform = (low: number, high: number): number => Math.round(Math.exp(Math.log(low) + random.next() * (Math.log(high) - Math.log(low))));
  if (bucket < 0.04) return 0;
  if (bucket < 0.44) return logUniform(1, 4096);
  if (bucket < 0.74) return logUniform(4096, 256 * 1024);
  if (bucket < 0.94) return logUniform(256 * 1024, Math.min(1024 * 1024, maxBytes));
  return logUniform(Math.min(1024 * 1024, maxBytes), maxBytes);
}

/** The same path with new bytes: a client uploading a file of the same name once the first is gone. */
export function rewriteOf(file: PlannedFile, seed: number, label: string, size: number): PlannedFile {
  const content = seededBytes(seed, label, size);
  return { relativePath: file.relativePath, content, sha256: sha256(content), eicar: false };
}

export type WriteStyle = 'in-place' | 'rename';

/**
 * Write a file into source_path as clients do: either in place (open, write, close: the daemon must wait
 * for the writer) or complete elsewhere on the same filesystem and renamed in (it appears whole).
 */
export async function pushFile(sourceRoot: string, stagingDirectory: string, file: PlannedFile, style: WriteStyle): Promise<void> {
  const target = path.join(sourceRoot, file.relativePath);
  await fsp.mkdir(path.dirname(target), { recursive: true });
  if (style === 'in-place') {
    await fsp.writeFile(target, file.content);
    return;
  }
  const staged = path.join(stagingDirectory, `${sha256(file.relativePath).slice(0, 16)}-${path.basename(file.relativePath)}`);
  await fsp.writeFile(staged, file.content);
  await fsp.rename(staged, target);
}

export async function exists(target: string): Promise<boolean> {
  return fsp.lstat(target).then(
    () => true,
    () => false,
  );
}

// ---- what the daemon left ----

export interface JournalItem {
  readonly id: string;
  readonly relativePath: string;
  readonly sha256: string;
  readonly size: number;
  readonly state: string;
  readonly reason?: string;
}

/**
 * The live items of quarantine_path/journal.jsonl, replayed. Unlike a strict reader it skips a line that
 * does not parse, since the daemon may be appending one right now; callers that need certainty read it
 * after the daemon stopped.
 */
export async function readJournal(quarantine: string): Promise<Map<string, JournalItem>> {
  const items = new Map<string, JournalItem>();
  const text = await fsp.readFile(path.join(quarantine, 'journal.jsonl'), 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    let entry: { op?: string; id?: string; item?: Omit<JournalItem, 'reason'> & { reason?: string }; state?: string; reason?: string };
    try {
      entry = JSON.parse(line) as typeof entry;
    } catch {
      continue;
    }
    if (entry.op === 'item' && entry.item) {
      const { id, relativePath, sha256: hash, size, state, reason } = entry.item;
      items.set(id, { id, relativePath, sha256: hash, size, state, ...(reason === undefined ? {} : { reason }) });
      continue;
    }
    const known = entry.id === undefined ? undefined : items.get(entry.id);
    if (known === undefined) continue;
    if (entry.op === 'done') items.delete(known.id);
    else if (entry.op === 'scanned' && entry.state) items.set(known.id, { ...known, state: entry.state });
    else if (entry.op === 'failed') items.set(known.id, { ...known, state: 'failed', reason: entry.reason ?? '' });
    else if (entry.op === 'released' || entry.op === 'hazarded') items.set(known.id, { ...known, state: entry.op });
  }
  return items;
}

export type AuditEntry = Record<string, unknown> & { readonly event: string; readonly seq: number; readonly time: string };

/** Every complete record of the audit log, oldest first. */
export async function readAudit(logDirectory: string): Promise<AuditEntry[]> {
  const names = (await fsp.readdir(logDirectory)).filter((name) => /^audit-\d{4}-\d{2}-\d{2}\.jsonl$/.test(name)).sort();
  const records: AuditEntry[] = [];
  for (const name of names) {
    for (const line of (await fsp.readFile(path.join(logDirectory, name), 'utf8')).split('\n')) {
      if (line === '') continue;
      try {
        records.push(JSON.parse(line) as AuditEntry);
      } catch {
        // an append under way; `shuttle audit verify` judges the file as a whole
      }
    }
  }
  return records;
}

/** `shuttle audit verify --config F`: its exit status and what it printed. */
export async function verifyAudit(configFile: string): Promise<{ status: number; output: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, [SHUTTLE_BIN, 'audit', 'verify', '--config', configFile]);
    return { status: 0, output: stdout + stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { status: typeof failed.code === 'number' ? failed.code : -1, output: `${failed.stdout ?? ''}${failed.stderr ?? ''}` };
  }
}

export interface OpenedArchive {
  readonly archive: string;
  readonly id: string;
  readonly relativePath: string;
  /** What the header says the file was. */
  readonly sha256: string;
  /** What the decrypted payload really hashes to. */
  readonly payloadSha256: string;
  readonly payloadBytes: number;
  /** The sidecar's sha256 and signature, or null when there is no sidecar. */
  readonly sidecar: { readonly sha256: string; readonly signature: string | null; readonly archive: string } | null;
}

/** Decrypt every published archive in hazard_archive_path with the test key and read its sidecar. */
export async function openArchives(hazard: string, key: TestKeyPair): Promise<OpenedArchive[]> {
  const names = await fsp.readdir(hazard);
  const opened: OpenedArchive[] = [];
  for (const archive of names.filter((name) => name.endsWith('.gpg') && !name.startsWith('.')).sort()) {
    const { header, payload } = splitHazardPayload(await key.decrypt(path.join(hazard, archive)));
    const sidecarName = `${archive.slice(0, -'.gpg'.length)}.json`;
    const sidecarText = names.includes(sidecarName) ? await fsp.readFile(path.join(hazard, sidecarName), 'utf8') : null;
    const sidecar = sidecarText === null ? null : (JSON.parse(sidecarText) as { sha256: string; signature: string | null; archive: string });
    opened.push({
      archive,
      id: String(header.id),
      relativePath: String(header.relativePath),
      sha256: String(header.sha256),
      payloadSha256: sha256(payload),
      payloadBytes: payload.length,
      sidecar: sidecar === null ? null : { sha256: sidecar.sha256, signature: sidecar.signature, archive: sidecar.archive },
    });
  }
  return opened;
}

/** Every regular file below `directory` with its SHA-256 and mode, by path relative to it. */
export async function hashTree(directory: string): Promise<Map<string, { sha256: string; mode: number; eicar: boolean }>> {
  const found = new Map<string, { sha256: string; mode: number; eicar: boolean }>();
  const walk = async (current: string): Promise<void> => {
    for (const entry of await fsp.readdir(current, { withFileTypes: true })) {
      const full = path.join(current, entry.name);
      if (entry.isDirectory()) {
        await walk(full);
      } else {
        const [content, stats] = await Promise.all([fsp.readFile(full), fsp.lstat(full)]);
        found.set(path.relative(directory, full), { sha256: sha256(content), mode: stats.mode & 0o7777, eicar: content.includes(EICAR_BYTES) });
      }
    }
  };
  await walk(directory);
  return found;
}

/** Names the daemon only ever uses while working (`.shuttle-*` temporaries, scratch keyrings), anywhere below `directories`. */
export async function workingLeftovers(directories: readonly string[]): Promise<string[]> {
  const found: string[] = [];
  const walk = async (current: string): Promise<void> => {
    for (const entry of await fsp.readdir(current, { withFileTypes: true })) {
      const full = path.join(current, entry.name);
      if (/^\.shuttle-.*\.tmp$/.test(entry.name) || entry.name.startsWith('.shuttle-gnupg-') || /^\.journal\.jsonl\..*\.tmp$/.test(entry.name)) found.push(full);
      else if (entry.isDirectory()) await walk(full);
    }
  };
  for (const directory of directories) await walk(directory);
  return found.sort();
}

// ---- accounting ----

export type Outcome = 'released' | 'hazarded' | 'failed' | 'left in source';

export interface Accounting {
  readonly outcomes: Map<PlannedFile, { outcome: Outcome; where: string }>;
  /** Pushed, and found nowhere. */
  readonly lost: PlannedFile[];
  /** Found, but matching no pushed file that was still unaccounted for: a second release, a second archive, a stranger. */
  readonly extras: string[];
  /** Released under a collision name although its name was written only once. */
  readonly needlessRenames: string[];
  readonly counts: Record<Outcome, number>;
}

export interface Observed {
  /** relative path → SHA-256, of everything in destination_path (and wherever released files were moved to). */
  readonly released: ReadonlyMap<string, { sha256: string }>;
  readonly archives: readonly OpenedArchive[];
  /** Live journal items in state failed. */
  readonly failed: readonly JournalItem[];
  /** relative path → SHA-256 of what is still in source_path. */
  readonly leftInSource: ReadonlyMap<string, { sha256: string }>;
}

/**
 * Match every pushed file to exactly one place by (path, content). A released file may carry a collision
 * name (`x (1).ext`) only if its name was pushed more than once. Archives count only when their decrypted
 * payload hashes to what their header says.
 */
export function accountFor(pushed: readonly PlannedFile[], observed: Observed): Accounting {
  const outcomes = new Map<PlannedFile, { outcome: Outcome; where: string }>();
  const extras: string[] = [];
  const needlessRenames: string[] = [];
  const byPath = new Map<string, PlannedFile[]>();
  for (const file of pushed) byPath.set(file.relativePath, [...(byPath.get(file.relativePath) ?? []), file]);
  const claim = (relativePath: string, hash: string, outcome: Outcome, where: string): boolean => {
    const candidate = (byPath.get(relativePath) ?? []).find((file) => file.sha256 === hash && !outcomes.has(file));
    if (candidate === undefined) return false;
    outcomes.set(candidate, { outcome, where });
    return true;
  };

  for (const [releasedPath, { sha256: hash }] of [...observed.released].sort(([a], [b]) => a.localeCompare(b))) {
    const requested = requestedPathOf(releasedPath, byPath);
    if (requested === null || !claim(requested, hash, 'released', releasedPath)) {
      extras.push(`released ${releasedPath} (sha256 ${hash.slice(0, 12)}) matches no pushed file still unaccounted for`);
      continue;
    }
    if (requested !== releasedPath && (byPath.get(requested)?.length ?? 0) < 2) needlessRenames.push(releasedPath);
  }
  for (const archive of observed.archives) {
    if (archive.payloadSha256 !== archive.sha256 || !claim(archive.relativePath, archive.sha256, 'hazarded', archive.archive)) {
      extras.push(`archive ${archive.archive} (${archive.relativePath}, header sha256 ${archive.sha256.slice(0, 12)}, payload ${archive.payloadSha256.slice(0, 12)}) matches no pushed file still unaccounted for`);
    }
  }
  for (const item of observed.failed) {
    if (!claim(item.relativePath, item.sha256, 'failed', `item ${item.id}: ${item.reason ?? 'no reason'}`)) {
      extras.push(`failed item ${item.id} (${item.relativePath}) matches no pushed file still unaccounted for`);
    }
  }
  for (const [sourcePath, { sha256: hash }] of observed.leftInSource) {
    if (!claim(sourcePath, hash, 'left in source', sourcePath)) extras.push(`source file ${sourcePath} matches no pushed file still unaccounted for`);
  }

  const counts: Record<Outcome, number> = { released: 0, hazarded: 0, failed: 0, 'left in source': 0 };
  for (const { outcome } of outcomes.values()) counts[outcome]++;
  return { outcomes, lost: pushed.filter((file) => !outcomes.has(file)), extras, needlessRenames, counts };
}

/** The pushed path a released path stands for: itself, or the name it is a collision name of. */
function requestedPathOf(releasedPath: string, byPath: ReadonlyMap<string, readonly PlannedFile[]>): string | null {
  if (byPath.has(releasedPath)) return releasedPath;
  const directory = path.dirname(releasedPath);
  const name = path.basename(releasedPath);
  const match = /^(.*) \((\d+)\)(\.[^.]*)?$/.exec(name);
  if (match === null) return null;
  const wanted = path.join(directory, `${match[1]}${match[3] ?? ''}`);
  return byPath.has(wanted) && collisionName(path.basename(wanted), Number(match[2])) === name ? wanted : null;
}

/** One line per problem, for a failure message that says which file went where. */
export function describeAccounting(accounting: Accounting): string {
  const lines = [
    ...accounting.lost.map((file) => `lost: ${file.relativePath} (${file.content.length} bytes, sha256 ${file.sha256.slice(0, 12)}${file.eicar ? ', EICAR' : ''})`),
    ...accounting.extras.map((extra) => `extra: ${extra}`),
    ...accounting.needlessRenames.map((name) => `renamed without a duplicate name: ${name}`),
  ];
  return lines.join('\n');
}

// ---- faults ----

/**
 * A gpg on PATH that runs the real one until `fail()` is called, then exits 2 with a message for every run
 * until `heal()`. Every run is counted, with whether it was made to fail.
 */
export interface SwitchableGpg {
  readonly binDirectory: string;
  fail(): Promise<void>;
  heal(): Promise<void>;
  /** How many runs were made to fail so far. */
  failedRuns(): Promise<number>;
}

export async function switchableGpg(root: string): Promise<SwitchableGpg> {
  const binDirectory = path.join(root, 'gpg-bin');
  const failing = path.join(root, 'gpg-failing');
  const runs = path.join(root, 'gpg-runs');
  await fsp.mkdir(binDirectory, { recursive: true });
  const realGpg = await fsp.realpath('/usr/bin/gpg');
  const script = [
    '#!/bin/sh',
    `if [ -e '${failing}' ]; then`,
    `  echo failed >> '${runs}'`,
    "  echo 'gpg: encryption failed: Input/output error (injected)' >&2",
    '  exit 2',
    'fi',
    `echo ok >> '${runs}'`,
    `exec '${realGpg}' "$@"`,
    '',
  ].join('\n');
  await fsp.writeFile(path.join(binDirectory, 'gpg'), script, { mode: 0o755 });
  return {
    binDirectory,
    fail: () => fsp.writeFile(failing, ''),
    heal: () => fsp.rm(failing, { force: true }),
    failedRuns: async () => (await fsp.readFile(runs, 'utf8').catch(() => '')).split('\n').filter((line) => line === 'failed').length,
  };
}

/** A tmpfs of `size` (mount(8) syntax, "8m") on `directory`; rejects when this process may not mount. */
export async function mountTmpfs(directory: string, size: string): Promise<void> {
  await execFileAsync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=2770`, 'tmpfs', directory]);
}

export async function resizeTmpfs(directory: string, size: string): Promise<void> {
  await execFileAsync('mount', ['-o', `remount,size=${size}`, directory]);
}

export async function unmount(directory: string): Promise<void> {
  await execFileAsync('umount', [directory]);
}

/** Bytes free on the filesystem holding `directory`, for unprivileged writers. */
export async function freeBytes(directory: string): Promise<number> {
  const space = await fsp.statfs(directory);
  return space.bavail * space.bsize;
}

export type DaemonLogRecord = Record<string, unknown> & { readonly level: string; readonly message: string };

/** Every complete line of log_path/shuttle.log, across all the runs that wrote to it. */
export async function readDaemonLog(logDirectory: string): Promise<DaemonLogRecord[]> {
  const text = await fsp.readFile(path.join(logDirectory, 'shuttle.log'), 'utf8').catch(() => '');
  const records: DaemonLogRecord[] = [];
  for (const line of text.split('\n')) {
    try {
      records.push(JSON.parse(line) as DaemonLogRecord);
    } catch {
      // empty, or cut short by a kill
    }
  }
  return records;
}

/** "message ×count" for each distinct error message, most frequent first: what the faults cost, in one line. */
export function summariseErrors(records: readonly DaemonLogRecord[]): string {
  const counts = new Map<string, number>();
  for (const record of records) {
    if (record.level !== 'error') continue;
    const key = record.code === undefined ? record.message : `${record.message} (${String(record.code)})`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  if (counts.size === 0) return 'none';
  return [...counts].sort((a, b) => b[1] - a[1]).map(([message, count]) => `${message} ×${count}`).join('; ');
}
