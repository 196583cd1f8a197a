import { promises as fsp } from 'node:fs';
import path from 'node:path';
import chokidar, { type FSWatcher } from 'chokidar';
import type { Logger } from 'winston';

/** Watch errors that mean "the kernel will not give us more watches", not "something is broken". */
const WATCH_LIMIT_CODES = new Set(['ENOSPC', 'EMFILE', 'ENFILE']);

/** The part of chokidar's FSWatcher the source watcher uses. */
export type TreeWatcher = Pick<FSWatcher, 'on' | 'once' | 'close'>;

export interface SourceWatcherOptions {
  /** Real path of source_path. */
  readonly root: string;
  /** Starts watching a tree; chokidar in production. */
  readonly watch?: (root: string) => TreeWatcher;
  readonly rescanIntervalMs: number;
  readonly logger: Logger;
  /** Called with a path relative to root, for anything that is not a directory. A hint, not a verdict. */
  readonly onEntry: (relativePath: string) => void;
}

/**
 * Turns changes under source_path into hints. chokidar gives prompt events; a periodic walk catches what
 * it misses (events lost to watch exhaustion, files present before the watcher was ready). Symlinks are
 * reported, never followed, so that intake can refuse them.
 */
export class SourceWatcher {
  private watcher: TreeWatcher | null = null;
  private rescanTimer: NodeJS.Timeout | null = null;
  private rescanning: Promise<void> | null = null;
  private watchLimitLogged = false;

  constructor(private readonly options: SourceWatcherOptions) {}

  async start(): Promise<void> {
    const { root, logger } = this.options;
    const watcher = (this.options.watch ?? watchWithChokidar)(root);
    this.watcher = watcher;
    const hint = (changed: string): void => this.options.onEntry(path.relative(root, changed));
    watcher.on('add', hint).on('change', hint).on('error', (error: unknown) => this.onWatchError(error));
    await new Promise<void>((resolve) => watcher.once('ready', resolve));
    logger.debug('watching source', { path: root });
    // The first walk runs after the watcher is ready, so nothing created in between is missed.
    await this.rescan();
    this.rescanTimer = setInterval(() => void this.rescan(), this.options.rescanIntervalMs);
    this.rescanTimer.unref();
  }

  async close(): Promise<void> {
    if (this.rescanTimer !== null) clearInterval(this.rescanTimer);
    this.rescanTimer = null;
    await this.watcher?.close();
    this.watcher = null;
    await this.rescanning;
  }

  /** Walk source_path and hint every non-directory entry. One walk at a time. */
  rescan(): Promise<void> {
    this.rescanning ??= this.walk(this.options.root).finally(() => {
      this.rescanning = null;
    });
    return this.rescanning;
  }

  private async walk(directory: string): Promise<void> {
    let entries;
    try {
      entries = await fsp.readdir(directory, { withFileTypes: true });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') {
        this.options.logger.warn('cannot list a source directory', { path: directory, code });
      }
      return;
    }
    for (const entry of entries) {
      const full = path.join(directory, entry.name);
      // Dirent types come from getdents: a symlink to a directory is a symlink, not a directory.
      if (entry.isDirectory()) await this.walk(full);
      else this.options.onEntry(path.relative(this.options.root, full));
    }
  }

  private onWatchError(error: unknown): void {
    const code = (error as NodeJS.ErrnoException).code ?? '';
    if (WATCH_LIMIT_CODES.has(code)) {
      if (!this.watchLimitLogged) {
        this.watchLimitLogged = true;
        this.options.logger.warn('file watch limit reached; new files are found by the periodic rescan instead', {
          code,
          rescanIntervalSeconds: this.options.rescanIntervalMs / 1000,
          hint: 'raise fs.inotify.max_user_watches',
        });
      }
      return;
    }
    this.options.logger.warn('watcher error', { code, error: (error as Error).message });
  }
}

function watchWithChokidar(root: string): TreeWatcher {
  return chokidar.watch(root, {
    ignoreInitial: true,
    followSymlinks: false,
    ignorePermissionErrors: true,
    persistent: true,
    atomic: false,
  });
}
