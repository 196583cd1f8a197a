// `shuttle check-config`: after the config itself has validated, checks the environment it needs.
// Each check is a small function from the config and a probe of the system to a finding; printing and
// the exit status are decided separately, from the findings alone.

import { constants as fsConstants, type Stats } from 'node:fs';
import { access, lstat, stat } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { execa } from 'execa';
import {
  DATA_DIRECTORY_KEYS,
  type ClamdEndpoint,
  type ManagedPathKey,
  type ShuttleConfig,
} from './config.js';
import { HazardKeyError, validateHazardKey } from './hazard.js';
import { tryLoadNative } from './native.js';

export type CheckStatus = 'ok' | 'warning' | 'failed';

export interface CheckFinding {
  /** What was checked, e.g. "paths.source_path" or "scanners.clamd". */
  readonly name: string;
  readonly status: CheckStatus;
  readonly detail: string;
}

/** The parts of the system the checks look at; tests replace them. */
export interface EnvironmentProbes {
  lstat(filePath: string): Promise<Stats>;
  stat(filePath: string): Promise<Stats>;
  /** Rejects when the current user lacks `mode` (fs.constants.R_OK | W_OK | X_OK) on the path. */
  access(filePath: string, mode: number): Promise<void>;
  /** null when the addon is not built or will not load. */
  loadNativeAddon(): Promise<object | null>;
  /** One clamd command ("PING", "VERSION"); resolves with the reply, without its NUL. */
  clamdRequest(endpoint: ClamdEndpoint, command: string, timeoutMs: number): Promise<string>;
  /** Runs `<command> version` and resolves with its standard output. */
  mdatpVersionOutput(command: string, timeoutMs: number): Promise<string>;
  /** Rejects when the key file is not an OpenPGP public key that can encrypt; skipped when absent. */
  validateHazardKey?(keyPath: string): Promise<void>;
}

const CLAMD_CHECK_TIMEOUT_MS = 5000;
const MDATP_CHECK_TIMEOUT_MS = 30_000;
const MAX_CLAMD_REPLY_BYTES = 8192;

export const systemProbes: EnvironmentProbes = {
  lstat: (filePath) => lstat(filePath),
  stat: (filePath) => stat(filePath),
  access: (filePath, mode) => access(filePath, mode),
  loadNativeAddon: async () => tryLoadNative(),
  clamdRequest,
  mdatpVersionOutput: async (command, timeoutMs) => {
    const result = await execa(command, ['version'], { timeout: timeoutMs, stdin: 'ignore' });
    return result.stdout;
  },
  validateHazardKey: (keyPath) => validateHazardKey(keyPath),
};

/** Runs every check, prints one line per finding through `write`, and returns the exit status (0 or 2). */
export async function checkConfig(
  config: ShuttleConfig,
  write: (line: string) => void,
  probes: EnvironmentProbes = systemProbes,
): Promise<number> {
  const findings = await runEnvironmentChecks(config, probes);
  for (const finding of findings) write(formatFinding(finding));
  return findings.some((finding) => finding.status === 'failed') ? 2 : 0;
}

export function formatFinding(finding: CheckFinding): string {
  const verdict = finding.status === 'ok' ? 'ok' : finding.status === 'warning' ? 'WARNING' : 'FAILED';
  return `${finding.name}: ${verdict}${finding.detail ? ` ${finding.detail}` : ''}`;
}

export async function runEnvironmentChecks(config: ShuttleConfig, probes: EnvironmentProbes): Promise<CheckFinding[]> {
  const findings: CheckFinding[] = [{ name: 'config', status: 'ok', detail: config.file }];
  const directories: Record<(typeof DATA_DIRECTORY_KEYS)[number] | 'log_path', string> = {
    source_path: config.paths.sourcePath,
    destination_path: config.paths.destinationPath,
    quarantine_path: config.paths.quarantinePath,
    hazard_archive_path: config.paths.hazardArchivePath,
    log_path: config.paths.logPath,
  };
  for (const [key, directory] of Object.entries(directories)) {
    findings.push(await checkManagedDirectory(`paths.${key}`, directory, probes));
  }
  findings.push(await checkKeyFile(config.paths.hazardEncryptionKeyPath, probes));
  findings.push(await checkLedgerFile(config.paths.ledgerFilePath, probes));
  findings.push(await checkNativeAddon(probes));
  if (config.scanners.clamd) findings.push(await checkClamd(config.scanners.clamd.endpoint, probes));
  if (config.scanners.mdatp) findings.push(await checkMdatp(config.scanners.mdatp.command, probes));
  return findings;
}

