// The sysusers.d and tmpfiles.d files that make a host match the permission model: the groups and the
// service account, then every managed path with its owner, group, mode and ACLs. They are rendered
// from the config (the shipped systemd/ files from config/shuttle.yaml), so the files and the model
// cannot drift apart: a test renders them again and compares.
//
// Regenerate the shipped files after changing the model: `npm run build && node dist/src/systemd-files.js systemd`.

import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { parseAclText } from './acl-text.js';
import { MANAGED_PATH_KEYS, type ManagedPathKey, type PermissionSpec, type ShuttleConfig, type ShuttlePaths } from './config.js';
import type { AclEntry } from './native.js';

/** The account the unit runs as (User= in systemd/shuttle.service). */
export const SERVICE_USER = 'shuttle_runner';
/** The unit's primary group (Group=); members may use `shuttle status`. */
export const SERVICE_GROUP = 'shuttle_owners';

export const SYSUSERS_FILE_NAME = 'shuttle.sysusers.conf';
export const TMPFILES_FILE_NAME = 'shuttle.tmpfiles.conf';

type ModelSource = Pick<ShuttleConfig, 'paths' | 'permissions'>;

const PATH_FIELDS: Readonly<Record<ManagedPathKey, keyof ShuttlePaths>> = {
  source_path: 'sourcePath',
  destination_path: 'destinationPath',
  quarantine_path: 'quarantinePath',
  hazard_archive_path: 'hazardArchivePath',
  log_path: 'logPath',
  hazard_encryption_key_path: 'hazardEncryptionKeyPath',
  ledger_file_path: 'ledgerFilePath',
};

/**
 * How tmpfiles treats each managed path. The ledger may start empty, so it is created; an empty key
 * file would be a broken key, so the key file only has its mode and owner corrected when it exists.
 */
const TMPFILES_TYPES: Readonly<Record<ManagedPathKey, 'd' | 'f' | 'z'>> = {
  source_path: 'd',
  destination_path: 'd',
  quarantine_path: 'd',
  hazard_archive_path: 'd',
  log_path: 'd',
  hazard_encryption_key_path: 'z',
  ledger_file_path: 'f',
};

const HEADER = [
  '# Generated from the permission model in config/shuttle.yaml (src/systemd-files.ts renders it;',
  '# test/unit/systemd/systemd-files.test.ts fails when the two differ). Edit the model, not this file.',
];

function modelEntries(config: ModelSource): [ManagedPathKey, PermissionSpec][] {
  return MANAGED_PATH_KEYS.flatMap((key) => {
    const spec = config.permissions[key];
    return spec === undefined ? [] : [[key, spec] as [ManagedPathKey, PermissionSpec]];
  });
}

function isAccountName(name: string): boolean {
  return name !== '' && name !== 'root' && !/^\d+$/.test(name);
}

/** Groups the model names (owning groups, then named ACL groups), in model order, without duplicates. */
export function modelGroups(config: ModelSource): string[] {
  const groups: string[] = [];
  const add = (name: string): void => {
    if (isAccountName(name) && !groups.includes(name)) groups.push(name);
  };
  for (const [key, spec] of modelEntries(config)) {
    add(spec.group);
    for (const entry of aclEntries(spec, key, 'access').concat(aclEntries(spec, key, 'default'))) {
      if (entry.tag === 'group' && entry.qualifier !== undefined) add(entry.qualifier);
    }
  }
  return groups;
}

/** The service account joins every group that owns a managed path: it writes the directories and reads the files. */
export function serviceGroups(config: ModelSource): string[] {
  const groups: string[] = [];
  for (const [, spec] of modelEntries(config)) {
    if (isAccountName(spec.group) && !groups.includes(spec.group)) groups.push(spec.group);
  }
  return groups;
}

/**
 * sysusers.d(5): the model's groups, the service account (nologin, home /) and its memberships. Users
 * the model names as owners or in ACLs (root, admins) are expected to exist and are not created.
 */
export function renderSysusers(config: ModelSource): string {
  const lines = [...HEADER, ''];
  lines.push('# Groups of the permission model: owners of managed paths, and the groups named in their ACLs.');
  for (const group of modelGroups(config)) lines.push(`g ${group} -`);
  lines.push('', '# The service account. Its own group is its primary group; the unit runs it with Group=' + SERVICE_GROUP + '.');
  lines.push(`u ${SERVICE_USER} - "Shuttle file transfer daemon" / -`);
  lines.push('', '# It writes the directories and reads the files its groups own.');
  for (const group of serviceGroups(config)) lines.push(`m ${SERVICE_USER} ${group}`);
  return `${lines.join('\n')}\n`;
}

/**
 * tmpfiles.d(5): each managed path with its owner, group and mode (setgid included), then its access
 * and default ACL. tmpfiles does not understand setfacl's capital X, so it is resolved here (execute
 * for directories, nothing for files), and masks are written out as the model computes them: the union
 * of the owning group and the named entries.
 */
