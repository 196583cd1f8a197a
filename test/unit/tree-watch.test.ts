import { promises as fsp, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { watchTree, type TreeWatcher, type TreeWatchOptions } from '../../src/tree-watch.js';

interface Recorded {
  readonly event: 'add' | 'addDir' | 'change';
  readonly path: string;
}

let root: string;
let watcher: TreeWatcher | null;
let events: Recorded[];
let errors: unknown[];

async function start(roots: readonly string[] = [root], options: TreeWatchOptions = {}): Promise<TreeWatcher> {
  const started = watchTree(roots, options);
  watcher = started;
  for (const event of ['add', 'addDir', 'change'] as const) started.on(event, (changed) => events.push({ event, path: changed }));
  started.on('error', (error) => errors.push(error));
  await new Promise<void>((resolve) => started.once('ready', resolve));
  return started;
}

async function until(condition: () => boolean, what: string, timeoutMs = 3_000): Promise<void> {
  const started = Date.now();
  while (!condition()) {
    if (Date.now() - started > timeoutMs) throw new Error(`not seen within ${timeoutMs} ms: ${what}; events: ${JSON.stringify(events)}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const seen = (event: Recorded['event'], target: string): boolean => events.some((e) => e.event === event && e.path === target);

beforeEach(async () => {
  root = await fsp.realpath(await fsp.mkdtemp(path.join(os.tmpdir(), 'shuttle-tree-')));
  watcher = null;
  events = [];
  errors = [];
});

afterEach(async () => {
  await watcher?.close();
  await fsp.rm(root, { recursive: true, force: true });
});

describe('watchTree', () => {
  it('reports files and directories that appear after ready, not those already there', async () => {
    mkdirSync(path.join(root, 'old'));
    writeFileSync(path.join(root, 'old/before.txt'), 'b');
    writeFileSync(path.join(root, 'top-before.txt'), 't');
    await start();
    writeFileSync(path.join(root, 'new.txt'), 'n');
    writeFileSync(path.join(root, 'old/later.txt'), 'l');
    await until(() => seen('add', path.join(root, 'new.txt')) && seen('add', path.join(root, 'old/later.txt')), 'both new files');
    expect(events.map((e) => e.path)).not.toContain(path.join(root, 'old/before.txt'));
    expect(events.map((e) => e.path)).not.toContain(path.join(root, 'top-before.txt'));
    expect(events.filter((e) => e.event === 'addDir')).toEqual([]);
    expect(errors).toEqual([]);
  });

  it('takes up a new directory at once, files written into it before it was watched included', async () => {
    await start();
    const started = Date.now();
    // All in one tick: the files exist before any watch on the new directories can have been set up.
    mkdirSync(path.join(root, 'a/b/c'), { recursive: true });
    writeFileSync(path.join(root, 'a/first.csv'), '1');
    writeFileSync(path.join(root, 'a/b/c/deep.csv'), '2');
    await until(() => seen('add', path.join(root, 'a/first.csv')) && seen('add', path.join(root, 'a/b/c/deep.csv')), 'files in new directories');
    // Well before chokidar's poll of the tree comes round (5 s): the names came from fs.watch.
    expect(Date.now() - started).toBeLessThan(1_500);
    for (const directory of ['a', 'a/b', 'a/b/c']) expect(seen('addDir', path.join(root, directory))).toBe(true);
    // Then files created later in the deepest one are reported by its own watch.
    writeFileSync(path.join(root, 'a/b/c/later.csv'), '3');
    await until(() => seen('add', path.join(root, 'a/b/c/later.csv')), 'a later file in a new directory');
  });

  it('reports a symlink to a directory as an entry and never follows it', async () => {
    const outside = await fsp.mkdtemp(path.join(os.tmpdir(), 'shuttle-tree-outside-'));
    try {
      await start();
      await fsp.symlink(outside, path.join(root, 'link'));
      await until(() => seen('add', path.join(root, 'link')), 'the symlink');
      writeFileSync(path.join(outside, 'target-file'), 'x');
      writeFileSync(path.join(root, 'marker'), 'm');
      await until(() => seen('add', path.join(root, 'marker')), 'a file after the symlink');
      expect(seen('addDir', path.join(root, 'link'))).toBe(false);
      expect(events.some((e) => e.path.endsWith('target-file'))).toBe(false);
    } finally {
      await fsp.rm(outside, { recursive: true, force: true });
    }
  });

  it('reports writes to a file as change, and nothing for a file removed', async () => {
    const file = path.join(root, 'grow.log');
    writeFileSync(file, 'a');
    await start();
    await fsp.appendFile(file, 'more');
    await until(() => seen('change', file), 'the change');
    await fsp.unlink(file);
    writeFileSync(path.join(root, 'marker'), 'm');
    await until(() => seen('add', path.join(root, 'marker')), 'a file after the removal');
    expect(events.filter((e) => e.path === file).map((e) => e.event)).toEqual(['change']);
  });

  it('reports a directory again after it was removed and made anew, and watches the new one', async () => {
    await start();
    const directory = path.join(root, 'again');
    mkdirSync(directory);
    await until(() => seen('addDir', directory), 'the first directory');
    await fsp.rm(directory, { recursive: true });
    writeFileSync(path.join(root, 'marker'), 'm');
    await until(() => seen('add', path.join(root, 'marker')), 'a file after the removal');
    mkdirSync(directory);
    await until(() => events.filter((e) => e.event === 'addDir' && e.path === directory).length === 2, 'the directory made anew');
    writeFileSync(path.join(directory, 'inside'), 'i');
    await until(() => seen('add', path.join(directory, 'inside')), 'a file in the new directory');
  });

  it('watches several roots, and is silent once closed', async () => {
    const second = await fsp.realpath(await fsp.mkdtemp(path.join(os.tmpdir(), 'shuttle-tree-second-')));
    try {
      const started = await start([root, second]);
      writeFileSync(path.join(second, 'in-second'), 's');
      await until(() => seen('add', path.join(second, 'in-second')), 'a file in the second root');
      await started.close();
      const count = events.length;
      writeFileSync(path.join(root, 'after-close'), 'a');
      mkdirSync(path.join(second, 'dir-after-close'));
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(events.length).toBe(count);
    } finally {
      await fsp.rm(second, { recursive: true, force: true });
    }
  });

  it('in a busy directory, reports each of thousands of files once as it comes and nothing as it goes', async () => {
    await start();
    const names = Array.from({ length: 2000 }, (_, index) => `f-${index}.bin`);
    for (const name of names) writeFileSync(path.join(root, name), 'x');
    await until(() => events.filter((e) => e.event === 'add').length >= names.length, 'every file', 20_000);
    for (const name of names) await fsp.unlink(path.join(root, name));
    writeFileSync(path.join(root, 'marker'), 'm');
    await until(() => seen('add', path.join(root, 'marker')), 'a file after the removals', 20_000);
    const adds = events.filter((e) => e.event === 'add' && e.path !== path.join(root, 'marker'));
    expect(new Set(adds.map((e) => e.path)).size).toBe(names.length);
    // One event per name (a file may also be reported by a 'change' from its write; never twice as 'add').
    expect(adds.length).toBe(names.length);
  });

  it('drops every event of a name the caller ignores, and still reports the others', async () => {
    writeFileSync(path.join(root, 'ignored-before'), 'i');
    mkdirSync(path.join(root, 'sub'));
    // A short poll, so that chokidar's own listings of the tree are covered too.
    await start([root], { ignoreName: (name) => name.startsWith('ignored'), directoryPollMs: 100 });
    writeFileSync(path.join(root, 'ignored-new'), 'i');
    await fsp.appendFile(path.join(root, 'ignored-before'), 'more');
    await fsp.rename(path.join(root, 'ignored-new'), path.join(root, 'sub', 'ignored-moved'));
    mkdirSync(path.join(root, 'ignored-dir'));
    writeFileSync(path.join(root, 'ignored-dir', 'inside'), 'x');
    writeFileSync(path.join(root, 'kept'), 'k');
    await until(() => seen('add', path.join(root, 'kept')), 'the file that is not ignored');
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(events.filter((e) => path.basename(e.path).startsWith('ignored') || e.path.includes('ignored-dir'))).toEqual([]);
    expect(errors).toEqual([]);
  });
});
