// Two sinks: one human line per event on stdout for journald (which adds its own timestamps), and,
// when a log directory is configured, JSON lines in <logDir>/shuttle.log for machines and audits.
// Callers pass structured metadata ({ path, sha256, code }); file contents never reach a logger.

import fs from 'node:fs';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { promisify } from 'node:util';
import winston from 'winston';
import TransportStream from 'winston-transport';
import type { LogLevel } from './config.js';

export const LOG_FILE_NAME = 'shuttle.log';

export interface LoggerOptions {
  level: LogLevel;
  /** Directory for shuttle.log; no file sink when absent. The directory must already exist. */
  logDir?: string;
  /** Human-readable lines on stdout; default true. */
  console?: boolean;
  /** Where console lines go; default process.stdout. */
  consoleStream?: Writable;
}

type LogRecord = Record<string | symbol, unknown> & { level: string; message: unknown };

/** Open log files by logger, so flushLogger can fsync and close them after the last line. */
const logFiles = new WeakMap<winston.Logger, LogFile>();
const pendingFlushes = new WeakMap<winston.Logger, Promise<void>>();

export function createLogger(options: LoggerOptions): winston.Logger {
  const consoleStream = (options.console ?? true) ? (options.consoleStream ?? process.stdout) : null;
  const logFile = options.logDir === undefined ? null : LogFile.open(path.join(options.logDir, LOG_FILE_NAME));
  const sinks = consoleStream === null && logFile === null ? [] : [new LineSinks(consoleStream, logFile?.stream ?? null)];
  const logger = winston.createLogger({
    level: options.level,
    transports: sinks,
    silent: sinks.length === 0,
    exitOnError: false,
  });
  if (logFile) logFiles.set(logger, logFile);
  return logger;
}

/**
 * Both sinks in one transport: winston hands every record to each transport through its own stream, and
 * with a line or two per file that hand-over cost more than formatting and writing the lines. Lines logged
 * in one turn of the event loop leave together, one write per sink, when the turn ends.
 */
class LineSinks extends TransportStream {
  private holding = false;

  constructor(
    private readonly consoleStream: Writable | null,
    private readonly fileStream: Writable | null,
  ) {
    super();
  }

  override log(info: LogRecord, callback: () => void): void {
    if (!this.holding) {
      this.holding = true;
      this.consoleStream?.cork();
      this.fileStream?.cork();
      holdingSinks.add(this);
      setImmediate(() => this.writeHeldLines());
    }
    this.consoleStream?.write(`${formatConsoleLine(info)}\n`);
    this.fileStream?.write(`${formatJsonLine(info, new Date())}\n`);
    callback();
  }

  /** The logger is ending (flushLogger): nothing may stay held back. */
  override _final(callback: (error?: Error | null) => void): void {
    this.writeHeldLines();
    callback();
  }

  writeHeldLines(): void {
    if (!this.holding) return;
    this.holding = false;
    holdingSinks.delete(this);
    this.consoleStream?.uncork();
    this.fileStream?.uncork();
  }
}

const holdingSinks = new Set<LineSinks>();
// process.exit() does not wait for the next turn: lines held back for the console go out first.
process.on('exit', () => {
  for (const sinks of holdingSinks) sinks.writeHeldLines();
});

/**
 * Ends the logger and resolves once every line is written and the log file is fsynced and closed.
 * Safe to call more than once; later calls wait for the first.
 */
export function flushLogger(logger: winston.Logger): Promise<void> {
  let pending = pendingFlushes.get(logger);
  if (!pending) {
    pending = endLogger(logger);
    pendingFlushes.set(logger, pending);
  }
  return pending;
}

async function endLogger(logger: winston.Logger): Promise<void> {
  if (!logger.writableFinished) {
    const finished = new Promise<void>((resolve) => logger.once('finish', () => resolve()));
    if (!logger.writableEnded) logger.end();
    await finished;
  }
  await logFiles.get(logger)?.close();
}

