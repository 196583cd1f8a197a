import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import type { Logger } from 'winston';
import type { ShuttleConfig } from './config.js';
import { AlreadyRunningError, acquireInstanceLock } from './instance-lock.js';
import { Intake } from './intake.js';
import { Journal } from './journal.js';
import { createLogger, flushLogger } from './logger.js';
import { loadNative, type NativeAddon } from './native.js';
import { Pipeline } from './pipeline.js';
import { Releaser } from './release.js';
import { ClamdScanner } from './scanners/clamd.js';
import { MdatpScanner } from './scanners/mdatp.js';
import type { Scanner } from './scanners/scanner.js';
import { SourceWatcher } from './watcher.js';
import { detectWriterCheckMode, WriterChecker } from './writer-check.js';
import { Zone, type VerifiedDirectory } from './zone.js';

/** Group members read and write, others nothing: files and directories the daemon creates stay private. */
const DAEMON_UMASK = 0o007;

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
 * SIGINT stop it cleanly, a second signal exits at once.
 */
export async function runDaemon(config: ShuttleConfig, hooks: DaemonHooks = { exitNow: (status) => process.exit(status) }): Promise<number> {
  process.umask(DAEMON_UMASK);
  const logger = hooks.logger ?? createLogger({ level: config.logging.level, logDir: config.paths.logPath });
  let daemon: Daemon;
  try {
    daemon = await Daemon.start(config, logger, hooks.addon ?? loadNative());
  } catch (error) {
    const known = error instanceof StartupError || error instanceof AlreadyRunningError;
    logger.error(known ? (error as Error).message : `cannot start: ${(error as Error).message}`, {
      code: (error as NodeJS.ErrnoException).code,
    });
    await flushLogger(logger);
    return 2;
  }
  const status = await daemon.runUntilStopped(hooks.exitNow);
  await flushLogger(logger);
  return status;
}

class Daemon {
  private stopRequested: (() => void) | null = null;

  private constructor(
    private readonly config: ShuttleConfig,
    private readonly logger: Logger,
    private readonly addon: NativeAddon,
    private readonly lock: FileHandle,
    private readonly quarantine: VerifiedDirectory,
    private readonly journal: Journal,
    private readonly pipeline: Pipeline,
    private readonly watcher: SourceWatcher,
  ) {}

  static async start(config: ShuttleConfig, logger: Logger, addon: NativeAddon): Promise<Daemon> {
    const directories = await resolveDirectories(config);
    const zone = new Zone([directories.source, directories.destination, directories.quarantine, directories.hazard, directories.log]);
    const quarantine = await zone.openDirectory(directories.quarantine);
    const lock = await acquireInstanceLock(addon, zone, quarantine);

    const writerCheckMode = detectWriterCheckMode(addon);
    if (writerCheckMode !== 'lease') {
      logger.warn('degraded: cannot take file leases on files owned by others (no CAP_LEASE); those wait for a quiet period instead', {
        mode: writerCheckMode,
        stabilityWindowSeconds: config.pipeline.stabilityWindowMs / 1000,
      });
    }
    const journal = await Journal.open(zone, quarantine, logger);
    const now = (): Date => new Date();
    const intake = new Intake({
      zone,
      sourceRoot: directories.source,
      quarantine,
      journal,
      writerChecker: new WriterChecker(addon, writerCheckMode, config.pipeline.stabilityWindowMs, () => Date.now()),
      logger,
      now,
    });
    const sameFilesystem = (await fsp.stat(directories.quarantine)).dev === (await fsp.stat(directories.destination)).dev;
    const releaser = new Releaser({ zone, destinationRoot: directories.destination, quarantine, journal, logger, sameFilesystem });
    const pipeline = new Pipeline({
      options: config.pipeline,
      zone,
      sourceRoot: directories.source,
      quarantine,
      journal,
      intake,
      releaser,
      scanners: createScanners(config, addon),
      logger,
    });
    await pipeline.recover();
    const watcher = new SourceWatcher({
      root: directories.source,
      rescanIntervalMs: config.pipeline.rescanIntervalMs,
      logger,
      onEntry: (relativePath) => pipeline.noticeSourcePath(relativePath),
    });
    await watcher.start();
    logger.info('shuttle started', {
      source: directories.source,
      destination: directories.destination,
      quarantine: directories.quarantine,
      writerCheck: writerCheckMode,
      releaseBy: sameFilesystem ? 'rename' : 'copy',
      scanners: Object.entries(config.scanners)
        .filter(([, options]) => options !== null)
        .map(([name]) => name)
        .join(','),
    });
    return new Daemon(config, logger, addon, lock, quarantine, journal, pipeline, watcher);
  }

  async runUntilStopped(exitNow: (status: number) => void): Promise<number> {
    const stopped = new Promise<void>((resolve) => {
      this.stopRequested = resolve;
    });
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals): void => {
      signals++;
      if (signals > 1) {
        this.logger.warn('second stop signal: exiting now', { signal });
        exitNow(1);
        return;
      }
      this.logger.info('stopping', { signal });
      this.stopRequested?.();
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    this.notify('READY=1');
    try {
      await stopped;
      this.notify('STOPPING=1');
      await this.watcher.close();
      const outcome = await this.pipeline.stop(this.config.pipeline.shutdownTimeoutMs);
      await this.journal.close();
      await this.quarantine.close();
      await this.lock.close();
      this.logger.info(outcome === 'drained' ? 'stopped' : 'stopped at the deadline; unfinished items stay in quarantine', {
        ...this.pipeline.counts,
      });
      return 0;
    } finally {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
    }
  }

  private notify(state: string): void {
    try {
      this.addon.sdNotify(state);
    } catch (error) {
      this.logger.warn('sd_notify failed', { state, code: (error as NodeJS.ErrnoException).code });
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

function createScanners(config: ShuttleConfig, addon: NativeAddon): Scanner[] {
  const scanners: Scanner[] = [];
  if (config.scanners.clamd !== null) scanners.push(new ClamdScanner(config.scanners.clamd, addon));
  if (config.scanners.mdatp !== null) scanners.push(new MdatpScanner(config.scanners.mdatp));
  return scanners;
}