export function renderTmpfiles(config: ModelSource): string {
  const lines = [...HEADER, ''];
  lines.push('# Type Path Mode User Group Age Argument');
  for (const [key, spec] of modelEntries(config)) {
    const target = config.paths[PATH_FIELDS[key]];
    const mode = spec.mode.toString(8).padStart(4, '0');
    lines.push(`${TMPFILES_TYPES[key]} ${tmpfilesPath(target)} ${mode} ${spec.owner} ${spec.group} -`);
    const acl = tmpfilesAcl(spec, key);
    if (acl !== '') lines.push(`a ${tmpfilesPath(target)} - - - - ${acl}`);
  }
  return `${lines.join('\n')}\n`;
}

function isDirectoryKey(key: ManagedPathKey): boolean {
  return TMPFILES_TYPES[key] === 'd';
}

function aclEntries(spec: PermissionSpec, key: ManagedPathKey, kind: 'access' | 'default'): AclEntry[] {
  const text = (kind === 'access' ? spec.acl : spec.defaultAcl).join(',');
  // Default ACLs exist only on directories, where X means execute.
  return parseAclText(text, { isDirectory: kind === 'default' || isDirectoryKey(key) });
}

/** The `a` argument: access entries beyond the mode (with their mask), then the complete default ACL; '' for none. */
function tmpfilesAcl(spec: PermissionSpec, key: ManagedPathKey): string {
  const fromMode = baseEntries(spec.mode);
  const access = aclEntries(spec, key, 'access');
  const accessExtra = withMask([...fromMode.filter((e) => !access.some((a) => a.tag === e.tag)), ...access]).filter(
    (e) => e.tag === 'user' || e.tag === 'group' || e.tag === 'mask',
  );
  const given = aclEntries(spec, key, 'default');
  const defaults = given.length === 0 ? [] : withMask([...given, ...fromMode.filter((e) => !given.some((g) => g.tag === e.tag))]);
  return [...accessExtra.map((e) => entryText(e, '')), ...defaults.map((e) => entryText(e, 'default:'))].join(',');
}

function baseEntries(mode: number): AclEntry[] {
  const bits = (shift: number): Pick<AclEntry, 'read' | 'write' | 'execute'> => ({
    read: ((mode >> shift) & 4) !== 0,
    write: ((mode >> shift) & 2) !== 0,
    execute: ((mode >> shift) & 1) !== 0,
  });
  return [
    { tag: 'user_obj', ...bits(6) },
    { tag: 'group_obj', ...bits(3) },
    { tag: 'other', ...bits(0) },
  ];
}

const TAG_ORDER: readonly AclEntry['tag'][] = ['user_obj', 'user', 'group_obj', 'group', 'mask', 'other'];

/** Sorted canonically, with the mask setfacl would add when named entries have none. */
function withMask(entries: readonly AclEntry[]): AclEntry[] {
  const result = [...entries];
  const named = result.filter((e) => e.tag === 'user' || e.tag === 'group');
  if (named.length > 0 && !result.some((e) => e.tag === 'mask')) {
    const groupClass = result.filter((e) => e.tag === 'group_obj').concat(named);
    result.push({
      tag: 'mask',
      read: groupClass.some((e) => e.read),
      write: groupClass.some((e) => e.write),
      execute: groupClass.some((e) => e.execute),
    });
  }
  return result.sort((a, b) => TAG_ORDER.indexOf(a.tag) - TAG_ORDER.indexOf(b.tag));
}

function entryText(entry: AclEntry, prefix: string): string {
  const word = entry.tag === 'user_obj' ? 'user' : entry.tag === 'group_obj' ? 'group' : entry.tag;
  const qualifier = entry.tag === 'user' || entry.tag === 'group' ? (entry.qualifier ?? String(entry.id)) : '';
  const perms = `${entry.read ? 'r' : '-'}${entry.write ? 'w' : '-'}${entry.execute ? 'x' : '-'}`;
  return `${prefix}${word}:${qualifier}:${perms}`;
}

/** tmpfiles expands %-specifiers in paths and splits on whitespace: escape the one, quote the other. */
function tmpfilesPath(target: string): string {
  const escaped = target.replaceAll('%', '%%');
  return /[\s"'\\]/.test(escaped) ? `"${escaped.replace(/["\\]/g, '\\$&')}"` : escaped;
}

/** Writes both files into `directory` (the repository's systemd/ when regenerating the shipped ones). */
export async function writeSystemdFiles(config: ModelSource, directory: string): Promise<string[]> {
  const written = [path.join(directory, SYSUSERS_FILE_NAME), path.join(directory, TMPFILES_FILE_NAME)];
  await mkdir(directory, { recursive: true });
  await writeFile(written[0] as string, renderSysusers(config));
  await writeFile(written[1] as string, renderTmpfiles(config));
  return written;
}

// `node dist/src/systemd-files.js DIR [CONFIG]`: renders the files from CONFIG (config/shuttle.yaml by default) into DIR.
if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { loadConfig } = await import('./config-load.js');
  const [directory, configFile] = process.argv.slice(2);
  if (directory === undefined) {
    process.stderr.write('usage: node dist/src/systemd-files.js DIRECTORY [CONFIG]\n');
    process.exitCode = 2;
  } else {
    const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
    const config = await loadConfig(configFile ?? path.join(packageRoot, 'config', 'shuttle.yaml'));
    for (const file of await writeSystemdFiles(config, directory)) process.stdout.write(`wrote ${file}\n`);
  }
}
