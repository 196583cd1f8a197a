import { describe, expect, it } from 'vitest';
import type { LimitsOptions } from '../../../src/config.js';
import { DailyQuota, nextLocalDay } from '../../../src/limits/daily-quota.js';
import { FreeSpaceGuard, pipelineTargets, type FilesystemSpace } from '../../../src/limits/free-space.js';
import { describeHolds, IntakeLimits, SPACE_HOLD_TTL_MS, SPACE_RETRY_MS, type IntakeAdmission, type IntakeHold } from '../../../src/limits/intake-limits.js';
import { UploaderRateLimit } from '../../../src/limits/uploader-rate.js';

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
const ALICE = 1001;
const BOB = 1002;

const NO_LIMITS: LimitsOptions = {
  maxFileSize: 0,
  freeSpaceReserve: 0,
  dailyMaxFiles: 0,
  dailyMaxBytes: 0,
  uploaderMaxFilesPerMinute: 0,
  uploaderMaxBytesPerMinute: 0,
};

/** IntakeLimits over a pretend clock and three pretend filesystems whose free space a test can change. */
function setUp(overrides: Partial<LimitsOptions> = {}) {
  const options = { ...NO_LIMITS, ...overrides };
  const clock = { now: new Date('2026-03-01T12:00:00Z'), ms: 1_000_000 };
  const disk = { totalBytes: 100 * GiB, availableBytes: 50 * GiB };
  let inspections = 0;
  const inspect = async (path: string): Promise<FilesystemSpace> => {
    inspections++;
    await new Promise((resolve) => setImmediate(resolve));
    const device = path === '/q' ? 1 : 2;
    return device === 1 ? { device, ...disk, totalInodes: 0, availableInodes: 0 } : { device, totalBytes: 100 * GiB, availableBytes: 50 * GiB, totalInodes: 0, availableInodes: 0 };
  };
  const holdChanges: (readonly IntakeHold[])[] = [];
  const limits = new IntakeLimits({
    options,
    freeSpace: new FreeSpaceGuard({ targets: pipelineTargets({ quarantine: '/q', destination: '/out', hazardArchive: '/hz' }), reserveBytes: options.freeSpaceReserve, inspect, monotonicMs: () => clock.ms }),
    quota: new DailyQuota({ maxFiles: options.dailyMaxFiles, maxBytes: options.dailyMaxBytes }, null, clock.now),
    uploaders: new UploaderRateLimit({ maxFilesPerMinute: options.uploaderMaxFilesPerMinute, maxBytesPerMinute: options.uploaderMaxBytesPerMinute }),
    now: () => clock.now,
    monotonicMs: () => clock.ms,
    onHoldsChange: (holds) => holdChanges.push(holds),
  });
  return { limits, clock, disk, holdChanges, inspections: () => inspections };
}

function expectKind<K extends IntakeAdmission['kind']>(admission: IntakeAdmission, kind: K): Extract<IntakeAdmission, { kind: K }> {
  expect(admission.kind).toBe(kind);
  return admission as Extract<IntakeAdmission, { kind: K }>;
}

