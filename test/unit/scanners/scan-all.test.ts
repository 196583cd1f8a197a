import { describe, expect, it } from 'vitest';
import { scanWithAll } from '../../../src/scanners/scan-all.js';
import type { ScanReport, Scanner, ScanTarget, Verdict } from '../../../src/scanners/scanner.js';

const target: ScanTarget = { path: '/q/file', size: 3, sha256: 'ab'.repeat(32) };
const never = () => new AbortController().signal;

function fake(name: string, verdict: Verdict, delayMs = 0): Scanner & { calls: Array<{ target: ScanTarget; signal: AbortSignal }> } {
  const calls: Array<{ target: ScanTarget; signal: AbortSignal }> = [];
  return {
    name,
    calls,
    async scan(t, signal): Promise<ScanReport> {
      calls.push({ target: t, signal });
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      return { scanner: name, version: `${name} 1.0`, verdict, durationMs: delayMs };
    },
    async version() {
      return `${name} 1.0`;
    },
  };
}

const clean: Verdict = { kind: 'clean' };
const suspect = (signature: string): Verdict => ({ kind: 'suspect', signature });
const failure = (code: 'unreachable' | 'timeout' | 'limit' | 'aborted', reason: string): Verdict => ({ kind: 'failed', code, reason });

describe('scanWithAll', () => {
  it('is clean when every scanner says clean, and returns every report', async () => {
    const result = await scanWithAll([fake('clamd', clean), fake('mdatp', clean)], target, never());
    expect(result.verdict).toEqual({ kind: 'clean' });
    expect(result.reports.map((r) => r.scanner)).toEqual(['clamd', 'mdatp']);
  });

  it('is never clean with no scanner at all', async () => {
    const result = await scanWithAll([], target, never());
    expect(result.verdict.kind).toBe('failed');
    expect(result.reports).toEqual([]);
  });

  it('is suspect when any scanner says suspect, even if another failed', async () => {
    const result = await scanWithAll(
      [fake('clamd', failure('timeout', 'slow')), fake('mdatp', suspect('Virus:DOS/EICAR_Test_File'))],
      target,
      never(),
    );
    expect(result.verdict).toEqual({ kind: 'suspect', signature: 'Virus:DOS/EICAR_Test_File (mdatp)' });
  });

  it('names every scanner that found something', async () => {
    const result = await scanWithAll([fake('clamd', suspect('Eicar-Signature')), fake('mdatp', suspect('Virus:DOS/EICAR'))], target, never());
    expect(result.verdict).toEqual({ kind: 'suspect', signature: 'Eicar-Signature (clamd), Virus:DOS/EICAR (mdatp)' });
  });

  it('fails when one scanner is clean and another failed, naming the failing scanner', async () => {
    const result = await scanWithAll([fake('clamd', clean), fake('mdatp', failure('unreachable', 'command not found'))], target, never());
    expect(result.verdict).toEqual({ kind: 'failed', code: 'unreachable', reason: 'mdatp: command not found' });
  });

  it('combines several failures, keeping the code that matters most', async () => {
    const result = await scanWithAll(
      [fake('clamd', failure('limit', 'INSTREAM size limit exceeded')), fake('mdatp', failure('timeout', 'no answer'))],
      target,
      never(),
    );
    expect(result.verdict).toEqual({ kind: 'failed', code: 'limit', reason: 'clamd: INSTREAM size limit exceeded; mdatp: no answer' });
  });

  it('turns a scanner that rejects (against its contract) into a failure, not a clean', async () => {
    const broken: Scanner = {
      name: 'broken',
      scan: () => Promise.reject(new Error('boom')),
      version: () => Promise.resolve('x'),
    };
    const result = await scanWithAll([fake('clamd', clean), broken], target, never());
    expect(result.verdict).toMatchObject({ kind: 'failed', reason: expect.stringContaining('broken: scanner threw: boom') });
    expect(result.reports.find((r) => r.scanner === 'broken')?.verdict.kind).toBe('failed');
  });

  it('runs the scanners concurrently with the same target and signal', async () => {
    const a = fake('a', clean, 200);
    const b = fake('b', clean, 200);
    const signal = never();
    const started = Date.now();
    await scanWithAll([a, b], target, signal);
    expect(Date.now() - started).toBeLessThan(390);
    expect(a.calls).toEqual([{ target, signal }]);
    expect(b.calls).toEqual([{ target, signal }]);
  });
});
