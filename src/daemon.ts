import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'winston';
import { AuditLog } from './audit.js';
import type { ShuttleConfig } from './config.js';
import { DaemonStatus } from './daemon-status.js';
import { compileFilenamePolicy } from './filename-policy.js';
import { HazardArchiver, HazardKeyError, validateHazardKey } from './hazard.js';
import { AlreadyRunningError, acquireInstanceLock } from './instance-lock.js';
import { Intake } from './intake.js';
import { Journal } from './journal.js';
import { checkLedger, describeUntested, LedgerError, LedgerGate } from './ledger.js';
import { DailyQuota } from './limits/daily-quota.js';
import { FreeSpaceGuard, pipelineTargets } from './limits/free-space.js';
import { describeHolds, IntakeLimits } from './limits/intake-limits.js';
import { UploaderRateLimit } from './limits/uploader-rate.js';
import { createLogger, flushLogger } from './logger.js';
import { MetricsTextfile, ShuttleMetrics } from './metrics.js';
import { loadNative, type NativeAddon } from './native.js';
import { Notifier } from './notify.js';
import { PermissionEnforcementError, PermissionEnforcer } from './permissions/enforcer.js';
import { Pipeline } from './pipeline.js';
import { Releaser } from './release.js';
import { describeChange, reloadConfig } from './reload.js';
import { ClamdScanner, sessionDescriptorPasser } from './scanners/clamd.js';
import { MdatpScanner } from './scanners/mdatp.js';
import type { Scanner } from './scanners/scanner.js';
import { packageVersion, StatusServer, systemdStatusLine } from './status-server.js';
import { UserNames } from './user-names.js';
import { SourceWatcher } from './watcher.js';
import { detectWriterCheckMode, WriterChecker } from './writer-check.js';
import { Zone, type VerifiedDirectory } from './zone.js';

/** Group members read and write, others nothing: files and directories the daemon creates stay private. */
const DAEMON_UMASK = 0o007;
/** How often the STATUS= line, the queue-depth gauges and the status socket's view are refreshed. */
const STATUS_REFRESH_MS = 2_000;
/**
 * How often everything under source_path and destination_path is checked against the model in full. Watcher
 * events catch new entries at once; this catches what no event reports (a chmod or setfacl on an old entry).
 */
const PERMISSION_SWEEP_MS = 10 * 60_000;
/** The first sweep (drift from while the daemon was down) waits until start-up work has settled. */
const FIRST_SWEEP_MS = 60_000;
/** How long start-up waits for each scanner's version before going on without it. */
const VERSION_PROBE_TIMEOUT_MS = 10_000;

/** Real paths of the directories the daemon works in. */
interface RealDirectories {
  readonly source: string;
  readonly destination: string;
  readonly quarantine: string;
  readonly hazard: string;
  readonly log: string;
}

export interface DaemonHooks {
  /** Called instead of process.exit for a second stop signal. */
  readonly exitNow: (status: number) => void;
  readonly logger?: Logger;
  readonly addon?: NativeAddon;
}

/** A start-up problem that is the admin's to fix: exit status 2, one clear line. */
class StartupError extends Error {}

/**
 * `shuttle run`: the long-lived daemon. Resolves with the exit status once it has stopped; SIGTERM and
 * SIGINT stop it cleanly, a second signal exits at once, SIGHUP reloads the config.
 */
export async function runDaemon(config: ShuttleConfig, hooks: DaemonHooks = { exitNow: (status) => process.exit(status) }): Promise<number> {
  process.umask(DAEMON_UMASK);
  const logger = hooks.logger ?? createLogger({ level: config.logging.level, logDir: config.paths.logPath });
  // Signals are ours from the first moment: a stop during start-up is honoured once start-up is done,
  // rather than killing the process halfway through recovery.
  const signals = new SignalRouter(logger, hooks.exitNow);
  let daemon: Daemon;
  try {
    daemon = await Daemon.start(config, logger, hooks.addon ?? loadNative());
  } catch (error) {
    signals.detach();
    const known = error instanceof StartupError || error instanceof AlreadyRunningError;
    logger.error(known ? (error as Error).message : `cannot start: ${(error as Error).message}`, {
      code: (error as NodeJS.ErrnoException).code,
    });
    await flushLogger(logger);
    return 2;
  }
  try {
    const status = await daemon.runUntilStopped(signals);
    await flushLogger(logger);
    return status;
  } finally {
    signals.detach();
  }
}

