import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, type ShuttleConfig } from '../../src/config.js';
import { DEFAULT_PERMISSIONS, loadConfig, parseConfig } from '../../src/config-load.js';

const FILE = '/etc/shuttle/under-test.yaml';
const SHIPPED_CONFIG = fileURLToPath(new URL('../../config/shuttle.yaml', import.meta.url));

const PATHS = `paths:
  source_path: /srv/shuttle/in
  destination_path: /srv/shuttle/out
  quarantine_path: /srv/shuttle/quarantine
  hazard_archive_path: /srv/shuttle/hazard
  log_path: /var/log/shuttle
  hazard_encryption_key_path: /etc/shuttle/hazard-public.asc
  ledger_file_path: /etc/shuttle/ledger.yaml
`;
const SCANNERS = `scanners:
  clamd: { socket: /run/clamav/clamd.ctl }
`;
const MINIMAL = PATHS + SCANNERS;

/** The minimal config with one `paths` entry replaced. */
function withPath(key: string, value: string): string {
  return MINIMAL.replace(new RegExp(`^  ${key}: .*$`, 'm'), `  ${key}: ${value}`);
}

function withScanners(scanners: string): string {
  return `${PATHS}scanners:\n${scanners}`;
}

function refusal(yaml: string): ConfigError {
  try {
    parseConfig(yaml, FILE);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('the config was accepted');
}

/** Asserts the config is refused with a message naming the file and `key` (and any extra fragments). */
function expectRefused(yaml: string, key: string, ...fragments: string[]): void {
  const error = refusal(yaml);
  expect(error.key).toBe(key);
  expect(error.message).toContain(FILE);
  expect(error.message).toContain(`: ${key}: `);
  for (const fragment of fragments) expect(error.message).toContain(fragment);
}

describe('parseConfig: a valid config', () => {
  it('fills every default', () => {
    const config = parseConfig(MINIMAL, FILE);
    expect(config.file).toBe(FILE);
    expect(config.paths).toEqual({
      sourcePath: '/srv/shuttle/in',
      destinationPath: '/srv/shuttle/out',
      quarantinePath: '/srv/shuttle/quarantine',
      hazardArchivePath: '/srv/shuttle/hazard',
      logPath: '/var/log/shuttle',
      hazardEncryptionKeyPath: '/etc/shuttle/hazard-public.asc',
      ledgerFilePath: '/etc/shuttle/ledger.yaml',
    });
    expect(config.scanners).toEqual({
      clamd: {
        endpoint: { kind: 'unix', socket: '/run/clamav/clamd.ctl' },
        fdpass: true,
        maxFileSize: 25 * 1024 * 1024,
        timeoutMs: 120_000,
      },
      mdatp: null,
    });
    expect(config.pipeline).toEqual({
      stabilityWindowMs: 5000,
      rescanIntervalMs: 30_000,
      intakeConcurrency: 128,
      scanConcurrency: 16,
      retryBaseMs: 2000,
      retryMaxMs: 300_000,
      shutdownTimeoutMs: 20_000,
    });
    expect(config.logging).toEqual({ level: 'info' });
    expect(config.permissions).toEqual(DEFAULT_PERMISSIONS);
  });

  it('is deeply frozen', () => {
    const config = parseConfig(MINIMAL, FILE);
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.paths)).toBe(true);
    expect(Object.isFrozen(config.scanners.clamd?.endpoint)).toBe(true);
    expect(Object.isFrozen(config.permissions.source_path?.acl)).toBe(true);
    expect(() => {
      (config.paths as { sourcePath: string }).sourcePath = '/tmp';
    }).toThrow(TypeError);
    expect(() => {
      (config.permissions.source_path?.acl as string[]).push('other::rwx');
    }).toThrow(TypeError);
  });

  it('normalises paths', () => {
    const config = parseConfig(withPath('source_path', '/srv//shuttle/x/../in/'), FILE);
    expect(config.paths.sourcePath).toBe('/srv/shuttle/in');
  });

  it('does not mistake a sibling with a common prefix for a subdirectory', () => {
    const config = parseConfig(withPath('destination_path', '/srv/shuttle/in2'), FILE);
    expect(config.paths.destinationPath).toBe('/srv/shuttle/in2');
  });

  it('reads clamd over TCP, sizes, and mdatp with its defaults', () => {
    const config = parseConfig(
      withScanners('  clamd: { host: 127.0.0.1, port: 3310, max_file_size: "200M", timeout_seconds: 30 }\n  mdatp: { enabled: true }\n'),
      FILE,
    );
    expect(config.scanners.clamd).toEqual({
      endpoint: { kind: 'tcp', host: '127.0.0.1', port: 3310 },
      fdpass: false,
      maxFileSize: 200 * 1024 * 1024,
      timeoutMs: 30_000,
    });
    expect(config.scanners.mdatp).toEqual({ command: 'mdatp', timeoutMs: 300_000 });
  });

  it.each([
    ['"1G"', 1024 ** 3],
    ['"512k"', 512 * 1024],
    ['1000', 1000],
    ['"4096"', 4096],
  ])('reads max_file_size %s', (written, bytes) => {
    const config = parseConfig(withScanners(`  clamd: { socket: /run/clamd.sock, max_file_size: ${written} }\n`), FILE);
    expect(config.scanners.clamd?.maxFileSize).toBe(bytes);
  });

  it('accepts mdatp alone when clamd is disabled', () => {
    const config = parseConfig(withScanners('  clamd: { enabled: false }\n  mdatp: { enabled: true, command: /opt/mdatp/bin/mdatp, timeout_seconds: 60 }\n'), FILE);
    expect(config.scanners).toEqual({ clamd: null, mdatp: { command: '/opt/mdatp/bin/mdatp', timeoutMs: 60_000 } });
  });

  it('reads pipeline and logging overrides', () => {
    const config = parseConfig(
      `${MINIMAL}pipeline:\n  stability_window_seconds: 0.5\n  scan_concurrency: 8\n  shutdown_timeout_seconds: 89\nlogging:\n  level: debug\n`,
      FILE,
    );
    expect(config.pipeline.stabilityWindowMs).toBe(500);
    expect(config.pipeline.scanConcurrency).toBe(8);
    expect(config.pipeline.shutdownTimeoutMs).toBe(89_000);
    expect(config.logging.level).toBe('debug');
  });

  it('manages only the listed paths when permissions are given, with ACLs in canonical form', () => {
    const config = parseConfig(
      `${MINIMAL}permissions:
  destination_path:
    owner: root
    group: "1200"
    mode: "2750"
    acl: ["g:shuttle_out_users:r-X", "u:1001:rwx", "m::rwx"]
    default_acl: ["d:u::rw-", "default:g::r--", "o::---"]
  ledger_file_path: { owner: root, group: adm, mode: "0640" }
`,
      FILE,
    );
    expect(Object.keys(config.permissions)).toEqual(['destination_path', 'ledger_file_path']);
    expect(config.permissions.destination_path).toEqual({
      owner: 'root',
      group: '1200',
      mode: 0o2750,
      acl: ['group:shuttle_out_users:r-X', 'user:1001:rwx', 'mask::rwx'],
      defaultAcl: ['user::rw-', 'group::r--', 'other::---'],
    });
    expect(config.permissions.ledger_file_path?.mode).toBe(0o640);
  });
});

