import { closeSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FsyncBatcher } from '../../src/file-io.js';

/** A stand-in for the addon's syncDescriptors that records each batch and settles it when told. */
function recordingSyncMany(fail: ReadonlySet<number> = new Set()) {
  const batches: number[][] = [];
  const pending: Array<() => void> = [];
  const syncMany = (fds: readonly number[]): Promise<(Error | null)[]> => {
    batches.push([...fds]);
    return new Promise((resolve) => pending.push(() => resolve(fds.map((fd) => (fail.has(fd) ? new Error(`fsync ${fd} failed`) : null)))));
  };
  const settleNext = async (): Promise<void> => {
    await new Promise((resolve) => setImmediate(resolve));
    pending.shift()?.();
    await new Promise((resolve) => setImmediate(resolve));
  };
  return { batches, syncMany, settleNext };
}

describe('FsyncBatcher', () => {
  it('sends the fsyncs asked for while a batch runs together in the next batch', async () => {
    const { batches, syncMany, settleNext } = recordingSyncMany();
    const batcher = new FsyncBatcher(syncMany);
    const settled: number[] = [];
    const first = batcher.fsync(10).then(() => settled.push(10));
    const rest = [11, 12, 13].map((fd) => batcher.fsync(fd).then(() => settled.push(fd)));
    expect(batches).toEqual([[10]]);
    await settleNext();
    expect(settled).toEqual([10]);
    expect(batches).toEqual([[10], [11, 12, 13]]);
    await settleNext();
    await Promise.all([first, ...rest]);
    expect(settled).toEqual([10, 11, 12, 13]);
  });

  it('fails only the caller whose descriptor failed', async () => {
    const { syncMany, settleNext } = recordingSyncMany(new Set([21]));
    const batcher = new FsyncBatcher(syncMany);
    const outcomes = [20, 21, 22].map((fd) => batcher.fsync(fd).then(() => 'synced', (error: Error) => error.message));
    await settleNext();
    await settleNext();
    expect(await Promise.all(outcomes)).toEqual(['synced', 'fsync 21 failed', 'synced']);
  });

  it('fails every caller of a batch that could not run at all, and goes on with the next', async () => {
    let calls = 0;
    const batcher = new FsyncBatcher(async (fds) => {
      calls++;
      if (calls === 1) throw new Error('no worker');
      return fds.map(() => null);
    });
    const first = batcher.fsync(30).then(() => 'synced', (error: Error) => error.message);
    const second = batcher.fsync(31).then(() => 'synced', (error: Error) => error.message);
    expect(await Promise.all([first, second])).toEqual(['no worker', 'synced']);
  });

  it('without the addon, fsyncs each descriptor on its own through node:fs', async () => {
    const directory = mkdtempSync(join(tmpdir(), 'shuttle-fsync-'));
    const fd = openSync(join(directory, 'file'), 'w');
    try {
      const batcher = new FsyncBatcher(null);
      await expect(batcher.fsync(fd)).resolves.toBeUndefined();
      closeSync(fd);
      await expect(batcher.fsync(fd)).rejects.toMatchObject({ code: 'EBADF' });
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });
});
