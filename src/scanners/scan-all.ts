// Every enabled scanner looks at the same quarantine copy at once. One "suspect" is enough to hold a file as
// a hazard; release needs "clean" from all of them; anything in between means the file was not fully scanned.

import { failed, type ScanFailureCode, type ScanReport, type Scanner, type ScanTarget, type Verdict } from './scanner.js';

export interface CombinedScan {
  verdict: Verdict;
  reports: ScanReport[];
}

/**
 * When scanners fail in different ways, the combined code is the one that says most about what to do next:
 * a shutdown first, then failures a retry will not fix by itself, then the transient ones.
 */
const FAILURE_PRECEDENCE: readonly ScanFailureCode[] = ['aborted', 'limit', 'io', 'protocol', 'timeout', 'unreachable'];

async function reportOf(scanner: Scanner, target: ScanTarget, signal: AbortSignal, now: () => number): Promise<ScanReport> {
  const started = now();
  try {
    return await scanner.scan(target, signal);
  } catch (error) {
    // The contract says scan() never rejects; a scanner that does still must not release a file.
    const reason = `scanner threw: ${error instanceof Error ? error.message : String(error)}`;
    return { scanner: scanner.name, version: null, verdict: failed('protocol', reason), durationMs: now() - started };
  }
}

export function combineVerdicts(reports: readonly ScanReport[]): Verdict {
  if (reports.length === 0) return failed('unreachable', 'no scanner is enabled');

  const suspects = reports.flatMap((r) => (r.verdict.kind === 'suspect' ? [`${r.verdict.signature} (${r.scanner})`] : []));
  if (suspects.length > 0) return { kind: 'suspect', signature: suspects.join(', ') };

  // Clean is asked for explicitly of every report, so a verdict nobody expected can never count as clean.
  const failures = reports.flatMap((r) => {
    if (r.verdict.kind === 'clean') return [];
    if (r.verdict.kind === 'failed') return [{ scanner: r.scanner, code: r.verdict.code, reason: r.verdict.reason }];
    return [{ scanner: r.scanner, code: 'protocol' as const, reason: `unrecognised verdict ${JSON.stringify(r.verdict)}` }];
  });
  if (failures.length === 0) return { kind: 'clean' };

  const code = FAILURE_PRECEDENCE.find((c) => failures.some((f) => f.code === c)) ?? 'protocol';
  return failed(code, failures.map((f) => `${f.scanner}: ${f.reason}`).join('; '));
}

export async function scanWithAll(
  scanners: readonly Scanner[],
  target: ScanTarget,
  signal: AbortSignal,
  now: () => number = () => performance.now(),
): Promise<CombinedScan> {
  const reports = await Promise.all(scanners.map((scanner) => reportOf(scanner, target, signal, now)));
  return { verdict: combineVerdicts(reports), reports };
}