/** SIGTERM/SIGINT: stop (a second one exits at once). SIGHUP: reload. */
class SignalRouter {
  private stops = 0;
  private onStop: (() => void) | null = null;
  private onReload: (() => void) | null = null;
  private reloadsDuringStart = 0;

  constructor(
    private readonly logger: Logger,
    private readonly exitNow: (status: number) => void,
  ) {
    process.on('SIGTERM', this.stop);
    process.on('SIGINT', this.stop);
    process.on('SIGHUP', this.reload);
  }

  /** Resolves at the first stop signal, including one that came before this was called. */
  whenStopped(): Promise<void> {
    return new Promise((resolve) => {
      if (this.stops > 0) resolve();
      else this.onStop = resolve;
    });
  }

  handleReloads(reload: () => void): void {
    this.onReload = reload;
    if (this.reloadsDuringStart > 0) reload();
  }

  detach(): void {
    process.off('SIGTERM', this.stop);
    process.off('SIGINT', this.stop);
    process.off('SIGHUP', this.reload);
  }

  private readonly stop = (signal: NodeJS.Signals): void => {
    this.stops++;
    if (this.stops > 1) {
      this.logger.warn('second stop signal: exiting now', { signal });
      this.exitNow(1);
      return;
    }
    this.logger.info('stopping', { signal });
    this.onStop?.();
  };

  private readonly reload = (): void => {
    if (this.onReload === null) {
      this.reloadsDuringStart++;
      this.logger.info('reload requested during start-up; it follows once the daemon runs');
      return;
    }
    this.onReload();
  };
}

class Daemon {
  private statusTimer: NodeJS.Timeout | null = null;
  private sweepTimer: NodeJS.Timeout | null = null;
  private firstSweep: NodeJS.Timeout | null = null;
  private sweeping: Promise<void> | null = null;
  private reloading: Promise<void> = Promise.resolve();

  private constructor(
    private config: ShuttleConfig,
    private readonly logger: Logger,
    private readonly addon: NativeAddon,
    private readonly parts: {
      readonly limits: IntakeLimits;
      readonly lock: FileHandle;
      readonly quarantine: VerifiedDirectory;
      readonly hazardDirectory: VerifiedDirectory;
      readonly journal: Journal;
      readonly audit: AuditLog;
      readonly pipeline: Pipeline;
      readonly watcher: SourceWatcher;
      readonly writerChecker: WriterChecker;
      readonly enforcer: PermissionEnforcer;
      readonly status: DaemonStatus;
      readonly metrics: ShuttleMetrics;
      readonly statusServer: StatusServer;
      readonly notifier: Notifier;
      textfile: MetricsTextfile | null;
    },
  ) {}

