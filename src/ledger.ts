// The scanner ledger (paths.ledger_file_path): which scanner versions passed `shuttle scanner-test`. The
// daemon releases nothing scanned by a version that is not recorded as passed there (unless the config
// opts out with scanners.require_tested_versions: false).
//
// Versions are compared by engine: clamd reports "ClamAV 1.0.7/27431/Tue Oct 14 08:36:42 2026", whose
// database part changes with every signature update; the ledger keys on "ClamAV 1.0.7" and keeps the full
// line for the record. mdatp's product version is already the engine's.
//
// The ledger lives outside the daemon's data directories. Writing it touches exactly two names: the
// ledger itself and its temporary name beside it (temp → fsync → rename → fsync the directory).

import { constants as fsc, lstatSync, promises as fsp, type Stats } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'winston';
import { parseDocument, stringify } from 'yaml';
import type { NativeAddon } from './native.js';
import type { ScanReport } from './scanners/scanner.js';
import { openExactDirectory, PathEscapeError, Zone, type VerifiedDirectory } from './zone.js';

/** The ledger's mode when shuttle creates it (config readers may read it); an existing ledger keeps its own. */
export const LEDGER_FILE_MODE = 0o640;

export type LedgerResult = 'pass' | 'fail';

export interface LedgerEntry {
  readonly scanner: string;
  /** The engine version the entry is about; null when the scanner could not even say (a failed test). */
  readonly version: string | null;
  /** The version line exactly as the scanner reported it. */
  readonly reported: string | null;
  readonly result: LedgerResult;
  readonly testedAt: string;
  readonly detail: string;
}

export interface ScannerVersion {
  readonly scanner: string;
  readonly version: string | null;
}

export interface LedgerCheck {
  readonly ok: boolean;
  /** Scanners whose current version has no passing test (version null: it could not be asked). */
  readonly untested: readonly ScannerVersion[];
}

/** The ledger file cannot be read or is not a ledger. Callers fail closed: nothing counts as tested. */
export class LedgerError extends Error {
  readonly code = 'ELEDGER';
  constructor(
    readonly ledgerPath: string,
    problem: string,
    options?: { cause?: unknown },
  ) {
    super(`scanner ledger ${ledgerPath}: ${problem}`, options);
    this.name = 'LedgerError';
  }
}

/** The part of a scanner's version line that the ledger compares. */
export function engineVersion(scanner: string, reported: string): string {
  const trimmed = reported.trim();
  if (scanner === 'clamd') return trimmed.split('/')[0]?.trim() ?? trimmed;
  return trimmed;
}

// ---- reading ----

/** Every entry in the ledger; a missing or empty file is an empty ledger. Throws LedgerError otherwise. */
export async function readLedger(ledgerPath: string): Promise<LedgerEntry[]> {
  let text: string;
  try {
    const handle = await fsp.open(ledgerPath, fsc.O_RDONLY | fsc.O_NOFOLLOW);
    try {
      text = await handle.readFile('utf8');
    } finally {
      await handle.close();
    }
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return [];
    if (code === 'ELOOP') throw new LedgerError(ledgerPath, 'is a symbolic link; shuttle never follows links, configure the real path');
    throw new LedgerError(ledgerPath, `cannot be read: ${(error as Error).message}`, { cause: error });
  }
  return parseLedger(text, ledgerPath);
}

export function parseLedger(text: string, ledgerPath: string): LedgerEntry[] {
  const document = parseDocument(text, { version: '1.2', schema: 'core', uniqueKeys: true });
  const problem = document.errors[0];
  if (problem) throw new LedgerError(ledgerPath, `is not valid YAML: ${problem.message.split('\n')[0] ?? ''}`);
  const root: unknown = document.toJS();
  if (root === null || root === undefined) return [];
  if (!isMapping(root) || !Array.isArray(root.tested)) {
    throw new LedgerError(ledgerPath, 'expected a mapping with a `tested` list (written by `shuttle scanner-test`)');
  }
  return root.tested.map((value: unknown, index: number) => {
    const where = `tested[${index}]`;
    if (!isMapping(value)) throw new LedgerError(ledgerPath, `${where}: expected a mapping`);
    const { scanner, version, reported, result, tested_at: testedAt, detail } = value;
    if (typeof scanner !== 'string' || scanner === '') throw new LedgerError(ledgerPath, `${where}.scanner: expected a scanner name`);
    if (version !== null && typeof version !== 'string') throw new LedgerError(ledgerPath, `${where}.version: expected a version string`);
    if (result !== 'pass' && result !== 'fail') throw new LedgerError(ledgerPath, `${where}.result: expected pass or fail`);
    if (typeof testedAt !== 'string' || Number.isNaN(Date.parse(testedAt))) throw new LedgerError(ledgerPath, `${where}.tested_at: expected a time`);
    return {
      scanner,
      version,
      reported: typeof reported === 'string' ? reported : null,
      result,
      testedAt,
      detail: typeof detail === 'string' ? detail : '',
    };
  });
}

