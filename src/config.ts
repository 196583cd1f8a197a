// The resolved, frozen configuration. `loadConfig` (config-load.ts) turns the admin's YAML into this;
// everything downstream reads only these types, never the raw YAML.

export const DATA_DIRECTORY_KEYS = ['source_path', 'destination_path', 'quarantine_path', 'hazard_archive_path'] as const;
export const MANAGED_PATH_KEYS = [
  ...DATA_DIRECTORY_KEYS,
  'log_path',
  'hazard_encryption_key_path',
  'ledger_file_path',
] as const;

export type DataDirectoryKey = (typeof DATA_DIRECTORY_KEYS)[number];
export type ManagedPathKey = (typeof MANAGED_PATH_KEYS)[number];

export interface ShuttlePaths {
  readonly sourcePath: string;
  readonly destinationPath: string;
  readonly quarantinePath: string;
  readonly hazardArchivePath: string;
  readonly logPath: string;
  readonly hazardEncryptionKeyPath: string;
  readonly ledgerFilePath: string;
}

export type ClamdEndpoint =
  | { readonly kind: 'unix'; readonly socket: string }
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number };

export interface ClamdOptions {
  readonly endpoint: ClamdEndpoint;
  /** Pass the open file descriptor (zFILDES) instead of streaming; unix sockets only. */
  readonly fdpass: boolean;
  /**
   * The largest file clamd will scan in full (the smallest of its StreamMaxLength, MaxFileSize and
   * MaxScanSize). Larger files are never called clean: clamd would report them OK unscanned.
   */
  readonly maxFileSize: number;
  readonly timeoutMs: number;
}

export interface MdatpOptions {
  readonly command: string;
  readonly timeoutMs: number;
}

export interface ScannerOptions {
  /** null when disabled. */
  readonly clamd: ClamdOptions | null;
  readonly mdatp: MdatpOptions | null;
}

export interface PermissionSpec {
  readonly owner: string;
  readonly group: string;
  /** Numeric mode including setgid/sticky bits, parsed from the octal string. */
  readonly mode: number;
  /** Access ACL entries beyond the mode, as written in the config ("group:name:rwX"). */
  readonly acl: readonly string[];
  readonly defaultAcl: readonly string[];
}

export interface PipelineOptions {
  /** Quiet period used only where a file lease cannot be taken. */
  readonly stabilityWindowMs: number;
  readonly rescanIntervalMs: number;
  readonly intakeConcurrency: number;
  readonly scanConcurrency: number;
  readonly retryBaseMs: number;
  readonly retryMaxMs: number;
  /** Deadline for draining in-flight work on SIGTERM; keep it below systemd's TimeoutStopSec. */
  readonly shutdownTimeoutMs: number;
}

export type LogLevel = 'error' | 'warn' | 'info' | 'debug';

export interface LoggingOptions {
  readonly level: LogLevel;
}

export interface ShuttleConfig {
  /** Absolute path of the YAML file this came from, for messages. */
  readonly file: string;
  readonly paths: ShuttlePaths;
  readonly scanners: ScannerOptions;
  readonly permissions: Readonly<Partial<Record<ManagedPathKey, PermissionSpec>>>;
  readonly pipeline: PipelineOptions;
  readonly logging: LoggingOptions;
}

/** A config the daemon must not start with. Exit status 2; the message names the file and the key. */
export class ConfigError extends Error {
  constructor(
    readonly file: string,
    readonly key: string,
    readonly problem: string,
  ) {
    super(`${file}: ${key}: ${problem}`);
    this.name = 'ConfigError';
  }
}
