// Turns the admin's YAML into a frozen ShuttleConfig, or refuses it with a ConfigError that names the
// file, the dotted key and what is wrong. Nothing here touches the file system beyond reading the file:
// whether the directories exist is check-config's business.

import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseDocument } from 'yaml';
import {
  ConfigError,
  DATA_DIRECTORY_KEYS,
  MANAGED_PATH_KEYS,
  type ClamdOptions,
  type DataDirectoryKey,
  type FilenameOptions,
  type FilenamePolicyChoice,
  type LimitsOptions,
  type LogLevel,
  type ManagedPathKey,
  type MdatpOptions,
  type MetricsOptions,
  type PermissionSpec,
  type PermissionsBackendChoice,
  type PipelineOptions,
  type RuntimeOptions,
  type ScannerOptions,
  type ShuttleConfig,
  type ShuttlePaths,
} from './config.js';
import { DEFAULT_TEMPORARY_PATTERNS, globProblem } from './filename-policy.js';

const NAMED_GROUP_RWX = (group: string): string => `group:${group}:rwX`;

/** The permission model shipped in config/shuttle.yaml, used when the config has no `permissions` section. */
export const DEFAULT_PERMISSIONS: Readonly<Record<ManagedPathKey, PermissionSpec>> = deepFreeze({
  source_path: {
    owner: 'root',
    group: 'shuttle_owners',
    mode: 0o2770,
    acl: [NAMED_GROUP_RWX('shuttle_samba_in_users')],
    // The seed model's private defaults, plus what the shares need to work: an uploader can enter a folder it
    // just made (user::rwX), and folders and files inside keep the Samba group's access.
    defaultAcl: ['user::rwX', 'group::rw-', NAMED_GROUP_RWX('shuttle_samba_in_users'), 'other::---'],
  },
  destination_path: {
    owner: 'root',
    group: 'shuttle_owners',
    mode: 0o2770,
    acl: [NAMED_GROUP_RWX('shuttle_out_users')],
    // Released files and folders readable by the outbound group; without it nobody could download them.
    defaultAcl: ['user::rw-', 'group::rw-', 'group:shuttle_out_users:r-X', 'other::---'],
  },
  quarantine_path: { owner: 'root', group: 'shuttle_owners', mode: 0o2770, acl: [], defaultAcl: [] },
  hazard_archive_path: { owner: 'root', group: 'shuttle_owners', mode: 0o2770, acl: [], defaultAcl: [] },
  log_path: { owner: 'root', group: 'shuttle_log_owners', mode: 0o2770, acl: [], defaultAcl: [] },
  hazard_encryption_key_path: { owner: 'root', group: 'shuttle_config_readers', mode: 0o640, acl: [], defaultAcl: [] },
  ledger_file_path: {
    owner: 'root',
    group: 'shuttle_config_readers',
    mode: 0o640,
    acl: ['group:shuttle_log_owners:rw-'],
    defaultAcl: [],
  },
});

/** Debian's clamd: StreamMaxLength and MaxFileSize both default to 25M. */
const DEFAULT_CLAMD_MAX_FILE_SIZE = '25M';
const DEFAULT_CLAMD_TIMEOUT_SECONDS = 120;
const DEFAULT_MDATP_COMMAND = 'mdatp';
const DEFAULT_MDATP_TIMEOUT_SECONDS = 300;

const PIPELINE_DEFAULTS = {
  stability_window_seconds: 5,
  rescan_interval_seconds: 30,
  // Measured with 2000 small files: 16 of each took a quarter less time than 8; more did not help.
  intake_concurrency: 128,
  scan_concurrency: 16,
  retry_base_seconds: 2,
  retry_max_seconds: 300,
  shutdown_timeout_seconds: 20,
} as const;

/** systemd's default TimeoutStopSec; past it the daemon is killed with SIGKILL, mid-copy. */
const SYSTEMD_STOP_TIMEOUT_SECONDS = 90;

const LOG_LEVELS: readonly LogLevel[] = ['error', 'warn', 'info', 'debug'];

const FILE_PATH_KEYS = ['hazard_encryption_key_path', 'ledger_file_path'] as const;

const TOP_LEVEL_KEYS = ['paths', 'scanners', 'permissions', 'permissions_backend', 'pipeline', 'logging', 'runtime', 'metrics', 'limits', 'filenames'];

