// Suspect files through the whole daemon: the archive, what a failing gpg leaves, and what a crash in the
// middle of archiving leaves for the next start.
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EICAR, startClamd, type ClamdHarness } from '../../helpers/clamd.js';
import {
  journalStates,
  listFiles,
  makeDirectories,
  quarantinedData,
  sharedHazardKey,
  startDaemonReady,
  stopDaemon,
  waitFor,
  writeConfig,
  type ShuttleDirectories,
} from '../../helpers/daemon.js';
import { archiveTemporaryName } from '../../../src/hazard.js';
import { splitHazardPayload } from '../../helpers/gpg.js';

let clamd: ClamdHarness;
const sha256 = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');
const ID = 'mwt00002-00000000cafe';

beforeAll(async () => {
  clamd = await startClamd();
});

afterAll(async () => {
  await clamd?.stop();
});

async function auditEvents(log: string): Promise<Array<{ event: string; id?: string; archive?: string; reason?: string }>> {
  const names = (await fsp.readdir(log)).filter((name) => name.startsWith('audit-')).sort();
  const text = (await Promise.all(names.map((name) => fsp.readFile(path.join(log, name), 'utf8')))).join('');
  return text
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as { event: string });
}

/** A gpg that works until `switchFile` exists, then fails every run: start-up passes, archiving breaks. */
async function breakableGpg(directories: ShuttleDirectories): Promise<{ binDirectory: string; breakIt: () => Promise<void> }> {
  const binDirectory = path.join(directories.root, 'bin');
  const switchFile = path.join(directories.root, 'gpg-broken');
  await fsp.mkdir(binDirectory);
  const realGpg = (await fsp.realpath('/usr/bin/gpg')).toString();
  await fsp.writeFile(
    path.join(binDirectory, 'gpg'),
    `#!/bin/sh\nif [ -e '${switchFile}' ]; then echo 'gpg: fatal: simulated failure' >&2; exit 2; fi\nexec '${realGpg}' "$@"\n`,
    { mode: 0o755 },
  );
  return { binDirectory, breakIt: () => fsp.writeFile(switchFile, '') };
}

