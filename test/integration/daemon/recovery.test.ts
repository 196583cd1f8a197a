// Each test lays out the files exactly as kill -9 at one step of the pipeline leaves them, then starts the
// daemon: it must finish the work once, never twice, and never release bytes that were not scanned clean.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startClamd, type ClamdHarness } from '../../helpers/clamd.js';
import {
  journalStates,
  listFiles,
  makeDirectories,
  quarantinedData,
  startDaemonReady,
  stopDaemon,
  waitFor,
  writeConfig,
  type ShuttleDirectories,
} from '../../helpers/daemon.js';

let clamd: ClamdHarness;
const sha256 = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');
const ID = 'mwt00001-0123456789ab';

beforeAll(async () => {
  clamd = await startClamd();
});

afterAll(async () => {
  await clamd?.stop();
});

interface Laid {
  directories: ShuttleDirectories;
  config: string;
}

async function lay(content: string, state: string, sourceStats?: import('node:fs').BigIntStats, extra = ''): Promise<Laid> {
  const directories = await makeDirectories();
  const config = await writeConfig(directories, { clamdSocket: clamd.socketPath });
  const item = {
    id: ID,
    relativePath: 'report.txt',
    size: Buffer.byteLength(content),
    sha256: sha256(content),
    uploaderUid: 0,
    source: sourceStats
      ? { dev: Number(sourceStats.dev), ino: Number(sourceStats.ino), size: Number(sourceStats.size), mtimeNs: sourceStats.mtimeNs.toString() }
      : { dev: 1, ino: 1, size: Buffer.byteLength(content), mtimeNs: '1' },
    quarantinedAt: new Date().toISOString(),
    state,
  };
  await fsp.writeFile(path.join(directories.quarantine, 'journal.jsonl'), JSON.stringify({ op: 'item', item }) + '\n' + extra);
  return { directories, config };
}

async function runUntil(laid: Laid, done: () => Promise<boolean>): Promise<string> {
  const daemon = await startDaemonReady(laid.config);
  try {
    await waitFor(done, 20_000, () => daemon.output());
    // Time for a duplicate or a stray rescan to show up if the recovery were wrong.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    return daemon.output();
  } finally {
    expect(await stopDaemon(daemon)).toBe(0);
  }
}