/**
 * `limits:` defaults. The reserve keeps room for the journal, the audit and daemon logs and whatever else
 * shares the filesystems, so they never fail for want of space; 1G covers those many times over and is
 * small next to any disk meant for a file gateway. The counting limits are off until an admin sets them.
 */
const LIMITS_DEFAULTS = {
  max_file_size: 0,
  free_space_reserve: '1G',
  daily_max_files: 0,
  daily_max_bytes: 0,
  uploader_max_files_per_minute: 0,
  uploader_max_bytes_per_minute: 0,
} as const;
const LIMITS_KEYS = Object.keys(LIMITS_DEFAULTS);
const FILENAME_POLICIES: readonly FilenamePolicyChoice[] = ['rename', 'reject'];

/** In the unit's RuntimeDirectory=shuttle, which systemd creates for the service and removes after it. */
const DEFAULT_STATUS_SOCKET = '/run/shuttle/status.sock';
const DEFAULT_METRICS_TEXTFILE_INTERVAL_SECONDS = 15;
/** sockaddr_un.sun_path is 108 bytes, NUL included. */
const MAX_SOCKET_PATH_BYTES = 107;
const CLAMD_KEYS = ['enabled', 'socket', 'host', 'port', 'fdpass', 'max_file_size', 'timeout_seconds'];
const MDATP_KEYS = ['enabled', 'command', 'timeout_seconds'];
const PERMISSION_KEYS = ['owner', 'group', 'mode', 'acl', 'default_acl', 'file_mode'];
const PERMISSIONS_BACKENDS: readonly PermissionsBackendChoice[] = ['auto', 'native', 'setfacl'];
/** The most a file inside a data directory may ever allow: read and write for owner and group. */
const MAX_FILE_MODE = 0o660;

type YamlMapping = Record<string, unknown>;

