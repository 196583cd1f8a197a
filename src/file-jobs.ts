// fsync, exclusive create and close: the file calls that can wait on the disk, so they leave the main thread.
//
// Each goes to the thread pool in batches (Batches in work-queue.ts, over the addon's syncDescriptors,
// createFiles and closeDescriptors): what is asked for while a batch runs goes in the next one. With many
// small files in flight that is one thread wake-up per batch instead of one per file, and the fsyncs of a
// batch usually share one journal commit (see native/src/batch.cc). Every caller still learns the outcome of
// its own call. Without the addon each call runs on its own through node:fs.

import fs from 'node:fs';
import { promisify } from 'node:util';
import { tryLoadNative, type NameChange, type NativeAddon } from './native.js';
import { Batches } from './work-queue.js';

const fsyncAlone = promisify(fs.fsync);
const closeAlone = promisify(fs.close);
const openAlone = promisify(fs.open);

const CREATE_FLAGS = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW;

/** A file to create: `name` inside the open directory `directory`, with `mode`. */
export interface Creation {
  readonly directory: number;
  readonly name: string;
  readonly mode: number;
}

interface BatchedJobs {
  readonly fsync: Batches<number, null>;
  readonly create: Batches<Creation, number>;
  readonly close: Batches<number, null>;
  readonly names: Batches<NameChange, null>;
}

/** The addon's jobs, each behind its own batches; null without the addon. */
export function batchedJobs(addon: NativeAddon | null): BatchedJobs | null {
  if (addon === null) return null;
  return {
    fsync: new Batches((fds) => addon.syncDescriptors(fds)),
    create: new Batches((files) => addon.createFiles(files)),
    close: new Batches((fds) => addon.closeDescriptors(fds)),
    names: new Batches((changes) => addon.changeNames(changes)),
  };
}

let shared: BatchedJobs | null | undefined;

function jobs(): BatchedJobs | null {
  if (shared === undefined) shared = batchedJobs(tryLoadNative());
  return shared;
}

/** fsync(2) of `fd`; the caller keeps it open until this settles. */
export function fsyncDescriptor(fd: number): Promise<void> {
  const batched = jobs();
  if (batched === null) return fsyncAlone(fd);
  return batched.fsync.run(fd).then(() => undefined);
}

/** close(2) of `fd`, which the caller gives up at once. */
export function closeDescriptor(fd: number): Promise<void> {
  const batched = jobs();
  if (batched === null) return closeAlone(fd);
  return batched.close.run(fd).then(() => undefined);
}

/**
 * Create `creation.name` in the open directory `creation.directory` (O_EXCL, never through a symlink) and
 * return its descriptor, write-only. `fallbackPath` names the same file for node:fs when there is no addon.
 * The caller keeps the directory open until this settles.
 */
export function createExclusiveIn(creation: Creation, fallbackPath: string): Promise<number> {
  const batched = jobs();
  if (batched === null) return openAlone(fallbackPath, CREATE_FLAGS, creation.mode);
  return batched.create.run(creation);
}

/**
 * rename(2), link(2) or unlink(2) of a name inside an open directory (see NameChange); `alone` does the same
 * through node:fs when there is no addon. The caller keeps the directories open until this settles.
 */
export async function changeName(change: NameChange, alone: () => void): Promise<void> {
  const batched = jobs();
  if (batched === null) alone();
  else await batched.names.run(change);
}

/** Whether the calls above go in batches (the addon is loaded). */
export function fileJobsAreBatched(): boolean {
  return jobs() !== null;
}
