import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import winston from 'winston';
import Transport from 'winston-transport';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  checkLedger,
  engineVersion,
  LedgerError,
  LedgerGate,
  readLedger,
  recordScannerTests,
  type LedgerEntry,
} from '../../src/ledger.js';
import type { ScanReport } from '../../src/scanners/scanner.js';

const logger = winston.createLogger({ silent: true });
let root: string;
let ledgerPath: string;

const CLAMD_LINE = 'ClamAV 1.0.7/27431/Tue Mar  3 08:36:42 2026';

function entry(overrides: Partial<LedgerEntry> = {}): LedgerEntry {
  return {
    scanner: 'clamd',
    version: 'ClamAV 1.0.7',
    reported: CLAMD_LINE,
    result: 'pass',
    testedAt: '2026-03-01T10:00:00.000Z',
    detail: 'clean file: clean; EICAR: found Eicar-Signature',
    ...overrides,
  };
}

function report(scanner: string, version: string | null): ScanReport {
  return { scanner, version, verdict: { kind: 'clean' }, durationMs: 1 };
}

beforeEach(async () => {
  root = await fsp.realpath(await fsp.mkdtemp(path.join(os.tmpdir(), 'shuttle-ledger-')));
  ledgerPath = path.join(root, 'ledger.yaml');
});

afterEach(async () => {
  await fsp.rm(root, { recursive: true, force: true });
});

describe('engineVersion', () => {
  it('drops the signature database part of a clamd version line, and keeps other scanners\' versions whole', () => {
    expect(engineVersion('clamd', CLAMD_LINE)).toBe('ClamAV 1.0.7');
    expect(engineVersion('clamd', 'ClamAV 1.4.2')).toBe('ClamAV 1.4.2');
    expect(engineVersion('mdatp', '101.25012.0000')).toBe('101.25012.0000');
  });
});

describe('checkLedger', () => {
  it('rejects an untested version and accepts a tested one, whatever its signature database', async () => {
    await recordScannerTests(ledgerPath, [entry()], { addon: null });
    expect(await checkLedger(ledgerPath, [{ name: 'clamd', version: 'ClamAV 1.0.7/27432/Wed Mar  4 08:00:00 2026' }])).toEqual({ ok: true, untested: [] });
    expect(await checkLedger(ledgerPath, [{ name: 'clamd', version: 'ClamAV 1.0.8/27432/Wed Mar  4 08:00:00 2026' }])).toEqual({
      ok: false,
      untested: [{ scanner: 'clamd', version: 'ClamAV 1.0.8/27432/Wed Mar  4 08:00:00 2026' }],
    });
    expect(await checkLedger(ledgerPath, [{ name: 'clamd', version: 'ClamAV 1.0.7' }, { name: 'mdatp', version: '101.1' }])).toMatchObject({
      ok: false,
      untested: [{ scanner: 'mdatp', version: '101.1' }],
    });
  });

  it('counts nothing as tested without a ledger, with an empty one, or for an unknown version', async () => {
    expect((await checkLedger(ledgerPath, [{ name: 'clamd', version: CLAMD_LINE }])).ok).toBe(false);
    await fsp.writeFile(ledgerPath, '');
    expect((await checkLedger(ledgerPath, [{ name: 'clamd', version: CLAMD_LINE }])).ok).toBe(false);
    await recordScannerTests(ledgerPath, [entry()], { addon: null });
    expect(await checkLedger(ledgerPath, [{ name: 'clamd', version: null }])).toEqual({ ok: false, untested: [{ scanner: 'clamd', version: null }] });
  });

  it('lets a later failed test of the same version take its pass away', async () => {
    await recordScannerTests(ledgerPath, [entry()], { addon: null });
    await recordScannerTests(ledgerPath, [entry({ result: 'fail', testedAt: '2026-03-02T10:00:00.000Z', detail: 'EICAR: clean' })], { addon: null });
    expect((await checkLedger(ledgerPath, [{ name: 'clamd', version: CLAMD_LINE }])).ok).toBe(false);
    expect(await readLedger(ledgerPath)).toHaveLength(1);
  });

  it('keeps the passes of other versions when a test could not reach the scanner', async () => {
    await recordScannerTests(ledgerPath, [entry()], { addon: null });
    await recordScannerTests(ledgerPath, [entry({ version: null, reported: null, result: 'fail', testedAt: '2026-03-02T10:00:00.000Z' })], { addon: null });
    expect((await checkLedger(ledgerPath, [{ name: 'clamd', version: CLAMD_LINE }])).ok).toBe(true);
    expect(await readLedger(ledgerPath)).toHaveLength(2);
  });

  it('refuses a file that is not a ledger', async () => {
    await fsp.writeFile(ledgerPath, 'tested: [ {scanner: clamd, version: 1, result: maybe, tested_at: now} ]\n');
    await expect(checkLedger(ledgerPath, [])).rejects.toBeInstanceOf(LedgerError);
    await fsp.writeFile(ledgerPath, 'key: [unclosed\n');
    await expect(checkLedger(ledgerPath, [])).rejects.toThrow(/is not valid YAML/);
  });
});

