// Counters, gauges and histograms for the host's monitoring, rendered in the Prometheus text exposition
// format (version 0.0.4): served on the status socket, and optionally written for node_exporter's
// textfile collector, which reads *.prom files and must never see one half-written (so: a temporary
// name in the same directory, then rename).

import { promises as fsp } from 'node:fs';
import path from 'node:path';

export type Labels = Readonly<Record<string, string>>;

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function labelText(labels: Labels, extra?: [string, string]): string {
  const pairs = Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  if (extra !== undefined) pairs.push(extra);
  if (pairs.length === 0) return '';
  return `{${pairs.map(([name, value]) => `${name}="${escapeLabelValue(value)}"`).join(',')}}`;
}

/** One series per distinct label set, keyed by its canonical text. */
abstract class Metric<Series> {
  protected readonly series = new Map<string, { labels: Labels; value: Series }>();

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly labelNames: readonly string[] = [],
  ) {
    if (!METRIC_NAME.test(name)) throw new Error(`invalid metric name "${name}"`);
    for (const label of labelNames) {
      if (!LABEL_NAME.test(label) || label.startsWith('__') || label === 'le') throw new Error(`invalid label name "${label}" on ${name}`);
    }
  }

  abstract readonly type: 'counter' | 'gauge' | 'histogram';
  protected abstract empty(): Series;
  protected abstract lines(labels: Labels, value: Series): string[];

  protected entry(labels: Labels): { labels: Labels; value: Series } {
    const given = Object.keys(labels);
    if (given.length !== this.labelNames.length || !this.labelNames.every((name) => given.includes(name))) {
      throw new Error(`${this.name} takes labels {${this.labelNames.join(', ')}}, got {${given.join(', ')}}`);
    }
    const key = labelText(labels);
    let found = this.series.get(key);
    if (found === undefined) {
      found = { labels: { ...labels }, value: this.empty() };
      this.series.set(key, found);
    }
    return found;
  }

  render(): string {
    const out = [`# HELP ${this.name} ${escapeHelp(this.help)}`, `# TYPE ${this.name} ${this.type}`];
    for (const { labels, value } of this.series.values()) out.push(...this.lines(labels, value));
    return out.join('\n');
  }
}

export class Counter extends Metric<{ total: number }> {
  readonly type = 'counter';

  /** `initial` label sets are shown at 0 from the start, so rate() sees the first increase. */
  constructor(name: string, help: string, labelNames: readonly string[] = [], initial: readonly Labels[] = []) {
    super(name, help, labelNames);
    for (const labels of initial) this.entry(labels);
  }

  inc(labels: Labels = {}, amount = 1): void {
    if (!(amount >= 0)) throw new Error(`${this.name}: a counter only goes up (got ${amount})`);
    this.entry(labels).value.total += amount;
  }

  get(labels: Labels = {}): number {
    return this.series.get(labelText(labels))?.value.total ?? 0;
  }

  protected empty(): { total: number } {
    return { total: 0 };
  }

  protected lines(labels: Labels, value: { total: number }): string[] {
    return [`${this.name}${labelText(labels)} ${formatValue(value.total)}`];
  }
}

export class Gauge extends Metric<{ current: number }> {
  readonly type = 'gauge';

  set(labels: Labels, value: number): void {
    this.entry(labels).value.current = value;
  }

  get(labels: Labels = {}): number | undefined {
    return this.series.get(labelText(labels))?.value.current;
  }

  protected empty(): { current: number } {
    return { current: 0 };
  }

  protected lines(labels: Labels, value: { current: number }): string[] {
    return [`${this.name}${labelText(labels)} ${formatValue(value.current)}`];
  }
}

interface HistogramSeries {
  /** Observations at or below each bound (not yet cumulative). */
  readonly counts: number[];
  sum: number;
  count: number;
}

export class Histogram extends Metric<HistogramSeries> {
  readonly type = 'histogram';
  private readonly bounds: readonly number[];

  constructor(name: string, help: string, bounds: readonly number[], labelNames: readonly string[] = []) {
    super(name, help, labelNames);
    const sorted = [...bounds].sort((a, b) => a - b);
    if (sorted.length === 0 || sorted.some((bound, index) => !Number.isFinite(bound) || bound === sorted[index - 1])) {
      throw new Error(`${name}: buckets must be distinct finite numbers`);
    }
    this.bounds = sorted;
  }

  observe(labels: Labels, value: number): void {
    const series = this.entry(labels).value;
    const index = this.bounds.findIndex((bound) => value <= bound);
    if (index !== -1) series.counts[index] = (series.counts[index] ?? 0) + 1;
    series.sum += value;
    series.count++;
  }

  protected empty(): HistogramSeries {
    return { counts: this.bounds.map(() => 0), sum: 0, count: 0 };
  }

