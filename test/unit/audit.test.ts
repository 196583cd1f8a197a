import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import winston from 'winston';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog, GENESIS_HASH, lineHash, scannedEvent, verifyAuditChain, type AuditEvent } from '../../src/audit.js';
import { Zone, type VerifiedDirectory } from '../../src/zone.js';

const execFileAsync = promisify(execFile);
const logger = winston.createLogger({ silent: true });
let root: string;
let zone: Zone;
let directory: VerifiedDirectory;
let now: Date;
const clock = () => now;

const detected = (n: number): AuditEvent => ({ event: 'detected', path: `in/file-${n}.csv` });

beforeEach(async () => {
  root = await fsp.realpath(await fsp.mkdtemp(path.join(os.tmpdir(), 'shuttle-audit-')));
  zone = new Zone([root]);
  directory = await zone.openDirectory(root);
  now = new Date('2026-03-01T10:00:00.000Z');
});

afterEach(async () => {
  directory.close();
  await execFileAsync('umount', [root]).catch(() => undefined);
  await fsp.rm(root, { recursive: true, force: true });
});

async function lines(name: string): Promise<string[]> {
  const text = await fsp.readFile(path.join(root, name), 'utf8');
  return text.split('\n').slice(0, -1);
}

async function writeLines(name: string, content: string[]): Promise<void> {
  await fsp.writeFile(path.join(root, name), content.map((line) => `${line}\n`).join(''));
}

async function logWith(count: number): Promise<void> {
  const log = await AuditLog.open(zone, directory, logger, clock);
  for (let n = 1; n <= count; n++) await log.append(detected(n));
  await log.close();
}

