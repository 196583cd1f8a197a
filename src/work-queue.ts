/**
 * Work keyed by path or item id, at most `concurrency` at a time. Adding a key that is already waiting
 * does nothing; adding one that is running makes it run once more afterwards, so bursts of watcher events
 * for one file coalesce into at most one extra pass.
 */
export class KeyedQueue<K> {
  /** Keys in arrival order from `head` on; shift() would be O(n) with a hundred thousand waiting. */
  private waiting: K[] = [];
  private head = 0;
  private readonly queued = new Set<K>();
  private readonly running = new Set<K>();
  private readonly rerun = new Set<K>();
  private idleWaiters: Array<() => void> = [];
  private closed = false;

  constructor(
    private concurrency: number,
    private readonly worker: (key: K) => Promise<void>,
    private readonly onError: (key: K, error: unknown) => void,
  ) {}

  add(key: K): void {
    if (this.closed) return;
    if (this.running.has(key)) {
      this.rerun.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    this.queued.add(key);
    this.waiting.push(key);
    this.pump();
  }

  get pending(): number {
    return this.waiting.length - this.head;
  }

  get active(): number {
    return this.running.size;
  }

  /** A new limit on work at once: more starts now, or fewer as running work finishes. */
  setConcurrency(concurrency: number): void {
    this.concurrency = concurrency;
    this.pump();
  }

  /** Take no more work; what is running carries on. */
  close(): void {
    this.closed = true;
    this.waiting = [];
    this.head = 0;
    this.queued.clear();
    this.rerun.clear();
    this.settleIfIdle();
  }

  /** Resolves when nothing is running or waiting. */
  whenIdle(): Promise<void> {
    if (this.running.size === 0 && this.pending === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private pump(): void {
    while (this.running.size < this.concurrency && this.pending > 0) {
      const key = this.waiting[this.head++] as K;
      if (this.head > 1024 && this.head * 2 > this.waiting.length) {
        this.waiting = this.waiting.slice(this.head);
        this.head = 0;
      }
      this.queued.delete(key);
      this.running.add(key);
      void this.run(key);
    }
  }

  private async run(key: K): Promise<void> {
    try {
      await this.worker(key);
    } catch (error) {
      this.onError(key, error);
    }
    this.running.delete(key);
    if (this.rerun.delete(key)) this.add(key);
    this.pump();
    this.settleIfIdle();
  }

  private settleIfIdle(): void {
    if (this.running.size > 0 || this.pending > 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    waiters.forEach((resolve) => resolve());
  }
}

/** At most `limit` tasks at once through `run`; the others wait their turn in arrival order. */
export class Slots {
  private held = 0;
  private readonly waiters: Array<() => void> = [];

  constructor(private limit: number) {}

  /** A new limit: waiting tasks start now if it grew; if it shrank, running ones finish first. */
  setLimit(limit: number): void {
    this.limit = limit;
    this.wake();
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.held >= this.limit || this.waiters.length > 0) await new Promise<void>((resolve) => this.waiters.push(resolve));
    else this.held++;
    try {
      return await task();
    } finally {
      this.held--;
      this.wake();
    }
  }

  private wake(): void {
    while (this.held < this.limit && this.waiters.length > 0) {
      this.held++;
      (this.waiters.shift() as () => void)();
    }
  }
}

/**
 * Items handed to one job in batches: whatever is asked for while `parallel` batches run goes together in the
 * next (at most `maxBatch` per batch), the way a group commit works. `runBatch` answers one outcome per item, in
 * order: a value, or an Error for that item alone. If it throws, every item of that batch fails with it.
 */
export class Batches<T, R> {
  private queued: Array<{ item: T; resolve: (value: R) => void; reject: (error: Error) => void }> = [];
  private running = 0;

  constructor(
    private readonly runBatch: (items: readonly T[]) => Promise<ReadonlyArray<R | Error>>,
    private readonly maxBatch = 256,
    private readonly parallel = 1,
  ) {}

  run(item: T): Promise<R> {
    return new Promise((resolve, reject) => {
      this.queued.push({ item, resolve, reject });
      if (this.running < this.parallel) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.running++;
    while (this.queued.length > 0) {
      const batch = this.queued.splice(0, this.maxBatch);
      try {
        const outcomes = await this.runBatch(batch.map((entry) => entry.item));
        batch.forEach((entry, index) => {
          const outcome = outcomes[index] as R | Error;
          if (outcome instanceof Error) entry.reject(outcome);
          else entry.resolve(outcome);
        });
      } catch (error) {
        for (const entry of batch) entry.reject(error as Error);
      }
    }
    this.running--;
  }
}
