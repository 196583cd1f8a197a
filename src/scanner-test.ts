// `shuttle scanner-test`: every enabled scanner must call a clean file clean and find the EICAR test string,
// through the same Scanner code the daemon uses. The outcome, with each scanner's version, goes into the
// ledger; `shuttle run` releases only what tested versions scanned.

import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ShuttleConfig } from './config.js';
import { engineVersion, recordScannerTests, type LedgerEntry, type LedgerWriteOptions } from './ledger.js';
import { tryLoadNative } from './native.js';
import { ClamdScanner } from './scanners/clamd.js';
import { MdatpScanner } from './scanners/mdatp.js';
import type { Scanner, ScanTarget, Verdict } from './scanners/scanner.js';

/** The 68-byte EICAR anti-virus test file; harmless, and recognised by every engine. */
export const EICAR_TEST_STRING = 'X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*';
const CLEAN_SAMPLE = 'shuttle scanner-test: an ordinary text file that every scanner must call clean.\n';

const EXIT_PASS = 0;
const EXIT_FAIL = 1;
const EXIT_UNUSABLE = 2;

export interface ScannerTestDependencies {
  /** Defaults to the scanners the config enables, as the daemon builds them. */
  readonly scanners?: readonly Scanner[];
  readonly now?: () => Date;
  readonly ledger?: LedgerWriteOptions;
  readonly signal?: AbortSignal;
}

/** Tests each scanner, records the results in the ledger, prints one line per scanner; resolves with the exit status. */
export async function scannerTest(config: ShuttleConfig, write: (line: string) => void, deps: ScannerTestDependencies = {}): Promise<number> {
  const addon = deps.scanners === undefined || deps.ledger === undefined ? tryLoadNative() : null;
  const scanners = deps.scanners ?? enabledScanners(config, addon);
  const results = await testScanners(scanners, { now: deps.now ?? (() => new Date()), signal: deps.signal ?? new AbortController().signal });
  for (const result of results) write(formatResult(result));

  let warnings: string[];
  try {
    warnings = await recordScannerTests(config.paths.ledgerFilePath, results, deps.ledger ?? { addon });
  } catch (error) {
    write(`ledger: FAILED ${(error as Error).message}`);
    return EXIT_UNUSABLE;
  }
  for (const warning of warnings) write(`ledger: WARNING ${warning}`);
  write(`ledger: recorded in ${config.paths.ledgerFilePath}`);
  return results.every((result) => result.result === 'pass') ? EXIT_PASS : EXIT_FAIL;
}

export function enabledScanners(config: ShuttleConfig, addon: ReturnType<typeof tryLoadNative>): Scanner[] {
  const scanners: Scanner[] = [];
  if (config.scanners.clamd !== null) scanners.push(new ClamdScanner(config.scanners.clamd, addon));
  if (config.scanners.mdatp !== null) scanners.push(new MdatpScanner(config.scanners.mdatp));
  return scanners;
}

/** Runs the two samples through each scanner in turn; never throws for a scanner's sake. */
export async function testScanners(scanners: readonly Scanner[], options: { now: () => Date; signal: AbortSignal }): Promise<LedgerEntry[]> {
  const work = await fsp.mkdtemp(path.join(os.tmpdir(), 'shuttle-scanner-test-'));
  try {
    const clean = await sample(work, 'clean.txt', Buffer.from(CLEAN_SAMPLE, 'utf8'));
    const eicar = await sample(work, 'eicar.com', Buffer.from(EICAR_TEST_STRING, 'latin1'));
    const results: LedgerEntry[] = [];
    for (const scanner of scanners) results.push(await testOne(scanner, clean, eicar, options));
    return results;
  } finally {
    await fsp.rm(work, { recursive: true, force: true });
  }
}

async function testOne(scanner: Scanner, clean: ScanTarget, eicar: ScanTarget, options: { now: () => Date; signal: AbortSignal }): Promise<LedgerEntry> {
  const testedAt = options.now().toISOString();
  const entry = (reported: string | null, passed: boolean, detail: string): LedgerEntry => ({
    scanner: scanner.name,
    version: reported === null ? null : engineVersion(scanner.name, reported),
    reported,
    result: passed ? 'pass' : 'fail',
    testedAt,
    detail,
  });

  let before: string;
  try {
    before = await scanner.version(options.signal);
  } catch (error) {
    return entry(null, false, `cannot ask its version: ${(error as Error).message}`);
  }
  const cleanReport = await scanner.scan(clean, options.signal);
  const eicarReport = await scanner.scan(eicar, options.signal);
  const findings = [`clean file: ${describeVerdict(cleanReport.verdict)}`, `EICAR: ${describeVerdict(eicarReport.verdict)}`];
  let passed = cleanReport.verdict.kind === 'clean' && eicarReport.verdict.kind === 'suspect';

  // A reload during the test (freshclam, an mdatp update) means the results may belong to another version.
  const after = await scanner.version(options.signal).catch(() => null);
  if (after !== null && engineVersion(scanner.name, after) !== engineVersion(scanner.name, before)) {
    passed = false;
    findings.push(`its version changed during the test, to ${after}; run it again`);
  }
  return entry(before, passed, findings.join('; '));
}

function describeVerdict(verdict: Verdict): string {
  switch (verdict.kind) {
    case 'clean':
      return 'clean';
    case 'suspect':
      return `found ${verdict.signature}`;
    case 'failed':
      return `not scanned (${verdict.code}: ${verdict.reason})`;
  }
}

export function formatResult(result: LedgerEntry): string {
  const version = result.reported ?? 'version unknown';
  return `${result.scanner}: ${result.result === 'pass' ? 'pass' : 'FAIL'} (${version}) ${result.detail}`;
}

async function sample(directory: string, name: string, content: Buffer): Promise<ScanTarget> {
  const file = path.join(directory, name);
  await fsp.writeFile(file, content, { mode: 0o600, flag: 'wx' });
  return { path: file, size: content.length, sha256: createHash('sha256').update(content).digest('hex') };
}
