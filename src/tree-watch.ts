// Watching directory trees (source_path, destination_path) for new entries, at a cost that grows with the
// number of events, not with events times directory size.
//
// Why not chokidar alone: on every inotify event in a directory chokidar re-lists that directory and lstats
// each entry in it (readdirp with alwaysStat, in _handleRead), and it starts the next listing as soon as the
// previous one ends while events keep coming. A directory that receives or loses N files therefore costs on
// the order of N² lstats; with 2000 files dropped at once that was most of the daemon's CPU. Ignoring files
// through `ignored` does not help, because readdirp stats every entry before the filter sees it.
//
// So the work is split:
// - chokidar owns the directory tree. It walks the roots recursively at start, sees only directories
//   (everything else is `ignored`, symlinks included, so nothing is followed), and polls each directory's
//   own stat instead of taking inotify events. It re-lists a directory at most once per poll interval, and
//   only when the directory changed, so a busy directory costs one listing per interval however many files
//   pass through it. It reports directories that appear (or that the watches below missed) and vanish.
// - A plain non-recursive fs.watch on every directory chokidar knows gives the names of entries as they
//   change, at one lstat per created, removed or renamed name. A name that turns out to be a new directory
//   is taken up at once (watched, then listed, so nothing created inside it before the watch is missed),
//   without waiting for chokidar's next poll.
//
// Events are hints, as chokidar's are: whatever acts on them looks again.

import { EventEmitter } from 'node:events';
import { lstatSync, promises as fsp, watch as watchDirectory, type FSWatcher as DirectoryWatch } from 'node:fs';
import path from 'node:path';
import chokidar, { type FSWatcher } from 'chokidar';

/** How often chokidar looks at each directory's own stat; a listing follows only when it changed. */
const DIRECTORY_POLL_MS = 5_000;

/**
 * What watchTree returns: the part of chokidar's FSWatcher interface its users rely on. Paths are absolute.
 * - 'add': a non-directory (file, symlink, FIFO, ...) appeared or was renamed into place.
 * - 'addDir': a directory appeared after 'ready' (directories present at start are not reported).
 * - 'change': the content or attributes of a non-directory changed.
 * - 'error': a watch could not be set up (ENOSPC, EMFILE: the kernel's limits) or failed later.
 * - 'ready': the initial walk is done and every directory found is watched.
 */
export interface TreeWatcher {
  on(event: 'add' | 'addDir' | 'change', listener: (changed: string) => void): this;
  on(event: 'error', listener: (error: unknown) => void): this;
  on(event: 'ready', listener: () => void): this;
  once(event: 'ready', listener: () => void): this;
  close(): Promise<void>;
}

export interface TreeWatchOptions {
  /** Milliseconds between chokidar's looks at each directory (default 5 s). */
  readonly directoryPollMs?: number;
  /**
   * Names whose events the caller has no use for: they are dropped before any look, which saves an lstat
   * per event. Only for names the caller would ignore anyway; a directory by such a name is not watched.
   */
  readonly ignoreName?: (name: string) => boolean;
}

/** Watch every directory under `roots` (real paths), never following symlinks. */
export function watchTree(roots: readonly string[], options: TreeWatchOptions = {}): TreeWatcher {
  return new TreeWatch(roots, options.directoryPollMs ?? DIRECTORY_POLL_MS, options.ignoreName ?? (() => false));
}

interface WatchedDirectory {
  /** null when the kernel refused a watch: the directory is still known, its files are found by rescans. */
  readonly watch: DirectoryWatch | null;
  /** Inode number, once looked at: a directory replaced under the same name needs a new watch. */
  ino: number | null;
}

class TreeWatch extends EventEmitter implements TreeWatcher {
  private readonly directories = new Map<string, WatchedDirectory>();
  private readonly tree: FSWatcher;
  private ready = false;
  private closed = false;