describe('parseConfig: refusals name the file and the key', () => {
  it.each([
    ['top level', `${MINIMAL}pathz: {}\n`, 'pathz', 'did you mean "paths"'],
    ['paths', `${MINIMAL.replace('paths:\n', 'paths:\n  spool_path: /srv/spool\n')}`, 'paths.spool_path', 'unknown key'],
    ['scanners.clamd', withScanners('  clamd: { sockte: /run/clamav/clamd.ctl }\n'), 'scanners.clamd.sockte', 'did you mean "socket"'],
    ['scanners.mdatp', withScanners('  clamd: { socket: /run/c.sock }\n  mdatp: { enabled: false, path: /x }\n'), 'scanners.mdatp.path', 'unknown key'],
    ['permissions', `${MINIMAL}permissions:\n  spool_path: { owner: root, group: g, mode: "2770" }\n`, 'permissions.spool_path', 'unknown key'],
    ['a permission entry', `${MINIMAL}permissions:\n  log_path: { owner: root, group: g, mode: "2770", modes: "1" }\n`, 'permissions.log_path.modes', 'unknown key'],
    ['pipeline', `${MINIMAL}pipeline:\n  workers: 3\n`, 'pipeline.workers', 'unknown key'],
    ['logging', `${MINIMAL}logging:\n  format: json\n`, 'logging.format', 'unknown key'],
  ])('unknown key in %s', (_where, yaml, key, fragment) => {
    expectRefused(yaml, key, fragment);
  });

  it.each([
    ['a number as a path', withPath('source_path', '42'), 'paths.source_path', 'absolute path (a string), got number 42'],
    ['a string as a count', `${MINIMAL}pipeline:\n  intake_concurrency: "4"\n`, 'pipeline.intake_concurrency', 'expected a number'],
    ['a fraction as a count', `${MINIMAL}pipeline:\n  scan_concurrency: 2.5\n`, 'pipeline.scan_concurrency', 'whole number'],
    ['zero seconds', `${MINIMAL}pipeline:\n  retry_base_seconds: 0\n`, 'pipeline.retry_base_seconds', 'greater than 0'],
    ['yes as a boolean (YAML 1.2 reads it as a string)', withScanners('  clamd: { socket: /run/c.sock, fdpass: yes }\n'), 'scanners.clamd.fdpass', 'expected true or false'],
    ['a list as a section', `${PATHS}scanners: [clamd]\n`, 'scanners', 'expected a mapping, got a list'],
    ['an empty section', `${MINIMAL}pipeline:\n`, 'pipeline', 'expected a mapping'],
    ['an unknown log level', `${MINIMAL}logging: { level: verbose }\n`, 'logging.level', 'error, warn, info, debug'],
    ['a port out of range', withScanners('  clamd: { host: localhost, port: 70000 }\n'), 'scanners.clamd.port', '1 to 65535'],
    ['a size with a unit clamd does not know', withScanners('  clamd: { socket: /run/c.sock, max_file_size: "25MB" }\n'), 'scanners.clamd.max_file_size', 'not a size'],
    ['retry max below retry base', `${MINIMAL}pipeline: { retry_base_seconds: 10, retry_max_seconds: 5 }\n`, 'pipeline.retry_max_seconds', 'retry_base_seconds'],
  ])('wrong type or value: %s', (_what, yaml, key, fragment) => {
    expectRefused(yaml, key, fragment);
  });

  it('refuses a missing required path', () => {
    expectRefused(MINIMAL.replace(/^ {2}ledger_file_path: .*\n/m, ''), 'paths.ledger_file_path', 'required');
  });

  it('refuses missing sections', () => {
    expectRefused(SCANNERS, 'paths', 'required section is missing');
    expectRefused(PATHS, 'scanners', 'required section is missing');
  });

  it('refuses a relative path', () => {
    expectRefused(withPath('quarantine_path', 'srv/quarantine'), 'paths.quarantine_path', 'must be an absolute path');
    expectRefused(withScanners('  clamd: { socket: run/clamd.ctl }\n'), 'scanners.clamd.socket', 'must be an absolute path');
  });

  it('refuses a data directory inside another, both ways round', () => {
    expectRefused(withPath('quarantine_path', '/srv/shuttle/in/.quarantine'), 'paths.quarantine_path', 'paths.source_path', 'inside');
    expectRefused(withPath('source_path', '/srv/shuttle/quarantine/in'), 'paths.source_path', 'paths.quarantine_path', 'inside');
    expectRefused(withPath('log_path', '/srv/shuttle/hazard/logs'), 'paths.log_path', 'paths.hazard_archive_path');
    expectRefused(withPath('destination_path', '/'), 'paths.source_path', 'inside paths.destination_path (/)');
  });

  it('refuses two keys naming the same directory', () => {
    expectRefused(withPath('destination_path', '/srv/shuttle/in/'), 'paths.destination_path', 'same directory as paths.source_path');
  });

  it('refuses the key or the ledger inside a share', () => {
    expectRefused(withPath('hazard_encryption_key_path', '/srv/shuttle/out/key.asc'), 'paths.hazard_encryption_key_path', 'paths.destination_path', 'Samba users');
    expectRefused(withPath('ledger_file_path', '/srv/shuttle/in/ledger.yaml'), 'paths.ledger_file_path', 'paths.source_path');
    expectRefused(withPath('ledger_file_path', '/etc/shuttle/hazard-public.asc'), 'paths.ledger_file_path', 'same file');
  });

  it('refuses a config with no scanner enabled', () => {
    expectRefused(withScanners('  clamd: { enabled: false, socket: /run/c.sock }\n  mdatp: { enabled: false }\n'), 'scanners', 'could ever be released');
    expectRefused(`${PATHS}scanners: {}\n`, 'scanners', 'no scanner is enabled');
  });

  it('refuses clamd with both a socket and a host, or with neither', () => {
    expectRefused(withScanners('  clamd: { socket: /run/c.sock, host: 127.0.0.1, port: 3310 }\n'), 'scanners.clamd', 'not both');
    expectRefused(withScanners('  clamd: { timeout_seconds: 5 }\n'), 'scanners.clamd', 'needs either socket');
    expectRefused(withScanners('  clamd: { host: 127.0.0.1 }\n'), 'scanners.clamd.port', 'required with host');
    expectRefused(withScanners('  clamd: { host: 127.0.0.1, port: 3310, fdpass: true }\n'), 'scanners.clamd.fdpass', 'unix socket');
  });

  it.each([
    ['"2778"', 'not an octal mode'],
    ['"27"', 'not an octal mode'],
    ['"02770"', 'not an octal mode'],
    ['2770', 'quoted octal string'],
    ['0640', 'reads 640 as a decimal'],
  ])('refuses mode %s', (mode, fragment) => {
    expectRefused(`${MINIMAL}permissions:\n  log_path: { owner: root, group: adm, mode: ${mode} }\n`, 'permissions.log_path.mode', fragment);
  });

  it('refuses a missing or malformed owner or group', () => {
    expectRefused(`${MINIMAL}permissions:\n  log_path: { group: adm, mode: "2770" }\n`, 'permissions.log_path.owner', 'required');
    expectRefused(`${MINIMAL}permissions:\n  log_path: { owner: root, group: "", mode: "2770" }\n`, 'permissions.log_path.group', 'empty');
    expectRefused(`${MINIMAL}permissions:\n  log_path: { owner: 0, group: adm, mode: "2770" }\n`, 'permissions.log_path.owner', 'quote numeric ids');
  });

  it.each([
    ['acl', '"group:shuttle_out_users:rwz"', 'permissions must be three characters'],
    ['acl', '"group:shuttle_out_users:wr-"', 'rwx order'],
    ['acl', '"group:shuttle_out_users:rw"', 'permissions must be three characters'],
    ['acl', '"team:shuttle_out_users:rwx"', 'unknown tag "team"'],
    ['acl', '"group:shuttle_out_users"', 'not an ACL entry'],
    ['acl', '"mask:someone:rwx"', 'take no qualifier'],
    ['acl', '"other:someone:r--"', 'take no qualifier'],
    ['acl', '"group:bad name:r--"', 'not a user or group name'],
    ['acl', '"default:group:x:r-X"', 'put it in default_acl'],
    ['default_acl', '"d:x:user::rw-"', 'not an ACL entry'],
  ])('refuses the %s entry %s', (list, entry, fragment) => {
    const key = `permissions.destination_path.${list}[0]`;
    expectRefused(
      `${MINIMAL}permissions:\n  destination_path: { owner: root, group: g, mode: "2770", ${list}: [${entry}] }\n`,
      key,
      fragment,
    );
  });

  it('refuses repeated ACL entries, ACLs that are not lists, and default ACLs on files', () => {
    expectRefused(
      `${MINIMAL}permissions:\n  source_path: { owner: root, group: g, mode: "2770", acl: ["g:staff:r-x", "group:staff:rwx"] }\n`,
      'permissions.source_path.acl[1]',
      'repeats "group:staff"',
    );
    expectRefused(
      `${MINIMAL}permissions:\n  source_path: { owner: root, group: g, mode: "2770", acl: "group:staff:rwx" }\n`,
      'permissions.source_path.acl',
      'expected a list',
    );
    expectRefused(
      `${MINIMAL}permissions:\n  ledger_file_path: { owner: root, group: g, mode: "0640", default_acl: ["user::rw-"] }\n`,
      'permissions.ledger_file_path.default_acl',
      'only to directories',
    );
  });

  it('refuses a shutdown timeout systemd would cut short, and says why', () => {
    expectRefused(`${MINIMAL}pipeline:\n  shutdown_timeout_seconds: 90\n`, 'pipeline.shutdown_timeout_seconds', 'below 90', 'systemd', 'SIGKILL');
  });

  it('reports YAML syntax errors with their line', () => {
    expectRefused(`${MINIMAL}pipeline: [1\nlogging: {}\n`, '(yaml)', 'line ');
    const duplicate = refusal(`${MINIMAL}logging: { level: info }\nlogging: { level: debug }\n`);
    expect(duplicate.key).toBe('(yaml)');
    expect(duplicate.problem).toMatch(/^line \d+, column \d+: Map keys must be unique$/);
    expectRefused(`${MINIMAL}---\n${MINIMAL}`, '(yaml)', 'multiple documents');
  });

  it('refuses an empty file and a document that is not a mapping', () => {
    expectRefused('', '(document)', 'empty');
    expectRefused('- paths\n', '(document)', 'expected a mapping');
  });
});

