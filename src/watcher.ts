import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'winston';
import { watchTree, type TreeWatcher } from './tree-watch.js';

export type { TreeWatcher } from './tree-watch.js';

/** Watch errors that mean "the kernel will not give us more watches", not "something is broken". */
const WATCH_LIMIT_CODES = new Set(['ENOSPC', 'EMFILE', 'ENFILE']);

export interface SourceWatcherOptions {
  /** Real path of source_path. */
  readonly root: string;
  /** Starts watching a tree; watchTree (chokidar for the directories, fs.watch for names) in production. */
  readonly watch?: (root: string) => TreeWatcher;
  readonly rescanIntervalMs: number;
  readonly logger: Logger;
  /** Called with a path relative to root, for anything that is not a directory. A hint, not a verdict. */
  readonly onEntry: (relativePath: string) => void;
  /**
   * Called with a path relative to root when a directory appears under it: from the watcher, or from a
   * rescan that finds one the watcher missed. Directories present at start are not reported.
   */
  readonly onDirectory?: (relativePath: string) => void;
}

/**
 * Turns changes under source_path into hints. The tree watcher gives prompt events (chokidar keeps the
 * directory tree, fs.watch names the files: see tree-watch.ts for why both); a periodic walk catches what
 * they miss (events lost to watch exhaustion, files present before the watcher was ready). Symlinks are
 * reported, never followed, so that intake can refuse them.
 */
export class SourceWatcher {
  private watcher: TreeWatcher | null = null;
  private rescanTimer: NodeJS.Timeout | null = null;
  private rescanning: Promise<void> | null = null;
  private watchLimitLogged = false;
  /** Directories (relative paths) present at start or reported since. */
  private readonly knownDirectories = new Set<string>();

  constructor(private readonly options: SourceWatcherOptions) {}

  async start(): Promise<void> {
    const { root, logger } = this.options;
    const watcher = (this.options.watch ?? ((watched: string) => watchTree([watched])))(root);
    this.watcher = watcher;
    const hint = (changed: string): void => this.options.onEntry(path.relative(root, changed));
    watcher
      .on('add', hint)
      .on('change', hint)
      .on('addDir', (directory: string) => this.directoryAppeared(path.relative(root, directory)))
      .on('error', (error: unknown) => this.onWatchError(error));
    await new Promise<void>((resolve) => watcher.once('ready', resolve));
    logger.debug('watching source', { path: root });
    // The first walk runs after the watcher is ready, so nothing created in between is missed.
    await this.rescan();
    this.rescanTimer = setInterval(() => void this.rescan(), this.options.rescanIntervalMs);
    this.rescanTimer.unref();
  }

  /** A reloaded config's rescan interval; the next walk follows it. */
  setRescanInterval(ms: number): void {
    if (this.rescanTimer === null) return;
    clearInterval(this.rescanTimer);
    this.rescanTimer = setInterval(() => void this.rescan(), ms);
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
    this.rescanning ??= this.walkAll().finally(() => {
      this.rescanning = null;
    });
    return this.rescanning;
  }

  private async walkAll(): Promise<void> {
    const seen = new Set<string>();
    await this.walk(this.options.root, seen);
    // Forget directories that are gone, so that one coming back under the same name is reported again.
    for (const known of this.knownDirectories) if (!seen.has(known)) this.knownDirectories.delete(known);
  }

  private directoryAppeared(relativePath: string): void {
    if (this.knownDirectories.has(relativePath)) return;
    this.knownDirectories.add(relativePath);
    this.options.onDirectory?.(relativePath);
  }

  private async walk(directory: string, seen: Set<string>): Promise<void> {
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
      const relative = path.relative(this.options.root, full);
      // Dirent types come from getdents: a symlink to a directory is a symlink, not a directory.
      if (entry.isDirectory()) {
        seen.add(relative);
        // Those already there at start are reported too: made while the daemon was down, they need the
        // permission model as much as new ones.
        this.directoryAppeared(relative);
        await this.walk(full, seen);
      } else {
        this.options.onEntry(relative);
      }
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
