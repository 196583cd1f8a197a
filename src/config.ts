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
  /**
   * Data directories only (`file_mode`): the most a file inside may allow, e.g. 0o660; a file may be
   * tighter. Absent means 0o660. Never grants execute or anything to other.
   */
  readonly fileMode?: number;
}

/**
 * `permissions_backend`: how ACLs are read and written. auto: the native addon when it is built, else
 * getfacl/setfacl.
 */
export type PermissionsBackendChoice = 'auto' | 'native' | 'setfacl';

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

/** How the scanner ledger (paths.ledger_file_path) gates the daemon. */
export interface LedgerOptions {
  /**
   * `scanners.require_tested_versions`: refuse to start, and pause releases, while an enabled scanner's
   * version has not passed `shuttle scanner-test`. false is the explicit opt-out.
   */
  readonly requireTestedVersions: boolean;
}

/** Where the running daemon can be reached (`runtime:`). */
export interface RuntimeOptions {
  /**
   * `runtime.status_socket`: the unix socket `shuttle status` talks to. Its directory is the unit's
   * RuntimeDirectory (/run/shuttle), which systemd creates and removes.
   */
  readonly statusSocket: string;
}

/** Metrics for the host's monitoring (`metrics:`); the status socket serves them too. */
export interface MetricsOptions {
  /** `metrics.textfile_path`: a *.prom file for node_exporter's textfile collector; null writes none. */
  readonly textfilePath: string | null;
  readonly textfileIntervalMs: number;
}

/**
 * What the daemon takes from source_path, and how fast (`limits:`). Sizes are bytes; 0 means no limit,
 * except for freeSpaceReserve, where 0 means only the file itself must fit.
 */
export interface LimitsOptions {
  /** Larger files are never taken: left in source_path, where the uploader sees them, with a logged reason. */
  readonly maxFileSize: number;
  /** Room left free on the quarantine, destination and hazard filesystems after a file is taken. */
  readonly freeSpaceReserve: number;
  /** Per local calendar day, counting files taken into quarantine; restored from the audit log at start. */
  readonly dailyMaxFiles: number;
  readonly dailyMaxBytes: number;
  /** Per uploader (the file's owner uid), as a token bucket holding one minute's worth. */
  readonly uploaderMaxFilesPerMinute: number;
  readonly uploaderMaxBytesPerMinute: number;
}

/** `filenames.policy`: what happens to a name the destination share cannot hold safely. */
export type FilenamePolicyChoice = 'rename' | 'reject';

/** Names in source_path (`filenames:`); the rules are in filename-policy.ts. */
export interface FilenameOptions {
  readonly policy: FilenamePolicyChoice;
  /**
   * Globs (`*`, `?`, `[...]`, matched case-insensitively against the file name alone) of names that
   * clients write first and rename when the upload is complete: such files are never taken.
   */
  readonly temporaryPatterns: readonly string[];
}

export interface ShuttleConfig {
  /** Absolute path of the YAML file this came from, for messages. */
  readonly file: string;
  readonly paths: ShuttlePaths;
  readonly scanners: ScannerOptions;
  readonly ledger: LedgerOptions;
  readonly permissions: Readonly<Partial<Record<ManagedPathKey, PermissionSpec>>>;
  readonly permissionsBackend: PermissionsBackendChoice;
  readonly pipeline: PipelineOptions;
  readonly logging: LoggingOptions;
  readonly runtime: RuntimeOptions;
  readonly metrics: MetricsOptions;
  readonly limits: LimitsOptions;
  readonly filenames: FilenameOptions;
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
