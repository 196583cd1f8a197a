import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import winston from 'winston';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ItemRecord } from '../../src/item.js';
import { Journal, JOURNAL_NAME } from '../../src/journal.js';
import { Zone, type VerifiedDirectory } from '../../src/zone.js';
import { mountTmpfs, unmount } from '../helpers/faults.js';

const logger = winston.createLogger({ silent: true });
let root: string;
let zone: Zone;
let directory: VerifiedDirectory;

const item = (id: string): ItemRecord => ({
  id,
  relativePath: `${id}.txt`,
  size: 1,
  sha256: 'a'.repeat(64),
  uploaderUid: 0,
  source: { dev: 1, ino: 2, size: 1, mtimeNs: '3' },
  quarantinedAt: '2026-01-01T00:00:00.000Z',
  state: 'quarantined',
});

beforeEach(async () => {
  root = await fsp.realpath(await fsp.mkdtemp(path.join(os.tmpdir(), 'shuttle-journal-')));
  zone = new Zone([root]);
  directory = await zone.openDirectory(root);
});

afterEach(async () => {
  vi.restoreAllMocks();
  directory.close();
  await fsp.rm(root, { recursive: true, force: true });
});

/** Counts fdatasync calls on every FileHandle from here on (restored after each test). */
async function spyOnDatasync() {
  const probe = await fsp.open(path.join(root, '.probe'), 'w');
  const prototype = Object.getPrototypeOf(probe) as { datasync: () => Promise<void> };
  await probe.close();
  return vi.spyOn(prototype, 'datasync');
}

