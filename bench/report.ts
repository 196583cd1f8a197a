// Figures from raw measurements, and the table printed at the end.

export interface LatencySummary {
  readonly meanMs: number;
  readonly p50Ms: number;
  readonly p95Ms: number;
  readonly maxMs: number;
}

export interface DaemonRun {
  readonly round: number;
  /** First drop to last release. */
  readonly wallSeconds: number;
  readonly latency: LatencySummary;
  /** From the daemon's log: drop → 'quarantined' (queueing + intake) and 'quarantined' → 'released' (scan + release). */
  readonly stages: { readonly intake: LatencySummary | null; readonly scanAndRelease: LatencySummary | null };
  readonly peakRssBytes: number;
  readonly daemonCpuSeconds: number;
  /** The daemon's main thread during the run: on a CPU, and runnable but waiting for one. */
  readonly mainThread: { readonly onCpuSeconds: number; readonly waitingSeconds: number };
  readonly clamdCpuSeconds: number;
  /** Releases seen only by the fallback poll (their latency is up to 250 ms late). */
  readonly releasesSeenByPoll: number;
}

export interface BaselineRun {
  readonly round: number;
  readonly wallSeconds: number;
  readonly commandCpuSeconds: number;
  readonly clamdCpuSeconds: number;
}

export interface WorkloadResult {
  readonly name: string;
  readonly files: number;
  readonly fileBytes: number;
  readonly baseline: BaselineRun[];
  readonly daemon: DaemonRun[];
}

export interface Target {
  readonly what: string;
  readonly limit: string;
  readonly measured: string;
  readonly pass: boolean;
}

export function summarizeLatencies(valuesMs: readonly number[]): LatencySummary {
  const sorted = [...valuesMs].sort((a, b) => a - b);
  const rank = (fraction: number): number => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(fraction * sorted.length) - 1))] ?? NaN;
  return {
    meanMs: sorted.reduce((sum, value) => sum + value, 0) / sorted.length,
    p50Ms: rank(0.5),
    p95Ms: rank(0.95),
    maxMs: sorted[sorted.length - 1] ?? NaN,
  };
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  if (sorted.length === 0) return NaN;
  return sorted.length % 2 === 1 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

/** The daemon run whose wall time is the median (the lower middle one for an even count). */
export function medianRun(runs: readonly DaemonRun[]): DaemonRun | undefined {
  const sorted = [...runs].sort((a, b) => a.wallSeconds - b.wallSeconds);
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

const MIB = 1024 * 1024;

export function renderTable(results: readonly WorkloadResult[], targets: readonly Target[]): string {
  const rows: string[][] = [
    ['workload', 'system', 'wall s (median)', 'wall s (all)', 'files/s', 'MiB/s', 'latency ms mean/p50/p95/max', 'CPU s shuttle|cmds/clamd', 'peak RSS MiB'],
  ];
  for (const result of results) {
    const totalMib = (result.files * result.fileBytes) / MIB;
    const baselineWall = median(result.baseline.map((run) => run.wallSeconds));
    const baselineCpu = median(result.baseline.map((run) => run.commandCpuSeconds));
    const baselineClamd = median(result.baseline.map((run) => run.clamdCpuSeconds));
    rows.push([
      result.name,
      'baseline',
      fixed(baselineWall, 2),
      result.baseline.map((run) => fixed(run.wallSeconds, 2)).join(' '),
      fixed(result.files / baselineWall, 0),
      fixed(totalMib / baselineWall, 1),
      '(batch)',
      `${fixed(baselineCpu, 1)}/${fixed(baselineClamd, 1)}`,
      '-',
    ]);
    const daemonWall = median(result.daemon.map((run) => run.wallSeconds));
    const typical = medianRun(result.daemon);
    rows.push([
      '',
      'shuttle',
      fixed(daemonWall, 2),
      result.daemon.map((run) => fixed(run.wallSeconds, 2)).join(' '),
      fixed(result.files / daemonWall, 0),
      fixed(totalMib / daemonWall, 1),
      typical === undefined
        ? '-'
        : [typical.latency.meanMs, typical.latency.p50Ms, typical.latency.p95Ms, typical.latency.maxMs].map((value) => fixed(value, 0)).join('/'),
      typical === undefined ? '-' : `${fixed(typical.daemonCpuSeconds, 1)}/${fixed(typical.clamdCpuSeconds, 1)}`,
      fixed(Math.max(...result.daemon.map((run) => run.peakRssBytes)) / MIB, 1),
    ]);
  }
  const stageRows: string[][] = [['workload', 'shuttle stage (median run)', 'ms mean/p50/p95/max']];
  for (const result of results) {
    const typical = medianRun(result.daemon);
    if (typical === undefined) continue;
    const describe = (summary: LatencySummary | null): string =>
      summary === null ? '-' : [summary.meanMs, summary.p50Ms, summary.p95Ms, summary.maxMs].map((value) => fixed(value, 0)).join('/');
    stageRows.push([result.name, 'drop -> quarantined', describe(typical.stages.intake)]);
    stageRows.push(['', 'quarantined -> released', describe(typical.stages.scanAndRelease)]);
  }
  const lines = [formatRows(rows), '', ...(stageRows.length > 1 ? [formatRows(stageRows), ''] : []), formatRows([['target', 'limit', 'measured', 'verdict'], ...targets.map((target) => [target.what, target.limit, target.measured, target.pass ? 'PASS' : 'MISS'])])];
  return lines.join('\n');
}

function formatRows(rows: readonly string[][]): string {
  const widths = rows[0]?.map((_, column) => Math.max(...rows.map((row) => (row[column] ?? '').length))) ?? [];
  return rows.map((row) => row.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join('  ').trimEnd()).join('\n');
}

export function fixed(value: number, digits: number): string {
  return Number.isFinite(value) ? value.toFixed(digits) : '-';
}