/** `<level>: <message> key=value key="value with spaces"`, one line whatever the message holds. */
export function formatConsoleLine(info: LogRecord): string {
  let line = `${info.level}: ${escapeControlCharacters(messageText(info.message))}`;
  for (const [key, value] of Object.entries(metadataOf(info))) {
    if (value === undefined) continue;
    line += ` ${key}=${formatConsoleValue(value)}`;
  }
  return line;
}

/** One JSON object per line: timestamp, level, message, then the metadata. */
export function formatJsonLine(info: LogRecord, now: Date): string {
  const header = { timestamp: now.toISOString(), level: info.level, message: messageText(info.message) };
  try {
    return JSON.stringify({ ...header, ...metadataOf(info) }, jsonReplacer);
  } catch (error) {
    // Circular or otherwise unserialisable metadata must not cost us the event itself.
    return JSON.stringify({ ...header, metadataError: `metadata not serialisable: ${String(error)}` });
  }
}

function metadataOf(info: LogRecord): Record<string, unknown> {
  const metadata: Record<string, unknown> = {};
  for (const key of Object.keys(info)) {
    if (key === 'level' || key === 'message' || key === 'timestamp') continue;
    metadata[key] = info[key];
  }
  return metadata;
}

function messageText(message: unknown): string {
  if (typeof message === 'string') return message;
  if (message instanceof Error) return message.message;
  return message === undefined ? '' : String(message);
}

function formatConsoleValue(value: unknown): string {
  if (typeof value === 'object' && value !== null && !(value instanceof Error) && !(value instanceof Date)) {
    // Compact JSON reads fine bare; it needs quoting only when a string inside it has spaces.
    const json = safeJson(value);
    return /[\s\p{Cc}]/u.test(json) ? JSON.stringify(json) : json;
  }
  let text: string;
  if (typeof value === 'string') text = value;
  else if (value instanceof Error) text = value.message;
  else if (value instanceof Date) text = value.toISOString();
  else text = String(value);
  return text === '' || /[\s"'=\\\p{Cc}]/u.test(text) ? JSON.stringify(text) : text;
}

function safeJson(value: object): string {
  try {
    return JSON.stringify(value, jsonReplacer) ?? String(value);
  } catch {
    return '[unserialisable]';
  }
}

function jsonReplacer(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Error) {
    // Node's fs-style errors carry their useful parts in own properties JSON.stringify would drop.
    const { code, errno, syscall, path: errorPath } = value as NodeJS.ErrnoException;
    return { name: value.name, message: value.message, code, errno, syscall, path: errorPath };
  }
  return value;
}

function escapeControlCharacters(text: string): string {
  return text.replace(/\p{Cc}/gu, (character) => {
    if (character === '\n') return '\\n';
    if (character === '\r') return '\\r';
    if (character === '\t') return '\\t';
    return `\\x${character.charCodeAt(0).toString(16).padStart(2, '0')}`;
  });
}

const fsync = promisify(fs.fsync);
const closeDescriptor = promisify(fs.close);

/** shuttle.log, opened without following symlinks and created 0660 whatever the umask. */
class LogFile {
  private reportedWriteError = false;

  private constructor(
    private readonly fd: number,
    readonly stream: fs.WriteStream,
  ) {
    // A full or failing log disk must not take the daemon down; journald still gets every line.
    stream.on('error', (error) => {
      if (this.reportedWriteError) return;
      this.reportedWriteError = true;
      process.stderr.write(`shuttle: writing ${stream.path.toString()} failed, file logging stopped: ${error.message}\n`);
    });
  }

  static open(filePath: string): LogFile {
    const { O_WRONLY, O_APPEND, O_CREAT, O_EXCL, O_NOFOLLOW } = fs.constants;
    let fd: number;
    try {
      fd = fs.openSync(filePath, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_NOFOLLOW, 0o660);
      fs.fchmodSync(fd, 0o660);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      fd = fs.openSync(filePath, O_WRONLY | O_APPEND | O_NOFOLLOW);
    }
    return new LogFile(fd, fs.createWriteStream(filePath, { fd, autoClose: false }));
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      if (this.stream.destroyed) resolve();
      else this.stream.end(() => resolve());
    });
    try {
      await fsync(this.fd);
    } catch {
      // Best effort: the error was already reported when the write failed.
    }
    await closeDescriptor(this.fd);
  }
}
