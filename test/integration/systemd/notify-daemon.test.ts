// `shuttle run` under a notify socket, as systemd starts it (Type=notify, WatchdogSec=): the daemon's own
// datagrams arrive in order, READY, STATUS, WATCHDOG (at half of WATCHDOG_USEC), STOPPING, on a path
// socket and on an abstract one.
//
// These pass once src/daemon.ts drives src/notify.ts's Notifier (ready with a status line, status
// updates, the watchdog timer, stopping). Until then the daemon sends READY=1 and STOPPING=1 itself,
// with no STATUS= and no WATCHDOG=1, and they fail on purpose.
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { listFiles, startDaemonReady, stopDaemon, waitFor, type RunningDaemon } from '../../helpers/daemon.js';
import { prepareDaemon, type DaemonSetup } from './daemon-setup.js';
import { messageKinds, startNotifyReceiver, type NotifyReceiver } from './notify-receiver.js';

let setup: DaemonSetup;
let receiver: NotifyReceiver | null = null;
let daemon: RunningDaemon | null = null;

beforeAll(async () => {
  setup = await prepareDaemon();
});

afterEach(async () => {
  if (daemon) await stopDaemon(daemon);
  daemon = null;
  receiver?.close();
  receiver = null;
});

afterAll(async () => {
  await setup?.remove();
});

async function runUnderNotifySocket(address: string): Promise<string[]> {
  receiver = await startNotifyReceiver(address);
  daemon = await startDaemonReady(setup.configFile, { NOTIFY_SOCKET: address, WATCHDOG_USEC: '400000' });
  await receiver.waitFor(/^READY=1/m);
  await receiver.waitFor(/^WATCHDOG=1$/);
  const name = `notify-${randomBytes(4).toString('hex')}.txt`;
  await fsp.writeFile(path.join(setup.directories.source, name), 'hello');
  await waitFor(async () => (await listFiles(setup.directories.destination)).includes(name), 20_000, () => daemon!.output());
  // Several keep-alives while it works: the timer runs on the event loop, not on start-up alone.
  await new Promise((resolve) => setTimeout(resolve, 700));
  expect(await stopDaemon(daemon)).toBe(0);
  daemon = null;
  await receiver.waitFor(/^STOPPING=1/m);
  return receiver.messages();
}

function expectSystemdOrder(messages: readonly string[]): void {
  const kinds = messageKinds(messages);
  expect(kinds[0], JSON.stringify(messages)).toBe('READY');
  expect(kinds).toContain('STATUS');
  const ready = kinds.indexOf('READY');
  const firstWatchdog = kinds.indexOf('WATCHDOG');
  const stopping = kinds.indexOf('STOPPING');
  expect(firstWatchdog).toBeGreaterThan(ready);
  expect(stopping).toBeGreaterThan(firstWatchdog);
  expect(kinds.filter((kind) => kind === 'WATCHDOG').length).toBeGreaterThanOrEqual(3);
  expect(kinds.lastIndexOf('WATCHDOG')).toBeLessThan(stopping);
  expect(kinds.filter((kind) => kind === 'READY')).toHaveLength(1);
}

describe('shuttle run and sd_notify', () => {
  it('sends READY, STATUS, WATCHDOG and STOPPING in order to a notify socket named by path', async () => {
    expectSystemdOrder(await runUnderNotifySocket(path.join(setup.directories.root, 'notify.sock')));
  });

  it('sends them to an abstract (@) notify socket', async () => {
    expectSystemdOrder(await runUnderNotifySocket(`@shuttle-daemon-${randomBytes(6).toString('hex')}`));
  });
});