/** Reads and validates the config file. Every problem becomes a ConfigError; nothing else is thrown. */
export async function loadConfig(file: string): Promise<ShuttleConfig> {
  const absoluteFile = path.resolve(file);
  let text: string;
  try {
    text = await readFile(absoluteFile, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : String(error);
    throw new ConfigError(absoluteFile, '(file)', `cannot read the config file: ${reason}`);
  }
  return parseConfig(text, absoluteFile);
}

/** Validates YAML text as if it had been read from `file` (used in messages and as `config.file`). */
export function parseConfig(text: string, file: string): ShuttleConfig {
  const absoluteFile = path.resolve(file);
  return new ConfigReader(absoluteFile).read(text);
}

class ConfigReader {
  constructor(private readonly file: string) {}

  read(text: string): ShuttleConfig {
    const root = this.parseYaml(text);
    this.onlyKnownKeys(root, '', TOP_LEVEL_KEYS);
    const paths = this.readPaths(this.requiredMapping(root, 'paths'));
    const scannersSection = this.requiredMapping(root, 'scanners');
    const scanners = this.readScanners(scannersSection);
    const ledger = { requireTestedVersions: this.optionalBoolean(scannersSection, 'scanners.require_tested_versions', true) };
    const permissions =
      root.permissions === undefined
        ? DEFAULT_PERMISSIONS
        : this.readPermissions(this.mapping(root.permissions, 'permissions'));
    const permissionsBackend = this.optionalChoice(root, 'permissions_backend', PERMISSIONS_BACKENDS, 'auto');
    const pipeline = this.readPipeline(root.pipeline === undefined ? {} : this.mapping(root.pipeline, 'pipeline'));
    const logging = root.logging === undefined ? {} : this.mapping(root.logging, 'logging');
    this.onlyKnownKeys(logging, 'logging', ['level']);
    const level = this.optionalChoice(logging, 'logging.level', LOG_LEVELS, 'info');
    const runtime = this.readRuntime(root.runtime === undefined ? {} : this.mapping(root.runtime, 'runtime'), paths);
    const metrics = this.readMetrics(root.metrics === undefined ? {} : this.mapping(root.metrics, 'metrics'), paths);
    const limits = this.readLimits(root.limits === undefined ? {} : this.mapping(root.limits, 'limits'));
    const filenames = this.readFilenames(root.filenames === undefined ? {} : this.mapping(root.filenames, 'filenames'));

    return deepFreeze({
      file: this.file,
      paths,
      scanners,
      ledger,
      permissions,
      permissionsBackend,
      pipeline,
      logging: { level },
      runtime,
      metrics,
      limits,
      filenames,
    });
  }

  private fail(key: string, problem: string): never {
    throw new ConfigError(this.file, key, problem);
  }

  private parseYaml(text: string): YamlMapping {
    // YAML 1.2 core schema: `yes` stays a string and `0640` is decimal 640, so modes must be quoted
    // (readPermission says so). Duplicate keys and multiple documents are errors, not last-one-wins.
    const document = parseDocument(text, {
      version: '1.2',
      schema: 'core',
      merge: false,
      strict: true,
      uniqueKeys: true,
      prettyErrors: true,
    });
    const problem = document.errors[0] ?? document.warnings[0];
    if (problem) {
      const where = problem.linePos ? `line ${problem.linePos[0].line}, column ${problem.linePos[0].col}: ` : '';
      const firstLine = (problem.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '');
      this.fail('(yaml)', `${where}${firstLine}`);
    }
    const root: unknown = document.toJS({ maxAliasCount: 100 });
    if (root === null || root === undefined) {
      this.fail('(document)', 'the file is empty; expected a mapping with at least paths and scanners');
    }
    return this.mapping(root, '(document)');
  }

  // ---- paths ----

  private readPaths(section: YamlMapping): ShuttlePaths {
    this.onlyKnownKeys(section, 'paths', MANAGED_PATH_KEYS);
    const resolved = {} as Record<ManagedPathKey, string>;
    for (const key of MANAGED_PATH_KEYS) {
      resolved[key] = this.absolutePath(section[key], `paths.${key}`);
    }

    const directoryKeys = [...DATA_DIRECTORY_KEYS, 'log_path'] as const;
    for (const [index, outerKey] of directoryKeys.entries()) {
      for (const innerKey of directoryKeys.slice(index + 1)) {
        this.refuseOverlap(outerKey, resolved[outerKey], innerKey, resolved[innerKey]);
      }
    }

    for (const fileKey of FILE_PATH_KEYS) {
      const filePath = resolved[fileKey];
      for (const directoryKey of DATA_DIRECTORY_KEYS) {
        if (isSameOrInside(filePath, resolved[directoryKey])) {
          this.fail(`paths.${fileKey}`, `${filePath} is inside paths.${directoryKey} (${resolved[directoryKey]}); ${insideReason(directoryKey)}`);
        }
      }
      if (filePath === resolved.log_path) {
        this.fail(`paths.${fileKey}`, `${filePath} is the log directory (paths.log_path); it must be a file of its own`);
      }
    }
    if (resolved.hazard_encryption_key_path === resolved.ledger_file_path) {
      this.fail('paths.ledger_file_path', `is the same file as paths.hazard_encryption_key_path (${resolved.ledger_file_path})`);
    }

    return {
      sourcePath: resolved.source_path,
      destinationPath: resolved.destination_path,
      quarantinePath: resolved.quarantine_path,
      hazardArchivePath: resolved.hazard_archive_path,
      logPath: resolved.log_path,
      hazardEncryptionKeyPath: resolved.hazard_encryption_key_path,
      ledgerFilePath: resolved.ledger_file_path,
    };
  }

  private refuseOverlap(firstKey: string, first: string, secondKey: string, second: string): void {
    if (first === second) {
      this.fail(`paths.${secondKey}`, `is the same directory as paths.${firstKey} (${first}); every managed directory must be separate`);
    }
    if (isSameOrInside(second, first)) {
      this.fail(`paths.${secondKey}`, `${second} is inside paths.${firstKey} (${first}); managed directories must not contain one another`);
    }
    if (isSameOrInside(first, second)) {
      this.fail(`paths.${firstKey}`, `${first} is inside paths.${secondKey} (${second}); managed directories must not contain one another`);
    }
  }

  private absolutePath(value: unknown, key: string): string {
    if (value === undefined) this.fail(key, 'required, expected an absolute path');
    const text = this.string(value, key, 'an absolute path');
    if (text.includes('\0')) this.fail(key, 'contains a NUL byte');
    if (!path.isAbsolute(text)) this.fail(key, `"${text}" is relative; it must be an absolute path (starting with /)`);
    return path.resolve(text);
  }

  // ---- scanners ----

  private readScanners(section: YamlMapping): ScannerOptions {
    this.onlyKnownKeys(section, 'scanners', ['clamd', 'mdatp', 'require_tested_versions']);
    const clamd = section.clamd === undefined ? null : this.readClamd(this.mapping(section.clamd, 'scanners.clamd'));
    const mdatp = section.mdatp === undefined ? null : this.readMdatp(this.mapping(section.mdatp, 'scanners.mdatp'));
    if (clamd === null && mdatp === null) {
      this.fail('scanners', 'no scanner is enabled; with none, no file could ever be released. Enable clamd or mdatp');
    }
    return { clamd, mdatp };
  }

  private readClamd(section: YamlMapping): ClamdOptions | null {
    const key = 'scanners.clamd';
    this.onlyKnownKeys(section, key, CLAMD_KEYS);
    const enabled = this.optionalBoolean(section, `${key}.enabled`, true);
    const hasSocket = section.socket !== undefined;
    const hasTcp = section.host !== undefined || section.port !== undefined;
    if (hasSocket && hasTcp) {
      this.fail(key, 'give either socket or host and port, not both');
    }
    const socket = hasSocket ? this.absolutePath(section.socket, `${key}.socket`) : undefined;
    const host = section.host === undefined ? undefined : this.nonEmptyString(section.host, `${key}.host`, 'a host name or address');
    const port = section.port === undefined ? undefined : this.port(section.port, `${key}.port`);
    const fdpassGiven = section.fdpass === undefined ? undefined : this.boolean(section.fdpass, `${key}.fdpass`);
    const maxFileSize = this.size(
      section.max_file_size === undefined ? DEFAULT_CLAMD_MAX_FILE_SIZE : section.max_file_size,
      `${key}.max_file_size`,
    );
    const timeoutSeconds = this.optionalPositiveNumber(section, `${key}.timeout_seconds`, DEFAULT_CLAMD_TIMEOUT_SECONDS);
    if (!enabled) return null;

    if (socket !== undefined) {
      return {
        endpoint: { kind: 'unix', socket },
        fdpass: fdpassGiven ?? true,
        maxFileSize,
        timeoutMs: secondsToMs(timeoutSeconds),
      };
    }
    if (host === undefined && port === undefined) {
      this.fail(key, 'needs either socket (clamd\'s LocalSocket path) or host and port (its TCPAddr and TCPSocket)');
    }
    if (host === undefined) this.fail(`${key}.host`, 'required with port');
    if (port === undefined) this.fail(`${key}.port`, 'required with host');
    if (fdpassGiven === true) {
      this.fail(`${key}.fdpass`, 'passing the file descriptor needs a unix socket; remove it or use socket instead of host and port');
    }
    return { endpoint: { kind: 'tcp', host, port }, fdpass: false, maxFileSize, timeoutMs: secondsToMs(timeoutSeconds) };
  }

  private readMdatp(section: YamlMapping): MdatpOptions | null {
    const key = 'scanners.mdatp';
    this.onlyKnownKeys(section, key, MDATP_KEYS);
    const enabled = this.optionalBoolean(section, `${key}.enabled`, false);
    const command =
      section.command === undefined
        ? DEFAULT_MDATP_COMMAND
        : this.nonEmptyString(section.command, `${key}.command`, 'a command name or path');
    const timeoutSeconds = this.optionalPositiveNumber(section, `${key}.timeout_seconds`, DEFAULT_MDATP_TIMEOUT_SECONDS);
    return enabled ? { command, timeoutMs: secondsToMs(timeoutSeconds) } : null;
  }

  private size(value: unknown, key: string): number {
    if (typeof value === 'number') {
      if (Number.isSafeInteger(value) && value > 0) return value;
      this.fail(key, `expected a positive whole number of bytes or a size like "25M", got ${value}`);
    }
    const text = this.string(value, key, 'a size like "25M" or a number of bytes');
    const match = /^([1-9][0-9]*)\s*([KMG]?)$/i.exec(text.trim());
    if (!match) this.fail(key, `"${text}" is not a size; use bytes or a number with K, M or G (as in clamd.conf), e.g. "25M"`);
    const unit = (match[2] ?? '').toUpperCase();
    const multiplier = unit === 'G' ? 1024 ** 3 : unit === 'M' ? 1024 ** 2 : unit === 'K' ? 1024 : 1;
    return Number(match[1]) * multiplier;
  }

  private port(value: unknown, key: string): number {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 65535) {
      this.fail(key, `expected a port number from 1 to 65535, got ${describe(value)}`);
    }
    return value;
  }

  // ---- permissions ----

  private readPermissions(section: YamlMapping): Partial<Record<ManagedPathKey, PermissionSpec>> {
    this.onlyKnownKeys(section, 'permissions', MANAGED_PATH_KEYS);
    const result: Partial<Record<ManagedPathKey, PermissionSpec>> = {};
    for (const pathKey of MANAGED_PATH_KEYS) {
      if (section[pathKey] === undefined) continue;
      result[pathKey] = this.readPermission(this.mapping(section[pathKey], `permissions.${pathKey}`), pathKey);
    }
    return result;
  }

  private readPermission(entry: YamlMapping, pathKey: ManagedPathKey): PermissionSpec {
    const key = `permissions.${pathKey}`;
    this.onlyKnownKeys(entry, key, PERMISSION_KEYS);
    const owner = this.accountName(entry.owner, `${key}.owner`, 'a user name');
    const group = this.accountName(entry.group, `${key}.group`, 'a group name');

    if (entry.mode === undefined) this.fail(`${key}.mode`, 'required, expected an octal string like "2770"');
    if (typeof entry.mode === 'number') {
      this.fail(`${key}.mode`, `must be a quoted octal string like "2770"; unquoted, YAML reads ${entry.mode} as a decimal number`);
    }
    const modeText = this.string(entry.mode, `${key}.mode`, 'an octal string like "2770"');
    if (!/^[0-7]{3,4}$/.test(modeText)) {
      this.fail(`${key}.mode`, `"${modeText}" is not an octal mode; expected 3 or 4 digits from 0 to 7, like "2770" or "0640"`);
    }

    const isFile = (FILE_PATH_KEYS as readonly string[]).includes(pathKey);
    const acl = this.aclList(entry.acl, `${key}.acl`, 'access');
    const defaultAcl = this.aclList(entry.default_acl, `${key}.default_acl`, 'default');
    if (isFile && defaultAcl.length > 0) {
      this.fail(`${key}.default_acl`, 'default ACLs apply only to directories, and this path is a file');
    }
    const spec = { owner, group, mode: Number.parseInt(modeText, 8), acl, defaultAcl };
    if (entry.file_mode === undefined) return spec;
    if (!(DATA_DIRECTORY_KEYS as readonly string[]).includes(pathKey)) {
      this.fail(`${key}.file_mode`, 'applies only to the data directories (source, destination, quarantine, hazard archive)');
    }
    return { ...spec, fileMode: this.fileMode(entry.file_mode, `${key}.file_mode`) };
  }

  private fileMode(value: unknown, key: string): number {
    if (typeof value === 'number') this.fail(key, `must be a quoted octal string like "0660"; unquoted, YAML reads ${value} as a decimal number`);
    const text = this.string(value, key, 'an octal string like "0660"');
    if (!/^[0-7]{3,4}$/.test(text)) this.fail(key, `"${text}" is not an octal mode; expected 3 or 4 digits like "0660" or "0640"`);
    const mode = Number.parseInt(text, 8);
    if ((mode & ~MAX_FILE_MODE) !== 0) {
      this.fail(key, `"${text}" allows more than "0660": files in data directories never get execute, setuid/setgid/sticky or anything for other`);
    }
    return mode;
  }

  private accountName(value: unknown, key: string, what: string): string {
    if (value === undefined) this.fail(key, `required, expected ${what}`);
    if (typeof value === 'number') this.fail(key, `expected ${what}; quote numeric ids ("${value}")`);
    const name = this.nonEmptyString(value, key, what);
    if (/[\s:]/.test(name)) this.fail(key, `"${name}" is not a valid name (no spaces or colons)`);
    return name;
  }

  /** Entries come back canonical: long tag names, no "default:" prefix, so consumers compare strings. */
  private aclList(value: unknown, key: string, kind: 'access' | 'default'): string[] {
    if (value === undefined) return [];
    if (!Array.isArray(value)) this.fail(key, `expected a list of ACL entries, got ${describe(value)}`);
    const entries: string[] = [];
    const seen = new Map<string, number>();
    for (const [index, item] of value.entries()) {
      const itemKey = `${key}[${index}]`;
      const entry = this.aclEntry(this.string(item, itemKey, 'an ACL entry like "group:name:rwX"'), itemKey, kind);
      const scope = entry.slice(0, entry.lastIndexOf(':'));
      const earlier = seen.get(scope);
      if (earlier !== undefined) this.fail(itemKey, `repeats "${scope}" from ${key}[${earlier}]`);
      seen.set(scope, index);
      entries.push(entry);
    }
    return entries;
  }

  private aclEntry(text: string, key: string, kind: 'access' | 'default'): string {
    const fields = text.trim().split(':');
    let isDefault = false;
    if (fields.length === 4 && (fields[0] === 'd' || fields[0] === 'default')) {
      isDefault = true;
      fields.shift();
    }
    const shape = 'expected [default:]tag:qualifier:perms, e.g. "group:shuttle_out_users:rwX"';
    if (fields.length !== 3) this.fail(key, `"${text}" is not an ACL entry; ${shape}`);
    if (isDefault && kind === 'access') {
      this.fail(key, `"${text}" is a default ACL entry; put it in default_acl`);
    }
    const [tagText = '', qualifier = '', perms = ''] = fields;
    const tag = ACL_TAGS[tagText];
    if (tag === undefined) {
      this.fail(key, `"${text}": unknown tag "${tagText}"; expected user, group, mask or other (or u, g, m, o)`);
    }
    if ((tag === 'mask' || tag === 'other') && qualifier !== '') {
      this.fail(key, `"${text}": ${tag} entries take no qualifier; write "${tag}::${perms}"`);
    }
    if (qualifier !== '' && !/^[A-Za-z0-9_.][A-Za-z0-9_.@\\$-]*$/.test(qualifier)) {
      this.fail(key, `"${text}": "${qualifier}" is not a user or group name or number`);
    }
    if (!/^[r-][w-][xX-]$/.test(perms)) {
      this.fail(key, `"${text}": permissions must be three characters in rwx order, each letter or "-" (X allowed last), e.g. "rw-" or "rwX"`);
    }
    return `${tag}:${qualifier}:${perms}`;
  }

  // ---- pipeline ----

  private readPipeline(section: YamlMapping): PipelineOptions {
    this.onlyKnownKeys(section, 'pipeline', Object.keys(PIPELINE_DEFAULTS));
    const seconds = (name: keyof typeof PIPELINE_DEFAULTS): number =>
      this.optionalPositiveNumber(section, `pipeline.${name}`, PIPELINE_DEFAULTS[name]);
    const count = (name: keyof typeof PIPELINE_DEFAULTS): number => {
      const value = this.optionalPositiveNumber(section, `pipeline.${name}`, PIPELINE_DEFAULTS[name]);
      if (!Number.isInteger(value)) this.fail(`pipeline.${name}`, `expected a whole number, got ${value}`);
      return value;
    };

    const retryBase = seconds('retry_base_seconds');
    const retryMax = seconds('retry_max_seconds');
    if (retryMax < retryBase) {
      this.fail('pipeline.retry_max_seconds', `${retryMax} is below pipeline.retry_base_seconds (${retryBase})`);
    }
    const shutdownTimeout = seconds('shutdown_timeout_seconds');
    if (shutdownTimeout >= SYSTEMD_STOP_TIMEOUT_SECONDS) {
      this.fail(
        'pipeline.shutdown_timeout_seconds',
        `${shutdownTimeout} must be below ${SYSTEMD_STOP_TIMEOUT_SECONDS}: systemd kills the service with SIGKILL ` +
          `after its stop timeout (${SYSTEMD_STOP_TIMEOUT_SECONDS} s by default), before the drain could finish`,
      );
    }
    return {
      stabilityWindowMs: secondsToMs(seconds('stability_window_seconds')),
      rescanIntervalMs: secondsToMs(seconds('rescan_interval_seconds')),
      intakeConcurrency: count('intake_concurrency'),
      scanConcurrency: count('scan_concurrency'),
      retryBaseMs: secondsToMs(retryBase),
      retryMaxMs: secondsToMs(retryMax),
      shutdownTimeoutMs: secondsToMs(shutdownTimeout),
    };
  }

  // ---- runtime and metrics ----

  private readRuntime(section: YamlMapping, paths: ShuttlePaths): RuntimeOptions {
    this.onlyKnownKeys(section, 'runtime', ['status_socket']);
    const key = 'runtime.status_socket';
    const statusSocket = section.status_socket === undefined ? DEFAULT_STATUS_SOCKET : this.absolutePath(section.status_socket, key);
    if (Buffer.byteLength(statusSocket) > MAX_SOCKET_PATH_BYTES) {
      this.fail(key, `${statusSocket} is longer than a unix socket address allows (${MAX_SOCKET_PATH_BYTES} bytes)`);
    }
    this.refuseInsideDataDirectories(key, statusSocket, paths);
    return { statusSocket };
  }

  private readMetrics(section: YamlMapping, paths: ShuttlePaths): MetricsOptions {
    this.onlyKnownKeys(section, 'metrics', ['textfile_path', 'textfile_interval_seconds']);
    const key = 'metrics.textfile_path';
    const textfilePath = section.textfile_path === undefined ? null : this.absolutePath(section.textfile_path, key);
    if (textfilePath !== null) {
      if (!textfilePath.endsWith('.prom')) {
        this.fail(key, `${textfilePath} must end in .prom: node_exporter's textfile collector reads only *.prom files`);
      }
      this.refuseInsideDataDirectories(key, textfilePath, paths);
    }
    const interval = this.optionalPositiveNumber(section, 'metrics.textfile_interval_seconds', DEFAULT_METRICS_TEXTFILE_INTERVAL_SECONDS);
    return { textfilePath, textfileIntervalMs: secondsToMs(interval) };
  }

  private refuseInsideDataDirectories(key: string, candidate: string, paths: ShuttlePaths): void {
    const directories: [string, string][] = [
      ['source_path', paths.sourcePath],
      ['destination_path', paths.destinationPath],
      ['quarantine_path', paths.quarantinePath],
      ['hazard_archive_path', paths.hazardArchivePath],
    ];
    for (const [directoryKey, directory] of directories) {
      if (isSameOrInside(candidate, directory)) {
        this.fail(key, `${candidate} is inside paths.${directoryKey} (${directory}); the pipeline treats everything there as files in transit`);
      }
    }
  }

  // ---- limits and filenames ----

  private readLimits(section: YamlMapping): LimitsOptions {
    this.onlyKnownKeys(section, 'limits', LIMITS_KEYS);
    const size = (name: 'max_file_size' | 'free_space_reserve' | 'daily_max_bytes' | 'uploader_max_bytes_per_minute'): number =>
      this.sizeOrZero(section[name] === undefined ? LIMITS_DEFAULTS[name] : section[name], `limits.${name}`);
    const count = (name: 'daily_max_files' | 'uploader_max_files_per_minute'): number => {
      const key = `limits.${name}`;
      const value = section[name] === undefined ? LIMITS_DEFAULTS[name] : section[name];
      if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
        this.fail(key, `expected a whole number, 0 for no limit, got ${describe(value)}`);
      }
      return value;
    };
    return {
      maxFileSize: size('max_file_size'),
      freeSpaceReserve: size('free_space_reserve'),
      dailyMaxFiles: count('daily_max_files'),
      dailyMaxBytes: size('daily_max_bytes'),
      uploaderMaxFilesPerMinute: count('uploader_max_files_per_minute'),
      uploaderMaxBytesPerMinute: size('uploader_max_bytes_per_minute'),
    };
  }

  private readFilenames(section: YamlMapping): FilenameOptions {
    this.onlyKnownKeys(section, 'filenames', ['policy', 'temporary_patterns']);
    const policy = this.optionalChoice(section, 'filenames.policy', FILENAME_POLICIES, 'rename');
    const key = 'filenames.temporary_patterns';
    if (section.temporary_patterns === undefined) return { policy, temporaryPatterns: DEFAULT_TEMPORARY_PATTERNS };
    if (!Array.isArray(section.temporary_patterns)) {
      this.fail(key, `expected a list of patterns like "*.tmp" ([] for none), got ${describe(section.temporary_patterns)}`);
    }
    const temporaryPatterns = section.temporary_patterns.map((item: unknown, index: number) => {
      const itemKey = `${key}[${index}]`;
      const pattern = this.string(item, itemKey, 'a pattern like "*.tmp"');
      const problem = globProblem(pattern);
      if (problem !== null) this.fail(itemKey, `${JSON.stringify(pattern)} is not a usable pattern: ${problem}`);
      return pattern;
    });
    return { policy, temporaryPatterns };
  }

  /** A size as for clamd's max_file_size, or 0 (written 0 or "0"). */
  private sizeOrZero(value: unknown, key: string): number {
    if (value === 0 || (typeof value === 'string' && /^\s*0+\s*[KMG]?\s*$/i.test(value))) return 0;
    if (typeof value === 'number' && (!Number.isSafeInteger(value) || value < 0)) {
      this.fail(key, `expected a whole number of bytes or a size like "25M", 0 for none, got ${value}`);
    }
    return this.size(value, key);
  }

  // ---- typed readers ----

  private onlyKnownKeys(section: YamlMapping, prefix: string, allowed: readonly string[]): void {
    for (const name of Object.keys(section)) {
      if (allowed.includes(name)) continue;
      const suggestion = closestName(name, allowed);
      const hint = suggestion ? ` (did you mean "${suggestion}"?)` : `; expected one of ${allowed.join(', ')}`;
      this.fail(prefix ? `${prefix}.${name}` : name, `unknown key${hint}`);
    }
  }

  private mapping(value: unknown, key: string): YamlMapping {
    if (!isPlainMapping(value)) this.fail(key, `expected a mapping, got ${describe(value)}`);
    return value;
  }

  private requiredMapping(parent: YamlMapping, key: string): YamlMapping {
    if (parent[key] === undefined) this.fail(key, 'required section is missing');
    return this.mapping(parent[key], key);
  }

  private string(value: unknown, key: string, what: string): string {
    if (typeof value !== 'string') this.fail(key, `expected ${what} (a string), got ${describe(value)}`);
    return value;
  }

  private nonEmptyString(value: unknown, key: string, what: string): string {
    const text = this.string(value, key, what);
    if (text.trim() === '') this.fail(key, `expected ${what}, got an empty string`);
    return text;
  }

  private boolean(value: unknown, key: string): boolean {
    if (typeof value !== 'boolean') this.fail(key, `expected true or false, got ${describe(value)}`);
    return value;
  }

  private optionalBoolean(section: YamlMapping, dottedKey: string, fallback: boolean): boolean {
    const value = section[lastSegment(dottedKey)];
    return value === undefined ? fallback : this.boolean(value, dottedKey);
  }

  private optionalPositiveNumber(section: YamlMapping, dottedKey: string, fallback: number): number {
    const value = section[lastSegment(dottedKey)];
    if (value === undefined) return fallback;
    if (typeof value !== 'number' || !Number.isFinite(value)) {
      this.fail(dottedKey, `expected a number, got ${describe(value)}`);
    }
    if (value <= 0) this.fail(dottedKey, `must be greater than 0, got ${value}`);
    return value;
  }

  private optionalChoice<T extends string>(section: YamlMapping, dottedKey: string, choices: readonly T[], fallback: T): T {
    const value = section[lastSegment(dottedKey)];
    if (value === undefined) return fallback;
    if (typeof value !== 'string' || !(choices as readonly string[]).includes(value)) {
      this.fail(dottedKey, `expected one of ${choices.join(', ')}, got ${describe(value)}`);
    }
    return value as T;
  }
}