describe('AuditLog', () => {
  it('writes one hash-chained record per event, durably, in the day\'s file', async () => {
    const log = await AuditLog.open(zone, directory, logger, clock);
    await log.append(detected(1));
    await log.append({ event: 'quarantined', id: 'a-1', path: 'in/file-1.csv', sha256: 'f'.repeat(64), size: 10, uploader: { uid: 1000, name: 'alice' } });
    await log.append({ event: 'hazarded', id: 'a-1', archive: '20260301T100000Z-a-1.gpg', sidecar: '20260301T100000Z-a-1.json' });
    await log.close();

    const written = await lines('audit-2026-03-01.jsonl');
    expect(written).toHaveLength(3);
    const records = written.map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(records.map((record) => record.seq)).toEqual([1, 2, 3]);
    expect(records[0]).toMatchObject({ seq: 1, time: '2026-03-01T10:00:00.000Z', prev: GENESIS_HASH, event: 'detected', path: 'in/file-1.csv' });
    expect(records[1]?.prev).toBe(lineHash(written[0] ?? ''));
    expect(records[2]?.prev).toBe(lineHash(written[1] ?? ''));
    expect(records[1]).toMatchObject({ uploader: { uid: 1000, name: 'alice' }, sha256: 'f'.repeat(64) });
    expect((await fsp.stat(path.join(root, 'audit-2026-03-01.jsonl'))).mode & 0o777).toBe(0o660);
    expect(log.head).toEqual({ seq: 3, hash: lineHash(written[2] ?? '') });

    expect(await verifyAuditChain(root)).toMatchObject({ ok: true, records: 3, problems: [], head: log.head });
  });

  it('gives concurrent appends consecutive sequence numbers and resolves each once it is on disk', async () => {
    const log = await AuditLog.open(zone, directory, logger, clock);
    await Promise.all(Array.from({ length: 200 }, (_, index) => log.append(detected(index))));
    expect((await lines('audit-2026-03-01.jsonl')).map((line) => (JSON.parse(line) as { seq: number }).seq)).toEqual(Array.from({ length: 200 }, (_, index) => index + 1));
    await log.close();
    expect((await verifyAuditChain(root)).ok).toBe(true);
  });

  it('rotates daily without breaking the chain, and never writes into an older day when the clock goes back', async () => {
    const log = await AuditLog.open(zone, directory, logger, clock);
    now = new Date('2026-03-01T23:59:59.900Z');
    await log.append(detected(1));
    now = new Date('2026-03-02T00:00:00.100Z');
    await log.append(detected(2));
    now = new Date('2026-03-01T23:59:59.950Z');
    await log.append(detected(3));
    await log.close();

    const first = await lines('audit-2026-03-01.jsonl');
    const second = await lines('audit-2026-03-02.jsonl');
    expect(first).toHaveLength(1);
    expect(second).toHaveLength(2);
    expect((JSON.parse(second[0] ?? '') as { prev: string; seq: number })).toMatchObject({ seq: 2, prev: lineHash(first[0] ?? '') });
    expect(await verifyAuditChain(root)).toMatchObject({ ok: true, records: 3, files: ['audit-2026-03-01.jsonl', 'audit-2026-03-02.jsonl'] });
  });

  it('continues the chain from the newest record after a restart', async () => {
    await logWith(3);
    now = new Date('2026-03-04T08:00:00.000Z');
    const log = await AuditLog.open(zone, directory, logger, clock);
    expect(log.head.seq).toBe(3);
    await log.append(detected(4));
    await log.close();
    expect((JSON.parse((await lines('audit-2026-03-04.jsonl'))[0] ?? '') as { seq: number }).seq).toBe(4);
    expect(await verifyAuditChain(root)).toMatchObject({ ok: true, records: 4 });
  });

  it('cuts off an incomplete last record at start, says so in the log, and stays verifiable', async () => {
    await logWith(2);
    await fsp.appendFile(path.join(root, 'audit-2026-03-01.jsonl'), '{"seq":3,"time":"2026-03-01T10:00:00.000Z","pr');
    expect((await verifyAuditChain(root)).problems).toEqual([expect.stringMatching(/audit-2026-03-01\.jsonl: ends with an incomplete record \(\d+ bytes/)]);

    const log = await AuditLog.open(zone, directory, logger, clock);
    await log.append(detected(3));
    await log.close();
    const records = (await lines('audit-2026-03-01.jsonl')).map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(records.map((record) => [record.seq, record.event])).toEqual([
      [1, 'detected'],
      [2, 'detected'],
      [3, 'audit-repaired'],
      [4, 'detected'],
    ]);
    expect(records[2]).toMatchObject({ file: 'audit-2026-03-01.jsonl', droppedBytes: 46 });
    expect((await verifyAuditChain(root)).ok).toBe(true);
  });

  it('refuses to continue a chain whose last record is not a record', async () => {
    await writeLines('audit-2026-03-01.jsonl', ['not json']);
    await expect(AuditLog.open(zone, directory, logger, clock)).rejects.toThrow(/cannot continue the audit chain/);
  });

  it('cuts a failed write back off, rejects it, and continues the chain from the last durable record', async (context) => {
    directory.close();
    try {
      await execFileAsync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', root]);
    } catch (error) {
      directory = await zone.openDirectory(root);
      context.skip(`cannot mount a small tmpfs to fill: ${(error as Error).message}`);
    }
    directory = await zone.openDirectory(root);
    const log = await AuditLog.open(zone, directory, logger, clock);
    await log.append(detected(1));
    await expect(log.append({ event: 'failed', id: 'x', reason: 'y'.repeat(200_000) })).rejects.toMatchObject({ code: 'EAUDIT' });
    expect(log.head.seq).toBe(1);
    await log.append(detected(2));
    await log.close();
    const records = (await lines('audit-2026-03-01.jsonl')).map((line) => JSON.parse(line) as { seq: number });
    expect(records.map((record) => record.seq)).toEqual([1, 2]);
    expect((await verifyAuditChain(root)).ok).toBe(true);
  });

  it('builds a scanned record from scan reports', () => {
    const event = scannedEvent('a-1', { kind: 'suspect', signature: 'Eicar (clamd)' }, [
      { scanner: 'clamd', version: 'ClamAV 1.0.7', verdict: { kind: 'suspect', signature: 'Eicar' }, durationMs: 12.6 },
      { scanner: 'mdatp', version: null, verdict: { kind: 'failed', code: 'timeout', reason: 'no answer' }, durationMs: 300_000 },
    ]);
    expect(event).toEqual({
      event: 'scanned',
      id: 'a-1',
      verdict: 'suspect',
      scanners: [
        { name: 'clamd', version: 'ClamAV 1.0.7', verdict: 'suspect', signature: 'Eicar', durationMs: 13 },
        { name: 'mdatp', version: null, verdict: 'failed', reason: 'no answer', durationMs: 300_000 },
      ],
    });
  });
});

describe('verifyAuditChain', () => {
  it('finds a changed record at the record after it', async () => {
    await logWith(5);
    const written = await lines('audit-2026-03-01.jsonl');
    written[2] = (written[2] ?? '').replace('file-3.csv', 'file-X.csv');
    await writeLines('audit-2026-03-01.jsonl', written);
    const result = await verifyAuditChain(root);
    expect(result.ok).toBe(false);
    expect(result.problems).toEqual([expect.stringMatching(/^audit-2026-03-01\.jsonl:4: does not chain to the record before it \(audit-2026-03-01\.jsonl:3\)/)]);
  });

  it('finds a removed record', async () => {
    await logWith(5);
    const written = await lines('audit-2026-03-01.jsonl');
    written.splice(1, 1);
    await writeLines('audit-2026-03-01.jsonl', written);
    const result = await verifyAuditChain(root);
    expect(result.ok).toBe(false);
    expect(result.problems).toEqual([expect.stringMatching(/^audit-2026-03-01\.jsonl:2: has seq 3, expected 2; does not chain/)]);
  });

  it('finds reordered records', async () => {
    await logWith(5);
    const written = await lines('audit-2026-03-01.jsonl');
    [written[1], written[2]] = [written[2] ?? '', written[1] ?? ''];
    await writeLines('audit-2026-03-01.jsonl', written);
    const result = await verifyAuditChain(root);
    expect(result.ok).toBe(false);
    expect(result.problems.length).toBeGreaterThanOrEqual(2);
    expect(result.problems[0]).toMatch(/^audit-2026-03-01\.jsonl:2: has seq 3, expected 2/);
  });

  it('finds a removed last record of a day at the next day\'s first record', async () => {
    const log = await AuditLog.open(zone, directory, logger, clock);
    await log.append(detected(1));
    await log.append(detected(2));
    now = new Date('2026-03-02T00:00:01.000Z');
    await log.append(detected(3));
    await log.close();
    await writeLines('audit-2026-03-01.jsonl', (await lines('audit-2026-03-01.jsonl')).slice(0, 1));
    expect((await verifyAuditChain(root)).problems).toEqual([expect.stringMatching(/^audit-2026-03-02\.jsonl:1: has seq 3, expected 2/)]);
  });

  it('finds a missing first file', async () => {
    const log = await AuditLog.open(zone, directory, logger, clock);
    await log.append(detected(1));
    now = new Date('2026-03-02T00:00:01.000Z');
    await log.append(detected(2));
    await log.close();
    await fsp.rm(path.join(root, 'audit-2026-03-01.jsonl'));
    expect((await verifyAuditChain(root)).problems).toEqual([expect.stringMatching(/starts at seq 2: the records before it are missing; does not start the chain/)]);
  });

  it('finds a truncated tail, an empty line and a line that is not JSON', async () => {
    await logWith(4);
    const text = await fsp.readFile(path.join(root, 'audit-2026-03-01.jsonl'), 'utf8');
    const written = text.split('\n').slice(0, -1);
    await fsp.writeFile(path.join(root, 'audit-2026-03-01.jsonl'), `${written[0]}\n\n${written[1]}\n{broken\n${written[3]?.slice(0, 20)}`);
    const result = await verifyAuditChain(root);
    expect(result.ok).toBe(false);
    expect(result.problems).toEqual([
      'audit-2026-03-01.jsonl:2: is an empty line',
      expect.stringMatching(/^audit-2026-03-01\.jsonl:3: has seq 2, expected 3; does not chain/),
      'audit-2026-03-01.jsonl:4: is not valid JSON (changed or corrupted)',
      'audit-2026-03-01.jsonl: ends with an incomplete record (20 bytes after the last newline): truncated or torn',
    ]);
  });

  it('calls an empty directory intact, and ignores files that are not audit files', async () => {
    await fsp.writeFile(path.join(root, 'shuttle.log'), 'not an audit file\n');
    expect(await verifyAuditChain(root)).toEqual({ ok: true, records: 0, files: [], problems: [], head: null });
  });

  it('rejects when the directory cannot be read', async () => {
    await expect(verifyAuditChain(path.join(root, 'missing'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