async function checkManagedDirectory(name: string, directory: string, probes: EnvironmentProbes): Promise<CheckFinding> {
  const problem = entryProblem(await examineEntry(directory, probes), 'directory');
  if (problem) return failed(name, `${directory} ${problem}`);
  try {
    await probes.access(directory, fsConstants.R_OK | fsConstants.W_OK | fsConstants.X_OK);
  } catch {
    return failed(name, `${directory} is not readable and writable by this user (uid ${process.getuid?.() ?? '?'})`);
  }
  return ok(name, directory);
}

async function checkKeyFile(keyPath: string, probes: EnvironmentProbes): Promise<CheckFinding> {
  const name = keyName('hazard_encryption_key_path');
  const parentProblem = await checkParentDirectory(keyPath, probes);
  if (parentProblem) return failed(name, parentProblem);
  const entry = await examineEntry(keyPath, probes);
  if (entry.kind === 'missing') {
    return failed(name, `${keyPath} does not exist; suspect files cannot be encrypted without the public key`);
  }
  const problem = entryProblem(entry, 'file');
  if (problem) return failed(name, `${keyPath} ${problem}`);
  try {
    await probes.access(keyPath, fsConstants.R_OK);
  } catch {
    return failed(name, `${keyPath} is not readable by this user (uid ${process.getuid?.() ?? '?'})`);
  }
  if (probes.validateHazardKey) {
    try {
      await probes.validateHazardKey(keyPath);
    } catch (error) {
      return failed(name, error instanceof HazardKeyError ? `${keyPath} ${error.problem}` : errorText(error));
    }
    return ok(name, `${keyPath} (an OpenPGP public key that can encrypt)`);
  }
  return ok(name, keyPath);
}

async function checkLedgerFile(ledgerPath: string, probes: EnvironmentProbes): Promise<CheckFinding> {
  const name = keyName('ledger_file_path');
  const parentProblem = await checkParentDirectory(ledgerPath, probes);
  if (parentProblem) return failed(name, parentProblem);
  const entry = await examineEntry(ledgerPath, probes);
  if (entry.kind === 'missing') return ok(name, `${ledgerPath} (not written yet; scanner-test creates it)`);
  const problem = entryProblem(entry, 'file');
  if (problem) return failed(name, `${ledgerPath} ${problem}`);
  return ok(name, ledgerPath);
}

async function checkParentDirectory(filePath: string, probes: EnvironmentProbes): Promise<string | null> {
  const parent = path.dirname(filePath);
  try {
    if ((await probes.stat(parent)).isDirectory()) return null;
    return `its directory ${parent} is not a directory`;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return `its directory ${parent} does not exist`;
    return `its directory ${parent} cannot be used: ${errorText(error)}`;
  }
}

async function checkNativeAddon(probes: EnvironmentProbes): Promise<CheckFinding> {
  const name = 'native addon';
  try {
    const addon = await probes.loadNativeAddon();
    if (addon) return ok(name, 'loaded');
    return warning(name, 'not loaded (not built, or built for another Node.js; `npm run build:native` needs g++ and libacl1-dev); features that need it are unavailable');
  } catch (error) {
    return warning(name, `could not be loaded: ${errorText(error)}`);
  }
}

async function checkClamd(endpoint: ClamdEndpoint, probes: EnvironmentProbes): Promise<CheckFinding> {
  const name = 'scanners.clamd';
  const where = endpoint.kind === 'unix' ? endpoint.socket : `${endpoint.host}:${endpoint.port}`;
  try {
    const reply = await probes.clamdRequest(endpoint, 'PING', CLAMD_CHECK_TIMEOUT_MS);
    if (reply.trim() !== 'PONG') {
      return failed(name, `${where} answered ${JSON.stringify(reply.slice(0, 100))} to PING, expected PONG`);
    }
  } catch (error) {
    return failed(name, `${where}: ${errorText(error)}`);
  }
  try {
    const version = await probes.clamdRequest(endpoint, 'VERSION', CLAMD_CHECK_TIMEOUT_MS);
    return ok(name, `${where} (${version.trim()})`);
  } catch {
    return ok(name, `${where} (answers PING; version unknown)`);
  }
}