  static async start(config: ShuttleConfig, logger: Logger, addon: NativeAddon): Promise<Daemon> {
    const directories = await resolveDirectories(config);
    const zone = new Zone([directories.source, directories.destination, directories.quarantine, directories.hazard, directories.log]);
    // The model first: the lock file is created in quarantine_path and must get that directory's group.
    const enforcer = await createEnforcer(config, logger, zone);
    const quarantine = await zone.openDirectory(directories.quarantine);
    const lock = await acquireInstanceLock(addon, zone, quarantine);

    await checkHazardKey(config, directories.quarantine);
    const scanners = createScanners(config, addon);
    const versions = await probeScannerVersions(scanners, logger);
    if (config.ledger.requireTestedVersions) await requireTestedVersions(config, versions);

    const writerCheckMode = detectWriterCheckMode(addon);
    const journal = await Journal.open(zone, quarantine, logger);
    const audit = await AuditLog.open(zone, directories.log, logger);
    const hazardDirectory = await zone.openDirectory(directories.hazard);
    const hazard = new HazardArchiver({ zone, hazardDirectory, keyPath: config.paths.hazardEncryptionKeyPath, logger });
    try {
      await hazard.removeLeftovers(quarantine);
    } catch (error) {
      // A gpg the killed daemon left may still be writing there; the next start tries again.
      logger.warn('could not remove everything an interrupted hazard archive left; trying again at the next start', {
        error: (error as Error).message,
        code: (error as NodeJS.ErrnoException).code,
      });
    }

    const metrics = new ShuttleMetrics({ version: packageVersion() });
    // Made once the pipeline exists; the limits report pauses to it from then on.
    let status: DaemonStatus | null = null;
    const userNames = new UserNames();
    const now = (): Date => new Date();
    const writerChecker = new WriterChecker(addon, writerCheckMode, config.pipeline.stabilityWindowMs, () => Date.now());
    const limits = await createIntakeLimits(config, directories, logger, now, (hold) => status?.degraded('intake-paused', hold));
    const intake = new Intake({
      zone,
      sourceRoot: directories.source,
      quarantine,
      journal,
      writerChecker,
      logger,
      now,
      limits,
      recordIntake: async (item) => {
        const uploader = { uid: item.uploaderUid, name: await userNames.nameOf(item.uploaderUid) };
        await Promise.all([
          audit.append({ event: 'detected', path: item.relativePath }),
          audit.append({ event: 'quarantined', id: item.id, path: item.relativePath, sha256: item.sha256, size: item.size, uploader }),
        ]);
      },
    });
    const sameFilesystem = (await fsp.stat(directories.quarantine)).dev === (await fsp.stat(directories.destination)).dev;
    const releaser = new Releaser({
      zone,
      destinationRoot: directories.destination,
      quarantine,
      journal,
      logger,
      sameFilesystem,
      permissions: enforcer,
      recordRelease: (item, releasedAs) =>
        audit.append({ event: 'released', id: item.id, path: releasedAs, requestedPath: item.relativePath, renamed: releasedAs !== item.relativePath }),
    });
    let pipeline: Pipeline | null = null;
    status = new DaemonStatus({
      configFile: config.file,
      metrics,
      journal,
      sourceDepth: () => pipeline?.queueDepth.source ?? 0,
      scanners: scanners.map((scanner) => scanner.name),
    });
    for (const [name, outcome] of versions) status.scannerChecked(name, outcome);
    if (writerCheckMode !== 'lease') {
      const reason = 'no CAP_LEASE: files owned by others are taken after a quiet period instead of under a lease';
      logger.warn(`degraded: ${reason}`, { mode: writerCheckMode, stabilityWindowSeconds: config.pipeline.stabilityWindowMs / 1000 });
      status.degraded('writer-check', reason);
    }
    const ledger = config.ledger.requireTestedVersions ? new LedgerGate(config.paths.ledgerFilePath, logger) : null;
    pipeline = new Pipeline({
      options: config.pipeline,
      zone,
      sourceRoot: directories.source,
      quarantine,
      journal,
      intake,
      releaser,
      scanners,
      logger,
      hazard,
      hazardDirectory,
      audit,
      ledger,
      observer: status,
      filenames: compileFilenamePolicy(config.filenames),
      onStaysInSource: (fullPath) => enforcer.notice(fullPath),
    });
    await pipeline.recover();

    const running = pipeline;
    const watcher = new SourceWatcher({
      root: directories.source,
      rescanIntervalMs: config.pipeline.rescanIntervalMs,
      logger,
      onEntry: (relativePath) => running.noticeSourcePath(relativePath),
      // New folders in the inbound share get the model at once; files there are the pipeline's to take
      // (and the periodic sweep's to correct while they wait), which spares a second watch of a busy tree.
      onDirectory: (relativePath) => enforcer.notice(path.join(directories.source, relativePath)),
    });
    await watcher.start();
    await enforcer.start(['destination_path']);

    const statusServer = new StatusServer({
      socketPath: config.runtime.statusSocket,
      snapshot: () => status.snapshot(),
      metrics: () => {
        metrics.setQueueDepth(status.queue());
        return metrics.render();
      },
      logger,
    });
    try {
      await statusServer.start();
    } catch (error) {
      // `shuttle status` is for admins; the files must keep moving without it.
      logger.error('status socket unavailable; `shuttle status` will not reach this daemon', {
        path: config.runtime.statusSocket,
        code: (error as NodeJS.ErrnoException).code,
        error: (error as Error).message,
      });
      status.degraded('status-socket', `cannot serve ${config.runtime.statusSocket}`);
    }
    const notifier = new Notifier({
      send: addon,
      onError: (error, state) => logger.warn('sd_notify failed', { state: state.split('\n')[0], error: error.message }),
    });

    logger.info('shuttle started', {
      source: directories.source,
      destination: directories.destination,
      quarantine: directories.quarantine,
      writerCheck: writerCheckMode,
      releaseBy: sameFilesystem ? 'rename' : 'copy',
      scanners: scanners.map((scanner) => scanner.name).join(','),
      ledgerGate: ledger !== null,
      statusSocket: config.runtime.statusSocket,
    });
    return new Daemon(config, logger, addon, {
      limits,
      lock,
      quarantine,
      hazardDirectory,
      journal,
      audit,
      pipeline,
      watcher,
      writerChecker,
      enforcer,
      status,
      metrics,
      statusServer,
      notifier,
      textfile: null,
    });
  }

