// The Notifier with a recording send function and hand-driven timers: what it sends, when, and what it
// leaves alone. The real datagrams are in test/integration/systemd/notify.test.ts.
import { describe, expect, it } from 'vitest';
import { Notifier, watchdogInterval, type NotifyTimers } from '../../../src/notify.js';

class ManualTimers implements NotifyTimers {
  readonly intervals = new Map<number, { callback: () => void; ms: number }>();
  private next = 1;

  setInterval(callback: () => void, ms: number): unknown {
    const id = this.next++;
    this.intervals.set(id, { callback, ms });
    return id;
  }

  clearInterval(handle: unknown): void {
    this.intervals.delete(handle as number);
  }

  tick(): void {
    for (const { callback } of [...this.intervals.values()]) callback();
  }
}

const SOCKET = { NOTIFY_SOCKET: '/run/systemd/notify' };

function recorder(): { sent: string[]; send: (state: string) => boolean } {
  const sent: string[] = [];
  return { sent, send: (state) => (sent.push(state), true) };
}

describe('Notifier', () => {
  it('sends nothing without NOTIFY_SOCKET, and starts no timer', () => {
    const { sent, send } = recorder();
    const timers = new ManualTimers();
    const notifier = new Notifier({ send, env: { WATCHDOG_USEC: '30000000' }, timers });
    notifier.ready('watching');
    notifier.status('busy');
    notifier.keepAlive();
    notifier.stopping();
    expect(notifier.enabled).toBe(false);
    expect(notifier.watchdogIntervalMs).toBeNull();
    expect(sent).toEqual([]);
    expect(timers.intervals.size).toBe(0);
  });

  it('sends READY, STATUS, WATCHDOG at half of WATCHDOG_USEC, then STOPPING, and stops the timer', () => {
    const { sent, send } = recorder();
    const timers = new ManualTimers();
    const notifier = new Notifier({ send, env: { ...SOCKET, WATCHDOG_USEC: '30000000' }, timers, pid: 4242 });
    expect(notifier.watchdogIntervalMs).toBe(15_000);

    notifier.ready('watching /srv/shuttle/in');
    expect([...timers.intervals.values()].map((timer) => timer.ms)).toEqual([15_000]);
    notifier.status('3 in flight');
    timers.tick();
    timers.tick();
    notifier.stopping('draining');
    timers.tick();

    expect(sent).toEqual([
      'READY=1\nSTATUS=watching /srv/shuttle/in',
      'WATCHDOG=1',
      'STATUS=3 in flight',
      'WATCHDOG=1',
      'WATCHDOG=1',
      'STOPPING=1\nSTATUS=draining',
    ]);
    expect(timers.intervals.size).toBe(0);
  });

  it('sends no keep-alives when WATCHDOG_PID names another process', () => {
    const { sent, send } = recorder();
    const timers = new ManualTimers();
    const notifier = new Notifier({ send, env: { ...SOCKET, WATCHDOG_USEC: '1000000', WATCHDOG_PID: '17' }, timers, pid: 4242 });
    notifier.ready();
    notifier.keepAlive();
    expect(sent).toEqual(['READY=1']);
    expect(timers.intervals.size).toBe(0);
  });

  it('keeps STATUS to one line and does not repeat an unchanged one', () => {
    const { sent, send } = recorder();
    const notifier = new Notifier({ send, env: SOCKET, timers: new ManualTimers() });
    notifier.status('queue:\n  2 waiting');
    notifier.status('queue: 2 waiting');
    notifier.status('x'.repeat(500));
    expect(sent).toEqual(['STATUS=queue: 2 waiting', `STATUS=${'x'.repeat(200)}`]);
  });

  it('uses the addon object, and says RELOADING with the monotonic time', () => {
    const sent: string[] = [];
    const addon = { sdNotify: (state: string): boolean => (sent.push(state), true) };
    const notifier = new Notifier({ send: addon, env: SOCKET, timers: new ManualTimers() });
    notifier.reloading('reloading /etc/shuttle/shuttle.yaml');
    notifier.ready();
    expect(sent[0]).toMatch(/^RELOADING=1\nMONOTONIC_USEC=\d+\nSTATUS=reloading \/etc\/shuttle\/shuttle.yaml$/);
    expect(sent[1]).toBe('READY=1');
  });

  it('reports a failing send once until it works again, and never throws', () => {
    let failing = true;
    const errors: string[] = [];
    const timers = new ManualTimers();
    const notifier = new Notifier({
      send: () => {
        if (failing) throw Object.assign(new Error('ECONNREFUSED: connection refused, sendto'), { code: 'ECONNREFUSED' });
        return true;
      },
      env: { ...SOCKET, WATCHDOG_USEC: '2000000' },
      timers,
      onError: (error, state) => errors.push(`${state.split('\n')[0]}: ${error.message}`),
    });
    expect(() => notifier.ready()).not.toThrow();
    timers.tick();
    timers.tick();
    failing = false;
    timers.tick();
    failing = true;
    timers.tick();
    expect(errors).toEqual([
      'READY=1: ECONNREFUSED: connection refused, sendto',
      'WATCHDOG=1: ECONNREFUSED: connection refused, sendto',
      'WATCHDOG=1: ECONNREFUSED: connection refused, sendto',
    ]);
  });

  it('ignores calls after stopping, and ready() twice starts one timer', () => {
    const { sent, send } = recorder();
    const timers = new ManualTimers();
    const notifier = new Notifier({ send, env: { ...SOCKET, WATCHDOG_USEC: '2000000' }, timers });
    notifier.ready();
    notifier.ready();
    expect(timers.intervals.size).toBe(1);
    notifier.stopping();
    notifier.stopping();
    notifier.ready();
    expect(sent.filter((state) => state.startsWith('STOPPING'))).toHaveLength(1);
    expect(sent.filter((state) => state.startsWith('READY'))).toHaveLength(2);
    expect(timers.intervals.size).toBe(0);
  });
});

describe('watchdogInterval', () => {
  it('is half of WATCHDOG_USEC in milliseconds, for this process only', () => {
    expect(watchdogInterval({ WATCHDOG_USEC: '30000000' }, 1)).toBe(15_000);
    expect(watchdogInterval({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '1' }, 1)).toBe(15_000);
    expect(watchdogInterval({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '2' }, 1)).toBeNull();
    expect(watchdogInterval({ WATCHDOG_USEC: '1000' }, 1)).toBe(1);
    expect(watchdogInterval({}, 1)).toBeNull();
    expect(watchdogInterval({ WATCHDOG_USEC: '0' }, 1)).toBeNull();
    expect(watchdogInterval({ WATCHDOG_USEC: '-5' }, 1)).toBeNull();
    expect(watchdogInterval({ WATCHDOG_USEC: 'soon' }, 1)).toBeNull();
  });
});
