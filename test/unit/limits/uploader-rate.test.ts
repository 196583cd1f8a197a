import { describe, expect, it } from 'vitest';
import { UploaderRateLimit } from '../../../src/limits/uploader-rate.js';

const MiB = 1024 ** 2;
const ALICE = 1001;
const BOB = 1002;

describe('UploaderRateLimit', () => {
  it('never waits and remembers no one without limits', () => {
    const rate = new UploaderRateLimit({ maxFilesPerMinute: 0, maxBytesPerMinute: 0 });
    for (let n = 0; n < 10_000; n++) expect(rate.admit(n, 10 * MiB, 0)).toBe(0);
    expect(rate.tracked).toBe(0);
  });

  it('admits a minute\'s worth of files at once, then one per interval', () => {
    const rate = new UploaderRateLimit({ maxFilesPerMinute: 3, maxBytesPerMinute: 0 });
    expect([rate.admit(ALICE, 1, 0), rate.admit(ALICE, 1, 0), rate.admit(ALICE, 1, 0)]).toEqual([0, 0, 0]);
    expect(rate.admit(ALICE, 1, 0)).toBe(20_000);
    expect(rate.admit(ALICE, 1, 15_000)).toBe(5_000);
    expect(rate.admit(ALICE, 1, 20_000)).toBe(0);
    expect(rate.admit(ALICE, 1, 20_000)).toBe(20_000);
  });

  it('paces bytes, and waits exactly until the bucket holds the file', () => {
    const rate = new UploaderRateLimit({ maxFilesPerMinute: 0, maxBytesPerMinute: 60 * MiB });
    expect(rate.admit(ALICE, 50 * MiB, 0)).toBe(0);
    // 10 MiB left, 30 MiB needed: 20 MiB at 1 MiB/s.
    expect(rate.admit(ALICE, 30 * MiB, 0)).toBe(20_000);
    expect(rate.admit(ALICE, 30 * MiB, 19_999)).toBe(1);
    expect(rate.admit(ALICE, 30 * MiB, 20_000)).toBe(0);
  });

  it('takes a file larger than a minute\'s worth once the bucket is full, then makes the uploader pay it off', () => {
    const rate = new UploaderRateLimit({ maxFilesPerMinute: 0, maxBytesPerMinute: 60 * MiB });
    expect(rate.admit(ALICE, 30 * MiB, 0)).toBe(0);
    expect(rate.admit(ALICE, 600 * MiB, 0)).toBe(30_000);
    expect(rate.admit(ALICE, 600 * MiB, 30_000)).toBe(0);
    // 540 MiB of debt at 1 MiB/s before even a 1-byte file fits.
    expect(rate.admit(ALICE, 1, 30_000)).toBe(540_000 + 1);
    expect(rate.admit(ALICE, 1, 570_001)).toBe(0);
  });

  it('waits for the tighter of the two limits', () => {
    const rate = new UploaderRateLimit({ maxFilesPerMinute: 2, maxBytesPerMinute: 6 * MiB });
    expect(rate.admit(ALICE, 4 * MiB, 0)).toBe(0);
    expect(rate.admit(ALICE, MiB, 0)).toBe(0);
    // No file left (one back every 30 s), 1 MiB of bytes left: the files wait.
    expect(rate.admit(ALICE, MiB, 0)).toBe(30_000);
    // 4 MiB more bytes take 40 s at 6 MiB/min: the bytes wait.
    expect(rate.admit(ALICE, 5 * MiB, 0)).toBe(40_000);
  });

  it('throttles one uploader without holding up another', () => {
    const rate = new UploaderRateLimit({ maxFilesPerMinute: 10, maxBytesPerMinute: 0 });
    for (let n = 0; n < 10; n++) expect(rate.admit(ALICE, 1, 0)).toBe(0);
    expect(rate.admit(ALICE, 1, 0)).toBeGreaterThan(0);
    for (let n = 0; n < 10; n++) expect(rate.admit(BOB, 1, 0)).toBe(0);
  });

  it('waitMs() takes nothing; refund() gives back what admit() took', () => {
    const rate = new UploaderRateLimit({ maxFilesPerMinute: 1, maxBytesPerMinute: 0 });
    expect(rate.waitMs(ALICE, 1, 0)).toBe(0);
    expect(rate.waitMs(ALICE, 1, 0)).toBe(0);
    expect(rate.tracked).toBe(0);
    expect(rate.admit(ALICE, 1, 0)).toBe(0);
    expect(rate.waitMs(ALICE, 1, 0)).toBe(60_000);
    rate.refund(ALICE, 1, 0);
    expect(rate.admit(ALICE, 1, 0)).toBe(0);
  });

  it('never refunds above a full bucket', () => {
    const rate = new UploaderRateLimit({ maxFilesPerMinute: 2, maxBytesPerMinute: 0 });
    rate.refund(ALICE, 1, 0);
    rate.refund(ALICE, 1, 0);
    expect([rate.admit(ALICE, 1, 0), rate.admit(ALICE, 1, 0), rate.admit(ALICE, 1, 0)]).toEqual([0, 0, 30_000]);
  });

  it('treats a clock that goes back as standing still', () => {
    const rate = new UploaderRateLimit({ maxFilesPerMinute: 1, maxBytesPerMinute: 0 });
    expect(rate.admit(ALICE, 1, 100_000)).toBe(0);
    expect(rate.admit(ALICE, 1, 50_000)).toBe(60_000);
    expect(rate.admit(ALICE, 1, 160_000)).toBe(0);
  });

  it('forgets uploaders whose buckets have refilled, so memory follows the active uploaders only', () => {
    const rate = new UploaderRateLimit({ maxFilesPerMinute: 5, maxBytesPerMinute: 100 * MiB });
    for (let uid = 0; uid < 10_000; uid++) expect(rate.admit(uid, MiB, 0)).toBe(0);
    expect(rate.tracked).toBe(10_000);
    expect(rate.admit(ALICE, 200 * MiB, 5_000)).toBe(0); // stays in debt for two minutes
    // A minute later every bucket but Alice's is full again.
    expect(rate.admit(BOB, 1, 65_000)).toBe(0);
    expect(rate.tracked).toBe(2);
    // Forgetting lost nothing: a forgotten uploader starts with the full bucket it had refilled to.
    for (let n = 0; n < 5; n++) expect(rate.admit(7, 1, 65_000)).toBe(0);
    expect(rate.admit(7, 1, 65_000)).toBe(12_000);
  });

  it('applies new limits on reload, cutting buckets down to the new size', () => {
    const rate = new UploaderRateLimit({ maxFilesPerMinute: 100, maxBytesPerMinute: 0 });
    expect(rate.admit(ALICE, 1, 0)).toBe(0);
    rate.setLimits({ maxFilesPerMinute: 2, maxBytesPerMinute: 0 });
    expect([rate.admit(ALICE, 1, 0), rate.admit(ALICE, 1, 0), rate.admit(ALICE, 1, 0)]).toEqual([0, 0, 30_000]);
    rate.setLimits({ maxFilesPerMinute: 0, maxBytesPerMinute: 0 });
    expect(rate.admit(ALICE, 1, 0)).toBe(0);
    expect(rate.admit(BOB, 1, 60_000)).toBe(0);
    expect(rate.tracked).toBe(0);
  });
});
