// ClamdScanner against a real, private clamd (see test/helpers/clamd.ts): unix INSTREAM, TCP INSTREAM, and
// zFILDES, through every limit clamd has, a stop, a crash and a restart.

import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClamdOptions } from '../../../src/config.js';
import { loadNative, tryLoadNative } from '../../../src/native.js';
import { ClamdScanner, sessionDescriptorPasser, type ClamdDescriptorPasser } from '../../../src/scanners/clamd.js';
import type { ScanTarget } from '../../../src/scanners/scanner.js';
import { EICAR, pythonDescriptorPasser, startClamd, type ClamdHarness } from '../../helpers/clamd.js';

const MiB = 1024 * 1024;
const never = () => new AbortController().signal;

function loadAddon(): { addon: ClamdDescriptorPasser | null; why: string } {
  const addon = tryLoadNative();
  if (addon) return { addon, why: '' };
  try {
    loadNative();
    return { addon: null, why: 'tryLoadNative() returned null' };
  } catch (error) {
    return { addon: null, why: `tryLoadNative() returned null: ${error instanceof Error ? error.message : String(error)}` };
  }
}

const { addon, why: addonMissing } = loadAddon();
if (!addon) console.warn(`clamd zFILDES through the native addon is skipped: ${addonMissing}`);
const python = await pythonDescriptorPasser();
if (!python) console.warn('clamd zFILDES through the python3 stand-in is skipped: no python3 with socket.send_fds');

let work: string;
let clamd: ClamdHarness;
let limited: ClamdHarness;
let clean: ScanTarget;
let eicar: ScanTarget;
/** Over the limited clamd's StreamMaxLength (1M), under the main one's limits. */
let large: ScanTarget;
/** Over the limited clamd's MaxFileSize (64K), under its StreamMaxLength. */
let medium: ScanTarget;

async function targetFile(name: string, content: Buffer): Promise<ScanTarget> {
  const file = path.join(work, name);
  await writeFile(file, content, { mode: 0o600 });
  return { path: file, size: content.length, sha256: createHash('sha256').update(content).digest('hex') };
}

function unixOptions(harness: ClamdHarness, overrides: Partial<ClamdOptions> = {}): ClamdOptions {
  return { endpoint: { kind: 'unix', socket: harness.socketPath }, fdpass: false, maxFileSize: 200 * MiB, timeoutMs: 30_000, ...overrides };
}

function tcpOptions(harness: ClamdHarness, overrides: Partial<ClamdOptions> = {}): ClamdOptions {
  if (harness.tcpPort === null) throw new Error('harness has no TCP port');
  return { ...unixOptions(harness, overrides), endpoint: { kind: 'tcp', host: '127.0.0.1', port: harness.tcpPort } };
}

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'shuttle-clamd-it-'));
  [clamd, limited] = await Promise.all([
    startClamd({ tcp: true }),
    startClamd({ tcp: true, streamMaxLength: '1M', maxFileSize: '64K', maxScanSize: '64K' }),
  ]);
  // Several MiB so INSTREAM really sends many chunks and backpressure matters.
  clean = await targetFile('clean.bin', randomBytes(5 * MiB + 7));
  eicar = await targetFile('eicar.com', Buffer.from(EICAR, 'latin1'));
  large = await targetFile('large.bin', randomBytes(3 * MiB));
  medium = await targetFile('medium.bin', randomBytes(200 * 1024));
});

afterAll(async () => {
  await Promise.all([clamd?.stop(), limited?.stop()]);
  await rm(work, { recursive: true, force: true });
});

