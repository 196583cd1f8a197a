// `shuttle scanner-test` against a real, private clamd: it passes and records the version; with clamd
// stopped, or with a scanner that misses the EICAR string, it fails (exit 1) and records that too.

import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../../../src/cli.js';
import { parseConfig } from '../../../src/config-load.js';
import { checkLedger, readLedger } from '../../../src/ledger.js';
import { ClamdScanner } from '../../../src/scanners/clamd.js';
import type { Scanner } from '../../../src/scanners/scanner.js';
import { scannerTest } from '../../../src/scanner-test.js';
import { startClamd, type ClamdHarness } from '../../helpers/clamd.js';

let clamd: ClamdHarness;
let root: string;
let ledgerPath: string;
let configFile: string;

function configText(): string {
  return `paths:
  source_path: ${root}/in
  destination_path: ${root}/out
  quarantine_path: ${root}/quarantine
  hazard_archive_path: ${root}/hazard
  log_path: ${root}/log
  hazard_encryption_key_path: ${root}/etc/hazard-public.asc
  ledger_file_path: ${ledgerPath}
scanners:
  clamd: { socket: ${clamd.socketPath}, max_file_size: 200M, timeout_seconds: 10 }
`;
}

function config() {
  return parseConfig(configText(), configFile);
}

async function run(deps: Parameters<typeof scannerTest>[2] = {}): Promise<{ status: number; lines: string[] }> {
  const lines: string[] = [];
  const status = await scannerTest(config(), (line) => lines.push(line), { ledger: { addon: null }, ...deps });
  return { status, lines };
}

beforeAll(async () => {
  clamd = await startClamd();
  root = await fsp.realpath(await fsp.mkdtemp(path.join(os.tmpdir(), 'shuttle-scanner-test-')));
  await fsp.mkdir(path.join(root, 'etc'));
  ledgerPath = path.join(root, 'etc', 'ledger.yaml');
  configFile = path.join(root, 'shuttle.yaml');
  await fsp.writeFile(configFile, configText());
});

afterAll(async () => {
  await clamd?.stop();
  await fsp.rm(root, { recursive: true, force: true });
});

afterEach(() => {
  vi.restoreAllMocks();
});

describe('scanner-test', () => {
  it('passes with a working clamd and records its version as tested', async () => {
    const { status, lines } = await run();
    expect(status).toBe(0);
    expect(lines[0]).toMatch(new RegExp(`^clamd: pass \\(ClamAV [^)]+\\) clean file: clean; EICAR: found ${clamd.eicarSignature.replace(/\./g, '\\.')}$`));
    expect(lines).toContain(`ledger: recorded in ${ledgerPath}`);

    const [entry] = await readLedger(ledgerPath);
    expect(entry).toMatchObject({ scanner: 'clamd', result: 'pass' });
    const current = await new ClamdScanner(config().scanners.clamd!, null).version(new AbortController().signal);
    expect(entry?.reported).toBe(current);
    expect(await checkLedger(ledgerPath, [{ name: 'clamd', version: current }])).toEqual({ ok: true, untested: [] });
    expect(await checkLedger(ledgerPath, [{ name: 'clamd', version: 'ClamAV 0.0.1/1/x' }])).toMatchObject({ ok: false });
  });

  it('passes through the command line', async () => {
    let stdout = '';
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      stdout += chunk.toString();
      return true;
    });
    expect(await main(['scanner-test', '--config', configFile])).toBe(0);
    expect(stdout).toMatch(/^clamd: pass /m);
  });

  it('fails with a scanner that misses the EICAR string, and records the failure', async () => {
    const blind: Scanner = {
      name: 'mdatp',
      version: async () => '101.99.0',
      scan: async () => ({ scanner: 'mdatp', version: '101.99.0', verdict: { kind: 'clean' }, durationMs: 1 }),
    };
    const { status, lines } = await run({ scanners: [blind] });
    expect(status).toBe(1);
    expect(lines[0]).toBe('mdatp: FAIL (101.99.0) clean file: clean; EICAR: clean');
    expect((await readLedger(ledgerPath)).find((entry) => entry.scanner === 'mdatp')).toMatchObject({ version: '101.99.0', result: 'fail' });
    expect((await checkLedger(ledgerPath, [{ name: 'mdatp', version: '101.99.0' }])).ok).toBe(false);
  });

  it('fails (exit 1) with clamd stopped, and keeps the earlier pass of its version', async () => {
    await clamd.kill();
    try {
      const { status, lines } = await run();
      expect(status).toBe(1);
      expect(lines[0]).toMatch(/^clamd: FAIL \(version unknown\) cannot ask its version: clamd: /);
      const entries = await readLedger(ledgerPath);
      expect(entries.filter((entry) => entry.scanner === 'clamd').map((entry) => entry.result).sort()).toEqual(['fail', 'pass']);
    } finally {
      await clamd.start();
    }
  });
});
