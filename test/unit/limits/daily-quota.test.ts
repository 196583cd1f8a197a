import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import winston from 'winston';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog, type AuditEvent } from '../../../src/audit.js';
import { DailyQuota, localDay, nextLocalDay, startOfLocalDay, usageFromAuditLog } from '../../../src/limits/daily-quota.js';
import { Zone } from '../../../src/zone.js';

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
const logger = winston.createLogger({ silent: true });

// Local days need a fixed zone: Berlin is UTC+1 in winter, UTC+2 from the last Sunday of March.
let savedTz: string | undefined;
beforeAll(() => {
  savedTz = process.env.TZ;
  process.env.TZ = 'Europe/Berlin';
});
afterAll(() => {
  if (savedTz === undefined) delete process.env.TZ;
  else process.env.TZ = savedTz;
});

const at = (iso: string): Date => new Date(iso);

describe('local days', () => {
  it('follow the process time zone, not UTC', () => {
    expect(localDay(at('2026-02-28T23:30:00Z'))).toBe('2026-03-01');
    expect(startOfLocalDay(at('2026-03-01T12:00:00Z')).toISOString()).toBe('2026-02-28T23:00:00.000Z');
    expect(nextLocalDay(at('2026-03-01T12:00:00Z')).toISOString()).toBe('2026-03-01T23:00:00.000Z');
  });

  it('are 23 hours long on the day summer time starts', () => {
    const now = at('2026-03-29T10:00:00Z');
    expect(nextLocalDay(now).getTime() - startOfLocalDay(now).getTime()).toBe(23 * 3600_000);
    expect(nextLocalDay(now).toISOString()).toBe('2026-03-29T22:00:00.000Z');
  });
});

describe('DailyQuota', () => {
  const noon = at('2026-03-01T11:00:00Z');

  it('admits files up to daily_max_files, then says when the next day starts', () => {
    const quota = new DailyQuota({ maxFiles: 2, maxBytes: 0 }, null, noon);
    expect(quota.admit(10, noon).ok).toBe(true);
    expect(quota.admit(10, noon).ok).toBe(true);
    const refused = quota.admit(10, noon);
    expect(refused).toMatchObject({ ok: false, limit: 'files', resumesAt: at('2026-03-01T23:00:00Z') });
    expect(!refused.ok && refused.reason).toContain('limits.daily_max_files');
    expect(quota.usage(noon)).toEqual({ day: '2026-03-01', files: 2, bytes: 20 });
  });

  it('admits bytes up to daily_max_bytes exactly', () => {
    const quota = new DailyQuota({ maxFiles: 0, maxBytes: 10 * MiB }, null, noon);
    expect(quota.admit(6 * MiB, noon).ok).toBe(true);
    expect(quota.admit(4 * MiB + 1, noon)).toMatchObject({ ok: false, limit: 'bytes', resumesAt: at('2026-03-01T23:00:00Z') });
    expect(quota.admit(4 * MiB, noon).ok).toBe(true);
    expect(quota.admit(1, noon).ok).toBe(false);
  });

  it('refuses for good a file larger than the whole daily byte limit', () => {
    const quota = new DailyQuota({ maxFiles: 0, maxBytes: 10 * MiB }, null, noon);
    const refused = quota.admit(10 * MiB + 1, noon);
    expect(refused).toMatchObject({ ok: false, limit: 'bytes', resumesAt: null });
    expect(!refused.ok && refused.reason).toContain('larger than the whole daily limit');
  });

  it('has no limit at 0', () => {
    const quota = new DailyQuota({ maxFiles: 0, maxBytes: 0 }, null, noon);
    for (let n = 0; n < 1000; n++) expect(quota.admit(5 * GiB, noon).ok).toBe(true);
  });

  it('starts afresh at local midnight', () => {
    const quota = new DailyQuota({ maxFiles: 1, maxBytes: 0 }, null, noon);
    expect(quota.admit(1, noon).ok).toBe(true);
    expect(quota.admit(1, at('2026-03-01T22:59:59Z')).ok).toBe(false);
    expect(quota.admit(1, at('2026-03-01T23:00:00Z')).ok).toBe(true);
    expect(quota.usage(at('2026-03-01T23:00:00Z'))).toEqual({ day: '2026-03-02', files: 1, bytes: 1 });
  });

  it('check() counts nothing; admit() counts at once; refund() gives back', () => {
    const quota = new DailyQuota({ maxFiles: 1, maxBytes: 0 }, null, noon);
    expect(quota.check(5, noon).ok).toBe(true);
    expect(quota.check(5, noon).ok).toBe(true);
    const admitted = quota.admit(5, noon);
    expect(quota.check(5, noon).ok).toBe(false);
    if (!admitted.ok) throw new Error('not admitted');
    quota.refund(admitted.ticket);
    expect(quota.usage(noon)).toMatchObject({ files: 0, bytes: 0 });
    expect(quota.admit(5, noon).ok).toBe(true);
  });

  it('ignores a refund for yesterday', () => {
    const quota = new DailyQuota({ maxFiles: 5, maxBytes: 0 }, null, noon);
    const yesterday = quota.admit(7, noon);
    const tomorrow = at('2026-03-02T11:00:00Z');
    expect(quota.admit(3, tomorrow).ok).toBe(true);
    if (!yesterday.ok) throw new Error('not admitted');
    quota.refund(yesterday.ticket);
    expect(quota.usage(tomorrow)).toEqual({ day: '2026-03-02', files: 1, bytes: 3 });
  });

  it('keeps the counts when the limits change on reload', () => {
    const quota = new DailyQuota({ maxFiles: 10, maxBytes: 0 }, null, noon);
    for (let n = 0; n < 3; n++) quota.admit(1, noon);
    quota.setLimits({ maxFiles: 3, maxBytes: 0 });
    expect(quota.admit(1, noon).ok).toBe(false);
    quota.setLimits({ maxFiles: 4, maxBytes: 0 });
    expect(quota.admit(1, noon).ok).toBe(true);
  });

  it('starts from restored usage of the same day only', () => {
    expect(new DailyQuota({ maxFiles: 3, maxBytes: 0 }, { day: '2026-03-01', files: 3, bytes: 9 }, noon).check(1, noon).ok).toBe(false);
    expect(new DailyQuota({ maxFiles: 3, maxBytes: 0 }, { day: '2026-02-28', files: 3, bytes: 9 }, noon).check(1, noon).ok).toBe(true);
  });
});