  constructor(
    roots: readonly string[],
    pollMs: number,
    private readonly ignoreName: (name: string) => boolean,
  ) {
    super();
    const rootSet = new Set(roots.map((root) => path.resolve(root)));
    this.tree = chokidar.watch([...roots], {
      usePolling: true,
      interval: pollMs,
      binaryInterval: pollMs,
      // Called once without stats (keep the path) and again with lstat's answer (keep only directories).
      ignored: (candidate: string, stats?: { isDirectory(): boolean }) =>
        (stats !== undefined && !stats.isDirectory()) || (!rootSet.has(path.resolve(candidate)) && ignoreName(path.basename(candidate))),
      followSymlinks: false,
      ignoreInitial: false,
      ignorePermissionErrors: true,
      persistent: true,
      atomic: false,
    });
    this.tree
      .on('addDir', (directory: string) => this.directoryFound(path.resolve(directory), this.ready))
      .on('unlinkDir', (directory: string) => this.forget(path.resolve(directory)))
      .on('error', (error: unknown) => this.fail(error))
      .on('ready', () => {
        if (this.closed) return;
        this.ready = true;
        this.emit('ready');
      });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const { watch } of this.directories.values()) watch?.close();
    this.directories.clear();
    await this.tree.close();
  }

  /** Watch a directory; after 'ready' also announce it and everything already inside it. */
  private directoryFound(directory: string, announce: boolean, ino: number | null = null): void {
    if (this.closed || this.directories.has(directory)) return;
    this.directories.set(directory, { watch: this.watchEntries(directory), ino });
    if (!announce) return;
    this.emit('addDir', directory);
    // Listed after the watch is in place: whatever was created before it is in the listing.
    void this.announceContents(directory);
  }

  private watchEntries(directory: string): DirectoryWatch | null {
    try {
      const watch = watchDirectory(directory, { persistent: false }, (eventType, name) => {
        if (this.closed || name === null) return;
        const entryName = name.toString();
        if (this.ignoreName(entryName)) return;
        const changed = path.join(directory, entryName);
        // 'change' is a write to or an attribute change of an entry that exists; 'rename' is a name
        // created, removed or moved in or out, which only a look can tell apart.
        if (eventType === 'change') {
          if (!this.directories.has(changed)) this.emit('change', changed);
        } else {
          this.look(changed);
        }
      });
      watch.on('error', (error: unknown) => this.fail(error));
      return watch;
    } catch (error) {
      this.fail(error);
      return null;
    }
  }

  private async announceContents(directory: string): Promise<void> {
    let entries;
    try {
      entries = await fsp.readdir(directory, { withFileTypes: true });
    } catch (error) {
      if (!isGone(error)) this.fail(error);
      return;
    }
    for (const entry of entries) {
      if (this.closed) return;
      if (this.ignoreName(entry.name)) continue;
      const child = path.join(directory, entry.name);
      // Dirent types come from getdents: a symlink to a directory is a symlink.
      if (entry.isDirectory()) this.directoryFound(child, true);
      else this.emit('add', child);
    }
  }

  private look(changed: string): void {
    let stats;
    try {
      // Synchronous on purpose: answered from the inode cache in microseconds, where the thread pool costs
      // two thread wake-ups per call, and this runs for every name that comes or goes.
      stats = lstatSync(changed, { throwIfNoEntry: false });
    } catch (error) {
      if (isGone(error)) this.forget(changed);
      else this.fail(error);
      return;
    }
    if (stats === undefined) {
      this.forget(changed);
      return;
    }
    const known = this.directories.get(changed);
    if (stats.isDirectory()) {
      if (known !== undefined) {
        known.ino ??= stats.ino;
        if (known.ino === stats.ino) return;
        // Another directory was moved onto this name: the old watch follows the old inode.
        this.forget(changed);
      }
      this.directoryFound(changed, true, stats.ino);
      return;
    }
    if (known !== undefined) this.forget(changed);
    this.emit('add', changed);
  }

  /** Stop watching `directory` and everything below it. */
  private forget(directory: string): void {
    // Directories become known through their parents: an unknown path has nothing known below it.
    if (!this.directories.has(directory)) return;
    const below = directory + path.sep;
    for (const [known, { watch }] of this.directories) {
      if (known === directory || known.startsWith(below)) {
        watch?.close();
        this.directories.delete(known);
      }
    }
  }

  /** An 'error' nobody listens to would throw from inside chokidar or fs.watch: drop it instead. */
  private fail(error: unknown): void {
    if (this.closed || this.listenerCount('error') === 0) return;
    this.emit('error', error);
  }
}

function isGone(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}