describe.each([
  ['unix socket INSTREAM', () => new ClamdScanner(unixOptions(clamd), null)],
  ['TCP INSTREAM', () => new ClamdScanner(tcpOptions(clamd), null)],
  ['zFILDES through the native addon', () => (addon ? new ClamdScanner(unixOptions(clamd, { fdpass: true }), addon) : null)],
  ['zFILDES in clamd sessions through the native addon', () => (addon ? new ClamdScanner(unixOptions(clamd, { fdpass: true }), sessionDescriptorPasser(loadNative())) : null)],
  ['zFILDES through the python3 stand-in', () => (python ? new ClamdScanner(unixOptions(clamd, { fdpass: true }), python) : null)],
])('real clamd over %s', (label, make) => {
  const available = label.includes('native') ? addon !== null : label.includes('python') ? python !== null : true;

  it.skipIf(!available)('finds a clean file clean', async () => {
    const scanner = make()!;
    const report = await scanner.scan(clean, never());
    expect(report.verdict).toEqual({ kind: 'clean' });
    expect(report.version).toMatch(/^ClamAV \d+\.\d+/);
    if (label.includes('zFILDES')) expect(scanner.method).toBe('descriptor');
  });

  it.skipIf(!available)('finds EICAR suspect, naming the signature', async () => {
    const report = await make()!.scan(eicar, never());
    expect(report.verdict).toEqual({ kind: 'suspect', signature: clamd.eicarSignature });
  });

  it.skipIf(!available)('never calls clean a file whose bytes are not the intake bytes', async () => {
    const report = await make()!.scan({ ...clean, sha256: createHash('sha256').update('something else').digest('hex') }, never());
    expect(report.verdict).toMatchObject({ kind: 'failed', code: 'io' });
  });

  it.skipIf(!available)('does not even let EICAR through as clean when its hash is wrong', async () => {
    const report = await make()!.scan({ ...eicar, sha256: '0'.repeat(64) }, never());
    expect(report.verdict.kind).not.toBe('clean');
  });
});

describe('real clamd sessions (zIDSESSION) through the native addon', () => {
  it.skipIf(addon === null)('gives each of many files scanned at once its own verdict', async () => {
    const scanner = new ClamdScanner(unixOptions(clamd, { fdpass: true }), sessionDescriptorPasser(loadNative()));
    const targets = Array.from({ length: 40 }, (_, index) => (index % 5 === 2 ? eicar : medium));
    const reports = await Promise.all(targets.map((target) => scanner.scan(target, never())));
    reports.forEach((report, index) => {
      expect(report.verdict).toEqual(targets[index] === eicar ? { kind: 'suspect', signature: clamd.eicarSignature } : { kind: 'clean' });
    });
  });

  it.skipIf(addon === null)('answers each descriptor of one session in order, a bad one with its own error', async () => {
    const native = loadNative();
    const { openSync, closeSync } = await import('node:fs');
    const fds = [clean, eicar, medium].map((target) => openSync(target.path, 'r'));
    try {
      const outcomes = await native.clamdScanDescriptors(clamd.socketPath, [fds[0]!, fds[1]!, 1_000_000, fds[2]!], 30_000);
      expect(outcomes[0]).toMatch(/^fd\[\d+\]: OK$/);
      expect(outcomes[1]).toMatch(new RegExp(`^fd\\[\\d+\\]: ${clamd.eicarSignature.replace(/[.]/g, '\\.')} FOUND$`));
      expect(outcomes[2]).toMatchObject({ code: 'EBADF', syscall: 'fcntl' });
      expect(outcomes[3]).toMatch(/^fd\[\d+\]: OK$/);
    } finally {
      fds.forEach((fd) => closeSync(fd));
    }
  });
});

describe('real clamd limits are never clean', () => {
  it.each([
    ['unix', () => unixOptions(limited, { maxFileSize: 200 * MiB })],
    ['TCP', () => tcpOptions(limited, { maxFileSize: 200 * MiB })],
  ])('over StreamMaxLength via %s INSTREAM: "size limit exceeded" is a limit', async (_label, opts) => {
    const report = await new ClamdScanner(opts(), null).scan(large, never());
    expect(report.verdict).toMatchObject({ kind: 'failed', code: 'limit' });
    // Either clamd's reply was read, or clamd hung up first and still answered PING (see explainDroppedStream).
    expect(report.verdict.kind === 'failed' && report.verdict.reason).toMatch(/INSTREAM size limit exceeded|StreamMaxLength/);
  });

  it('over MaxFileSize via INSTREAM: Heuristics.Limits.Exceeded is a limit, not suspect', async () => {
    const report = await new ClamdScanner(unixOptions(limited, { maxFileSize: 200 * MiB }), null).scan(medium, never());
    expect(report.verdict).toMatchObject({ kind: 'failed', code: 'limit' });
    expect(report.verdict.kind === 'failed' && report.verdict.reason).toMatch(/Heuristics\.Limits\.Exceeded/);
  });

  it.skipIf(!addon && !python)('over MaxFileSize via zFILDES: Heuristics.Limits.Exceeded is a limit', async () => {
    // zFILDES is not bound by StreamMaxLength, so the large file reaches the MaxFileSize heuristic.
    const passer = (addon ?? python)!;
    const report = await new ClamdScanner(unixOptions(limited, { fdpass: true, maxFileSize: 200 * MiB }), passer).scan(large, never());
    expect(report.verdict).toMatchObject({ kind: 'failed', code: 'limit' });
    expect(report.verdict.kind === 'failed' && report.verdict.reason).toMatch(/Heuristics\.Limits\.Exceeded\.MaxFileSize/);
  });

  it('over the configured maxFileSize: a limit, without asking clamd', async () => {
    const missing = path.join(work, 'no-clamd-here.sock');
    const options: ClamdOptions = { endpoint: { kind: 'unix', socket: missing }, fdpass: false, maxFileSize: MiB, timeoutMs: 5000 };
    const report = await new ClamdScanner(options, null).scan(large, never());
    // 'limit' and not 'unreachable' proves clamd was never contacted.
    expect(report.verdict).toMatchObject({ kind: 'failed', code: 'limit' });
  });

  it('a small file still scans clean on the limited clamd (the limits are what fail, not the daemon)', async () => {
    const small = await targetFile('small.txt', Buffer.from('just some text\n'));
    const report = await new ClamdScanner(unixOptions(limited), null).scan(small, never());
    expect(report.verdict).toEqual({ kind: 'clean' });
  });
});