  protected lines(labels: Labels, value: HistogramSeries): string[] {
    const out: string[] = [];
    let cumulative = 0;
    this.bounds.forEach((bound, index) => {
      cumulative += value.counts[index] ?? 0;
      out.push(`${this.name}_bucket${labelText(labels, ['le', formatValue(bound)])} ${cumulative}`);
    });
    out.push(`${this.name}_bucket${labelText(labels, ['le', '+Inf'])} ${value.count}`);
    out.push(`${this.name}_sum${labelText(labels)} ${formatValue(value.sum)}`);
    out.push(`${this.name}_count${labelText(labels)} ${value.count}`);
    return out;
  }
}

export class MetricsRegistry {
  private readonly metrics: { readonly name: string; render(): string }[] = [];

  register<T extends { readonly name: string; render(): string }>(metric: T): T {
    if (this.metrics.some((known) => known.name === metric.name)) throw new Error(`metric ${metric.name} registered twice`);
    this.metrics.push(metric);
    return metric;
  }

  /** The exposition text, ending in a newline as the format requires. */
  render(): string {
    return `${this.metrics.map((metric) => metric.render()).join('\n')}\n`;
  }
}

// ---------------------------------------------------------------------------------------------------
// Shuttle's metrics.

/** Where a file ended up: taken into quarantine, then released, archived as hazardous, refused in source, or failed. */
export type FileOutcome = 'quarantined' | 'released' | 'hazarded' | 'rejected' | 'failed';
export const FILE_OUTCOMES: readonly FileOutcome[] = ['quarantined', 'released', 'hazarded', 'rejected', 'failed'];

export type ScanVerdict = 'clean' | 'suspect' | 'error';

/** Files per final outcome since local midnight (of the days this daemon has been running). */
export interface DailyCounts {
  /** Local date, YYYY-MM-DD. */
  readonly date: string;
  readonly released: number;
  readonly hazarded: number;
  readonly rejected: number;
  readonly failed: number;
}

export interface ShuttleMetricsOptions {
  readonly version: string;
  readonly now?: () => Date;
}

/** Seconds: clamd answers small files in milliseconds and large archives in minutes. */
const SCAN_SECONDS_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
/** Bytes, 1 KiB to 4 GiB by powers of four. */
const FILE_SIZE_BUCKETS = Array.from({ length: 12 }, (_, index) => 1024 * 4 ** index);

/**
 * The daemon's metrics, recorded through named events so callers never touch metric names. Also keeps
 * the per-day counts `shuttle status` shows.
 */
export class ShuttleMetrics {
  private readonly registry = new MetricsRegistry();
  private readonly now: () => Date;
  private readonly files: Counter;
  private readonly bytes: Counter;
  private readonly fileSize: Histogram;
  private readonly scanDuration: Histogram;
  private readonly queueDepth: Gauge;
  private readonly scannerUp: Gauge;
  private readonly degraded: Gauge;
  private daily: { date: string; counts: Record<Exclude<FileOutcome, 'quarantined'>, number> };

  constructor(options: ShuttleMetricsOptions) {
    this.now = options.now ?? (() => new Date());
    const outcomes = FILE_OUTCOMES.map((outcome) => ({ outcome }));
    this.registry.register(new Gauge('shuttle_build_info', 'Shuttle version; always 1.', ['version'])).set({ version: options.version }, 1);
    this.registry
      .register(new Gauge('shuttle_start_time_seconds', 'When the daemon started, in seconds since the epoch.'))
      .set({}, Math.floor(this.now().getTime() / 1000));
    this.files = this.registry.register(new Counter('shuttle_files_total', 'Files by outcome: taken into quarantine, released, archived as hazardous, refused in source, failed.', ['outcome'], outcomes));
    this.bytes = this.registry.register(new Counter('shuttle_bytes_total', 'Bytes of the files counted in shuttle_files_total, by outcome.', ['outcome'], outcomes));
    this.fileSize = this.registry.register(new Histogram('shuttle_file_size_bytes', 'Sizes of the files taken into quarantine.', FILE_SIZE_BUCKETS));
    this.scanDuration = this.registry.register(new Histogram('shuttle_scan_duration_seconds', 'Time one scanner took for one file, by scanner and verdict.', SCAN_SECONDS_BUCKETS, ['scanner', 'verdict']));
    this.queueDepth = this.registry.register(new Gauge('shuttle_queue_depth', 'Files waiting or in flight, by state.', ['state']));
    this.scannerUp = this.registry.register(new Gauge('shuttle_scanner_up', '1 when the scanner answered its last request, 0 when it failed.', ['scanner']));
    this.degraded = this.registry.register(new Gauge('shuttle_degraded', '1 while the daemon works in a degraded mode (see shuttle status).', ['mode']));
    this.daily = { date: localDate(this.now()), counts: { released: 0, hazarded: 0, rejected: 0, failed: 0 } };
  }