describe('IntakeLimits', () => {
  it('takes everything when nothing is limited', async () => {
    const { limits } = setUp();
    for (let n = 0; n < 100; n++) expectKind(await limits.admit({ size: GiB, uploaderUid: n % 3 }), 'take');
    expect(limits.holds()).toEqual([]);
  });

  it('refuses a file over max_file_size without looking at the disks', async () => {
    const { limits, inspections } = setUp({ maxFileSize: 25 * MiB });
    expectKind(await limits.admit({ size: 25 * MiB, uploaderUid: ALICE }), 'take');
    const refused = expectKind(await limits.admit({ size: 25 * MiB + 1, uploaderUid: ALICE }), 'reject');
    expect(refused).toEqual({ kind: 'reject', limit: 'max_file_size', reason: 'the file (25 MiB) is larger than limits.max_file_size (25 MiB)' });
    expect(inspections()).toBe(3);
  });

  it('holds everyone until local midnight once the daily quota is used, then resumes by itself', async () => {
    const { limits, clock, holdChanges, inspections } = setUp({ dailyMaxFiles: 2 });
    expectKind(await limits.admit({ size: 1, uploaderUid: ALICE }), 'take');
    expectKind(await limits.admit({ size: 1, uploaderUid: BOB }), 'take');
    const checksSoFar = inspections();
    const waiting = expectKind(await limits.admit({ size: 1, uploaderUid: BOB }), 'wait');
    expect(waiting).toMatchObject({ scope: 'all', limit: 'daily_max_files', retryInMs: nextLocalDay(clock.now).getTime() - clock.now.getTime() });
    expect(inspections()).toBe(checksSoFar);
    const midnight = nextLocalDay(clock.now);
    expect(limits.holds()).toMatchObject([{ cause: 'daily-quota', until: midnight }]);
    expect(describeHolds(limits.holds())).toMatch(/^intake paused: 2 files taken today/);
    clock.now = new Date(midnight.getTime() - 1);
    expect(limits.holds()).toHaveLength(1);
    clock.now = midnight;
    expect(limits.holds()).toEqual([]);
    expectKind(await limits.admit({ size: 1, uploaderUid: BOB }), 'take');
    expect(holdChanges.map((holds) => holds.map((hold) => hold.cause))).toEqual([['daily-quota'], []]);
  });

  it('refuses a file larger than the whole daily byte limit instead of holding everyone for it', async () => {
    const { limits } = setUp({ dailyMaxBytes: 100 * MiB });
    expectKind(await limits.admit({ size: 100 * MiB + 1, uploaderUid: ALICE }), 'reject');
    expect(limits.holds()).toEqual([]);
    expectKind(await limits.admit({ size: 100 * MiB, uploaderUid: ALICE }), 'take');
  });

  it('makes a fast uploader wait while others go on', async () => {
    const { limits, clock } = setUp({ uploaderMaxFilesPerMinute: 2 });
    expectKind(await limits.admit({ size: 1, uploaderUid: ALICE }), 'take');
    expectKind(await limits.admit({ size: 1, uploaderUid: ALICE }), 'take');
    const waiting = expectKind(await limits.admit({ size: 1, uploaderUid: ALICE }), 'wait');
    expect(waiting).toMatchObject({ scope: 'uploader', limit: 'uploader_rate', retryInMs: 30_000 });
    expectKind(await limits.admit({ size: 1, uploaderUid: BOB }), 'take');
    expect(limits.holds()).toEqual([]);
    clock.ms += 30_000;
    expectKind(await limits.admit({ size: 1, uploaderUid: ALICE }), 'take');
  });

  it('pauses for low space, says where, and resumes when a file as large as the refused one fits', async () => {
    const { limits, disk, holdChanges } = setUp({ freeSpaceReserve: GiB });
    disk.availableBytes = GiB + 10 * MiB;
    expectKind(await limits.admit({ size: 10 * MiB, uploaderUid: ALICE }), 'take');
    const waiting = expectKind(await limits.admit({ size: 20 * MiB, uploaderUid: ALICE }), 'wait');
    expect(waiting).toMatchObject({ scope: 'all', limit: 'free_space', retryInMs: SPACE_RETRY_MS });
    expect(waiting.reason).toBe('waiting for space: quarantine_path (/q) has 1.01 GiB free, needs 1.02 GiB (20 MiB for the file and the 1 GiB reserve)');
    expect(limits.holds()).toMatchObject([{ cause: 'free-space', until: null }]);
    // A smaller file that fits still goes, but the larger one is still waiting: the hold stays.
    expectKind(await limits.admit({ size: 5 * MiB, uploaderUid: BOB }), 'take');
    expect(limits.holds()).toHaveLength(1);
    disk.availableBytes = 2 * GiB;
    expectKind(await limits.admit({ size: 20 * MiB, uploaderUid: ALICE }), 'take');
    expect(limits.holds()).toEqual([]);
    expect(holdChanges.map((holds) => holds.map((hold) => hold.cause))).toEqual([['free-space'], []]);
  });

  it('drops a space hold that no file confirms any more (the file was removed)', async () => {
    const { limits, disk, clock } = setUp({ freeSpaceReserve: GiB });
    disk.availableBytes = GiB;
    expectKind(await limits.admit({ size: MiB, uploaderUid: ALICE }), 'wait');
    clock.ms += SPACE_HOLD_TTL_MS;
    expect(limits.holds()).toHaveLength(1);
    clock.ms += 1;
    expect(limits.holds()).toEqual([]);
  });

  it('refuses a file that could never fit, rather than pausing for it', async () => {
    const { limits, disk } = setUp();
    disk.totalBytes = 10 * GiB;
    disk.availableBytes = 10 * GiB;
    const refused = expectKind(await limits.admit({ size: 10 * GiB + 1, uploaderUid: ALICE }), 'reject');
    expect(refused.limit).toBe('free_space');
    expect(refused.reason).toMatch(/^the file can never fit: /);
    expect(limits.holds()).toEqual([]);
  });

  it('counts a file that must wait for space neither against the quota nor the uploader', async () => {
    const { limits, disk } = setUp({ freeSpaceReserve: 0, dailyMaxFiles: 1, uploaderMaxFilesPerMinute: 1 });
    disk.availableBytes = 0;
    expectKind(await limits.admit({ size: 1, uploaderUid: ALICE }), 'wait');
    disk.availableBytes = GiB;
    expectKind(await limits.admit({ size: 1, uploaderUid: ALICE }), 'take');
  });

  it('gives the counts back for a file that was admitted but not taken, once', async () => {
    const { limits } = setUp({ dailyMaxFiles: 1, uploaderMaxFilesPerMinute: 1 });
    const first = expectKind(await limits.admit({ size: 1, uploaderUid: ALICE }), 'take');
    expectKind(await limits.admit({ size: 1, uploaderUid: BOB }), 'wait');
    limits.notTaken(first.ticket);
    limits.notTaken(first.ticket);
    expectKind(await limits.admit({ size: 1, uploaderUid: ALICE }), 'take');
    expectKind(await limits.admit({ size: 1, uploaderUid: BOB }), 'wait');
  });

  it('never lets concurrent admissions overshoot the quota', async () => {
    const { limits } = setUp({ dailyMaxFiles: 3 });
    const admissions = await Promise.all(Array.from({ length: 8 }, (_, n) => limits.admit({ size: 1, uploaderUid: n })));
    expect(admissions.filter((admission) => admission.kind === 'take')).toHaveLength(3);
    expect(admissions.filter((admission) => admission.kind === 'wait')).toHaveLength(5);
  });

  it('applies new limits on reload', async () => {
    const { limits, disk } = setUp({ maxFileSize: MiB });
    expectKind(await limits.admit({ size: 2 * MiB, uploaderUid: ALICE }), 'reject');
    disk.availableBytes = GiB;
    limits.setOptions({ ...NO_LIMITS, maxFileSize: 4 * MiB, freeSpaceReserve: GiB, dailyMaxFiles: 1 });
    expectKind(await limits.admit({ size: 2 * MiB, uploaderUid: ALICE }), 'wait');
    limits.setOptions({ ...NO_LIMITS, maxFileSize: 4 * MiB, dailyMaxFiles: 1 });
    expectKind(await limits.admit({ size: 2 * MiB, uploaderUid: ALICE }), 'take');
    expectKind(await limits.admit({ size: 2 * MiB, uploaderUid: ALICE }), 'wait');
  });
});