describe('loadConfig', () => {
  let directory: string;
  beforeAll(async () => {
    directory = await mkdtemp(path.join(os.tmpdir(), 'shuttle-config-'));
  });
  afterAll(async () => {
    await rm(directory, { recursive: true, force: true });
  });

  it('refuses a missing file with key (file)', async () => {
    const missing = path.join(directory, 'absent.yaml');
    await expect(loadConfig(missing)).rejects.toThrow(`${missing}: (file): cannot read the config file: no such file`);
  });

  it('validates the shipped config/shuttle.yaml, whose permissions are the defaults', async () => {
    const config: ShuttleConfig = await loadConfig(SHIPPED_CONFIG);
    expect(config.file).toBe(SHIPPED_CONFIG);
    expect(config.paths.sourcePath).toBe('/srv/shuttle/in');
    expect(config.paths.ledgerFilePath).toBe('/etc/shuttle/ledger.yaml');
    expect(config.scanners.clamd?.endpoint).toEqual({ kind: 'unix', socket: '/run/clamav/clamd.ctl' });
    expect(config.scanners.mdatp).toBeNull();
    expect(config.permissions).toEqual(DEFAULT_PERMISSIONS);
  });
});

describe('DEFAULT_PERMISSIONS', () => {
  it('follows the permission model in SPEC.md, with the named default entries the two shares need', () => {
    expect(DEFAULT_PERMISSIONS.source_path).toEqual({
      owner: 'root',
      group: 'shuttle_owners',
      mode: 0o2770,
      acl: ['group:shuttle_samba_in_users:rwX'],
      defaultAcl: ['user::rwX', 'group::rw-', 'group:shuttle_samba_in_users:rwX', 'other::---'],
    });
    expect(DEFAULT_PERMISSIONS.destination_path.defaultAcl).toEqual(['user::rw-', 'group::rw-', 'group:shuttle_out_users:r-X', 'other::---']);
    expect(DEFAULT_PERMISSIONS.log_path.group).toBe('shuttle_log_owners');
    expect(DEFAULT_PERMISSIONS.hazard_encryption_key_path).toMatchObject({ group: 'shuttle_config_readers', mode: 0o640, acl: [] });
    expect(DEFAULT_PERMISSIONS.ledger_file_path.acl).toEqual(['group:shuttle_log_owners:rw-']);
    expect(Object.isFrozen(DEFAULT_PERMISSIONS.destination_path.defaultAcl)).toBe(true);
  });
});

