// Microsoft Defender for Endpoint through its CLI: `mdatp scan custom --path P`. The verdict is read from the
// text it prints; the exit status alone is never taken to mean "nothing found".

import { execa, type Result } from 'execa';
import type { MdatpOptions } from '../config.js';
import { failed, ScannerError, VersionCache, type Clock, type ScanReport, type Scanner, type ScanTarget, type Verdict } from './scanner.js';

const THREATS_FOUND = 'Threat(s) found';
/** How a finished scan with nothing found ends its summary. */
const NO_THREATS_ENDING = /\n\t0 threat\(s\) detected\s*$/;
const FILES_SCANNED = /^\s*(\d+) file\(s\) scanned\s*$/m;
/** Microsoft names threats "Type:Platform/Family", e.g. Virus:DOS/EICAR_Test_File, Trojan:Win32/Foo.A!ml. */
const THREAT_NAME = /\b[A-Za-z][\w-]*:[\w-]+\/[^\s()'",]+/;
const PRODUCT_VERSION = /^\s*Product version:\s*(\S.*?)\s*$/m;
/** How much of the tool's output a failure reason quotes. */
const QUOTE_CHARS = 500;

/**
 * Reads the threat name from the lines under "Threat(s) found". Falls back to the first line there, then to
 * "unknown": a scan that says it found something is suspect whether or not the name can be read.
 */
export function threatNameFromMdatpOutput(output: string): string {
  const at = output.indexOf(THREATS_FOUND);
  const section = at === -1 ? output : output.slice(at + THREATS_FOUND.length);
  const named = THREAT_NAME.exec(section);
  if (named) return named[0];
  const firstLine = section
    .split('\n')
    .map((line) => line.replace(/^[\s:]+/, '').trim())
    .find((line) => line.length > 0);
  return firstLine ?? 'unknown';
}

/** The scan part of the verdict, from the output alone (exit status and process failures are judged by the caller). */
export function verdictFromMdatpOutput(stdout: string, stderr: string): Verdict | null {
  const output = `${stdout}\n${stderr}`;
  if (output.includes(THREATS_FOUND)) return { kind: 'suspect', signature: threatNameFromMdatpOutput(output) };
  if (NO_THREATS_ENDING.test(stdout.replace(/\r\n/g, '\n'))) {
    const scanned = FILES_SCANNED.exec(stdout);
    // "0 file(s) scanned" is what a missing or unreadable path gives: nothing was looked at.
    if (scanned && Number(scanned[1]) === 0) return failed('io', 'mdatp scanned 0 files');
    return { kind: 'clean' };
  }
  return null;
}

export function productVersionFromMdatpOutput(stdout: string): string | null {
  return PRODUCT_VERSION.exec(stdout)?.[1] ?? null;
}

function quote(text: string): string {
  const trimmed = text.trim();
  return JSON.stringify(trimmed.length > QUOTE_CHARS ? `${trimmed.slice(0, QUOTE_CHARS)}…` : trimmed);
}

function describeRun(result: Result, command: string): string {
  const status = result.exitCode !== undefined ? `exit code ${result.exitCode}` : result.signal ? `signal ${result.signal}` : 'no exit code';
  return `${command}: ${status}, stderr ${quote(String(result.stderr ?? ''))}`;
}

export class MdatpScanner implements Scanner {
  readonly name = 'mdatp';
  private readonly versions: VersionCache;

  constructor(
    private readonly options: MdatpOptions,
    private readonly clock: Clock = () => performance.now(),
  ) {
    this.versions = new VersionCache((signal) => this.queryVersion(signal), clock);
  }

  async version(signal: AbortSignal): Promise<string> {
    const version = await this.queryVersion(signal);
    this.versions.remember(version);
    return version;
  }

  async scan(target: ScanTarget, signal: AbortSignal): Promise<ScanReport> {
    const started = this.clock();
    const version = this.versions.current(signal);
    let verdict: Verdict;
    try {
      verdict = await this.scanPath(target.path, signal);
    } catch (error) {
      verdict = failed('protocol', `running ${this.options.command} failed: ${error instanceof Error ? error.message : String(error)}`);
    }
    return { scanner: this.name, version: await version, verdict, durationMs: this.clock() - started };
  }

  private async scanPath(path: string, signal: AbortSignal): Promise<Verdict> {
    if (signal.aborted) return failed('aborted', 'scan aborted before it started');
    const command = `${this.options.command} scan custom --path ${path}`;
    const result = await this.run(['scan', 'custom', '--path', path], signal);
    const spawnFailure = this.processFailure(result, command, signal);
    if (spawnFailure) return spawnFailure;

    const verdict = verdictFromMdatpOutput(String(result.stdout ?? ''), String(result.stderr ?? ''));
    if (verdict?.kind === 'suspect') return verdict;
    if (verdict?.kind === 'failed') return failed(verdict.code, `${verdict.reason} (${describeRun(result, command)})`);
    if (verdict?.kind === 'clean' && result.exitCode === 0) return verdict;
    return failed('protocol', `no verdict in the output of ${describeRun(result, command)}, stdout ${quote(String(result.stdout ?? ''))}`);
  }

  /** Failures where the tool never got to say anything about the file. */
  private processFailure(result: Result, command: string, signal: AbortSignal): Verdict | null {
    if (result.isCanceled || signal.aborted) return failed('aborted', `${command}: scan aborted`);
    if (result.timedOut) return failed('timeout', `${command}: no result within ${this.options.timeoutMs} ms`);
    const code = (result as { code?: unknown }).code;
    if (result.exitCode === undefined && (code === 'ENOENT' || code === 'EACCES')) {
      return failed('unreachable', `${command}: cannot run ${this.options.command} (${String(code)})`);
    }
    // The shell's "not executable" / "not found" statuses, when the command is a wrapper script.
    if (result.exitCode === 126 || result.exitCode === 127) return failed('unreachable', describeRun(result, command));
    return null;
  }

  private run(args: string[], signal: AbortSignal): Promise<Result> {
    return execa(this.options.command, args, {
      cancelSignal: signal,
      timeout: this.options.timeoutMs,
      reject: false,
      stdin: 'ignore',
      // Keep tabs and the final newline exactly as printed: the clean verdict is read from the ending.
      stripFinalNewline: false,
      env: { LC_ALL: 'C' },
    }) as Promise<Result>;
  }

  private async queryVersion(signal: AbortSignal): Promise<string> {
    const command = `${this.options.command} version`;
    const result = await this.run(['version'], signal);
    const failure = this.processFailure(result, command, signal);
    if (failure?.kind === 'failed') throw new ScannerError(this.name, failure.code, failure.reason);
    const version = productVersionFromMdatpOutput(String(result.stdout ?? ''));
    if (result.exitCode !== 0 || version === null) {
      throw new ScannerError(this.name, 'protocol', `no product version from ${describeRun(result, command)}`);
    }
    return version;
  }
}
