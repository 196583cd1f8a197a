// The Notifier over the real addon: datagrams arrive at a socket this test binds, by path and in the
// abstract namespace, in the order systemd needs them: READY, STATUS, WATCHDOG (on its own, from the
// timer at half of WATCHDOG_USEC), STOPPING.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { loadNative } from '../../../src/native.js';
import { Notifier } from '../../../src/notify.js';
import { messageKinds, startNotifyReceiver, type NotifyReceiver } from './notify-receiver.js';

const directory = mkdtempSync(path.join(os.tmpdir(), 'shuttle-notify-'));
const savedNotifySocket = process.env.NOTIFY_SOCKET;
let receiver: NotifyReceiver | null = null;
let notifier: Notifier | null = null;

afterEach(() => {
  notifier?.close();
  receiver?.close();
  receiver = null;
  if (savedNotifySocket === undefined) delete process.env.NOTIFY_SOCKET;
  else process.env.NOTIFY_SOCKET = savedNotifySocket;
});

afterAll(() => {
  rmSync(directory, { recursive: true, force: true });
});

async function driveThroughNotifier(address: string): Promise<string[]> {
  receiver = await startNotifyReceiver(address);
  // The addon reads NOTIFY_SOCKET from the process environment when it sends.
  process.env.NOTIFY_SOCKET = address;
  const errors: string[] = [];
  notifier = new Notifier({
    send: loadNative(),
    env: { NOTIFY_SOCKET: address, WATCHDOG_USEC: '200000' },
    onError: (error, state) => errors.push(`${state}: ${error.message}`),
  });
  expect(notifier.watchdogIntervalMs).toBe(100);
  notifier.ready('watching');
  notifier.status('2 in flight');
  // Keep-alives come from the timer, without any call.
  await receiver.waitFor(/^WATCHDOG=1$/);
  const keepAlives = (): number => receiver!.messages().filter((m) => m === 'WATCHDOG=1').length;
  const seen = keepAlives();
  await new Promise((resolve) => setTimeout(resolve, 350));
  expect(keepAlives()).toBeGreaterThan(seen);
  notifier.stopping('draining 1 item');
  await receiver.waitFor(/^STOPPING=1/);
  // No keep-alive after STOPPING.
  await new Promise((resolve) => setTimeout(resolve, 300));
  expect(errors).toEqual([]);
  return receiver.messages();
}

function expectOrder(messages: readonly string[]): void {
  const kinds = messageKinds(messages);
  expect(kinds.slice(0, 2)).toEqual(['READY', 'STATUS']);
  expect(messages[0]).toBe('READY=1\nSTATUS=watching');
  expect(messages).toContain('STATUS=2 in flight');
  const firstWatchdog = kinds.indexOf('WATCHDOG');
  const stopping = kinds.indexOf('STOPPING');
  expect(firstWatchdog).toBeGreaterThan(1);
  expect(stopping).toBeGreaterThan(firstWatchdog);
  expect(kinds.lastIndexOf('WATCHDOG')).toBeLessThan(stopping);
  expect(messages[messages.length - 1]).toBe('STOPPING=1\nSTATUS=draining 1 item');
}

describe('Notifier with the native sdNotify', () => {
  it('delivers READY, STATUS, WATCHDOG and STOPPING in order to a socket named by path', async () => {
    expectOrder(await driveThroughNotifier(path.join(directory, 'notify.sock')));
  });

  it('delivers them to an abstract (@) socket', async () => {
    expectOrder(await driveThroughNotifier(`@shuttle-test-${randomBytes(6).toString('hex')}`));
  });

  it('sends nothing when NOTIFY_SOCKET is unset, even with WATCHDOG_USEC', async () => {
    const address = path.join(directory, 'unused.sock');
    receiver = await startNotifyReceiver(address);
    delete process.env.NOTIFY_SOCKET;
    notifier = new Notifier({ send: loadNative(), env: { WATCHDOG_USEC: '200000' } });
    notifier.ready('watching');
    notifier.stopping();
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(receiver.messages()).toEqual([]);
  });
});