describe('recordScannerTests', () => {
  it('writes the ledger atomically, mode 0640 when new, and touches nothing else in its directory', async () => {
    await fsp.writeFile(path.join(root, 'hazard-public.asc'), 'key');
    const warnings = await recordScannerTests(ledgerPath, [entry()], { addon: null });
    expect(warnings).toEqual([]);
    expect((await fsp.stat(ledgerPath)).mode & 0o7777).toBe(0o640);
    expect((await fsp.readdir(root)).sort()).toEqual(['hazard-public.asc', 'ledger.yaml']);
    const text = await fsp.readFile(ledgerPath, 'utf8');
    expect(text).toContain('# Scanner versions tested by `shuttle scanner-test`');
    expect(text).toContain('tested_at: 2026-03-01T10:00:00.000Z');
    expect(await readLedger(ledgerPath)).toEqual([entry()]);
  });

  it('replaces the file (a reader holding the old one sees it whole) and keeps its mode and owner', async () => {
    await recordScannerTests(ledgerPath, [entry()], { addon: null });
    await fsp.chmod(ledgerPath, 0o600);
    const before = await fsp.stat(ledgerPath);
    const reader = await fsp.open(ledgerPath, 'r');
    try {
      const warnings = await recordScannerTests(ledgerPath, [entry({ scanner: 'mdatp', version: '101.1', reported: '101.1' })], { addon: null });
      expect(warnings.filter((warning) => !warning.includes('native addon'))).toEqual([]);
      const after = await fsp.stat(ledgerPath);
      expect(after.ino).not.toBe(before.ino);
      expect(after.mode & 0o7777).toBe(0o600);
      expect([after.uid, after.gid]).toEqual([before.uid, before.gid]);
      expect(await reader.readFile('utf8')).not.toContain('mdatp');
    } finally {
      await reader.close();
    }
    expect((await readLedger(ledgerPath)).map((item) => item.scanner)).toEqual(['clamd', 'mdatp']);
  });

  it('refuses to replace a symbolic link', async () => {
    await fsp.writeFile(path.join(root, 'elsewhere.yaml'), 'tested: []\n');
    await fsp.symlink(path.join(root, 'elsewhere.yaml'), ledgerPath);
    await expect(recordScannerTests(ledgerPath, [entry()], { addon: null })).rejects.toThrow(/symbolic link/);
    expect(await fsp.readFile(path.join(root, 'elsewhere.yaml'), 'utf8')).toBe('tested: []\n');
  });

  it('refuses a directory reached through a symbolic link', async () => {
    await fsp.mkdir(path.join(root, 'real'));
    await fsp.symlink(path.join(root, 'real'), path.join(root, 'link'));
    await expect(recordScannerTests(path.join(root, 'link', 'ledger.yaml'), [entry()], { addon: null })).rejects.toThrow(/reached through a symbolic link/);
    expect(await fsp.readdir(path.join(root, 'real'))).toEqual([]);
  });
});

class Capture extends Transport {
  readonly lines: string[] = [];
  override log(info: { level: string; message: string }, next: () => void): void {
    this.lines.push(`${info.level}: ${info.message}`);
    next();
  }
}

describe('LedgerGate', () => {
  it('stops allowing when a scanner version changes, and allows again once the ledger records a pass', async () => {
    const capture = new Capture();
    const gate = new LedgerGate(ledgerPath, winston.createLogger({ transports: [capture] }));
    await recordScannerTests(ledgerPath, [entry()], { addon: null });
    expect(await gate.allows([report('clamd', CLAMD_LINE)])).toBe(true);
    expect(gate.blocked).toEqual([]);

    // clamd reloaded with a new engine
    const upgraded = 'ClamAV 1.0.8/27432/Wed Mar  4 08:00:00 2026';
    expect(await gate.allows([report('clamd', upgraded)])).toBe(false);
    expect(await gate.allows([report('clamd', upgraded)])).toBe(false);
    expect(gate.blocked).toEqual([{ scanner: 'clamd', version: upgraded }]);
    expect(capture.lines.filter((line) => line.includes('releases paused'))).toHaveLength(1);

    await new Promise((resolve) => setTimeout(resolve, 20));
    await recordScannerTests(ledgerPath, [entry({ version: 'ClamAV 1.0.8', reported: upgraded, testedAt: '2026-03-04T09:00:00.000Z' })], { addon: null });
    expect(await gate.allows([report('clamd', upgraded)])).toBe(true);
    expect(capture.lines.filter((line) => line.includes('releases resumed'))).toHaveLength(1);
  });

  it('does not allow a report without a version, or anything while the ledger is unreadable', async () => {
    const gate = new LedgerGate(ledgerPath, logger);
    await recordScannerTests(ledgerPath, [entry()], { addon: null });
    expect(await gate.allows([report('clamd', null)])).toBe(false);
    await new Promise((resolve) => setTimeout(resolve, 20));
    await fsp.writeFile(ledgerPath, 'tested: 3\n');
    expect(await gate.allows([report('clamd', CLAMD_LINE)])).toBe(false);
  });
});