describe('real clamd version', () => {
  it('version() returns the ClamAV line', async () => {
    const version = await new ClamdScanner(unixOptions(clamd), null).version(never());
    expect(version).toMatch(/^ClamAV \d+\.\d+\.\d+/);
    const overTcp = await new ClamdScanner(tcpOptions(clamd), null).version(never());
    expect(overTcp).toBe(version);
  });
});

describe('real clamd outages', () => {
  it('stopped: scans are unreachable and version() rejects; restarted: clean again', async () => {
    const outage = await startClamd({ tcp: true });
    try {
      const overUnix = new ClamdScanner(unixOptions(outage), null);
      const overTcp = new ClamdScanner(tcpOptions(outage), null);
      expect((await overUnix.scan(clean, never())).verdict).toEqual({ kind: 'clean' });

      await outage.stop();
      expect((await overUnix.scan(clean, never())).verdict).toMatchObject({ kind: 'failed', code: 'unreachable' });
      expect((await overTcp.scan(clean, never())).verdict).toMatchObject({ kind: 'failed', code: 'unreachable' });
      await expect(overUnix.version(never())).rejects.toMatchObject({ code: 'unreachable' });
      if (python) {
        const viaDescriptor = new ClamdScanner(unixOptions(outage, { fdpass: true }), python);
        expect((await viaDescriptor.scan(clean, never())).verdict).toMatchObject({ kind: 'failed', code: 'unreachable' });
      }
      if (addon) {
        const inSessions = new ClamdScanner(unixOptions(outage, { fdpass: true }), sessionDescriptorPasser(loadNative()));
        const verdicts = await Promise.all([clean, eicar, clean].map(async (target) => (await inSessions.scan(target, never())).verdict));
        for (const verdict of verdicts) expect(verdict).toMatchObject({ kind: 'failed', code: 'unreachable' });
      }

      await outage.start();
      expect((await overUnix.scan(clean, never())).verdict).toEqual({ kind: 'clean' });
      expect((await overTcp.scan(eicar, never())).verdict).toEqual({ kind: 'suspect', signature: outage.eicarSignature });
    } finally {
      await outage.stop();
    }
  });

  it('killed with SIGKILL (stale socket left behind): unreachable, then clean after a restart', async () => {
    const outage = await startClamd();
    try {
      const scanner = new ClamdScanner(unixOptions(outage), null);
      await outage.kill();
      expect((await scanner.scan(clean, never())).verdict).toMatchObject({ kind: 'failed', code: 'unreachable' });
      await outage.start();
      expect((await scanner.scan(clean, never())).verdict).toEqual({ kind: 'clean' });
    } finally {
      await outage.stop();
    }
  });

  it('an abort during the scan ends it as aborted', async () => {
    const controller = new AbortController();
    const scanning = new ClamdScanner(unixOptions(clamd), null).scan(clean, controller.signal);
    controller.abort();
    const report = await scanning;
    expect(report.verdict).toMatchObject({ kind: 'failed', code: 'aborted' });
  });
});