  async runUntilStopped(signals: SignalRouter): Promise<number> {
    const { status, notifier, pipeline, watcher, enforcer, journal, audit, quarantine, hazardDirectory, lock, statusServer } = this.parts;
    status.state = 'running';
    this.startTextfile();
    notifier.ready(systemdStatusLine(status.snapshot()));
    this.statusTimer = setInterval(() => this.refreshStatus(), STATUS_REFRESH_MS);
    this.statusTimer.unref();
    this.firstSweep = setTimeout(() => this.sweepPermissions(), FIRST_SWEEP_MS).unref();
    this.sweepTimer = setInterval(() => this.sweepPermissions(), PERMISSION_SWEEP_MS);
    this.sweepTimer.unref();
    signals.handleReloads(() => {
      this.reloading = this.reloading.then(() => this.reload());
    });

    await signals.whenStopped();
    status.state = 'stopping';
    notifier.stopping('stopping: finishing the files in flight');
    if (this.statusTimer !== null) clearInterval(this.statusTimer);
    if (this.sweepTimer !== null) clearInterval(this.sweepTimer);
    if (this.firstSweep !== null) clearTimeout(this.firstSweep);
    await this.reloading;
    await watcher.close();
    // Closing the enforcer also cuts a permission sweep short.
    await enforcer.close();
    await this.sweeping;
    const outcome = await pipeline.stop(this.config.pipeline.shutdownTimeoutMs);
    await this.parts.textfile?.stop();
    await statusServer.close();
    await journal.close();
    await audit.close();
    hazardDirectory.close();
    quarantine.close();
    await lock.close();
    notifier.close();
    this.logger.info(outcome === 'drained' ? 'stopped' : 'stopped at the deadline; unfinished items stay in quarantine', {
      ...pipeline.counts,
    });
    return 0;
  }

  /** One sweep at a time; a stop waits for the one under way. */
  private sweepPermissions(): void {
    this.sweeping ??= (async () => {
      try {
        const corrected = await this.parts.enforcer.enforceAll();
        if (corrected.length > 0) this.logger.info('permission sweep corrected drift', { corrected: corrected.length });
      } catch (error) {
        this.logger.error('permission sweep failed', { error: (error as Error).message, code: (error as NodeJS.ErrnoException).code });
      } finally {
        this.sweeping = null;
      }
    })();
  }

  private refreshStatus(): void {
    const { status, metrics, notifier } = this.parts;
    status.degraded('untested-scanner', this.ledgerBlocked());
    // Asking also ends pauses that have run out (the daily quota at midnight).
    status.degraded('intake-paused', describeHolds(this.parts.limits.holds()));
    metrics.setQueueDepth(status.queue());
    notifier.status(systemdStatusLine(status.snapshot()));
  }

  /** Why releases are paused by the ledger gate, or null. */
  private ledgerBlocked(): string | null {
    const gate = this.parts.pipeline.ledgerGate;
    if (gate === null || gate.blocked.length === 0) return null;
    return `releases paused until scanner-test passes for ${describeUntested(gate.blocked)}`;
  }

  private startTextfile(): void {
    const { textfilePath, textfileIntervalMs } = this.config.metrics;
    if (textfilePath === null) return;
    const { metrics, status } = this.parts;
    this.parts.textfile = new MetricsTextfile({
      file: textfilePath,
      intervalMs: textfileIntervalMs,
      render: () => {
        metrics.setQueueDepth(status.queue());
        return metrics.render();
      },
      onError: (error) => this.logger.warn('cannot write the metrics textfile', { path: textfilePath, code: error.code, error: error.message }),
    });
    this.parts.textfile.start();
  }

