import { describe, expect, it } from 'vitest';
import { itemIdOfReleaseTemporary, releaseTemporaryName } from '../../src/item.js';
import { newItemId } from '../../src/intake.js';
import { collisionName } from '../../src/release.js';

describe('collisionName', () => {
  it('keeps the name the first time', () => {
    expect(collisionName('report.csv', 0)).toBe('report.csv');
  });
  it('numbers the stem and keeps the extension', () => {
    expect(collisionName('report.csv', 1)).toBe('report (1).csv');
    expect(collisionName('archive.tar.gz', 2)).toBe('archive.tar (2).gz');
  });
  it('treats a dot file and a name without extension as all stem', () => {
    expect(collisionName('.profile', 1)).toBe('.profile (1)');
    expect(collisionName('README', 3)).toBe('README (3)');
  });
});

describe('item ids and temporary names', () => {
  it('round-trips an id through the temporary name', () => {
    const id = newItemId(new Date('2026-01-02T03:04:05Z'));
    expect(itemIdOfReleaseTemporary(releaseTemporaryName(id))).toBe(id);
  });
  it('gives distinct ids in the same millisecond', () => {
    const now = new Date();
    const ids = new Set(Array.from({ length: 1000 }, () => newItemId(now)));
    expect(ids.size).toBe(1000);
  });
  it('does not mistake an uploaded name for a temporary one', () => {
    expect(itemIdOfReleaseTemporary('.shuttle-notes.tmp')).toBeNull();
    expect(itemIdOfReleaseTemporary('report.tmp')).toBeNull();
  });
});
