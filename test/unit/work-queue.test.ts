import { describe, expect, it } from 'vitest';
import { Batches, KeyedQueue, Slots } from '../../src/work-queue.js';

const tick = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 5));

describe('KeyedQueue', () => {
  it('runs at most `concurrency` keys at once', async () => {
    let running = 0;
    let peak = 0;
    const queue = new KeyedQueue<number>(2, async () => {
      running++;
      peak = Math.max(peak, running);
      await tick();
      running--;
    }, () => undefined);
    for (let key = 0; key < 10; key++) queue.add(key);
    await queue.whenIdle();
    expect(peak).toBe(2);
  });

  it('coalesces repeats: a waiting key runs once, a running key once more afterwards', async () => {
    const runs: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const queue = new KeyedQueue<string>(1, async (key) => {
      runs.push(key);
      if (runs.length === 1) await gate;
    }, () => undefined);
    queue.add('a');
    queue.add('a');
    queue.add('a');
    queue.add('b');
    queue.add('b');
    release();
    await queue.whenIdle();
    expect(runs).toEqual(['a', 'b', 'a']);
  });

  it('reports worker errors and keeps going', async () => {
    const errors: Array<[string, unknown]> = [];
    const done: string[] = [];
    const queue = new KeyedQueue<string>(1, async (key) => {
      if (key === 'bad') throw new Error('boom');
      done.push(key);
    }, (key, error) => errors.push([key, error]));
    queue.add('bad');
    queue.add('good');
    await queue.whenIdle();
    expect(done).toEqual(['good']);
    expect(errors).toHaveLength(1);
    expect((errors[0]![1] as Error).message).toBe('boom');
  });

  it('takes no new work after close, but lets running work finish', async () => {
    const runs: string[] = [];
    const queue = new KeyedQueue<string>(1, async (key) => {
      await tick();
      runs.push(key);
    }, () => undefined);
    queue.add('running');
    queue.add('waiting');
    queue.close();
    queue.add('late');
    await queue.whenIdle();
    expect(runs).toEqual(['running']);
  });
});

describe('Slots', () => {
  it('runs at most `limit` tasks at once, in arrival order, and takes a new limit at once', async () => {
    const slots = new Slots(2);
    let running = 0;
    let peak = 0;
    const started: number[] = [];
    const task = (n: number) => async () => {
      started.push(n);
      running++;
      peak = Math.max(peak, running);
      await tick();
      running--;
      return n;
    };
    const results = await Promise.all([1, 2, 3, 4, 5].map((n) => slots.run(task(n))));
    expect(results).toEqual([1, 2, 3, 4, 5]);
    expect(started).toEqual([1, 2, 3, 4, 5]);
    expect(peak).toBe(2);

    peak = 0;
    const more = [6, 7, 8, 9].map((n) => slots.run(task(n)));
    slots.setLimit(4);
    await Promise.all(more);
    expect(peak).toBe(4);
  });

  it('frees the slot of a task that throws', async () => {
    const slots = new Slots(1);
    await expect(slots.run(async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    await expect(slots.run(async () => 'next')).resolves.toBe('next');
  });
});

/** A job that records each batch and settles it only when told, failing the items in `fail`. */
function recordingJob(fail: ReadonlySet<number> = new Set()) {
  const batches: number[][] = [];
  const pending: Array<() => void> = [];
  const run = (items: readonly number[]): Promise<(string | Error)[]> => {
    batches.push([...items]);
    return new Promise((resolve) => pending.push(() => resolve(items.map((item) => (fail.has(item) ? new Error(`item ${item} failed`) : `done ${item}`)))));
  };
  const settleNext = async (): Promise<void> => {
    await new Promise((resolve) => setImmediate(resolve));
    pending.shift()?.();
    await new Promise((resolve) => setImmediate(resolve));
  };
  return { batches, run, settleNext };
}

describe('Batches', () => {
  it('sends what is asked for while a batch runs together in the next batch, at most maxBatch at a time', async () => {
    const { batches, run, settleNext } = recordingJob();
    const batched = new Batches(run, 2);
    const outcomes = [10, 11, 12, 13].map((item) => batched.run(item));
    expect(batches).toEqual([[10]]);
    await settleNext();
    expect(batches).toEqual([[10], [11, 12]]);
    await settleNext();
    expect(batches).toEqual([[10], [11, 12], [13]]);
    await settleNext();
    expect(await Promise.all(outcomes)).toEqual(['done 10', 'done 11', 'done 12', 'done 13']);
  });

  it('fails only the item whose outcome is an error', async () => {
    const { run, settleNext } = recordingJob(new Set([21]));
    const batched = new Batches(run);
    const first = batched.run(20);
    const outcomes = [first, batched.run(21), batched.run(22)].map((promise) => promise.then(String, (error: Error) => error.message));
    await settleNext();
    await settleNext();
    expect(await Promise.all(outcomes)).toEqual(['done 20', 'item 21 failed', 'done 22']);
  });

  it('fails every item of a batch whose job throws, and goes on with the next batch', async () => {
    let calls = 0;
    const batched = new Batches(async (items: readonly number[]) => {
      calls++;
      if (calls === 1) throw new Error('no worker');
      return items.map((item) => item * 2);
    });
    const first = batched.run(30).then(String, (error: Error) => error.message);
    const second = batched.run(31).then(String, (error: Error) => error.message);
    expect(await Promise.all([first, second])).toEqual(['no worker', '62']);
  });
});