  /** SIGHUP: load the config again and apply what may change while running; a bad config changes nothing. */
  private async reload(): Promise<void> {
    const { status, notifier, pipeline, writerChecker } = this.parts;
    status.state = 'reloading';
    notifier.reloading('reloading the configuration');
    try {
      const outcome = await reloadConfig(this.config);
      if (outcome.kind === 'refused') {
        this.logger.error('new configuration refused; the running one stays in force', { error: outcome.error.message });
        status.error(`reload refused: ${outcome.error.message}`);
        return;
      }
      if (outcome.kind === 'unchanged') {
        this.logger.info('configuration reloaded: nothing changed');
        return;
      }
      const { plan } = outcome;
      const next = plan.effective;
      for (const change of plan.restartRequired) this.logger.warn('configuration change needs a restart to take effect', { change: describeChange(change) });
      const sections = new Set(plan.sectionsToApply);
      if (sections.has('logging')) this.logger.level = next.logging.level;
      let scanners: readonly Scanner[] | null = null;
      if (sections.has('scanners')) {
        scanners = createScanners(next, this.addon);
        status.setScanners(scanners.map((scanner) => scanner.name));
      }
      if (sections.has('limits')) this.parts.limits.setOptions(next.limits);
      if (sections.has('pipeline') || sections.has('scanners') || sections.has('ledger') || sections.has('filenames')) {
        pipeline.reconfigure({
          options: next.pipeline,
          scanners: scanners ?? pipeline.currentScanners,
          ledger: next.ledger.requireTestedVersions ? (pipeline.ledgerGate ?? new LedgerGate(next.paths.ledgerFilePath, this.logger)) : null,
          filenames: compileFilenamePolicy(next.filenames),
        });
        writerChecker.setStabilityWindow(next.pipeline.stabilityWindowMs);
        this.parts.watcher.setRescanInterval(next.pipeline.rescanIntervalMs);
      }
      this.config = next;
      if (sections.has('metrics')) {
        await this.parts.textfile?.stop();
        this.parts.textfile = null;
        this.startTextfile();
      }
      this.logger.info('configuration reloaded', { applied: plan.live.map(describeChange) });
    } catch (error) {
      this.logger.error('reload failed; the running configuration stays in force', { error: (error as Error).message });
    } finally {
      status.state = 'running';
      notifier.ready(systemdStatusLine(status.snapshot()));
    }
  }
}

