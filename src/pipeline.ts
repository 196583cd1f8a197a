import { closeSync, constants as fsc, openSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'winston';
import type { PipelineOptions } from './config.js';
import { scannedEvent, type AuditLog } from './audit.js';
import { hashDescriptor } from './file-io.js';
import { classifyName, type FilenamePolicy } from './filename-policy.js';
import { HazardError, secureRemove, type HazardArchiver } from './hazard.js';
import type { Intake } from './intake.js';
import { quarantineDataName, type ItemRecord } from './item.js';
import { JOURNAL_NAME, type Journal } from './journal.js';
import type { LedgerGate } from './ledger.js';
import { ReleaseIntegrityError, type Releaser } from './release.js';
import { scanWithAll } from './scanners/scan-all.js';
import type { ScanReport, Scanner, Verdict } from './scanners/scanner.js';
import { KeyedQueue, Slots } from './work-queue.js';
import type { VerifiedDirectory, Zone } from './zone.js';

/** First retry for a file some writer still holds; doubles up to BUSY_RETRY_MAX_MS. */
const BUSY_RETRY_FIRST_MS = 250;
const BUSY_RETRY_MAX_MS = 5_000;
/**
 * Quarantined items moving at once. Only their scans are bounded by pipeline.scan_concurrency: a release is
 * a few metadata calls and two fsyncs, and the more releases are in flight, the more of them share each fsync.
 */
const ITEMS_IN_FLIGHT = 128;
/** After the drain deadline, in-flight work is aborted and gets this long to park. */
const ABORT_GRACE_MS = 3_000;

export interface PipelineCounts {
  quarantined: number;
  released: number;
  suspect: number;
  hazarded: number;
  rejected: number;
  failed: number;
  scanFailures: number;
}

/** What the pipeline tells the rest of the daemon (metrics, status) as files move. Called after the fact. */
export interface PipelineObserver {
  quarantined(item: ItemRecord): void;
  scanned(item: ItemRecord, verdict: Verdict, reports: readonly ScanReport[]): void;
  released(item: ItemRecord, releasedAs: string): void;
  hazarded(item: ItemRecord, archive: string): void;
  rejected(path: string, reason: string): void;
  failed(reason: string, where: { id?: string; path?: string }): void;
}

export interface PipelineDependencies {
  readonly options: PipelineOptions;
  readonly zone: Zone;
  /** Real path of source_path. */
  readonly sourceRoot: string;
  readonly quarantine: VerifiedDirectory;
  readonly journal: Journal;
  readonly intake: Intake;
  readonly releaser: Releaser;
  readonly scanners: readonly Scanner[];
  readonly logger: Logger;
  /** Encrypts suspect items into hazard_archive_path. */
  readonly hazard: HazardArchiver;
  /** hazard_archive_path, to find the archive of an item whose archiving a crash cut short. */
  readonly hazardDirectory: VerifiedDirectory;
  readonly audit: AuditLog;
  /** Releases wait while a scanner version has no passing scanner-test; null when the config opts out. */
  readonly ledger: LedgerGate | null;
  readonly observer: PipelineObserver;
  /** Which source names are taken, and under what name they are released. */
  readonly filenames: FilenamePolicy;
  /**
   * A file that stays in source_path for now (refused, or waiting for a limit or a rename), by full path:
   * the permission enforcer corrects its group and mode while it waits.
   */
  readonly onStaysInSource?: (fullPath: string) => void;
}

/** What a reload may change. */
export type PipelineSettings = Pick<PipelineDependencies, 'options' | 'scanners' | 'ledger' | 'filenames'>;

/**
 * Moves each file through intake → scan → release (or hold), one keyed queue for source paths and one for
 * quarantined items. Watcher hints only ever add keys; every decision re-reads the file system or the journal.
 */
export class Pipeline {
  readonly counts: PipelineCounts = { quarantined: 0, released: 0, suspect: 0, hazarded: 0, rejected: 0, failed: 0, scanFailures: 0 };
  private readonly abort = new AbortController();
  private readonly sourceQueue: KeyedQueue<string>;
  private readonly itemQueue: KeyedQueue<string>;
  /** Scans running now, at most pipeline.scan_concurrency. */
  private readonly scanSlots: Slots;
  /** Paths waiting for a writer to finish, with how many times they were found busy. */
  private readonly deferred = new Map<string, { timer: NodeJS.Timeout; attempts: number }>();
  private readonly busyAttempts = new Map<string, number>();
  /** Items whose last scan or release failed, with their retry count. */
  private readonly retries = new Map<string, { timer: NodeJS.Timeout | null; attempts: number }>();
  /** Refused source paths and why, so each refusal is logged once. */
  private readonly refusals = new Map<string, string>();
  /** Source paths under a temporary upload name, so each is logged once. */
  private readonly temporaryNames = new Set<string>();
  private stopping = false;
  /** What a reload may change: start from the dependencies, replaced by reconfigure(). */
  private settings: PipelineSettings;

  constructor(private readonly deps: PipelineDependencies) {
    this.settings = { options: deps.options, scanners: deps.scanners, ledger: deps.ledger, filenames: deps.filenames };
    const { options, logger } = deps;
    this.sourceQueue = new KeyedQueue(options.intakeConcurrency, (relativePath) => this.takeFromSource(relativePath), (relativePath, error) =>
      this.onUnexpected('intake failed; the file stays in source', { path: path.join(deps.sourceRoot, relativePath) }, error, () =>
        this.deferSource(relativePath, 'unexpected error'),
      ),
    );
    this.scanSlots = new Slots(options.scanConcurrency);
    this.itemQueue = new KeyedQueue(Math.max(ITEMS_IN_FLIGHT, options.scanConcurrency), (id) => this.advanceItem(id), (id, error) =>
      this.onUnexpected('item failed; it stays in quarantine', { id }, error, () => this.scheduleRetry(id)),
    );
    logger.debug('pipeline ready', { intakeConcurrency: options.intakeConcurrency, scanConcurrency: options.scanConcurrency });
  }

  /** A reloaded config: new limits and scanners apply to the next step of each item; work in flight finishes as it started. */
  reconfigure(settings: PipelineSettings): void {
    this.settings = settings;
    this.sourceQueue.setConcurrency(settings.options.intakeConcurrency);
    this.scanSlots.setLimit(settings.options.scanConcurrency);
    this.itemQueue.setConcurrency(Math.max(ITEMS_IN_FLIGHT, settings.options.scanConcurrency));
  }

  get currentScanners(): readonly Scanner[] {
    return this.settings.scanners;
  }

  get ledgerGate(): LedgerGate | null {
    return this.settings.ledger;
  }

  /** A watcher's hint that something at `relativePath` (under source_path) may want taking. */
  noticeSourcePath(relativePath: string): void {
    if (this.stopping || this.deferred.has(relativePath)) return;
    this.sourceQueue.add(relativePath);
  }

  get queueDepth(): { source: number; items: number } {
    return { source: this.sourceQueue.pending + this.sourceQueue.active + this.deferred.size, items: this.deps.journal.items().size };
  }

  /**
   * Bring every item the journal knows back into motion after a start or a crash, and remove what an
   * interrupted intake left behind. Runs before the watcher starts.
   */
  async recover(): Promise<void> {
    const { journal, quarantine, zone, logger } = this.deps;
    const live = journal.items();
    for (const name of await quarantine.list()) {
      const dataId = /^(.+)\.data$/.exec(name)?.[1];
      const staleJournalCopy = name.startsWith(`.${JOURNAL_NAME}.`) && name.endsWith('.tmp');
      if ((dataId !== undefined && !live.has(dataId)) || staleJournalCopy) {
        // An intake that never reached the journal: its source is still in place.
        await zone.unlinkIn(quarantine, name);
        logger.info('removed an incomplete quarantine copy', { path: quarantine.realEntry(name) });
      }
    }
    let failed = 0;
    for (const item of [...live.values()]) {
      if (item.state !== 'released' && item.state !== 'hazarded') await this.removeSourceLeftBehind(item);
      if (item.state === 'quarantined' && !(await exists(quarantine.entry(quarantineDataName(item.id))))) {
        if (await this.deps.releaser.releaseUnderway(item)) {
          // Scanned clean (the audit log says so durably; the journal's note of it was lost in the crash) and
          // its release had begun: record the verdict again and let the release finish.
          await journal.append({ op: 'scanned', id: item.id, state: 'clean', reports: [] });
          logger.info('release resumed after restart', { id: item.id, path: item.relativePath });
          this.itemQueue.add(item.id);
          continue;
        }
        await this.fail(item, 'its quarantine copy is missing');
        continue;
      }
      if (item.state === 'failed') failed++;
      else this.itemQueue.add(item.id);
    }
    await this.deps.intake.forgetVanishedSources();
    logger.info('journal recovered', { items: live.size, failed, keptSources: journal.keptSources().size });
  }

  /** Stop intake, let in-flight work finish until the deadline, then abort it so it parks. */
  async stop(deadlineMs: number): Promise<'drained' | 'aborted'> {
    this.stopping = true;
    this.sourceQueue.close();
    this.itemQueue.close();
    for (const { timer } of this.deferred.values()) clearTimeout(timer);
    for (const { timer } of this.retries.values()) if (timer !== null) clearTimeout(timer);
    this.deferred.clear();
    const idle = Promise.all([this.sourceQueue.whenIdle(), this.itemQueue.whenIdle()]).then(() => 'drained' as const);
    const outcome = await Promise.race([idle, delay(deadlineMs).then(() => 'deadline' as const)]);
    if (outcome === 'drained') return outcome;
    this.abort.abort();
    await Promise.race([idle, delay(ABORT_GRACE_MS)]);
    return 'aborted';
  }

  private async takeFromSource(relativePath: string): Promise<void> {
    const { intake, logger, sourceRoot } = this.deps;
    const fullPath = path.join(sourceRoot, relativePath);
    const name = classifyName(relativePath.split(path.sep).join('/'), this.settings.filenames);
    if (name.kind === 'temporary') {
      // An upload in progress under a client's temporary name; its writer renames it when done.
      if (!this.temporaryNames.has(relativePath)) {
        this.temporaryNames.add(relativePath);
        this.deps.onStaysInSource?.(fullPath);
        logger.debug('left in source until renamed: a temporary upload name', { path: fullPath, pattern: name.pattern });
      }
      return;
    }
    this.temporaryNames.delete(relativePath);
    if (name.kind === 'reject') {
      await this.refuse(relativePath, name.reason);
      return;
    }
    const releaseAs = name.releaseAs.split('/').join(path.sep);
    const outcome = await intake.take(relativePath, this.abort.signal, releaseAs);
    if (outcome.kind !== 'deferred') this.busyAttempts.delete(relativePath);
    if (outcome.kind !== 'refused') this.refusals.delete(relativePath);
    if (outcome.kind === 'taken' && name.kind === 'rename') {
      logger.warn('name cannot be used on the destination share; it will be released under another', {
        path: fullPath,
        id: outcome.item.id,
        releaseAs: name.releaseAs,
        reasons: name.reasons.join('; '),
      });
    }
    switch (outcome.kind) {
      case 'taken':
        this.counts.quarantined++;
        this.deps.observer.quarantined(outcome.item);
        logger.info('quarantined', { path: fullPath, id: outcome.item.id, sha256: outcome.item.sha256, size: outcome.item.size });
        this.itemQueue.add(outcome.item.id);
        return;
      case 'deferred':
        logger.debug('not taken yet', { path: fullPath, reason: outcome.reason });
        this.deferSource(relativePath, outcome.reason, outcome.retryInMs);
        return;
      case 'refused':
        await this.refuse(relativePath, outcome.reason);
        return;
      case 'gone':
        return;
    }
  }

  /** Left in source_path for good (until it changes): logged, counted and audited once per reason. */
  private async refuse(relativePath: string, reason: string): Promise<void> {
    if (this.refusals.get(relativePath) === reason) return;
    this.refusals.set(relativePath, reason);
    const fullPath = path.join(this.deps.sourceRoot, relativePath);
    this.deps.onStaysInSource?.(fullPath);
    this.deps.logger.warn('left in source', { path: fullPath, reason });
    this.counts.rejected++;
    this.deps.observer.rejected(fullPath, reason);
    await this.auditQuietly({ event: 'rejected', path: relativePath, reason });
  }

  private deferSource(relativePath: string, reason: string, retryInMs = 0): void {
    if (this.stopping) return;
    const attempts = (this.busyAttempts.get(relativePath) ?? 0) + 1;
    this.busyAttempts.set(relativePath, attempts);
    const wait = retryInMs > 0 ? retryInMs : Math.min(BUSY_RETRY_MAX_MS, BUSY_RETRY_FIRST_MS * 2 ** (attempts - 1));
    // A second hint may have run the same path again meanwhile: one timer per path, never an orphan.
    const earlier = this.deferred.get(relativePath);
    if (earlier !== undefined) clearTimeout(earlier.timer);
    const timer = setTimeout(() => {
      this.deferred.delete(relativePath);
      this.noticeSourcePath(relativePath);
    }, wait);
    // A wait (until midnight, for the daily quota) must never be what keeps a stopped daemon alive.
    timer.unref();
    this.deferred.set(relativePath, { timer, attempts });
    if (attempts === 1 || attempts % 20 === 0) this.deps.logger.debug('waiting', { path: relativePath, reason, attempts });
    if (attempts === 1) this.deps.onStaysInSource?.(path.join(this.deps.sourceRoot, relativePath));
  }

  private async advanceItem(id: string): Promise<void> {
    const item = this.deps.journal.get(id);
    if (item === undefined) return;
    switch (item.state) {
      case 'quarantined':
        await this.scan(item);
        return;
      case 'clean':
        await this.release(item);
        return;
      case 'released':
        await this.deps.releaser.cleanUpReleased(item);
        return;
      case 'suspect':
        await this.archiveSuspect(item);
        return;
      case 'hazarded':
        await this.removeHazardPlaintext(item);
        return;
      case 'failed':
        return;
    }
  }

  private async scan(item: ItemRecord): Promise<void> {
    const { journal, logger, quarantine } = this.deps;
    const target = { path: quarantine.realEntry(quarantineDataName(item.id)), size: item.size, sha256: item.sha256 };
    // The scanners are read once the slot is free: a reload meanwhile applies to this scan.
    const { verdict, reports } = await this.scanSlots.run(() => scanWithAll([...this.settings.scanners], target, this.abort.signal));
    if (verdict.kind === 'failed') {
      if (verdict.code === 'aborted') return;
      this.counts.scanFailures++;
      this.deps.observer.scanned(item, verdict, reports);
      const retryInMs = this.scheduleRetry(item.id);
      logger.warn('not scanned; the file waits in quarantine', { id: item.id, path: item.relativePath, code: verdict.code, reason: verdict.reason, retryInSeconds: retryInMs / 1000 });
      return;
    }
    this.retries.delete(item.id);
    // The audit record first: a crash between the two must never leave a verdict the audit log lacks.
    await this.deps.audit.append(scannedEvent(item.id, verdict, reports));
    if (verdict.kind === 'suspect') {
      await journal.append({ op: 'scanned', id: item.id, state: 'suspect', reports, signature: verdict.signature });
      this.counts.suspect++;
      this.deps.observer.scanned(item, verdict, reports);
      logger.error('suspect file found; encrypting it into the hazard archive', { id: item.id, path: item.relativePath, sha256: item.sha256, signature: verdict.signature });
    } else {
      await journal.append({ op: 'scanned', id: item.id, state: 'clean', reports });
      this.deps.observer.scanned(item, verdict, reports);
      // winston filters by level only after a record has passed through its streams: ask first.
      if (logger.isLevelEnabled('debug')) logger.debug('clean', { id: item.id, path: item.relativePath, scanners: reports.map((report) => report.scanner) });
    }
    await this.advanceItem(item.id);
  }

  private async release(item: ItemRecord): Promise<void> {
    const { logger } = this.deps;
    const { ledger } = this.settings;
    if (ledger !== null && !(await ledger.allows(item.reports ?? []))) {
      // The gate logs the pause itself, once; the item waits as clean and is asked about again.
      const retryInMs = this.scheduleRetry(item.id);
      logger.debug('release waits for a tested scanner version', { id: item.id, retryInSeconds: retryInMs / 1000 });
      return;
    }
    try {
      const releasedAs = await this.deps.releaser.release(item, this.abort.signal);
      this.retries.delete(item.id);
      this.counts.released++;
      this.deps.observer.released(item, releasedAs);
    } catch (error) {
      if (error instanceof ReleaseIntegrityError) {
        await this.fail(item, error.message);
        return;
      }
      if (this.abort.signal.aborted) return;
      const retryInMs = this.scheduleRetry(item.id);
      this.deps.logger.error('release failed; the file waits in quarantine', {
        id: item.id,
        path: item.relativePath,
        code: (error as NodeJS.ErrnoException).code,
        error: (error as Error).message,
        retryInSeconds: retryInMs / 1000,
      });
    }
  }

  /**
   * Encrypt a suspect item into the hazard archive; the archiver removes the plaintext once the archive is
   * durable. Encryption that fails leaves the plaintext in quarantine (owner-only) and the item failed.
   */
  private async archiveSuspect(item: ItemRecord): Promise<void> {
    const { quarantine, logger } = this.deps;
    const dataName = quarantineDataName(item.id);
    // An archive published before a crash the journal never heard of: finish that one, never make a second.
    const published = await this.findArchive(item.id);
    if (published !== null) {
      const sidecar = await this.deps.hazard.ensureSidecar(item, published);
      await this.recordHazarded(item, published, sidecar);
      await this.removeHazardPlaintext({ ...item, state: 'hazarded', archive: published });
      return;
    }
    if (!(await exists(quarantine.entry(dataName)))) {
      await this.fail(item, 'its quarantine copy is missing and no hazard archive holds it');
      return;
    }
    try {
      const { archiveName, sidecarName } = await this.deps.hazard.archive(item, { directory: quarantine, name: dataName }, this.abort.signal);
      await this.recordHazarded(item, archiveName, sidecarName);
      await this.deps.journal.append({ op: 'done', id: item.id });
      this.retries.delete(item.id);
    } catch (error) {
      if (this.abort.signal.aborted) return;
      if (error instanceof HazardError && error.archiveName !== null) {
        // The archive is durable; only the removal of the plaintext is left, and it is retried.
        await this.recordHazarded(item, error.archiveName, null);
        const retryInMs = this.scheduleRetry(item.id);
        logger.error('hazard archive written, but the plaintext could not be removed yet', { id: item.id, error: error.message, retryInSeconds: retryInMs / 1000 });
        return;
      }
      await this.fail(item, `hazard archive failed: ${(error as Error).message}`);
    }
  }

  private async recordHazarded(item: ItemRecord, archive: string, sidecar: string | null): Promise<void> {
    await Promise.all([
      this.deps.audit.append({ event: 'hazarded', id: item.id, archive, sidecar }),
      this.deps.journal.append({ op: 'hazarded', id: item.id, archive }),
    ]);
    this.counts.hazarded++;
    this.deps.observer.hazarded(item, archive);
  }

  /** A hazarded item whose plaintext is still in quarantine: remove it securely, then forget the item. */
  private async removeHazardPlaintext(item: ItemRecord): Promise<void> {
    const { zone, quarantine, journal, logger } = this.deps;
    const dataName = quarantineDataName(item.id);
    try {
      if (await exists(quarantine.entry(dataName))) await secureRemove(zone, quarantine, dataName);
    } catch (error) {
      const retryInMs = this.scheduleRetry(item.id);
      logger.error('cannot remove the plaintext of a hazarded item yet', { id: item.id, archive: item.archive, code: (error as NodeJS.ErrnoException).code, error: (error as Error).message, retryInSeconds: retryInMs / 1000 });
      return;
    }
    this.retries.delete(item.id);
    await journal.append({ op: 'done', id: item.id });
    logger.info('plaintext of a hazarded item removed', { id: item.id, archive: item.archive });
  }

  /** The archive name holding item `id`, if one was published (`<time>-<id>[.N].gpg`). */
  private async findArchive(id: string): Promise<string | null> {
    const names = await this.deps.hazardDirectory.list();
    return names.find((name) => name.endsWith('.gpg') && !name.startsWith('.') && name.includes(`-${id}`)) ?? null;
  }

  private async fail(item: ItemRecord, reason: string): Promise<void> {
    await Promise.all([this.deps.journal.append({ op: 'failed', id: item.id, reason }), this.auditQuietly({ event: 'failed', id: item.id, path: item.relativePath, reason })]);
    this.counts.failed++;
    this.deps.observer.failed(reason, { id: item.id, path: item.relativePath });
    this.deps.logger.error('item failed and is held in quarantine', { id: item.id, path: item.relativePath, reason });
  }

  /** For records whose loss must not stop the pipeline: a failed append is logged, not thrown. */
  private async auditQuietly(event: Parameters<AuditLog['append']>[0]): Promise<void> {
    await this.deps.audit.append(event).catch((error: unknown) => {
      this.deps.logger.error('cannot write to the audit log', { event: event.event, error: (error as Error).message });
    });
  }

  /** Exponential backoff with jitter, so a scanner coming back is not hit by every file at once. */
  private scheduleRetry(id: string): number {
    const { retryBaseMs, retryMaxMs } = this.settings.options;
    const previous = this.retries.get(id);
    if (previous?.timer) clearTimeout(previous.timer);
    const attempts = (previous?.attempts ?? 0) + 1;
    const base = Math.min(retryMaxMs, retryBaseMs * 2 ** (attempts - 1));
    const wait = Math.round(base * (0.8 + Math.random() * 0.4));
    const timer = this.stopping ? null : setTimeout(() => this.itemQueue.add(id), wait).unref();
    this.retries.set(id, { timer, attempts });
    return wait;
  }

  /**
   * A crash between recording an intake and removing its source leaves both. The source goes only if it is
   * still the very file that was copied: same inode, size, mtime and SHA-256.
   */
  private async removeSourceLeftBehind(item: ItemRecord): Promise<void> {
    const { zone, sourceRoot, logger } = this.deps;
    let directory: VerifiedDirectory;
    try {
      directory = await zone.openDirectory(path.join(sourceRoot, path.dirname(item.relativePath)));
    } catch {
      return;
    }
    try {
      const name = path.basename(item.relativePath);
      const stats = await fsp.lstat(directory.entry(name), { bigint: true }).catch(() => null);
      const { source } = item;
      if (stats === null || Number(stats.ino) !== source.ino || Number(stats.dev) !== source.dev || Number(stats.size) !== source.size || stats.mtimeNs.toString() !== source.mtimeNs) return;
      const fd = openSync(directory.entry(name), fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
      const sha256 = await hashDescriptor(fd).finally(() => closeSync(fd));
      if (sha256 !== item.sha256) return;
      zone.unlinkInNow(directory, name);
      await directory.sync();
      logger.info('removed a source that an interrupted intake had already copied', { id: item.id, path: directory.realEntry(name) });
    } finally {
      directory.close();
    }
  }

  private onUnexpected(message: string, meta: Record<string, unknown>, error: unknown, retry: () => void): void {
    this.deps.logger.error(message, { ...meta, code: (error as NodeJS.ErrnoException).code, error: (error as Error).message });
    retry();
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

async function exists(target: string): Promise<boolean> {
  try {
    await fsp.lstat(target);
    return true;
  } catch {
    return false;
  }
}
