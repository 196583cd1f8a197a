// MdatpScanner running a fake `mdatp` (test/fixtures/bin/mdatp) as a real subprocess: arguments, output
// parsing, exit codes, a missing command, a hang and an abort.

import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MdatpScanner } from '../../../src/scanners/mdatp.js';
import type { ScanTarget } from '../../../src/scanners/scanner.js';
import { EICAR } from '../../helpers/clamd.js';

const FAKE_MDATP = fileURLToPath(new URL('../../fixtures/bin/mdatp', import.meta.url));
const never = () => new AbortController().signal;

let work: string;
let clean: ScanTarget;
let eicar: ScanTarget;
let invocations: string;

async function targetFile(name: string, content: Buffer): Promise<ScanTarget> {
  const file = path.join(work, name);
  await writeFile(file, content);
  return { path: file, size: content.length, sha256: createHash('sha256').update(content).digest('hex') };
}

function scanner(timeoutMs = 10_000, command = FAKE_MDATP): MdatpScanner {
  return new MdatpScanner({ command, timeoutMs });
}

function setMode(mode: string | undefined): void {
  if (mode === undefined) delete process.env.FAKE_MDATP_MODE;
  else process.env.FAKE_MDATP_MODE = mode;
}

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'shuttle-mdatp-it-'));
  clean = await targetFile('report with spaces.csv', Buffer.from('a,b,c\n1,2,3\n'));
  eicar = await targetFile('eicar.com', Buffer.from(EICAR, 'latin1'));
  invocations = path.join(work, 'invocations.log');
  process.env.FAKE_MDATP_LOG = invocations;
});

afterEach(() => {
  setMode(undefined);
  delete process.env.FAKE_MDATP_VERSION;
});

afterAll(async () => {
  delete process.env.FAKE_MDATP_LOG;
  await rm(work, { recursive: true, force: true });
});

describe('MdatpScanner with the fake mdatp', () => {
  it('runs `scan custom --path P` with the path as one argument, and reads a clean file as clean', async () => {
    const report = await scanner().scan(clean, never());
    expect(report.verdict).toEqual({ kind: 'clean' });
    expect(report.scanner).toBe('mdatp');
    const log = await readFile(invocations, 'utf8');
    expect(log).toContain(`scan custom --path ${clean.path}\n`);
  });

  it('reads EICAR as suspect with the threat name', async () => {
    const report = await scanner().scan(eicar, never());
    expect(report.verdict).toEqual({ kind: 'suspect', signature: 'Virus:DOS/EICAR_Test_File' });
  });

  it('stamps the product version on reports, and version() returns it', async () => {
    process.env.FAKE_MDATP_VERSION = '101.25010.0001';
    const mdatp = scanner();
    expect(await mdatp.version(never())).toBe('101.25010.0001');
    expect((await mdatp.scan(clean, never())).version).toBe('101.25010.0001');
  });

  it('fails with protocol on unparseable output and exit 2, quoting command, exit code and stderr', async () => {
    setMode('broken');
    const report = await scanner().scan(eicar, never());
    expect(report.verdict).toMatchObject({ kind: 'failed', code: 'protocol' });
    const reason = report.verdict.kind === 'failed' ? report.verdict.reason : '';
    expect(reason).toContain(`${FAKE_MDATP} scan custom --path ${eicar.path}`);
    expect(reason).toContain('exit code 2');
    expect(reason).toContain('unexpected failure (0x80004005)');
    await expect(scanner().version(never())).rejects.toMatchObject({ name: 'ScannerError', code: 'protocol' });
  });

  it('is not clean when the path scanned no file', async () => {
    const report = await scanner().scan({ ...clean, path: path.join(work, 'gone') }, never());
    expect(report.verdict).toMatchObject({ kind: 'failed', code: 'io' });
  });

  it('still finds a threat behind a licence warning', async () => {
    setMode('unlicensed');
    expect((await scanner().scan(eicar, never())).verdict).toMatchObject({ kind: 'suspect' });
    expect((await scanner().scan(clean, never())).verdict).toEqual({ kind: 'clean' });
  });

  it('reports a missing command as unreachable, and version() rejects', async () => {
    const missing = path.join(work, 'no-such-mdatp');
    const report = await scanner(10_000, missing).scan(clean, never());
    expect(report.verdict).toMatchObject({ kind: 'failed', code: 'unreachable' });
    expect(report.version).toBeNull();
    await expect(scanner(10_000, missing).version(never())).rejects.toMatchObject({ code: 'unreachable' });
  });

  it('times out a hanging mdatp', async () => {
    setMode('hang');
    const started = Date.now();
    const report = await scanner(500).scan(clean, never());
    expect(report.verdict).toMatchObject({ kind: 'failed', code: 'timeout' });
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('stops a hanging mdatp when the signal aborts', async () => {
    setMode('hang');
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 200);
    const started = Date.now();
    const report = await scanner(60_000).scan(clean, controller.signal);
    expect(report.verdict).toMatchObject({ kind: 'failed', code: 'aborted' });
    expect(Date.now() - started).toBeLessThan(5000);
  });
});
