// What every malware scanner promises the pipeline. A scan never throws: "could not scan" is a verdict
// (`failed`), and a failed file waits in quarantine to be retried. Only `clean` from every scanner releases.

export type ScanFailureCode = 'unreachable' | 'timeout' | 'protocol' | 'limit' | 'aborted' | 'io';

export type Verdict =
  | { kind: 'clean' }
  | { kind: 'suspect'; signature: string }
  /** Not scanned: the file waits and is retried. */
  | { kind: 'failed'; code: ScanFailureCode; reason: string };

/** The quarantine copy of a file; sha256 was taken at intake, while copying. */
export interface ScanTarget {
  path: string;
  size: number;
  sha256: string;
}

export interface ScanReport {
  scanner: string;
  /** The engine's own version line, null when it could not be asked. */
  version: string | null;
  verdict: Verdict;
  durationMs: number;
}

export interface Scanner {
  /** 'clamd' | 'mdatp' */
  readonly name: string;
  /** Never rejects: failures are verdicts. */
  scan(target: ScanTarget, signal: AbortSignal): Promise<ScanReport>;
  /** Rejects (with a ScannerError) when the scanner cannot be reached. */
  version(signal: AbortSignal): Promise<string>;
}

/** A scanner that could not answer a question that is not a scan (version, ping). */
export class ScannerError extends Error {
  constructor(
    readonly scanner: string,
    readonly code: ScanFailureCode,
    message: string,
  ) {
    super(`${scanner}: ${message}`);
    this.name = 'ScannerError';
  }
}

export function failed(code: ScanFailureCode, reason: string): Verdict {
  return { kind: 'failed', code, reason };
}

export type Clock = () => number;

/** How long a scanner's version string is trusted before it is asked again. */
export const VERSION_REFRESH_MS = 60_000;

/**
 * The engine version to stamp on scan reports. Asked at most once per refresh period, and never in the
 * way of a scan: a failed lookup keeps the last known value (null when there is none).
 */
export class VersionCache {
  private value: string | null = null;
  private fetchedAt = Number.NEGATIVE_INFINITY;
  private inFlight: Promise<string | null> | null = null;

  constructor(
    private readonly fetch: (signal: AbortSignal) => Promise<string>,
    private readonly clock: Clock,
    private readonly refreshMs = VERSION_REFRESH_MS,
  ) {}

  /** The last version learned, without asking. */
  get known(): string | null {
    return this.value;
  }

  /** Records a version learned elsewhere (an explicit version() call). */
  remember(version: string): void {
    this.value = version;
    this.fetchedAt = this.clock();
  }

  current(signal: AbortSignal): Promise<string | null> {
    if (this.clock() - this.fetchedAt < this.refreshMs) return Promise.resolve(this.value);
    if (this.inFlight) return this.inFlight;
    // Count an attempt as a refresh even when it fails, so a down scanner is not asked on every scan.
    this.fetchedAt = this.clock();
    this.inFlight = this.fetch(signal)
      .then(
        (version) => {
          this.remember(version);
          return version;
        },
        () => this.value,
      )
      .finally(() => {
        this.inFlight = null;
      });
    return this.inFlight;
  }
}
