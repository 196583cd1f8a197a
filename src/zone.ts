import fs, { constants as fsc, promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { changeName, createExclusiveIn, fileJobsAreBatched, fsyncDescriptor } from './file-jobs.js';

// Directory opens and /proc readlinks here are synchronous on purpose: on a local filesystem each is a few
// microseconds of kernel work, while a trip through the thread pool costs two thread wake-ups and a promise,
// which for many small files was most of the main thread's time. Renames, links, unlinks, creates and fsyncs
// go to the thread pool in batches (file-jobs.ts): each can wait for the filesystem's journal or for a
// directory's lock, and in a batch that wait costs the main thread nothing.


/** A write the daemon was about to make outside its configured directories. Never caught silently. */
export class ZoneError extends Error {
  readonly code = 'EZONE';
  constructor(
    readonly operation: string,
    readonly target: string,
  ) {
    super(`refusing to ${operation} '${target}': outside the directories shuttle manages`);
    this.name = 'ZoneError';
  }
}

/** A path whose directory chain is not what it claims to be (a symlink somewhere, or a swapped directory). */
export class PathEscapeError extends Error {
  readonly code = 'ESYMLINK';
  constructor(
    readonly expected: string,
    readonly actual: string,
  ) {
    super(`'${expected}' resolves to '${actual}': a symbolic link or a replaced directory is in the way`);
    this.name = 'PathEscapeError';
  }
}

const DIRECTORY_FLAGS = fsc.O_RDONLY | fsc.O_DIRECTORY | fsc.O_NOFOLLOW;

/**
 * An open directory whose real location was checked after opening. Names inside it are reached through
 * /proc/self/fd/N, which the kernel resolves to this very directory: a component swapped for a symlink
 * after the check cannot redirect a later open, link, rename or unlink.
 */
export class VerifiedDirectory {
  private closed = false;
  private inode: string | null = null;

  constructor(
    /** The open directory descriptor; this object closes it. */
    readonly fd: number,
    /** The real path, as the kernel reports it for the open descriptor. */
    readonly realPath: string,
    private readonly syncs: DirectorySyncs = new DirectorySyncs(),
  ) {}

  /** A path for `name` inside this directory that cannot be redirected. */
  entry(name: string): string {
    if (name === '' || name === '.' || name === '..' || name.includes('/')) {
      throw new Error(`not a plain file name: '${name}'`);
    }
    return `/proc/self/fd/${this.fd}/${name}`;
  }

  /** The real path of `name`, for zone checks and messages. */
  realEntry(name: string): string {
    return path.join(this.realPath, name);
  }

  list(): Promise<string[]> {
    return fsp.readdir(`/proc/self/fd/${this.fd}`);
  }

  /**
   * fsync(2) of the directory: resolves once names created, renamed or removed in it before the call are
   * durable. Shared with other callers syncing the same directory through the same DirectorySyncs.
   */
  sync(): Promise<void> {
    if (this.inode === null) {
      const stats = fs.fstatSync(this.fd);
      this.inode = `${stats.dev}:${stats.ino}`;
    }
    return this.syncs.sync(this.inode, this.fd);
  }

  stat(): fs.Stats {
    return fs.fstatSync(this.fd);
  }

  /** Safe to call more than once. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    fs.closeSync(this.fd);
  }
}

interface DirectorySyncState {
  running: Promise<void>;
  /** The fsync that starts when `running` ends, shared by everyone who asked meanwhile. */
  next: Promise<void> | null;
}

/**
 * One fsync of a directory covers every change made in it before the fsync started. So a caller who asks
 * while one is running waits for the next one, which starts when the running one ends and is shared by all
 * who asked meanwhile: with many files in flight in one directory, that is one fsync per round instead of
 * one per file. Directories are told apart by inode, whatever descriptor or path reached them.
 */
export class DirectorySyncs {
  private readonly byInode = new Map<string, DirectorySyncState>();

  constructor(private readonly fsync: (fd: number) => Promise<void> = fsyncDescriptor) {}

  /** `fd` is the asking caller's descriptor of the directory; it stays open while the caller waits. */
  sync(inode: string, fd: number): Promise<void> {
    const state = this.byInode.get(inode);
    if (state === undefined) {
      const running = this.fsync(fd);
      this.track(inode, { running, next: null });
      return running;
    }
    state.next ??= state.running.catch(() => undefined).then(() => this.fsync(fd));
    return state.next;
  }

  private track(inode: string, state: DirectorySyncState): void {
    this.byInode.set(inode, state);
    const settled = (): void => {
      if (state.next === null) {
        this.byInode.delete(inode);
        return;
      }
      state.running = state.next;
      state.next = null;
      void state.running.then(settled, settled);
    };
    void state.running.then(settled, settled);
  }
}

/**
 * Open `directory` (O_NOFOLLOW on the last component) and return it with the real path the kernel reports
 * for the descriptor, which must equal the path asked for: a symlinked component anywhere is refused.
 */
export function openExactDirectory(directory: string, syncs?: DirectorySyncs): VerifiedDirectory {
  const expected = path.resolve(directory);
  const fd = fs.openSync(expected, DIRECTORY_FLAGS);
  try {
    const realPath = fs.readlinkSync(`/proc/self/fd/${fd}`);
    if (realPath !== expected) throw new PathEscapeError(expected, realPath);
    return new VerifiedDirectory(fd, realPath, syncs);
  } catch (error) {
    fs.closeSync(fd);
    throw error;
  }
}

/** lstat that answers null for a name that is not there (no exception built for the common case). */
export function lstatOrNull(target: string): fs.Stats | null {
  return fs.lstatSync(target, { throwIfNoEntry: false }) ?? null;
}

/**
 * The set of directories the daemon may write in (invariant 4). Every write goes through a method here,
 * which checks the real target against the roots before touching it.
 */
export class Zone {
  private readonly roots: readonly string[];
  /** The last create queued per directory, without the addon (see createExclusiveDescriptor). */
  private readonly creates = new Map<string, Promise<number>>();
  /** Directory fsyncs, shared among every directory this zone opens. */
  private readonly directorySyncs = new DirectorySyncs();

  /** `roots` must already be real paths (fs.realpath), so that a symlinked mount point still matches. */
  constructor(roots: readonly string[]) {
    this.roots = roots.map((root) => path.resolve(root));
  }

  contains(target: string): boolean {
    const resolved = path.resolve(target);
    return this.roots.some((root) => resolved === root || resolved.startsWith(root + path.sep));
  }

  assertWritable(operation: string, target: string): void {
    if (!this.contains(target)) throw new ZoneError(operation, target);
  }

  /**
   * Open `directory` without following a symlink at any level: after opening, the kernel's idea of where the
   * descriptor points must equal the path we asked for, so a symlinked component anywhere is refused.
   */
  async openDirectory(directory: string): Promise<VerifiedDirectory> {
    const opened = openExactDirectory(directory, this.directorySyncs);
    if (!this.contains(opened.realPath)) {
      opened.close();
      throw new ZoneError('open', opened.realPath);
    }
    return opened;
  }

  async createExclusive(directory: VerifiedDirectory, name: string, mode: number): Promise<FileHandle> {
    this.assertWritable('create', directory.realEntry(name));
    return fsp.open(directory.entry(name), fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, mode);
  }

  /**
   * Like createExclusive, returning a plain descriptor. Asynchronous although creating a name is quick in
   * itself: on a filesystem busy with fsyncs it can wait for the journal, and that wait must not hold the
   * event loop. The caller keeps `directory` open until this settles.
   */
  createExclusiveDescriptor(directory: VerifiedDirectory, name: string, mode: number): Promise<number> {
    this.assertWritable('create', directory.realEntry(name));
    const creation = { directory: directory.fd, name, mode };
    // With the addon, creates go in batches, one after another on one thread (file-jobs.ts).
    if (fileJobsAreBatched()) return createExclusiveIn(creation, directory.entry(name));
    // Without it, one create per directory at a time. The kernel serialises them anyway (each holds the
    // directory's lock), but its waiters spin for the lock, and on ext4, when inode allocation has to step over
    // many recently deleted inodes, a create holds it long enough for that spinning to eat a whole core.
    const key = directory.realPath;
    const created = (this.creates.get(key) ?? Promise.resolve())
      .catch(() => undefined)
      .then(() => createExclusiveIn(creation, directory.entry(name)));
    this.creates.set(key, created);
    const forget = (): void => {
      if (this.creates.get(key) === created) this.creates.delete(key);
    };
    created.then(forget, forget);
    return created;
  }

  /** rename(2) between two checked directories; callers only ever move to names of their own making. */
  async move(from: VerifiedDirectory, fromName: string, to: VerifiedDirectory, toName: string): Promise<void> {
    this.assertWritable('move', from.realEntry(fromName));
    this.assertWritable('move', to.realEntry(toName));
    const change = { kind: 'rename', from: from.fd, fromName, to: to.fd, toName } as const;
    await changeName(change, () => fs.renameSync(from.entry(fromName), to.entry(toName)));
  }

  /** link(2): fails with EEXIST rather than replace, which is what makes release never overwrite. */
  async link(directory: VerifiedDirectory, existing: string, name: string): Promise<void> {
    this.assertWritable('link', directory.realEntry(name));
    const change = { kind: 'link', from: directory.fd, fromName: existing, to: directory.fd, toName: name } as const;
    await changeName(change, () => fs.linkSync(directory.entry(existing), directory.entry(name)));
  }

  /**
   * unlink(2) at once, on the main thread: for a source whose removal must follow the last check that no writer
   * holds it without the gap a trip through the thread pool would leave.
   */
  unlinkInNow(directory: VerifiedDirectory, name: string): void {
    this.assertWritable('unlink', directory.realEntry(name));
    fs.unlinkSync(directory.entry(name));
  }

  async unlinkIn(directory: VerifiedDirectory, name: string): Promise<void> {
    this.assertWritable('unlink', directory.realEntry(name));
    await changeName({ kind: 'unlink', from: directory.fd, fromName: name }, () => fs.unlinkSync(directory.entry(name)));
  }

  async unlink(target: string): Promise<void> {
    this.assertWritable('unlink', target);
    fs.unlinkSync(target);
  }

  async mkdirIn(directory: VerifiedDirectory, name: string, mode: number): Promise<void> {
    this.assertWritable('mkdir', directory.realEntry(name));
    fs.mkdirSync(directory.entry(name), { mode });
  }

  /** chmod(2) follows symlinks, so the entry is opened without following and changed through its descriptor. */
  async chmodIn(directory: VerifiedDirectory, name: string, mode: number): Promise<void> {
    this.assertWritable('chmod', directory.realEntry(name));
    const fd = fs.openSync(directory.entry(name), fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
    try {
      fs.fchmodSync(fd, mode);
    } finally {
      fs.closeSync(fd);
    }
  }

  async chownIn(directory: VerifiedDirectory, name: string, uid: number, gid: number): Promise<void> {
    this.assertWritable('chown', directory.realEntry(name));
    fs.lchownSync(directory.entry(name), uid, gid);
  }

  async writeFileAtomically(directory: VerifiedDirectory, name: string, data: string, mode: number): Promise<void> {
    const temporary = `.${name}.${process.pid}.tmp`;
    const handle = await this.createExclusive(directory, temporary, mode);
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    this.assertWritable('rename', directory.realEntry(name));
    fs.renameSync(directory.entry(temporary), directory.entry(name));
    await directory.sync();
  }
}
