import { EventEmitter } from 'node:events';
import { Writable } from 'node:stream';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import winston from 'winston';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SourceWatcher, type TreeWatcher } from '../../src/watcher.js';

/** A logger whose records the test can read back. */
function capturingLogger(): { logger: winston.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  return { logger: winston.createLogger({ format: winston.format.json(), transports: [new winston.transports.Stream({ stream })] }), lines };
}

/** Stands in for chokidar: ready at once, and lets the test raise errors. */
class FakeTreeWatcher extends EventEmitter {
  constructor() {
    super();
    setImmediate(() => this.emit('ready'));
  }
  async close(): Promise<void> {}
}

let root: string;
beforeEach(async () => {
  root = await fsp.mkdtemp(path.join(os.tmpdir(), 'shuttle-watch-'));
});
afterEach(async () => {
  await fsp.rm(root, { recursive: true, force: true });
});

describe('SourceWatcher', () => {
  it('walks what is already there, without descending into symlinked directories', async () => {
    await fsp.mkdir(path.join(root, 'a/b'), { recursive: true });
    await fsp.writeFile(path.join(root, 'a/b/x'), 'x');
    await fsp.writeFile(path.join(root, 'top'), 't');
    await fsp.symlink('/etc', path.join(root, 'etc-link'));
    const seen: string[] = [];
    const fake = new FakeTreeWatcher();
    const watcher = new SourceWatcher({ root, rescanIntervalMs: 60_000, logger: winston.createLogger({ silent: true }), onEntry: (entry) => seen.push(entry), watch: () => fake as unknown as TreeWatcher });
    await watcher.start();
    await watcher.close();
    expect(seen.sort()).toEqual(['a/b/x', 'etc-link', 'top']);
  });

  it('survives watch exhaustion: logs it once and keeps finding files by rescanning', async () => {
    const { logger, lines } = capturingLogger();
    const seen: string[] = [];
    const fake = new FakeTreeWatcher();
    const watcher = new SourceWatcher({ root, rescanIntervalMs: 100, logger, onEntry: (entry) => seen.push(entry), watch: () => fake as unknown as TreeWatcher });
    await watcher.start();
    fake.emit('error', Object.assign(new Error('ENOSPC: System limit for number of file watchers reached'), { code: 'ENOSPC' }));
    fake.emit('error', Object.assign(new Error('ENOSPC: System limit for number of file watchers reached'), { code: 'ENOSPC' }));
    await fsp.writeFile(path.join(root, 'late.txt'), 'found by the rescan');
    await new Promise((resolve) => setTimeout(resolve, 400));
    await watcher.close();
    expect(seen).toContain('late.txt');
    const warnings = lines.filter((line) => /watch limit reached/.test(String(line.message)));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ level: 'warn', code: 'ENOSPC' });
  });

  it('reports each directory once: those present at start, and those that appear, from events or from a rescan', async () => {
    await fsp.mkdir(path.join(root, 'at-start/inner'), { recursive: true });
    const directories: string[] = [];
    const fake = new FakeTreeWatcher();
    const watcher = new SourceWatcher({
      root,
      rescanIntervalMs: 60_000,
      logger: winston.createLogger({ silent: true }),
      onEntry: () => undefined,
      onDirectory: (directory) => directories.push(directory),
      watch: () => fake as unknown as TreeWatcher,
    });
    await watcher.start();
    expect(directories.sort()).toEqual(['at-start', 'at-start/inner']);
    await fsp.mkdir(path.join(root, 'by-event'));
    fake.emit('addDir', path.join(root, 'by-event'));
    // A directory the watcher never mentioned (its events were lost) is found by the next walk.
    await fsp.mkdir(path.join(root, 'at-start/missed'));
    await watcher.rescan();
    await watcher.rescan();
    fake.emit('addDir', path.join(root, 'by-event'));
    await watcher.close();
    expect(directories.sort()).toEqual(['at-start', 'at-start/inner', 'at-start/missed', 'by-event']);
  });

  it('on a real tree, hints new files and new directories at once, without waiting for a rescan', async () => {
    const seen: string[] = [];
    const directories: string[] = [];
    const watcher = new SourceWatcher({
      root,
      rescanIntervalMs: 60_000,
      logger: winston.createLogger({ silent: true }),
      onEntry: (entry) => seen.push(entry),
      onDirectory: (directory) => directories.push(directory),
    });
    await watcher.start();
    try {
      await fsp.mkdir(path.join(root, 'lab/run-1'), { recursive: true });
      await fsp.writeFile(path.join(root, 'lab/run-1/result.csv'), 'r');
      await fsp.writeFile(path.join(root, 'top.txt'), 't');
      const started = Date.now();
      while (!(seen.includes('lab/run-1/result.csv') && seen.includes('top.txt') && directories.includes('lab/run-1'))) {
        if (Date.now() - started > 3_000) throw new Error(`not hinted in time: ${JSON.stringify({ seen, directories })}`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      expect(directories).toEqual(['lab', 'lab/run-1']);
    } finally {
      await watcher.close();
    }
  });

  it('passes chokidar events on as relative paths', async () => {
    const seen: string[] = [];
    const fake = new FakeTreeWatcher();
    const watcher = new SourceWatcher({ root, rescanIntervalMs: 60_000, logger: winston.createLogger({ silent: true }), onEntry: (entry) => seen.push(entry), watch: () => fake as unknown as TreeWatcher });
    await watcher.start();
    fake.emit('add', path.join(root, 'd/new.csv'));
    fake.emit('change', path.join(root, 'other.csv'));
    await watcher.close();
    expect(seen).toEqual(['d/new.csv', 'other.csv']);
  });
});
