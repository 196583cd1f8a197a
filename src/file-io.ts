// Reading, hashing and copying file contents through plain descriptors.
//
// A file of at most SYNC_IO_MAX_BYTES is read and written with synchronous calls: its bytes are almost always
// in the page cache (it was just written), so each call is a few microseconds of kernel time, while a trip
// through the thread pool costs two thread wake-ups and a promise, and with many small files those trips
// were most of the main thread's work. Larger files go through the thread pool, where a slow disk cannot
// stall the event loop. fsync always goes through the thread pool (file-jobs.ts): it waits on the disk by design.

import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { promisify } from 'node:util';
import { fsyncDescriptor } from './file-jobs.js';
import { Slots } from './work-queue.js';

export const SYNC_IO_MAX_BYTES = 64 * 1024;
const SMALL_CHUNK = 256 * 1024;
/** 1 MiB reads already run at disk speed; larger ones only add memory per file in flight (RSS ceiling). */
const LARGE_CHUNK = 1024 * 1024;
/**
 * Copies and hashes of files above SYNC_IO_MAX_BYTES running at once, each with a LARGE_CHUNK buffer: this, not
 * how many files are in flight, bounds the memory they take (16 MiB). A handful already keeps a disk busy.
 */
const LARGE_TRANSFERS_AT_ONCE = 16;
const largeTransfers = new Slots(LARGE_TRANSFERS_AT_ONCE);

const readAsync = promisify(fs.read);
const writeAsync = promisify(fs.write);

/** Whether a file of `size` bytes is read and written with synchronous calls. */
export function smallEnoughForSyncIo(size: number): boolean {
  return size <= SYNC_IO_MAX_BYTES;
}

/** pread(2) of up to `length` bytes at `position`; returns how many came. */
export async function readAt(fd: number, buffer: Buffer, offset: number, length: number, position: number, sync: boolean): Promise<number> {
  if (sync) return fs.readSync(fd, buffer, offset, length, position);
  return (await readAsync(fd, buffer, offset, length, position)).bytesRead;
}

async function writeAllAt(fd: number, data: Buffer, position: number, sync: boolean): Promise<void> {
  let written = 0;
  while (written < data.length) {
    written += sync
      ? fs.writeSync(fd, data, written, data.length - written, position + written)
      : (await writeAsync(fd, data, written, data.length - written, position + written)).bytesWritten;
  }
}

/** A read buffer one byte larger than the file reads it whole; most files are far smaller than a chunk. */
function bufferFor(expectedSize: number): Buffer {
  return Buffer.allocUnsafe(Math.min(expectedSize > LARGE_CHUNK ? LARGE_CHUNK : SMALL_CHUNK, expectedSize + 1));
}

/**
 * Copy everything from `source` into `target`, hashing the same bytes, then fsync `target`. Both descriptors
 * stay open: the caller closes them. `sourceSize` is the size the caller just read from fstat; it sizes the
 * buffer and decides between synchronous and thread-pool calls, while the copy always runs to end of file.
 */
export async function copyAndHash(source: number, target: number, signal: AbortSignal, sourceSize: number): Promise<{ sha256: string; size: number }> {
  const sync = smallEnoughForSyncIo(sourceSize);
  if (sync) return copyAndHashWith(source, target, signal, sourceSize, true);
  return largeTransfers.run(() => copyAndHashWith(source, target, signal, sourceSize, false));
}

async function copyAndHashWith(source: number, target: number, signal: AbortSignal, sourceSize: number, sync: boolean): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  const buffer = bufferFor(sourceSize);
  let size = 0;
  for (;;) {
    signal.throwIfAborted();
    const bytesRead = await readAt(source, buffer, 0, buffer.length, size, sync);
    if (bytesRead === 0) break;
    const chunk = buffer.subarray(0, bytesRead);
    hash.update(chunk);
    await writeAllAt(target, chunk, size, sync);
    size += bytesRead;
    // A short read at or past the size fstat gave is the end of a regular file: no need to ask again.
    // A file that grows meanwhile is caught by the callers, which compare sizes or hashes afterwards.
    if (bytesRead < buffer.length && size >= sourceSize) break;
  }
  await fsyncDescriptor(target);
  return { sha256: hash.digest('hex'), size };
}

/**
 * SHA-256 of everything behind `fd`, read by position (the descriptor's offset is left alone). `size` is the
 * size the caller expects, if it knows it; it only sizes the buffer, the hash always covers whatever is there.
 */
export async function hashDescriptor(fd: number, size?: number): Promise<string> {
  const expected = size ?? fs.fstatSync(fd).size;
  const sync = smallEnoughForSyncIo(expected);
  if (sync) return hashDescriptorWith(fd, expected, true);
  return largeTransfers.run(() => hashDescriptorWith(fd, expected, false));
}

async function hashDescriptorWith(fd: number, expected: number, sync: boolean): Promise<string> {
  const hash = createHash('sha256');
  const buffer = bufferFor(expected);
  let position = 0;
  for (;;) {
    const bytesRead = await readAt(fd, buffer, 0, buffer.length, position, sync);
    if (bytesRead === 0) break;
    hash.update(buffer.subarray(0, bytesRead));
    position += bytesRead;
    // A short read past the expected size is the end of a regular file.
    if (bytesRead < buffer.length && position >= expected) break;
  }
  return hash.digest('hex');
}
