// Steps the two floor programs (durable-floor.ts, batch-floor.ts) take the same way.

import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { loadNative } from '../src/native.js';

const { O_RDONLY, O_NOFOLLOW, O_NONBLOCK } = fs.constants;

export const native = loadNative();

/** Open a source file without following a link, check it is a plain file with one link, and take a read lease on it. */
export function openLeasedSource(sourcePath: string): number {
  const source = fs.openSync(sourcePath, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  const stats = fs.fstatSync(source);
  if (!stats.isFile() || stats.nlink !== 1) throw new Error(`${sourcePath}: not a plain file with one link`);
  native.setLease(source, 'read');
  return source;
}

export function sha256(buffer: Buffer): string {
  return createHash('sha256').update(buffer).digest('hex');
}