describe('Journal', () => {
  it('replays every state change after a reopen, and forgets items that are done', async () => {
    const journal = await Journal.open(zone, directory, logger);
    await Promise.all([journal.append({ op: 'item', item: item('a') }), journal.append({ op: 'item', item: item('b') }), journal.append({ op: 'item', item: item('c') })]);
    await journal.append({ op: 'scanned', id: 'a', state: 'clean', reports: [] });
    await journal.append({ op: 'scanned', id: 'b', state: 'suspect', reports: [], signature: 'Eicar' });
    await journal.append({ op: 'released', id: 'c', releasedAs: 'c.txt' });
    await journal.append({ op: 'done', id: 'c' });
    await journal.close();

    const reopened = await Journal.open(zone, directory, logger);
    expect(reopened.get('a')?.state).toBe('clean');
    expect(reopened.get('b')).toMatchObject({ state: 'suspect', signature: 'Eicar' });
    expect(reopened.get('c')).toBeUndefined();
    expect(reopened.items().size).toBe(2);
    await reopened.close();
  });

  it('makes an entry visible only once it is durable', async () => {
    const journal = await Journal.open(zone, directory, logger);
    const pending = journal.append({ op: 'item', item: item('a') });
    expect(journal.get('a')).toBeUndefined();
    await pending;
    expect(journal.get('a')?.state).toBe('quarantined');
    expect(await fsp.readFile(path.join(root, JOURNAL_NAME), 'utf8')).toContain('"id":"a"');
    await journal.close();
  });

  it('shares one fdatasync among appends that arrive together', async () => {
    const journal = await Journal.open(zone, directory, logger);
    const datasync = await spyOnDatasync();
    await Promise.all(Array.from({ length: 20 }, (_, index) => journal.append({ op: 'item', item: item(`g${index}`) })));
    // The first append starts a flush at once; the other nineteen wait for it and go out together.
    expect(datasync.mock.calls.length).toBeLessThanOrEqual(2);
    expect(journal.items().size).toBe(20);
    await journal.close();
  });

  it("writes 'done' at once, without an fdatasync of its own, and syncs it at close", async () => {
    const journal = await Journal.open(zone, directory, logger);
    await journal.append({ op: 'item', item: item('a') });
    await journal.append({ op: 'released', id: 'a', releasedAs: 'a.txt' });
    const datasync = await spyOnDatasync();
    await journal.append({ op: 'done', id: 'a' });
    expect(datasync).not.toHaveBeenCalled();
    expect(journal.get('a')).toBeUndefined();
    // In the file already: what kill -9 leaves behind (the page cache) holds it.
    expect(await fsp.readFile(path.join(root, JOURNAL_NAME), 'utf8')).toContain('{"op":"done","id":"a"}');
    await journal.close();
    expect(datasync).toHaveBeenCalledTimes(1);
    const reopened = await Journal.open(zone, directory, logger);
    expect(reopened.get('a')).toBeUndefined();
    await reopened.close();
  });

  it('writes a clean verdict at once without an fdatasync of its own, but syncs a suspect one', async () => {
    const journal = await Journal.open(zone, directory, logger);
    await journal.append({ op: 'item', item: item('a') });
    await journal.append({ op: 'item', item: item('b') });
    const datasync = await spyOnDatasync();
    await journal.append({ op: 'scanned', id: 'a', state: 'clean', reports: [] });
    expect(datasync).not.toHaveBeenCalled();
    expect(journal.get('a')?.state).toBe('clean');
    expect(await fsp.readFile(path.join(root, JOURNAL_NAME), 'utf8')).toContain('"op":"scanned","id":"a","state":"clean"');
    await journal.append({ op: 'scanned', id: 'b', state: 'suspect', reports: [], signature: 'Eicar' });
    expect(datasync).toHaveBeenCalledTimes(1);
    await journal.close();
  });

  it('keeps sources left in place across a reopen and a rewrite, until they are recorded as gone', async () => {
    const journal = await Journal.open(zone, directory, logger);
    await journal.append({ op: 'source-kept', key: '1:2:3:4', path: 'in/a.txt', id: 'a' });
    await journal.append({ op: 'source-kept', key: '1:5:6:7', path: 'b.txt', id: 'b' });
    await journal.append({ op: 'source-gone', key: '1:5:6:7' });
    await journal.close();

    // Open rewrites the journal with what is live: the kept source must survive that, twice.
    for (let reopen = 0; reopen < 2; reopen++) {
      const reopened = await Journal.open(zone, directory, logger);
      expect([...reopened.keptSources()]).toEqual([['1:2:3:4', { path: 'in/a.txt', id: 'a' }]]);
      await reopened.close();
    }
    const lines = (await fsp.readFile(path.join(root, JOURNAL_NAME), 'utf8')).trim().split('\n');
    expect(lines).toEqual([JSON.stringify({ op: 'source-kept', key: '1:2:3:4', path: 'in/a.txt', id: 'a' })]);
  });

  it("syncs a pending 'done' with the next entry that needs a sync, and then not again at close", async () => {
    const journal = await Journal.open(zone, directory, logger);
    await journal.append({ op: 'item', item: item('a') });
    await journal.append({ op: 'released', id: 'a', releasedAs: 'a.txt' });
    const datasync = await spyOnDatasync();
    await journal.append({ op: 'done', id: 'a' });
    await journal.append({ op: 'item', item: item('b') });
    expect(datasync).toHaveBeenCalledTimes(1);
    await journal.close();
    expect(datasync).toHaveBeenCalledTimes(1);
  });

  it('takes back an entry that a full disk cut short, so later entries do not follow a torn line', async (context) => {
    const mountPoint = path.join(root, 'small');
    await fsp.mkdir(mountPoint);
    const mountProblem = await mountTmpfs(mountPoint, '64k').then(
      () => null,
      (error: Error) => error.message,
    );
    if (mountProblem !== null) context.skip(`cannot mount a small tmpfs: ${mountProblem}`);
    const smallZone = new Zone([mountPoint]);
    const small = await smallZone.openDirectory(mountPoint);
    const opened: Journal[] = [];
    try {
      const journal = await Journal.open(smallZone, small, logger);
      opened.push(journal);
      await journal.append({ op: 'item', item: item('a') });
      // Fill the filesystem: what is left is the rest of the journal's last page, less than the next entry.
      await fsp.writeFile(path.join(mountPoint, 'filler'), Buffer.alloc(64 * 1024)).catch(() => undefined);
      const long = { ...item('b'), relativePath: `${'d/'.repeat(4000)}b.txt` };
      await expect(journal.append({ op: 'item', item: long })).rejects.toMatchObject({ code: 'ENOSPC' });
      expect(journal.get('b')).toBeUndefined();
      await fsp.rm(path.join(mountPoint, 'filler'));
      await journal.append({ op: 'item', item: item('c') });
      await journal.close();

      const text = await fsp.readFile(path.join(mountPoint, JOURNAL_NAME), 'utf8');
      expect(text.split('\n').filter((line) => line !== '')).toHaveLength(2);
      const reopened = await Journal.open(smallZone, small, logger);
      opened.push(reopened);
      expect([...reopened.items().keys()].sort()).toEqual(['a', 'c']);
    } finally {
      for (const journal of opened) await journal.close().catch(() => undefined);
      await small.close();
      await unmount(mountPoint);
    }
  });

  it('drops a torn last line but refuses corruption in the middle', async () => {
    await fsp.writeFile(path.join(root, JOURNAL_NAME), `${JSON.stringify({ op: 'item', item: item('a') })}\n{"op":"scan`);
    const journal = await Journal.open(zone, directory, logger);
    expect(journal.get('a')?.state).toBe('quarantined');
    await journal.close();

    await fsp.writeFile(path.join(root, JOURNAL_NAME), `garbage\n${JSON.stringify({ op: 'item', item: item('a') })}\n${JSON.stringify({ op: 'item', item: item('b') })}\n`);
    await expect(Journal.open(zone, directory, logger)).rejects.toThrow(/line 1 is not valid JSON/);
  });

  it('is rewritten at open with only the live items', async () => {
    const journal = await Journal.open(zone, directory, logger);
    for (let index = 0; index < 50; index++) {
      await journal.append({ op: 'item', item: item(`i${index}`) });
      await journal.append({ op: 'released', id: `i${index}`, releasedAs: 'x' });
      if (index > 0) await journal.append({ op: 'done', id: `i${index}` });
    }
    await journal.close();
    const reopened = await Journal.open(zone, directory, logger);
    const lines = (await fsp.readFile(path.join(root, JOURNAL_NAME), 'utf8')).trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(reopened.get('i0')?.state).toBe('released');
    await reopened.close();
  });
});
