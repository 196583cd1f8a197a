import { describe, expect, it } from 'vitest';
import { KeyedQueue } from '../../src/work-queue.js';

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