describe('restoring the day from the audit log', () => {
  let root: string;

  beforeEach(async () => {
    root = await fsp.realpath(await fsp.mkdtemp(path.join(os.tmpdir(), 'shuttle-quota-')));
  });
  afterEach(async () => {
    await fsp.rm(root, { recursive: true, force: true });
  });

  const quarantined = (n: number, size: number): AuditEvent => ({
    event: 'quarantined',
    id: `item-${n}`,
    path: `in/file-${n}.csv`,
    sha256: 'a'.repeat(64),
    size,
    uploader: { uid: 1000 + n, name: null },
  });

  /** Writes events through the real audit log, each at its own time. */
  async function writeAudit(entries: readonly [string, AuditEvent][]): Promise<void> {
    let now = new Date(0);
    const log = await AuditLog.open(new Zone([root]), root, logger, () => now);
    for (const [time, event] of entries) {
      now = at(time);
      await log.append(event);
    }
    await log.close();
  }

  it('counts the quarantined files of the local day, across the two UTC files it spans', async () => {
    await writeAudit([
      ['2026-02-28T22:30:00Z', quarantined(1, 1000)], // 23:30 on the 28th, Berlin: yesterday
      ['2026-02-28T23:30:00Z', quarantined(2, 200)], // 00:30 on the 1st, in the UTC file of the 28th
      ['2026-02-28T23:31:00Z', { event: 'detected', path: 'in/x' }],
      ['2026-03-01T09:00:00Z', quarantined(3, 30)],
      ['2026-03-01T09:00:01Z', { event: 'scanned', id: 'item-3', verdict: 'clean', scanners: [] }],
      ['2026-03-01T09:00:02Z', { event: 'released', id: 'item-3', path: 'out/quarantined.csv', requestedPath: 'out/quarantined.csv', renamed: false }],
      ['2026-03-01T22:59:59Z', quarantined(4, 4)], // 23:59:59 on the 1st
      ['2026-03-01T23:00:00Z', quarantined(5, 50_000)], // midnight: tomorrow
    ]);
    expect((await fsp.readdir(root)).sort()).toEqual(['audit-2026-02-28.jsonl', 'audit-2026-03-01.jsonl']);
    const restored = await usageFromAuditLog(root, at('2026-03-01T12:00:00Z'));
    expect(restored).toEqual({ day: '2026-03-01', files: 3, bytes: 234, sources: ['audit-2026-02-28.jsonl', 'audit-2026-03-01.jsonl'] });
  });

  it('gives a quota that continues where the last run stopped', async () => {
    await writeAudit([
      ['2026-03-01T08:00:00Z', quarantined(1, 6 * MiB)],
      ['2026-03-01T08:01:00Z', quarantined(2, 3 * MiB)],
    ]);
    const now = at('2026-03-01T12:00:00Z');
    const { quota, restored } = await DailyQuota.restore(root, { maxFiles: 0, maxBytes: 10 * MiB }, now);
    expect(restored).toMatchObject({ files: 2, bytes: 9 * MiB });
    expect(quota.admit(MiB, now).ok).toBe(true);
    expect(quota.admit(1, now)).toMatchObject({ ok: false, limit: 'bytes' });
  });

  it('skips a torn last line and lines that are not records', async () => {
    await writeAudit([['2026-03-01T08:00:00Z', quarantined(1, 100)]]);
    const file = path.join(root, 'audit-2026-03-01.jsonl');
    await fsp.appendFile(file, 'not json "event":"quarantined"\n{"event":"quarantined","time":"2026-03-01T09:00:00Z","size":"big"}\n');
    await fsp.appendFile(file, '{"seq":9,"time":"2026-03-01T09:00:00.000Z","prev":"x","event":"quarantined","size":5');
    expect(await usageFromAuditLog(root, at('2026-03-01T12:00:00Z'))).toMatchObject({ files: 1, bytes: 100 });
  });

  it('reads files of later days too, where a clock stepped back put today\'s records', async () => {
    await fsp.writeFile(
      path.join(root, 'audit-2026-03-03.jsonl'),
      `${JSON.stringify({ seq: 1, time: '2026-03-01T10:00:00.000Z', prev: '0'.repeat(64), ...quarantined(1, 77) })}\n`,
    );
    expect(await usageFromAuditLog(root, at('2026-03-01T12:00:00Z'))).toMatchObject({ files: 1, bytes: 77 });
  });

  it('counts nothing for an empty or missing log directory', async () => {
    expect(await usageFromAuditLog(root, at('2026-03-01T12:00:00Z'))).toEqual({ day: '2026-03-01', files: 0, bytes: 0, sources: [] });
    expect(await usageFromAuditLog(path.join(root, 'absent'), at('2026-03-01T12:00:00Z'))).toMatchObject({ files: 0, sources: [] });
  });
});