async function resolveDirectories(config: ShuttleConfig): Promise<RealDirectories> {
  const { paths, file } = config;
  const resolve = async (key: string, directory: string): Promise<string> => {
    try {
      const real = await fsp.realpath(directory);
      if (!(await fsp.stat(real)).isDirectory()) throw new StartupError(`${file}: paths.${key}: '${directory}' is not a directory`);
      return real;
    } catch (error) {
      if (error instanceof StartupError) throw error;
      throw new StartupError(`${file}: paths.${key}: '${directory}' cannot be used (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
    }
  };
  return {
    source: await resolve('source_path', paths.sourcePath),
    destination: await resolve('destination_path', paths.destinationPath),
    quarantine: await resolve('quarantine_path', paths.quarantinePath),
    hazard: await resolve('hazard_archive_path', paths.hazardArchivePath),
    log: await resolve('log_path', paths.logPath),
  };
}

/** The permission model's accounts must exist and the managed paths must conform (fixed where they do not). */
async function createEnforcer(config: ShuttleConfig, logger: Logger, zone: Zone): Promise<PermissionEnforcer> {
  try {
    const enforcer = await PermissionEnforcer.create(config, { logger, guard: zone });
    const corrected = await enforcer.verifyAndFixManagedPaths();
    if (corrected.length > 0) logger.warn('managed paths brought back to the permission model', { corrected: corrected.length });
    return enforcer;
  } catch (error) {
    if (error instanceof PermissionEnforcementError) {
      const problems = error.findings.map((finding) => `${finding.path}: ${finding.check}: expected ${finding.expected}, found ${finding.found}`);
      throw new StartupError(`${config.file}: permissions: cannot bring the managed paths to the model: ${problems.join('; ')}`);
    }
    throw error;
  }
}

async function checkHazardKey(config: ShuttleConfig, scratchDirectory: string): Promise<void> {
  try {
    await validateHazardKey(config.paths.hazardEncryptionKeyPath, { scratchDirectory });
  } catch (error) {
    if (error instanceof HazardKeyError) throw new StartupError(`${config.file}: paths.hazard_encryption_key_path: ${error.message}`);
    throw error;
  }
}

/** Each scanner's version, or why it could not be asked (a scanner that is down does not stop the start). */
async function probeScannerVersions(scanners: readonly Scanner[], logger: Logger): Promise<Map<string, { version: string } | { error: string }>> {
  const results = new Map<string, { version: string } | { error: string }>();
  await Promise.all(
    scanners.map(async (scanner) => {
      try {
        results.set(scanner.name, { version: await scanner.version(AbortSignal.timeout(VERSION_PROBE_TIMEOUT_MS)) });
      } catch (error) {
        logger.warn('scanner did not tell its version at start; files wait in quarantine until it answers', { scanner: scanner.name, error: (error as Error).message });
        results.set(scanner.name, { error: (error as Error).message });
      }
    }),
  );
  return results;
}

/**
 * Refuse to start with a scanner version that never passed `shuttle scanner-test`. A scanner that could not
 * be asked is left to the ledger gate, which holds every release it scans until its version is tested.
 */
async function requireTestedVersions(config: ShuttleConfig, versions: ReadonlyMap<string, { version: string } | { error: string }>): Promise<void> {
  const known = [...versions].flatMap(([name, outcome]) => ('version' in outcome ? [{ name, version: outcome.version }] : []));
  let check;
  try {
    check = await checkLedger(config.paths.ledgerFilePath, known);
  } catch (error) {
    if (error instanceof LedgerError) throw new StartupError(`${config.file}: paths.ledger_file_path: ${error.message}`);
    throw error;
  }
  if (!check.ok) {
    throw new StartupError(
      `${config.file}: scanners: ${describeUntested(check.untested)} not recorded as tested in ${config.paths.ledgerFilePath}; ` +
        'run `shuttle scanner-test --config ' +
        config.file +
        '` (or set scanners.require_tested_versions: false to opt out)',
    );
  }
}

/**
 * Size, free space, daily quota and per-uploader rate, asked before each file is copied. Today's quota
 * starts from what the audit log says was taken today, so a restart does not reset it.
 */
async function createIntakeLimits(
  config: ShuttleConfig,
  directories: RealDirectories,
  logger: Logger,
  now: () => Date,
  onPause: (reason: string | null) => void,
): Promise<IntakeLimits> {
  const { limits } = config;
  const { quota, restored } = await DailyQuota.restore(directories.log, { maxFiles: limits.dailyMaxFiles, maxBytes: limits.dailyMaxBytes }, now());
  if (restored.files > 0) logger.info('daily quota: files already taken today', { files: restored.files, bytes: restored.bytes });
  return new IntakeLimits({
    options: limits,
    freeSpace: new FreeSpaceGuard({
      targets: pipelineTargets({ quarantine: directories.quarantine, destination: directories.destination, hazardArchive: directories.hazard }),
      reserveBytes: limits.freeSpaceReserve,
    }),
    quota,
    uploaders: new UploaderRateLimit({ maxFilesPerMinute: limits.uploaderMaxFilesPerMinute, maxBytesPerMinute: limits.uploaderMaxBytesPerMinute }),
    now,
    monotonicMs: () => performance.now(),
    onHoldsChange: (holds) => {
      const reason = describeHolds(holds);
      if (reason === null) logger.info('intake resumed');
      else logger.warn(reason);
      onPause(reason);
    },
  });
}

function createScanners(config: ShuttleConfig, addon: NativeAddon): Scanner[] {
  const scanners: Scanner[] = [];
  if (config.scanners.clamd !== null) scanners.push(new ClamdScanner(config.scanners.clamd, sessionDescriptorPasser(addon)));
  if (config.scanners.mdatp !== null) scanners.push(new MdatpScanner(config.scanners.mdatp));
  return scanners;
}
