import { describe, expect, it } from 'vitest';
import { KeyedQueue, Slots } from '../../src/work-queue.js';

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
