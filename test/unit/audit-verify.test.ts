import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import winston from 'winston';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { AuditLog } from '../../src/audit.js';
import { main } from '../../src/cli.js';
import { Zone } from '../../src/zone.js';

let root: string;
let logDirectory: string;
let configFile: string;
let stdout: string;
let stderr: string;

beforeEach(async () => {
  root = await fsp.realpath(await fsp.mkdtemp(path.join(os.tmpdir(), 'shuttle-audit-verify-')));
  logDirectory = path.join(root, 'log');
  await fsp.mkdir(logDirectory);
  configFile = path.join(root, 'shuttle.yaml');
  await fsp.writeFile(
    configFile,
    `paths:
  source_path: ${root}/in
  destination_path: ${root}/out
  quarantine_path: ${root}/quarantine
  hazard_archive_path: ${root}/hazard
  log_path: ${logDirectory}
  hazard_encryption_key_path: ${root}/etc/hazard-public.asc
  ledger_file_path: ${root}/etc/ledger.yaml
scanners:
  clamd: { socket: /run/clamav/clamd.ctl }
`,
  );
  const log = await AuditLog.open(new Zone([logDirectory]), logDirectory, winston.createLogger({ silent: true }), () => new Date('2026-03-01T10:00:00.000Z'));
  await log.append({ event: 'detected', path: 'a.csv' });
  await log.append({ event: 'rejected', path: 'b.lnk', reason: 'it is a symbolic link' });
  await log.append({ event: 'detected', path: 'c.csv' });
  await log.close();

  stdout = '';
  stderr = '';
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stdout += chunk.toString();
    return true;
  });
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stderr += chunk.toString();
    return true;
  });
});

afterEach(async () => {
  vi.restoreAllMocks();
  await fsp.rm(root, { recursive: true, force: true });
});

describe('shuttle audit verify', () => {
  it('exits 0 when the chain is intact', async () => {
    expect(await main(['audit', 'verify', '--config', configFile])).toBe(0);
    expect(stdout).toMatch(new RegExp(`^audit: ok ${logDirectory}: 3 records in 1 file, chain intact; last record seq 3, sha256 [0-9a-f]{64}`));
  });

  it('exits 1 and lists the break when a record was changed', async () => {
    const file = path.join(logDirectory, 'audit-2026-03-01.jsonl');
    await fsp.writeFile(file, (await fsp.readFile(file, 'utf8')).replace('it is a symbolic link', 'it was fine'));
    expect(await main(['audit', 'verify', '--config', configFile])).toBe(1);
    expect(stdout).toContain(`audit: BROKEN ${logDirectory}: 3 records in 1 file\n`);
    expect(stdout).toContain('  audit-2026-03-01.jsonl:3: does not chain to the record before it (audit-2026-03-01.jsonl:2)');
  });

  it('prints JSON with --json', async () => {
    expect(await main(['audit', 'verify', '--config', configFile, '--json'])).toBe(0);
    expect(JSON.parse(stdout)).toMatchObject({ directory: logDirectory, ok: true, records: 3, files: ['audit-2026-03-01.jsonl'], problems: [] });
  });

  it('exits 2 when the log directory cannot be read', async () => {
    await fsp.rm(logDirectory, { recursive: true });
    expect(await main(['audit', 'verify', '--config', configFile])).toBe(2);
    expect(stdout).toMatch(/^audit: FAILED cannot read the audit log in /);
  });

  it('needs the verify subcommand', async () => {
    expect(await main(['audit', '--config', configFile])).toBe(2);
    expect(stderr).toContain('audit: expected a subcommand: verify');
    stderr = '';
    expect(await main(['audit', 'check', '--config', configFile])).toBe(2);
    expect(stderr).toContain('audit: unknown subcommand "check"');
  });
});