describe('recovery after kill -9 at each step', () => {
  it('between recording the intake and removing the source: removes the source, releases once', async () => {
    const directories = await makeDirectories();
    const source = path.join(directories.source, 'report.txt');
    await fsp.writeFile(source, 'quarterly numbers');
    const stats = await fsp.stat(source, { bigint: true });
    const laid = await lay('quarterly numbers', 'quarantined', stats);
    await fsp.rename(source, path.join(laid.directories.source, 'report.txt'));
    await fsp.writeFile(path.join(laid.directories.quarantine, `${ID}.data`), 'quarterly numbers', { mode: 0o600 });
    const output = await runUntil(laid, async () => (await listFiles(laid.directories.destination)).includes('report.txt'));
    expect(await listFiles(laid.directories.destination)).toEqual(['report.txt']);
    expect(await listFiles(laid.directories.source)).toEqual([]);
    expect(output).toMatch(/removed a source that an interrupted intake had already copied/);
  });

  it('after copying but before the journal record: drops the copy, takes the source afresh, releases once', async () => {
    const directories = await makeDirectories();
    const config = await writeConfig(directories, { clamdSocket: clamd.socketPath });
    await fsp.writeFile(path.join(directories.source, 'report.txt'), 'fresh');
    await fsp.writeFile(path.join(directories.quarantine, 'mwt00002-aaaaaaaaaaaa.data'), 'fre', { mode: 0o600 });
    const output = await runUntil({ directories, config }, async () => (await listFiles(directories.destination)).includes('report.txt'));
    expect(await listFiles(directories.destination)).toEqual(['report.txt']);
    expect(await fsp.readFile(path.join(directories.destination, 'report.txt'), 'utf8')).toBe('fresh');
    expect(await quarantinedData(directories.quarantine)).toEqual([]);
    expect(output).toMatch(/removed an incomplete quarantine copy/);
  });

  it('after moving a clean file to its temporary name: verifies and links it', async () => {
    const laid = await lay('scanned and clean', 'clean');
    await fsp.writeFile(path.join(laid.directories.destination, `.shuttle-${ID}.tmp`), 'scanned and clean');
    await runUntil(laid, async () => (await listFiles(laid.directories.destination)).includes('report.txt'));
    expect(await listFiles(laid.directories.destination)).toEqual(['report.txt']);
    expect(await fsp.readFile(path.join(laid.directories.destination, 'report.txt'), 'utf8')).toBe('scanned and clean');
    expect((await journalStates(laid.directories.quarantine)).size).toBe(0);
  });

  it('after moving a clean file to its temporary name, its clean verdict lost from the journal: resumes the release', async () => {
    // A clean verdict reaches the journal's disk only with the next flush; the temporary name proves it.
    const laid = await lay('verdict not yet flushed', 'quarantined');
    await fsp.writeFile(path.join(laid.directories.destination, `.shuttle-${ID}.tmp`), 'verdict not yet flushed', { mode: 0o600 });
    const output = await runUntil(laid, async () => (await journalStates(laid.directories.quarantine)).size === 0);
    expect(await listFiles(laid.directories.destination)).toEqual(['report.txt']);
    expect(await fsp.readFile(path.join(laid.directories.destination, 'report.txt'), 'utf8')).toBe('verdict not yet flushed');
    expect(output).toMatch(/release resumed after restart/);
    expect(output).not.toMatch(/quarantine copy is missing/);
  });

  it('a quarantined item whose copy is gone and whose release never began is held as failed', async () => {
    const laid = await lay('vanished', 'quarantined');
    const output = await runUntil(laid, async () => (await journalStates(laid.directories.quarantine)).get(ID)?.state === 'failed');
    expect(await listFiles(laid.directories.destination)).toEqual([]);
    expect(output).toMatch(/quarantine copy is missing/);
  });

  it('after linking the final name but before recording it: records it, makes no second copy', async () => {
    const laid = await lay('linked once', 'clean');
    const temporary = path.join(laid.directories.destination, `.shuttle-${ID}.tmp`);
    await fsp.writeFile(temporary, 'linked once');
    await fsp.link(temporary, path.join(laid.directories.destination, 'report.txt'));
    // As a crash can leave it: linked, but the permissions set before the link never reached the disk.
    await fsp.chmod(temporary, 0o600);
    const output = await runUntil(laid, async () => (await journalStates(laid.directories.quarantine)).size === 0);
    expect(await listFiles(laid.directories.destination)).toEqual(['report.txt']);
    expect(output).toMatch(/release completed after restart/);
    expect((await fsp.stat(path.join(laid.directories.destination, 'report.txt'))).mode & 0o777).toBe(0o660);
  });

  it('after recording the release: only removes the temporary name', async () => {
    const laid = await lay('done already', 'clean', undefined, JSON.stringify({ op: 'released', id: ID, releasedAs: 'report.txt' }) + '\n');
    const temporary = path.join(laid.directories.destination, `.shuttle-${ID}.tmp`);
    await fsp.writeFile(temporary, 'done already');
    await fsp.link(temporary, path.join(laid.directories.destination, 'report.txt'));
    await runUntil(laid, async () => (await journalStates(laid.directories.quarantine)).size === 0);
    expect(await listFiles(laid.directories.destination)).toEqual(['report.txt']);
  });

  it('a temporary whose bytes differ from what was scanned is never released', async () => {
    const laid = await lay('what clamd saw', 'clean');
    await fsp.writeFile(path.join(laid.directories.destination, `.shuttle-${ID}.tmp`), 'something else');
    const output = await runUntil(laid, async () => (await journalStates(laid.directories.quarantine)).get(ID)?.state === 'failed');
    expect(await listFiles(laid.directories.destination)).toEqual([]);
    expect(await quarantinedData(laid.directories.quarantine)).toEqual([`${ID}.data`]);
    expect(output).toMatch(/item failed and is held in quarantine.*released bytes hash to/);
  });

  it('a torn last journal line is dropped and the rest recovered', async () => {
    const laid = await lay('before the tear', 'quarantined', undefined, '{"op":"scanned","id":"mwt0');
    await fsp.writeFile(path.join(laid.directories.quarantine, `${ID}.data`), 'before the tear', { mode: 0o600 });
    const output = await runUntil(laid, async () => (await listFiles(laid.directories.destination)).includes('report.txt'));
    expect(output).toMatch(/dropping an incomplete last entry/);
    expect(await listFiles(laid.directories.destination)).toEqual(['report.txt']);
  });
});

describe('a source that cannot be removed', () => {
  it('is released once, not taken again after a restart, and forgotten once it is gone', async () => {
    const directories = await makeDirectories();
    const config = await writeConfig(directories, { clamdSocket: clamd.socketPath });
    const source = path.join(directories.source, 'pinned.txt');
    await fsp.writeFile(source, 'cannot be removed');
    // Immutable: unlink fails with EPERM even for root, as a source can when its removal fails.
    execFileSync('chattr', ['+i', source]);
    try {
      let daemon = await startDaemonReady(config);
      try {
        await waitFor(async () => (await listFiles(directories.destination)).includes('pinned.txt'), 20_000, () => daemon.output());
        await daemon.waitForOutput(/could not be removed; it will not be taken again/);
      } finally {
        expect(await stopDaemon(daemon)).toBe(0);
      }

      daemon = await startDaemonReady(config);
      try {
        await daemon.waitForOutput(/journal recovered .*keptSources=1/);
        await daemon.waitForOutput(/left in source .*already in quarantine as item/);
        // Time for a rescan to take it again, were it forgotten.
        await new Promise((resolve) => setTimeout(resolve, 2500));
        expect(await listFiles(directories.destination)).toEqual(['pinned.txt']);
      } finally {
        expect(await stopDaemon(daemon)).toBe(0);
      }

      execFileSync('chattr', ['-i', source]);
      await fsp.unlink(source);
      daemon = await startDaemonReady(config);
      try {
        await daemon.waitForOutput(/journal recovered .*keptSources=0/);
      } finally {
        expect(await stopDaemon(daemon)).toBe(0);
      }
    } finally {
      // Whatever failed above, leave nothing immutable behind for the clean-up (gone already when all passed).
      try {
        execFileSync('chattr', ['-i', source], { stdio: 'ignore' });
      } catch {
        // no such file
      }
    }
  });
});