async function checkMdatp(command: string, probes: EnvironmentProbes): Promise<CheckFinding> {
  const name = 'scanners.mdatp';
  let output: string;
  try {
    output = await probes.mdatpVersionOutput(command, MDATP_CHECK_TIMEOUT_MS);
  } catch (error) {
    const shortMessage = (error as { shortMessage?: unknown }).shortMessage;
    return failed(name, `\`${command} version\` failed: ${typeof shortMessage === 'string' ? firstLine(shortMessage) : errorText(error)}`);
  }
  const version = /Product version:\s*(\S+)/.exec(output)?.[1];
  if (!version) {
    return failed(name, `\`${command} version\` printed no "Product version:" line: ${JSON.stringify(output.slice(0, 100))}`);
  }
  return ok(name, `${command} (product version ${version})`);
}

/** Sends `z<command>\0` to clamd and resolves with the reply up to its NUL. */
export function clamdRequest(endpoint: ClamdEndpoint, command: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket =
      endpoint.kind === 'unix'
        ? net.createConnection({ path: endpoint.socket })
        : net.createConnection({ host: endpoint.host, port: endpoint.port });
    const received: Buffer[] = [];
    let receivedBytes = 0;
    let settled = false;
    const settle = (outcome: { reply: string } | { error: Error }): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if ('reply' in outcome) resolve(outcome.reply);
      else reject(outcome.error);
    };
    const timer = setTimeout(
      () => settle({ error: new Error(`no answer to ${command} within ${timeoutMs / 1000} s`) }),
      timeoutMs,
    );
    socket.on('connect', () => socket.write(`z${command}\0`));
    socket.on('data', (chunk: Buffer) => {
      const nul = chunk.indexOf(0);
      received.push(nul === -1 ? chunk : chunk.subarray(0, nul));
      receivedBytes += chunk.length;
      if (nul !== -1) settle({ reply: Buffer.concat(received).toString('utf8') });
      else if (receivedBytes > MAX_CLAMD_REPLY_BYTES) settle({ error: new Error('reply too long; is this clamd?') });
    });
    socket.on('end', () => {
      if (receivedBytes > 0) settle({ reply: Buffer.concat(received).toString('utf8') });
      else settle({ error: new Error('connection closed without a reply') });
    });
    socket.on('error', (error) => settle({ error }));
  });
}

type EntryKind = { kind: 'directory' | 'file' | 'missing' } | { kind: 'unusable'; problem: string };

async function examineEntry(entryPath: string, probes: EnvironmentProbes): Promise<EntryKind> {
  let stats: Stats;
  try {
    stats = await probes.lstat(entryPath);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'missing' };
    return { kind: 'unusable', problem: `cannot be examined: ${errorText(error)}` };
  }
  if (stats.isSymbolicLink()) {
    return { kind: 'unusable', problem: 'is a symbolic link; shuttle never follows links, configure the real path' };
  }
  if (stats.isDirectory()) return { kind: 'directory' };
  if (stats.isFile()) return { kind: 'file' };
  return { kind: 'unusable', problem: 'is neither a regular file nor a directory' };
}

/** Why an entry that should be of kind `wanted` is not, or null when it is. */
function entryProblem(entry: EntryKind, wanted: 'directory' | 'file'): string | null {
  if (entry.kind === wanted) return null;
  switch (entry.kind) {
    case 'missing':
      return 'does not exist';
    case 'unusable':
      return entry.problem;
    default:
      return `is a ${entry.kind}, not a ${wanted}`;
  }
}

function keyName(key: ManagedPathKey): string {
  return `paths.${key}`;
}

function ok(name: string, detail: string): CheckFinding {
  return { name, status: 'ok', detail };
}

function warning(name: string, detail: string): CheckFinding {
  return { name, status: 'warning', detail };
}

function failed(name: string, detail: string): CheckFinding {
  return { name, status: 'failed', detail };
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function firstLine(text: string): string {
  return text.split('\n')[0] ?? text;
}