describe('suspect files in the daemon', () => {
  it('keeps the plaintext in quarantine, owner-only, and marks the item failed when gpg fails', async () => {
    const directories = await makeDirectories();
    const config = await writeConfig(directories, { clamdSocket: clamd.socketPath });
    const gpg = await breakableGpg(directories);
    const daemon = await startDaemonReady(config, { PATH: `${gpg.binDirectory}:${process.env.PATH ?? ''}` });
    try {
      await gpg.breakIt();
      await fsp.writeFile(path.join(directories.source, 'payload.exe'), EICAR);
      await waitFor(async () => [...(await journalStates(directories.quarantine)).values()].some((item) => item.state === 'failed'), 30_000, () => daemon.output());
      const [data] = await quarantinedData(directories.quarantine);
      expect(data).toBeDefined();
      const kept = path.join(directories.quarantine, data!);
      expect(await fsp.readFile(kept, 'latin1')).toBe(EICAR);
      expect((await fsp.stat(kept)).mode & 0o777).toBe(0o600);
      expect((await fsp.readdir(directories.hazard)).filter((name) => !name.startsWith('.shuttle'))).toEqual([]);
      expect(await listFiles(directories.destination)).toEqual([]);
      expect(daemon.output()).toMatch(/^error: item failed and is held in quarantine.*hazard archive failed/m);
      expect((await auditEvents(directories.log)).filter((record) => record.event === 'failed')).toHaveLength(1);
    } finally {
      expect(await stopDaemon(daemon)).toBe(0);
    }
  });

  it('archives at start a suspect item whose archiving a crash interrupted', async () => {
    const directories = await makeDirectories();
    const config = await writeConfig(directories, { clamdSocket: clamd.socketPath });
    const item = suspectItem();
    await fsp.writeFile(path.join(directories.quarantine, 'journal.jsonl'), journalOf(item));
    await fsp.writeFile(path.join(directories.quarantine, `${ID}.data`), EICAR, { mode: 0o600 });
    // What an archive cut short leaves: a half-written temporary name.
    await fsp.writeFile(path.join(directories.hazard, archiveTemporaryName(ID, 'gpg')), 'half an archive');
    const daemon = await startDaemonReady(config);
    try {
      await waitFor(async () => (await journalStates(directories.quarantine)).size === 0, 30_000, () => daemon.output());
      const names = await fsp.readdir(directories.hazard);
      const archives = names.filter((name) => name.endsWith('.gpg'));
      expect(archives).toHaveLength(1);
      expect(archives[0]).toContain(ID);
      expect(names.filter((name) => name.endsWith('.tmp'))).toEqual([]);
      const opened = splitHazardPayload(await (await sharedHazardKey()).decrypt(path.join(directories.hazard, archives[0]!)));
      expect(opened.payload.toString('latin1')).toBe(EICAR);
      expect(await quarantinedData(directories.quarantine)).toEqual([]);
    } finally {
      expect(await stopDaemon(daemon)).toBe(0);
    }
  });

  it('recognises an archive published before a crash and does not archive twice', async () => {
    const directories = await makeDirectories();
    const config = await writeConfig(directories, { clamdSocket: clamd.socketPath });
    await fsp.writeFile(path.join(directories.quarantine, 'journal.jsonl'), journalOf(suspectItem()));
    // The archive and the removal of the plaintext were done; the journal never heard of them.
    const archive = `20261123T101010Z-${ID}.gpg`;
    await fsp.writeFile(path.join(directories.hazard, archive), 'an archive', { mode: 0o660 });
    const daemon = await startDaemonReady(config);
    try {
      await waitFor(async () => (await journalStates(directories.quarantine)).size === 0, 30_000, () => daemon.output());
      expect((await fsp.readdir(directories.hazard)).filter((name) => name.endsWith('.gpg'))).toEqual([archive]);
      const hazarded = (await auditEvents(directories.log)).filter((record) => record.event === 'hazarded');
      expect(hazarded).toEqual([expect.objectContaining({ id: ID, archive })]);
    } finally {
      expect(await stopDaemon(daemon)).toBe(0);
    }
  });

  it('finishes removing the plaintext of an item already recorded as hazarded', async () => {
    const directories = await makeDirectories();
    const config = await writeConfig(directories, { clamdSocket: clamd.socketPath });
    const archive = `20261123T101010Z-${ID}.gpg`;
    await fsp.writeFile(path.join(directories.hazard, archive), 'an archive', { mode: 0o660 });
    await fsp.writeFile(path.join(directories.quarantine, 'journal.jsonl'), journalOf(suspectItem()) + JSON.stringify({ op: 'hazarded', id: ID, archive }) + '\n');
    await fsp.writeFile(path.join(directories.quarantine, `${ID}.data`), EICAR, { mode: 0o600 });
    const daemon = await startDaemonReady(config);
    try {
      await waitFor(async () => (await journalStates(directories.quarantine)).size === 0, 30_000, () => daemon.output());
      expect(await quarantinedData(directories.quarantine)).toEqual([]);
      expect((await fsp.readdir(directories.hazard)).filter((name) => name.endsWith('.gpg'))).toEqual([archive]);
      await daemon.waitForOutput(/plaintext of a hazarded item removed/);
    } finally {
      expect(await stopDaemon(daemon)).toBe(0);
    }
  });
});

function suspectItem(): Record<string, unknown> {
  return {
    id: ID,
    relativePath: 'bad/payload.exe',
    size: EICAR.length,
    sha256: sha256(EICAR),
    uploaderUid: 0,
    source: { dev: 1, ino: 1, size: EICAR.length, mtimeNs: '1' },
    quarantinedAt: new Date().toISOString(),
    state: 'quarantined',
  };
}

function journalOf(item: Record<string, unknown>): string {
  const report = { scanner: 'clamd', version: 'ClamAV test', verdict: { kind: 'suspect', signature: 'Eicar-Test' }, durationMs: 3 };
  return [
    JSON.stringify({ op: 'item', item }),
    JSON.stringify({ op: 'scanned', id: ID, state: 'suspect', reports: [report], signature: 'Eicar-Test (clamd)' }),
    '',
  ].join('\n');
}
