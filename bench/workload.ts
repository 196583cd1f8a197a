// The files a benchmark run pushes through: generated into a staging directory on the same filesystem,
// flushed to disk, then dropped into the source directory by rename(2), so a reader never sees a partial
// file and the drop instant is exact.

import { execFileSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { closeSync, openSync, readdirSync, renameSync, watch, writeSync, type FSWatcher } from 'node:fs';
import path from 'node:path';

export interface Workload {
  readonly name: string;
  readonly count: number;
  readonly size: number;
}

/** Bytes that differ from file to file and from run to run, so clamd's result cache never answers for us. */
const UNIQUE_PREFIX_BYTES = 64;

const baseContent = new Map<number, Buffer>();

function contentOfSize(size: number): Buffer {
  let buffer = baseContent.get(size);
  if (buffer === undefined) {
    buffer = randomFillSync(Buffer.allocUnsafe(size));
    baseContent.set(size, buffer);
  }
  return buffer;
}

export function fileNames(workload: Workload): string[] {
  const width = String(workload.count).length;
  return Array.from({ length: workload.count }, (_, index) => `${workload.name}-${String(index).padStart(width, '0')}.bin`);
}

/** Write every file of `workload` into `directory` and make them durable, so the run starts from a quiet disk. */
export function stageFiles(workload: Workload, directory: string, runTag: string): string[] {
  const names = fileNames(workload);
  const content = contentOfSize(workload.size);
  names.forEach((name, index) => {
    const prefix = Buffer.alloc(Math.min(UNIQUE_PREFIX_BYTES, workload.size), `${runTag}:${index}:`);
    const fd = openSync(path.join(directory, name), 'wx', 0o660);
    try {
      writeSync(fd, prefix, 0, prefix.length, 0);
      writeSync(fd, content, prefix.length, content.length - prefix.length, prefix.length);
    } finally {
      closeSync(fd);
    }
  });
  execFileSync('sync', ['-f', directory]);
  return names;
}

/** Rename each staged file into `source`; returns the performance.now() instant each one appeared there. */
export function dropFiles(names: readonly string[], staging: string, source: string): Map<string, number> {
  const dropped = new Map<string, number>();
  for (const name of names) {
    renameSync(path.join(staging, name), path.join(source, name));
    dropped.set(name, performance.now());
  }
  return dropped;
}

/** How often the destination is listed, to catch any release whose inotify event was lost. */
const FALLBACK_POLL_MS = 250;

/**
 * Notes when each expected name appears in a flat destination directory. inotify (fs.watch) gives the
 * instant of the link(2) that publishes a release; a slow readdir poll backs it up, at a cost of at most
 * FALLBACK_POLL_MS of precision for an event the kernel dropped.
 */
export class ReleaseWatcher {
  readonly released = new Map<string, number>();
  /** Releases found by the poll rather than by an event. */
  polledOnly = 0;
  private readonly expected: Set<string>;
  private readonly watcher: FSWatcher;
  private readonly poller: NodeJS.Timeout;
  private onComplete: (() => void) | null = null;

  constructor(
    private readonly destination: string,
    names: readonly string[],
  ) {
    this.expected = new Set(names);
    this.watcher = watch(destination, { persistent: false }, (_event, name) => {
      if (name !== null) this.seen(name.toString(), false);
    });
    this.poller = setInterval(() => this.poll(), FALLBACK_POLL_MS);
  }

  /** Resolves once every expected name is present; rejects after `timeoutMs` with what is missing. */
  complete(timeoutMs: number): Promise<void> {
    this.poll();
    if (this.released.size === this.expected.size) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.onComplete = null;
        reject(new Error(`${this.expected.size - this.released.size} of ${this.expected.size} files not released within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      this.onComplete = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  close(): void {
    this.watcher.close();
    clearInterval(this.poller);
  }

  private poll(): void {
    for (const name of readdirSync(this.destination)) this.seen(name, true);
  }

  private seen(name: string, byPoll: boolean): void {
    if (!this.expected.has(name) || this.released.has(name)) return;
    this.released.set(name, performance.now());
    if (byPoll) this.polledOnly++;
    if (this.released.size === this.expected.size) this.onComplete?.();
  }
}
