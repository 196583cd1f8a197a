// What the running daemon knows about itself, for `shuttle status`, the metrics and systemd's STATUS= line.
// It hears about every file as the pipeline moves it (PipelineObserver) and builds snapshots on request.

import type { ItemRecord } from './item.js';
import type { Journal } from './journal.js';
import type { ShuttleMetrics } from './metrics.js';
import type { PipelineObserver } from './pipeline.js';
import type { ScanReport, Verdict } from './scanners/scanner.js';
import { RecentErrors, packageVersion, type DaemonState, type DegradedMode, type QueueState, type ScannerHealth, type StatusSnapshot } from './status-server.js';

export interface DaemonStatusOptions {
  readonly configFile: string;
  readonly metrics: ShuttleMetrics;
  readonly journal: Journal;
  /** Files seen in source_path and not yet taken (waiting for a writer, queued, being copied). */
  readonly sourceDepth: () => number;
  /** Scanner names in the order they are configured. */
  readonly scanners: readonly string[];
  readonly now?: () => Date;
}

export class DaemonStatus implements PipelineObserver {
  state: DaemonState = 'starting';
  private readonly version = packageVersion();
  private readonly startedAt: Date;
  private readonly now: () => Date;
  private readonly errors: RecentErrors;
  private lastRelease: { at: string; path: string } | null = null;
  private scannerHealth = new Map<string, ScannerHealth>();
  private readonly degradedModes = new Map<string, DegradedMode>();

  constructor(private readonly options: DaemonStatusOptions) {
    this.now = options.now ?? (() => new Date());
    this.startedAt = this.now();
    this.errors = new RecentErrors(10, this.now);
    this.setScanners(options.scanners);
  }

  /** The configured scanners changed (reload): keep what is known about those that stay. */
  setScanners(names: readonly string[]): void {
    const previous = this.scannerHealth;
    this.scannerHealth = new Map(
      names.map((name) => [name, previous.get(name) ?? { name, healthy: true, version: null, lastCheckedAt: null, lastError: null }]),
    );
  }

  /** A scanner answered (or failed to answer) a question outside a scan, e.g. its version at start. */
  scannerChecked(name: string, outcome: { version: string } | { error: string }): void {
    const at = this.now().toISOString();
    const known = this.scannerHealth.get(name);
    if (known === undefined) return;
    this.scannerHealth.set(
      name,
      'version' in outcome
        ? { ...known, healthy: true, version: outcome.version, lastCheckedAt: at, lastError: null }
        : { ...known, healthy: false, lastCheckedAt: at, lastError: outcome.error },
    );
    this.options.metrics.scannerHealth(name, 'version' in outcome);
  }

  /** Turn a degraded mode on (with why) or off. */
  degraded(mode: string, reason: string | null): void {
    const active = reason !== null;
    if (active && !this.degradedModes.has(mode)) this.degradedModes.set(mode, { mode, reason, since: this.now().toISOString() });
    if (!active) this.degradedModes.delete(mode);
    this.options.metrics.setDegraded(mode, active);
  }

  error(message: string, meta: { path?: string; code?: string } = {}): void {
    this.errors.add(message, meta);
  }

  quarantined(item: ItemRecord): void {
    this.options.metrics.fileOutcome('quarantined', item.size);
  }

  scanned(item: ItemRecord, verdict: Verdict, reports: readonly ScanReport[]): void {
    const at = this.now().toISOString();
    for (const report of reports) {
      const failure = report.verdict.kind === 'failed' ? report.verdict : null;
      this.options.metrics.scanFinished(report.scanner, report.durationMs / 1000, report.verdict.kind === 'failed' ? 'error' : report.verdict.kind);
      const known = this.scannerHealth.get(report.scanner);
      if (known === undefined) continue;
      // A file over a scanner's limit says nothing about the scanner's health.
      const down = failure !== null && failure.code !== 'limit' && failure.code !== 'aborted';
      this.scannerHealth.set(report.scanner, {
        ...known,
        healthy: !down,
        version: report.version ?? known.version,
        lastCheckedAt: at,
        lastError: down ? failure.reason : known.lastError,
      });
    }
    if (verdict.kind === 'failed') this.errors.add(`not scanned: ${verdict.reason}`, { path: item.relativePath, code: verdict.code });
  }

  released(item: ItemRecord, releasedAs: string): void {
    this.options.metrics.fileOutcome('released', item.size);
    this.lastRelease = { at: this.now().toISOString(), path: releasedAs };
  }

  hazarded(item: ItemRecord, archive: string): void {
    this.options.metrics.fileOutcome('hazarded', item.size);
    this.errors.add(`suspect file archived as ${archive}: ${item.signature ?? 'unknown signature'}`, { path: item.relativePath });
  }

  rejected(path: string, reason: string): void {
    this.options.metrics.fileOutcome('rejected');
    this.errors.add(`left in source: ${reason}`, { path });
  }

  failed(reason: string, where: { id?: string; path?: string }): void {
    this.options.metrics.fileOutcome('failed');
    this.errors.add(reason, where.path === undefined ? {} : { path: where.path });
  }

  /** Queue depth by state, from the journal and the source queue. */
  queue(): Record<QueueState, number> {
    const queue: Record<QueueState, number> = { source: this.options.sourceDepth(), quarantined: 0, clean: 0, suspect: 0, failed: 0 };
    for (const item of this.options.journal.items().values()) {
      if (item.state === 'quarantined' || item.state === 'clean' || item.state === 'suspect' || item.state === 'failed') queue[item.state]++;
      else if (item.state === 'hazarded') queue.suspect++;
    }
    return queue;
  }

  snapshot(): StatusSnapshot {
    const now = this.now();
    return {
      version: this.version,
      pid: process.pid,
      state: this.state,
      configFile: this.options.configFile,
      startedAt: this.startedAt.toISOString(),
      uptimeSeconds: Math.floor((now.getTime() - this.startedAt.getTime()) / 1000),
      queue: this.queue(),
      today: this.options.metrics.today(),
      lastRelease: this.lastRelease,
      scanners: [...this.scannerHealth.values()],
      degraded: [...this.degradedModes.values()],
      lastErrors: this.errors.list(),
    };
  }
}