describe('limits and filenames', () => {
  const GiB = 1024 ** 3;
  const MiB = 1024 ** 2;

  it('default to a 1G reserve, no other limit, the rename policy and the Office temporary names', () => {
    const config = parseConfig(MINIMAL, FILE);
    expect(config.limits).toEqual({
      maxFileSize: 0,
      freeSpaceReserve: GiB,
      dailyMaxFiles: 0,
      dailyMaxBytes: 0,
      uploaderMaxFilesPerMinute: 0,
      uploaderMaxBytesPerMinute: 0,
    });
    expect(config.filenames).toEqual({ policy: 'rename', temporaryPatterns: ['~$*', '*.tmp', '.~lock.*#', '~*.tmp'] });
    expect(Object.isFrozen(config.limits)).toBe(true);
    expect(Object.isFrozen(config.filenames.temporaryPatterns)).toBe(true);
  });

  it('reads every key, sizes as clamd writes them, and 0 for no limit', () => {
    const config = parseConfig(
      `${MINIMAL}limits:
  max_file_size: "2G"
  free_space_reserve: 0
  daily_max_files: 5000
  daily_max_bytes: "500M"
  uploader_max_files_per_minute: 60
  uploader_max_bytes_per_minute: 1048576
filenames:
  policy: reject
  temporary_patterns: ["*.part", "~[!a-z]*.TMP"]
`,
      FILE,
    );
    expect(config.limits).toEqual({
      maxFileSize: 2 * GiB,
      freeSpaceReserve: 0,
      dailyMaxFiles: 5000,
      dailyMaxBytes: 500 * MiB,
      uploaderMaxFilesPerMinute: 60,
      uploaderMaxBytesPerMinute: MiB,
    });
    expect(config.filenames).toEqual({ policy: 'reject', temporaryPatterns: ['*.part', '~[!a-z]*.TMP'] });
  });

  it.each([['0'], ['"0"'], ['"0M"']])('reads %s as no limit', (written) => {
    expect(parseConfig(`${MINIMAL}limits: { max_file_size: ${written} }\n`, FILE).limits.maxFileSize).toBe(0);
  });

  it('accepts an empty list of temporary patterns', () => {
    expect(parseConfig(`${MINIMAL}filenames: { temporary_patterns: [] }\n`, FILE).filenames.temporaryPatterns).toEqual([]);
  });

  it.each([
    ['an unknown limits key', 'limits: { max_filesize: "1G" }', 'limits.max_filesize', 'did you mean "max_file_size"'],
    ['an unknown filenames key', 'filenames: { polcy: rename }', 'filenames.polcy', 'did you mean "policy"'],
    ['limits as a list', 'limits: [1]', 'limits', 'expected a mapping'],
    ['a size with a unit clamd does not know', 'limits: { max_file_size: "10MB" }', 'limits.max_file_size', 'not a size'],
    ['a negative size', 'limits: { free_space_reserve: -1 }', 'limits.free_space_reserve', '0 for none'],
    ['a fractional size', 'limits: { daily_max_bytes: 1.5 }', 'limits.daily_max_bytes', 'whole number of bytes'],
    ['an empty size', 'limits: { uploader_max_bytes_per_minute: }', 'limits.uploader_max_bytes_per_minute', 'got nothing'],
    ['a negative count', 'limits: { daily_max_files: -5 }', 'limits.daily_max_files', 'whole number, 0 for no limit'],
    ['a fractional count', 'limits: { uploader_max_files_per_minute: 2.5 }', 'limits.uploader_max_files_per_minute', 'whole number'],
    ['a count as a string', 'limits: { daily_max_files: "100" }', 'limits.daily_max_files', 'the string "100"'],
    ['an unknown policy', 'filenames: { policy: delete }', 'filenames.policy', 'rename, reject'],
    ['patterns that are not a list', 'filenames: { temporary_patterns: "*.tmp" }', 'filenames.temporary_patterns', 'expected a list'],
    ['a pattern that is not a string', 'filenames: { temporary_patterns: ["*.tmp", 3] }', 'filenames.temporary_patterns[1]', 'a pattern like'],
    ['an empty pattern', 'filenames: { temporary_patterns: [""] }', 'filenames.temporary_patterns[0]', 'it is empty'],
    ['a pattern with a directory', 'filenames: { temporary_patterns: ["tmp/*"] }', 'filenames.temporary_patterns[0]', 'the file name alone'],
    ['a pattern with an open set', 'filenames: { temporary_patterns: ["*.[tT"] }', 'filenames.temporary_patterns[0]', 'never closed'],
  ])('refuses %s', (_what, section, key, fragment) => {
    expectRefused(`${MINIMAL}${section}\n`, key, fragment);
  });

  it('documents both sections in config/shuttle.yaml with exactly these defaults', async () => {
    const shipped = await readFile(SHIPPED_CONFIG, 'utf8');
    const section = (name: string): string => {
      const start = shipped.indexOf(`\n# ${name}:\n`);
      expect(start).toBeGreaterThan(0);
      const end = shipped.indexOf('\n\n', start + 1);
      return shipped
        .slice(start + 1, end === -1 ? undefined : end)
        .split('\n')
        .map((line) => line.replace(/^# ?/, ''))
        .join('\n');
    };
    const uncommented = parseConfig(`${MINIMAL}${section('limits')}\n${section('filenames')}\n`, FILE);
    const defaults = parseConfig(MINIMAL, FILE);
    expect(uncommented.limits).toEqual(defaults.limits);
    expect(uncommented.filenames).toEqual(defaults.filenames);
    expect(section('limits')).toContain('uploader_max_bytes_per_minute');
  });
});