const ACL_TAGS: Record<string, 'user' | 'group' | 'mask' | 'other' | undefined> = {
  user: 'user',
  u: 'user',
  group: 'group',
  g: 'group',
  mask: 'mask',
  m: 'mask',
  other: 'other',
  o: 'other',
};

function insideReason(directoryKey: DataDirectoryKey): string {
  switch (directoryKey) {
    case 'source_path':
    case 'destination_path':
      return 'Samba users would be able to read it';
    case 'quarantine_path':
    case 'hazard_archive_path':
      return 'the pipeline treats everything there as a file in transit';
  }
}

/** True when `candidate` is `directory` itself or somewhere below it. Both must be resolved. */
function isSameOrInside(candidate: string, directory: string): boolean {
  if (candidate === directory) return true;
  const prefix = directory.endsWith(path.sep) ? directory : directory + path.sep;
  return candidate.startsWith(prefix);
}

function isPlainMapping(value: unknown): value is YamlMapping {
  return typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype;
}

function describe(value: unknown): string {
  if (value === null) return 'nothing (an empty value)';
  if (typeof value === 'string') return `the string ${JSON.stringify(value)}`;
  if (typeof value === 'number' || typeof value === 'boolean') return `${typeof value} ${String(value)}`;
  if (Array.isArray(value)) return 'a list';
  if (isPlainMapping(value)) return 'a mapping';
  return `a value of type ${value instanceof Object ? value.constructor.name : typeof value}`;
}

function lastSegment(dottedKey: string): string {
  return dottedKey.slice(dottedKey.lastIndexOf('.') + 1);
}

function secondsToMs(seconds: number): number {
  return Math.round(seconds * 1000);
}

/** The allowed name within edit distance 2 of a misspelt key, if any. */
function closestName(name: string, allowed: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of allowed) {
    const distance = editDistance(name, candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, index) => index);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current[j] = Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution);
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}
