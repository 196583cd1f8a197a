// What the daemon tells systemd (sd_notify(3)): READY=1 once it is watching, STATUS= lines with what it
// is doing, WATCHDOG=1 keep-alives, RELOADING=1 around a SIGHUP reload, STOPPING=1 on shutdown.
//
// The keep-alives come from a timer on the event loop, at half of WATCHDOG_USEC as sd_watchdog_enabled(3)
// advises: if the loop is stuck, they stop and systemd restarts the service. Without NOTIFY_SOCKET (not
// started by systemd, or Type= is not notify) nothing is sent at all.

/** Sends one datagram to NOTIFY_SOCKET; the native addon's sdNotify. */
export type NotifySend = (state: string) => boolean;

export interface NotifyTimers {
  setInterval(callback: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
}

export interface NotifierOptions {
  /** The addon (its sdNotify is used) or a send function. */
  readonly send: NotifySend | { sdNotify: NotifySend };
  /** Where NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID are read; process.env by default. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** This process's id, compared with WATCHDOG_PID; process.pid by default. */
  readonly pid?: number;
  readonly timers?: NotifyTimers;
  /** A send that failed (the manager's socket gone, its queue full). Called once per failing state until one succeeds again. */
  readonly onError?: (error: Error, state: string) => void;
}

const realTimers: NotifyTimers = {
  setInterval: (callback, ms) => {
    const handle = setInterval(callback, ms);
    // The keep-alive alone must never keep the process running once everything else has stopped.
    handle.unref();
    return handle;
  },
  clearInterval: (handle) => clearInterval(handle as NodeJS.Timeout),
};

/** STATUS= is one line; systemd shows it in `systemctl status`. */
const MAX_STATUS_LENGTH = 200;

/**
 * The daemon's side of the systemd notification protocol. Every method is safe to call in any order and
 * more than once; none throws.
 */
export class Notifier {
  /** Half of WATCHDOG_USEC, in milliseconds; null when systemd does not expect keep-alives from us. */
  readonly watchdogIntervalMs: number | null;
  /** NOTIFY_SOCKET is set: messages are sent. */
  readonly enabled: boolean;
  private readonly send: NotifySend;
  private readonly timers: NotifyTimers;
  private readonly onError: (error: Error, state: string) => void;
  private watchdogTimer: unknown = null;
  private lastStatus: string | null = null;
  private readonly failing = new Set<string>();
  private stopped = false;

  constructor(options: NotifierOptions) {
    const env = options.env ?? process.env;
    this.send = typeof options.send === 'function' ? options.send : options.send.sdNotify.bind(options.send);
    this.timers = options.timers ?? realTimers;
    this.onError = options.onError ?? (() => undefined);
    this.enabled = (env.NOTIFY_SOCKET ?? '') !== '';
    this.watchdogIntervalMs = this.enabled ? watchdogInterval(env, options.pid ?? process.pid) : null;
  }

  /** READY=1 (with a first STATUS= when given), then keep-alives start. */
  ready(status?: string): void {
    if (this.stopped) return;
    this.notify(status === undefined ? 'READY=1' : `READY=1\n${this.statusField(status)}`);
    this.startWatchdog();
  }

  /** STATUS=<text>, also while stopping (to say what the drain waits for); an unchanged text is not sent again. */
  status(text: string): void {
    if (oneLine(text) === this.lastStatus) return;
    this.notify(this.statusField(text));
  }

  /** RELOADING=1 before a SIGHUP reload; call ready() when it is done (applied or refused). */
  reloading(status?: string): void {
    if (this.stopped) return;
    const monotonicUsec = process.hrtime.bigint() / 1000n;
    this.notify(`RELOADING=1\nMONOTONIC_USEC=${monotonicUsec}${status === undefined ? '' : `\n${this.statusField(status)}`}`);
  }

  /** STOPPING=1; keep-alives end, since the stop may take longer than the watchdog interval. */
  stopping(status?: string): void {
    if (this.stopped) return;
    this.stopped = true;
    this.stopWatchdog();
    this.notify(status === undefined ? 'STOPPING=1' : `STOPPING=1\n${this.statusField(status)}`);
  }

  /** Sends WATCHDOG=1 now (the timer does this on its own). */
  keepAlive(): void {
    if (this.watchdogIntervalMs !== null) this.notify('WATCHDOG=1');
  }

  /** Stops the keep-alive timer without telling systemd anything (for tests and for exits). */
  close(): void {
    this.stopped = true;
    this.stopWatchdog();
  }

  private startWatchdog(): void {
    if (this.watchdogIntervalMs === null || this.watchdogTimer !== null) return;
    this.keepAlive();
    this.watchdogTimer = this.timers.setInterval(() => this.keepAlive(), this.watchdogIntervalMs);
  }

  private stopWatchdog(): void {
    if (this.watchdogTimer === null) return;
    this.timers.clearInterval(this.watchdogTimer);
    this.watchdogTimer = null;
  }

  private statusField(text: string): string {
    this.lastStatus = oneLine(text);
    return `STATUS=${this.lastStatus}`;
  }

  private notify(state: string): void {
    if (!this.enabled) return;
    const kind = state.slice(0, state.indexOf('='));
    try {
      this.send(state);
      this.failing.delete(kind);
    } catch (error) {
      if (this.failing.has(kind)) return;
      this.failing.add(kind);
      this.onError(error instanceof Error ? error : new Error(String(error)), state);
    }
  }
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim().slice(0, MAX_STATUS_LENGTH);
}

/**
 * Half of WATCHDOG_USEC, when it is set and meant for this process (WATCHDOG_PID absent or ours), as
 * sd_watchdog_enabled(3) decides it.
 */
export function watchdogInterval(env: Readonly<Record<string, string | undefined>>, pid: number): number | null {
  const usecText = env.WATCHDOG_USEC ?? '';
  if (!/^[0-9]+$/.test(usecText)) return null;
  const usec = Number(usecText);
  if (usec <= 0) return null;
  const pidText = env.WATCHDOG_PID ?? '';
  if (pidText !== '' && Number(pidText) !== pid) return null;
  return Math.max(1, Math.floor(usec / 2000));
}
