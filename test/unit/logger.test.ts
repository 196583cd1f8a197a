import { lstat, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger, flushLogger, formatConsoleLine, formatJsonLine, LOG_FILE_NAME } from '../../src/logger.js';

/** A console stand-in that keeps what was written. */
function collectingStream(): { stream: Writable; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer | string, _encoding, callback) {
      chunks.push(chunk.toString());
      callback();
    },
  });
  return { stream, text: () => chunks.join('') };
}

describe('formatConsoleLine', () => {
  it('writes level, message and key=value pairs, without a timestamp', () => {
    const line = formatConsoleLine({ level: 'info', message: 'released', path: '/srv/out/a.csv', size: 12, resumed: false });
    expect(line).toBe('info: released path=/srv/out/a.csv size=12 resumed=false');
  });

  it('quotes values with spaces, quotes, equals signs or nothing in them', () => {
    const line = formatConsoleLine({
      level: 'warn',
      message: 'renamed',
      from: '/srv/out/my report.pdf',
      note: 'say "hi"',
      query: 'a=b',
      empty: '',
    });
    expect(line).toBe('warn: renamed from="/srv/out/my report.pdf" note="say \\"hi\\"" query="a=b" empty=""');
  });

  it('keeps every event on one line', () => {
    const line = formatConsoleLine({ level: 'error', message: 'bad\nname', path: '/srv/in/x\ny' });
    expect(line).toBe('error: bad\\nname path="/srv/in/x\\ny"');
    expect(line).not.toContain('\n');
  });

  it('shows errors by their message and objects as JSON', () => {
    const error = Object.assign(new Error('EACCES: permission denied, open \'/srv/q/x\''), { code: 'EACCES' });
    const line = formatConsoleLine({ level: 'error', message: 'copy failed', err: error, counts: { queued: 3 } });
    expect(line).toBe('error: copy failed err="EACCES: permission denied, open \'/srv/q/x\'" counts={"queued":3}');
  });

  it('leaves out the symbol-keyed bookkeeping winston adds', () => {
    const info = { level: 'info', message: 'hello', [Symbol.for('level')]: 'info', [Symbol.for('splat')]: [] };
    expect(formatConsoleLine(info)).toBe('info: hello');
  });
});

describe('formatJsonLine', () => {
  it('puts timestamp, level and message first, then the metadata, and keeps fs error details', () => {
    const error = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', syscall: 'write' });
    const line = formatJsonLine({ level: 'error', message: 'intake failed', path: '/srv/in/a', err: error }, new Date('2025-01-02T03:04:05.678Z'));
    expect(JSON.parse(line)).toEqual({
      timestamp: '2025-01-02T03:04:05.678Z',
      level: 'error',
      message: 'intake failed',
      path: '/srv/in/a',
      err: { name: 'Error', message: 'ENOSPC: no space left on device, write', code: 'ENOSPC', syscall: 'write' },
    });
    expect(Object.keys(JSON.parse(line) as object).slice(0, 3)).toEqual(['timestamp', 'level', 'message']);
  });

  it('still records the event when the metadata cannot be serialised', () => {
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    const parsed = JSON.parse(formatJsonLine({ level: 'warn', message: 'odd', circular }, new Date(0))) as Record<string, unknown>;
    expect(parsed).toMatchObject({ level: 'warn', message: 'odd' });
    expect(parsed.metadataError).toContain('not serialisable');
  });
});

describe('createLogger', () => {
  let logDir: string;
  beforeEach(async () => {
    logDir = await mkdtemp(path.join(os.tmpdir(), 'shuttle-logger-'));
  });
  afterEach(async () => {
    await rm(logDir, { recursive: true, force: true });
  });

  it('writes console lines to the given stream', async () => {
    const output = collectingStream();
    const logger = createLogger({ level: 'info', consoleStream: output.stream });
    logger.info('released', { path: '/srv/out/a b.csv', sha256: 'ab12' });
    await flushLogger(logger);
    expect(output.text()).toBe('info: released path="/srv/out/a b.csv" sha256=ab12\n');
  });

  it('filters by level', async () => {
    const output = collectingStream();
    const logger = createLogger({ level: 'warn', consoleStream: output.stream });
    logger.debug('noise');
    logger.info('routine');
    logger.warn('attention', { code: 'EAGAIN' });
    logger.error('trouble');
    await flushLogger(logger);
    expect(output.text()).toBe('warn: attention code=EAGAIN\nerror: trouble\n');
  });

  it('writes JSON lines to <logDir>/shuttle.log, created 0660', async () => {
    const logger = createLogger({ level: 'debug', logDir, console: false });
    logger.debug('watching', { path: '/srv/in' });
    logger.info('released', { path: '/srv/out/x.csv', size: 3 });
    await flushLogger(logger);

    const file = path.join(logDir, LOG_FILE_NAME);
    expect((await lstat(file)).mode & 0o7777).toBe(0o660);
    const records = (await readFile(file, 'utf8'))
      .trimEnd()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(records).toHaveLength(2);
    expect(records[0]).toMatchObject({ level: 'debug', message: 'watching', path: '/srv/in' });
    expect(records[1]).toMatchObject({ level: 'info', message: 'released', path: '/srv/out/x.csv', size: 3 });
    expect(Date.parse(String(records[1]?.timestamp))).not.toBeNaN();
  });

  it('appends to an existing log file', async () => {
    const file = path.join(logDir, LOG_FILE_NAME);
    await writeFile(file, '{"message":"earlier"}\n', { mode: 0o640 });
    const logger = createLogger({ level: 'info', logDir, console: false });
    logger.info('later');
    await flushLogger(logger);
    const lines = (await readFile(file, 'utf8')).trimEnd().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toBe('{"message":"earlier"}');
    expect(JSON.parse(lines[1] ?? '')).toMatchObject({ message: 'later' });
  });

  it('refuses to follow a symlink planted as the log file', async () => {
    await symlink(path.join(logDir, 'elsewhere'), path.join(logDir, LOG_FILE_NAME));
    expect(() => createLogger({ level: 'info', logDir, console: false })).toThrow(/ELOOP/);
  });

  it('flushLogger waits until every line is in the file, and can be called twice', async () => {
    const output = collectingStream();
    const logger = createLogger({ level: 'info', logDir, consoleStream: output.stream });
    for (let index = 0; index < 2000; index++) logger.info('item', { index });
    await Promise.all([flushLogger(logger), flushLogger(logger)]);
    await flushLogger(logger);

    const lines = (await readFile(path.join(logDir, LOG_FILE_NAME), 'utf8')).trimEnd().split('\n');
    expect(lines).toHaveLength(2000);
    expect(JSON.parse(lines[1999] ?? '')).toMatchObject({ index: 1999 });
    expect(output.text().trimEnd().split('\n')).toHaveLength(2000);
  });
});
