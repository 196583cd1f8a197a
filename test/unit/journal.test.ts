import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import winston from 'winston';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ItemRecord } from '../../src/item.js';
import { Journal, JOURNAL_NAME } from '../../src/journal.js';
import { Zone, type VerifiedDirectory } from '../../src/zone.js';

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
  await directory.close();
  await fsp.rm(root, { recursive: true, force: true });
});

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