  /** A file reached an outcome; `bytes` is its size where known. */
  fileOutcome(outcome: FileOutcome, bytes = 0): void {
    this.files.inc({ outcome });
    if (bytes > 0) this.bytes.inc({ outcome }, bytes);
    if (outcome === 'quarantined') {
      this.fileSize.observe({}, bytes);
      return;
    }
    this.rollDay();
    this.daily.counts[outcome]++;
  }

  scanFinished(scanner: string, seconds: number, verdict: ScanVerdict): void {
    this.scanDuration.observe({ scanner, verdict }, seconds);
    this.scannerUp.set({ scanner }, verdict === 'error' ? 0 : 1);
  }

  scannerHealth(scanner: string, up: boolean): void {
    this.scannerUp.set({ scanner }, up ? 1 : 0);
  }

  /** The current depth of each queue state (e.g. source, quarantined, clean, suspect, failed). */
  setQueueDepth(depths: Readonly<Record<string, number>>): void {
    for (const [state, depth] of Object.entries(depths)) this.queueDepth.set({ state }, depth);
  }

  setDegraded(mode: string, active: boolean): void {
    this.degraded.set({ mode }, active ? 1 : 0);
  }

  today(): DailyCounts {
    this.rollDay();
    return { date: this.daily.date, ...this.daily.counts };
  }

  /** Totals since start, by outcome. */
  totals(): Readonly<Record<FileOutcome, { files: number; bytes: number }>> {
    return Object.fromEntries(
      FILE_OUTCOMES.map((outcome) => [outcome, { files: this.files.get({ outcome }), bytes: this.bytes.get({ outcome }) }]),
    ) as Record<FileOutcome, { files: number; bytes: number }>;
  }

  render(): string {
    return this.registry.render();
  }

  private rollDay(): void {
    const date = localDate(this.now());
    if (date !== this.daily.date) this.daily = { date, counts: { released: 0, hazarded: 0, rejected: 0, failed: 0 } };
  }
}

function localDate(date: Date): string {
  const pad = (value: number): string => String(value).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

// ---------------------------------------------------------------------------------------------------
// node_exporter's textfile collector.

/** node_exporter runs as its own user: the file is world-readable, whatever the daemon's umask. */
const TEXTFILE_MODE = 0o644;

/**
 * Replaces `file` with `text` atomically: a temporary name in the same directory (not ending in .prom,
 * so the collector never reads it), fsync, rename.
 */
export async function writeTextfile(file: string, text: string): Promise<void> {
  const directory = path.dirname(file);
  const temporary = path.join(directory, `.${path.basename(file)}.${process.pid}.tmp`);
  const handle = await fsp.open(temporary, 'w', TEXTFILE_MODE);
  try {
    await handle.chmod(TEXTFILE_MODE);
    await handle.writeFile(text);
    await handle.sync();
  } catch (error) {
    await handle.close();
    await fsp.rm(temporary, { force: true });
    throw error;
  }
  await handle.close();
  try {
    await fsp.rename(temporary, file);
  } catch (error) {
    await fsp.rm(temporary, { force: true });
    throw error;
  }
}

export interface TextfileTimers {
  setInterval(callback: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
}

export interface MetricsTextfileOptions {
  readonly file: string;
  readonly intervalMs: number;
  readonly render: () => string;
  /** A write that failed (directory missing, read-only, full); reported once until a write succeeds. */
  readonly onError?: (error: NodeJS.ErrnoException) => void;
  readonly timers?: TextfileTimers;
}

/** Rewrites the textfile every interval; one write at a time, the last one on stop(). */
export class MetricsTextfile {
  private timer: unknown = null;
  private writing: Promise<void> = Promise.resolve();
  private failing = false;
  private readonly timers: TextfileTimers;

  constructor(private readonly options: MetricsTextfileOptions) {
    this.timers = options.timers ?? {
      setInterval: (callback, ms) => setInterval(callback, ms).unref(),
      clearInterval: (handle) => clearInterval(handle as NodeJS.Timeout),
    };
  }

  start(): void {
    if (this.timer !== null) return;
    void this.writeNow();
    this.timer = this.timers.setInterval(() => void this.writeNow(), this.options.intervalMs);
  }

  /** Writes once more (the final counts) and stops. */
  async stop(): Promise<void> {
    if (this.timer !== null) this.timers.clearInterval(this.timer);
    this.timer = null;
    await this.writeNow();
  }

  /** Resolves when this write (queued behind any running one) is done; never rejects. */
  writeNow(): Promise<void> {
    this.writing = this.writing.then(async () => {
      try {
        await writeTextfile(this.options.file, this.options.render());
        this.failing = false;
      } catch (error) {
        if (!this.failing) this.options.onError?.(error as NodeJS.ErrnoException);
        this.failing = true;
      }
    });
    return this.writing;
  }
}