/** Engine versions whose latest test passed, by scanner. */
export function passedVersions(entries: readonly LedgerEntry[]): Map<string, Set<string>> {
  const latest = new Map<string, LedgerEntry>();
  for (const entry of entries) {
    if (entry.version === null) continue;
    const key = `${entry.scanner}\0${entry.version}`;
    const earlier = latest.get(key);
    if (earlier === undefined || Date.parse(entry.testedAt) >= Date.parse(earlier.testedAt)) latest.set(key, entry);
  }
  const passed = new Map<string, Set<string>>();
  for (const entry of latest.values()) {
    if (entry.result !== 'pass' || entry.version === null) continue;
    let versions = passed.get(entry.scanner);
    if (versions === undefined) passed.set(entry.scanner, (versions = new Set()));
    versions.add(entry.version);
  }
  return passed;
}

function untestedAmong(passed: ReadonlyMap<string, ReadonlySet<string>>, scanners: readonly ScannerVersion[]): ScannerVersion[] {
  return scanners.filter(({ scanner, version }) => version === null || !(passed.get(scanner)?.has(engineVersion(scanner, version)) ?? false));
}

/**
 * For `shuttle run` at start: is every enabled scanner's current version (as reported; compared by engine)
 * recorded as passed? Throws LedgerError when the ledger is unreadable or malformed.
 */
export async function checkLedger(ledgerPath: string, scanners: ReadonlyArray<{ name: string; version: string | null }>): Promise<LedgerCheck> {
  const passed = passedVersions(await readLedger(ledgerPath));
  const untested = untestedAmong(
    passed,
    scanners.map(({ name, version }) => ({ scanner: name, version })),
  );
  return { ok: untested.length === 0, untested };
}

export function describeUntested(untested: readonly ScannerVersion[]): string {
  return untested.map(({ scanner, version }) => (version === null ? `${scanner} (version unknown)` : `${scanner} ${version}`)).join(', ');
}

/**
 * The runtime half of the ledger: answers whether scan reports came from tested versions. The ledger is read
 * again whenever it changes on disk (scanner-test ran), and each change of answer is logged once.
 */
export class LedgerGate {
  private cachedKey: string | null = null;
  private passed: Map<string, Set<string>> = new Map();
  private readProblem: string | null = null;
  private blockedOn: readonly ScannerVersion[] = [];
  private lastBlockedText = '';

  constructor(
    private readonly ledgerPath: string,
    private readonly logger: Logger,
  ) {}

  /** What the last answer was blocked on; empty when releases are allowed. For status. */
  get blocked(): readonly ScannerVersion[] {
    return this.blockedOn;
  }

  async allows(reports: readonly ScanReport[]): Promise<boolean> {
    return (await this.untested(reports)).length === 0;
  }

  /** The scanner versions among `reports` that have no passing test. */
  async untested(reports: readonly ScanReport[]): Promise<ScannerVersion[]> {
    await this.refresh();
    const untested = untestedAmong(
      this.passed,
      reports.map((report) => ({ scanner: report.scanner, version: report.version })),
    );
    this.noteAnswer(untested);
    return untested;
  }

  private async refresh(): Promise<void> {
    let key: string;
    try {
      // Asked before every release: a synchronous lstat is microseconds, a thread-pool trip is not.
      const stats = lstatSync(this.ledgerPath);
      key = `${stats.ino}:${stats.size}:${stats.mtimeMs}:${stats.ctimeMs}`;
    } catch (error) {
      key = `missing:${(error as NodeJS.ErrnoException).code ?? ''}`;
    }
    if (key === this.cachedKey) return;
    try {
      this.passed = passedVersions(await readLedger(this.ledgerPath));
      this.readProblem = null;
    } catch (error) {
      this.passed = new Map();
      this.readProblem = (error as Error).message;
      this.logger.error('scanner ledger unreadable: no scanner version counts as tested', { path: this.ledgerPath, error: this.readProblem });
    }
    this.cachedKey = key;
  }

  private noteAnswer(untested: readonly ScannerVersion[]): void {
    const text = describeUntested(untested);
    if (untested.length > 0 && text !== this.lastBlockedText) {
      this.logger.error('releases paused: scanner version not tested; run `shuttle scanner-test`', {
        untested: text,
        ledger: this.ledgerPath,
        ...(this.readProblem ? { problem: this.readProblem } : {}),
      });
    } else if (untested.length === 0 && this.lastBlockedText !== '') {
      this.logger.info('releases resumed: every scanner version is tested', { ledger: this.ledgerPath });
    }
    this.lastBlockedText = untested.length > 0 ? text : '';
    this.blockedOn = untested;
  }
}

// ---- writing ----

export interface LedgerWriteOptions {
  /** For carrying the old ledger's ACL over to the new file; without it, an ACL is reported as lost. */
  readonly addon?: Pick<NativeAddon, 'getAcl' | 'setAcl' | 'hasExtendedAcl'> | null;
}

