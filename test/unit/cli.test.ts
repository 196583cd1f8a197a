import { chmod, copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { main } from '../../src/cli.js';
import { generateKeyPair } from '../helpers/gpg.js';

let stdout: string;
let stderr: string;

beforeEach(() => {
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

afterEach(() => {
  vi.restoreAllMocks();
});

describe('usage', () => {
  it('prints usage to stderr and exits 2 without a command', async () => {
    expect(await main([])).toBe(2);
    expect(stderr).toContain('no command given');
    expect(stderr).toContain('Usage: shuttle <command> --config FILE');
  });

  it('prints usage to stdout and exits 0 for --help', async () => {
    expect(await main(['--help'])).toBe(0);
    expect(stdout).toContain('Usage: shuttle');
    expect(stdout).toContain('verify-permissions');
    expect(stderr).toBe('');
  });

  it('requires --config', async () => {
    expect(await main(['check-config'])).toBe(2);
    expect(stderr).toContain('check-config: --config FILE is required');
    expect(stderr).toContain('Usage:');
  });

  it('refuses unknown commands, unknown options and options of other commands', async () => {
    expect(await main(['start', '--config', '/etc/shuttle/shuttle.yaml'])).toBe(2);
    expect(stderr).toContain('unknown command "start"');

    stderr = '';
    expect(await main(['run', '--config', '/etc/shuttle/shuttle.yaml', '--verbose'])).toBe(2);
    expect(stderr).toContain('--verbose');

    stderr = '';
    expect(await main(['check-config', '--config', '/etc/shuttle/shuttle.yaml', '--fix'])).toBe(2);
    expect(stderr).toContain('--fix is not an option of this command');

    stderr = '';
    expect(await main(['status', '--config'])).toBe(2);
    expect(stderr).toContain('--config');
  });

  it.each(['verify-permissions', 'scanner-test', 'status'])('%s refuses a config it cannot read, naming the file', async (command) => {
    expect(await main([command, '--config', '/nonexistent/shuttle.yaml'])).toBe(2);
    expect(stderr).toContain('/nonexistent/shuttle.yaml');
  });
});

describe('with a config on disk', () => {
  let root: string;
  let configFile: string;
  let clamd: net.Server | undefined;

  beforeEach(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'shuttle-cli-'));
    configFile = path.join(root, 'shuttle.yaml');
    for (const directory of ['in', 'out', 'quarantine', 'hazard', 'log', 'etc']) {
      await mkdir(path.join(root, directory));
    }
    await copyFile((await generateKeyPair()).publicKeyPath, path.join(root, 'etc', 'hazard-public.asc'));
  });

  afterEach(async () => {
    await new Promise<void>((resolve) => (clamd ? clamd.close(() => resolve()) : resolve()));
    clamd = undefined;
    await rm(root, { recursive: true, force: true });
  });

  function writeConfig(scanners: string): Promise<void> {
    return writeFile(
      configFile,
      `paths:
  source_path: ${root}/in
  destination_path: ${root}/out
  quarantine_path: ${root}/quarantine
  hazard_archive_path: ${root}/hazard
  log_path: ${root}/log
  hazard_encryption_key_path: ${root}/etc/hazard-public.asc
  ledger_file_path: ${root}/etc/ledger.yaml
scanners:
${scanners}`,
    );
  }

  /** Answers zPING and zVERSION the way clamd does, NUL-terminated. */
  async function startFakeClamd(socketPath: string): Promise<void> {
    clamd = net.createServer((connection) => {
      connection.on('data', (data) => {
        const command = data.toString('latin1');
        if (command === 'zPING\0') connection.end('PONG\0');
        else if (command === 'zVERSION\0') connection.end('ClamAV 1.4.2/27500/Mon Jan  6 09:00:00 2025\0');
        else connection.end('UNKNOWN COMMAND\0');
      });
    });
    await new Promise<void>((resolve) => clamd?.listen(socketPath, resolve));
  }

  it('check-config reports the key of a bad config on stderr and exits 2', async () => {
    await writeConfig('  clamd: { sockte: /run/clamav/clamd.ctl }\n');
    expect(await main(['check-config', '--config', configFile])).toBe(2);
    expect(stderr).toBe(`${configFile}: scanners.clamd.sockte: unknown key (did you mean "socket"?)\n`);
  });

  it('run refuses a bad config before starting anything', async () => {
    await writeConfig('  clamd: { enabled: false }\n');
    expect(await main(['run', '--config', configFile])).toBe(2);
    expect(stderr).toContain(`${configFile}: scanners: no scanner is enabled`);
  });

  it('reports a missing config file with key (file)', async () => {
    const missing = path.join(root, 'absent.yaml');
    expect(await main(['check-config', '--config', missing])).toBe(2);
    expect(stderr).toContain(`${missing}: (file): cannot read the config file`);
  });

  it('check-config passes when the directories exist and the scanners answer', async () => {
    const socketPath = path.join(root, 'clamd.sock');
    await startFakeClamd(socketPath);
    const fakeMdatp = path.join(root, 'mdatp');
    await writeFile(fakeMdatp, '#!/bin/sh\n[ "$1" = version ] && echo "Product version: 101.25012.0000" && exit 0\nexit 1\n');
    await chmod(fakeMdatp, 0o755);
    await writeConfig(`  clamd: { socket: ${socketPath} }\n  mdatp: { enabled: true, command: ${fakeMdatp} }\n`);

    expect(await main(['check-config', '--config', configFile])).toBe(0);
    const lines = stdout.trimEnd().split('\n');
    expect(lines).toContain(`config: ok ${configFile}`);
    expect(lines).toContain(`paths.source_path: ok ${root}/in`);
    expect(lines).toContain(`paths.log_path: ok ${root}/log`);
    expect(lines).toContain(`paths.ledger_file_path: ok ${root}/etc/ledger.yaml (not written yet; scanner-test creates it)`);
    expect(lines).toContain(`scanners.clamd: ok ${socketPath} (ClamAV 1.4.2/27500/Mon Jan  6 09:00:00 2025)`);
    expect(lines).toContain(`scanners.mdatp: ok ${fakeMdatp} (product version 101.25012.0000)`);
    expect(lines.find((line) => line.startsWith('native addon: '))).toMatch(/^native addon: (ok|WARNING) /);
    expect(stdout).not.toContain('FAILED');
  });

  it('check-config fails, one line per problem, when the environment is not ready', async () => {
    await rm(path.join(root, 'quarantine'), { recursive: true });
    await rm(path.join(root, 'etc', 'hazard-public.asc'));
    await writeConfig(`  clamd: { socket: ${root}/no-clamd.sock }\n  mdatp: { enabled: true, command: ${root}/no-mdatp }\n`);

    expect(await main(['check-config', '--config', configFile])).toBe(2);
    const lines = stdout.trimEnd().split('\n');
    expect(lines).toContain(`paths.quarantine_path: FAILED ${root}/quarantine does not exist`);
    expect(lines).toContain(`paths.source_path: ok ${root}/in`);
    expect(lines.find((line) => line.startsWith('paths.hazard_encryption_key_path: '))).toMatch(/FAILED .*does not exist/);
    expect(lines.find((line) => line.startsWith('scanners.clamd: '))).toMatch(/^scanners\.clamd: FAILED .*no-clamd\.sock.*ENOENT/);
    expect(lines.find((line) => line.startsWith('scanners.mdatp: '))).toMatch(/^scanners\.mdatp: FAILED `.*no-mdatp version` failed/);
  });

  it('check-config fails when clamd answers something other than PONG', async () => {
    const socketPath = path.join(root, 'clamd.sock');
    clamd = net.createServer((connection) => {
      // Reading (and dropping) the request lets the server see the client hang up.
      connection.resume();
      connection.end('UNKNOWN COMMAND\0');
    });
    await new Promise<void>((resolve) => clamd?.listen(socketPath, resolve));
    await writeConfig(`  clamd: { socket: ${socketPath} }\n`);

    expect(await main(['check-config', '--config', configFile])).toBe(2);
    expect(stdout).toContain(`scanners.clamd: FAILED ${socketPath} answered "UNKNOWN COMMAND" to PING, expected PONG`);
  });
});