/**
 * Add test results to the ledger: each replaces any earlier entry for the same scanner and engine version
 * (and, for results without a version, the earlier such entry of the same scanner). Written atomically; the
 * new file keeps the old one's owner, group, mode and ACL where this process may set them. Resolves with
 * warnings about what could not be kept.
 */
export async function recordScannerTests(ledgerPath: string, results: readonly LedgerEntry[], options: LedgerWriteOptions = {}): Promise<string[]> {
  const entries = await readLedger(ledgerPath);
  const sameSubject = (a: LedgerEntry, b: LedgerEntry) => a.scanner === b.scanner && a.version === b.version;
  const kept = entries.filter((entry) => !results.some((result) => sameSubject(entry, result)));
  const merged = [...kept, ...results].sort((a, b) => a.scanner.localeCompare(b.scanner) || a.testedAt.localeCompare(b.testedAt));
  return writeLedgerAtomically(ledgerPath, formatLedger(merged), options);
}

export function formatLedger(entries: readonly LedgerEntry[]): string {
  const tested = entries.map((entry) => ({
    scanner: entry.scanner,
    version: entry.version,
    reported: entry.reported,
    result: entry.result,
    tested_at: entry.testedAt,
    detail: entry.detail,
  }));
  return [
    '# Scanner versions tested by `shuttle scanner-test`: a clean file must come back clean and the EICAR',
    '# test string must be found. `shuttle run` releases only what tested versions scanned.',
    '# Written by shuttle; a test of the same scanner and version replaces the earlier entry.',
    stringify({ tested }, { lineWidth: 0 }),
  ].join('\n');
}

async function writeLedgerAtomically(ledgerPath: string, text: string, options: LedgerWriteOptions): Promise<string[]> {
  const target = path.resolve(ledgerPath);
  const name = path.basename(target);
  const temporary = `.${name}.${process.pid}.tmp`;
  const parent = path.dirname(target);
  // Exactly the ledger and its temporary name: nothing else in its directory may be written.
  const zone = new Zone([target, path.join(parent, temporary)]);
  let directory: VerifiedDirectory;
  try {
    directory = openExactDirectory(parent);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ELOOP' || code === 'ENOTDIR' || error instanceof PathEscapeError) {
      throw new LedgerError(target, `its directory ${parent} is reached through a symbolic link or is not a directory; configure the real path`, { cause: error });
    }
    throw new LedgerError(target, `its directory ${parent} cannot be opened: ${(error as Error).message}`, { cause: error });
  }
  const warnings: string[] = [];
  try {
    const existing = await lstatOrNull(directory.entry(name));
    if (existing !== null && !existing.isFile()) {
      throw new LedgerError(target, existing.isSymbolicLink() ? 'is a symbolic link; refusing to replace it' : 'is not a regular file; refusing to replace it');
    }
    if ((await lstatOrNull(directory.entry(temporary))) !== null) await zone.unlinkIn(directory, temporary);
    let handle;
    try {
      handle = await zone.createExclusive(directory, temporary, LEDGER_FILE_MODE);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
        throw new LedgerError(target, `cannot write a new ledger beside it (${code} in ${parent}); run scanner-test as a user who may write that directory, e.g. root`, { cause: error });
      }
      throw error;
    }
    try {
      await handle.writeFile(text);
      await handle.chmod(existing === null ? LEDGER_FILE_MODE : existing.mode & 0o7777);
      if (existing !== null) {
        await handle.chown(existing.uid, existing.gid).catch((error: unknown) => {
          warnings.push(`could not keep the owner ${existing.uid}:${existing.gid} (${(error as NodeJS.ErrnoException).code}); run \`shuttle verify-permissions --fix\``);
        });
        await copyAcl(options.addon ?? null, directory.entry(name), directory.entry(temporary), warnings);
      }
      await handle.sync();
    } finally {
      await handle.close();
    }
    await zone.move(directory, temporary, directory, name);
    await directory.sync();
  } catch (error) {
    await zone.unlinkIn(directory, temporary).catch(() => undefined);
    if (error instanceof LedgerError) throw error;
    throw new LedgerError(target, `not written: ${(error as Error).message}`, { cause: error });
  } finally {
    directory.close();
  }
  return warnings;
}

async function copyAcl(addon: LedgerWriteOptions['addon'] | null, from: string, to: string, warnings: string[]): Promise<void> {
  if (addon === null || addon === undefined) {
    warnings.push('the native addon is not loaded, so an ACL on the old ledger was not carried over; run `shuttle verify-permissions --fix`');
    return;
  }
  try {
    if (!(await addon.hasExtendedAcl(from))) return;
    await addon.setAcl(to, 'access', await addon.getAcl(from, 'access'));
  } catch (error) {
    warnings.push(`could not carry over the old ledger's ACL (${(error as Error).message}); run \`shuttle verify-permissions --fix\``);
  }
}

async function lstatOrNull(target: string): Promise<Stats | null> {
  try {
    return await fsp.lstat(target);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

function isMapping(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
