// The checks: pure functions from (desired, actual) to findings. No file system, no printing; the
// account snapshot is only used to show names instead of numbers.

import type { AclEntry } from '../native.js';
import { groupLabel, userLabel, type AccountsSnapshot } from './accounts.js';
import { drift, unchecked, type Finding, type Severity } from './finding.js';
import type { Inspection, PathState } from './inspect.js';
import {
  SETGID,
  bitsText,
  entryKey,
  isNamed,
  modeText,
  permissionBits,
  type ContentsModel,
  type DesiredAcls,
  type ManagedPath,
} from './model.js';

const TYPE_WORDS: Readonly<Record<string, string>> = {
  directory: 'directory',
  file: 'regular file',
  symlink: 'symbolic link',
  special: 'special file (FIFO, socket or device)',
};

/** A managed path (data directory, log directory, key file, ledger file) against its model. */
export function checkManagedPath(desired: ManagedPath, actual: Inspection, accounts: AccountsSnapshot): Finding[] {
  const subject = desired.path;
  if (actual.status === 'missing') {
    return [unchecked(subject, 'missing', `${TYPE_WORDS[desired.type]} (${desired.key})`, 'missing')];
  }
  if (actual.status === 'unreadable') return [unchecked(subject, 'unreadable', 'readable', actual.error.message)];
  if (actual.type !== desired.type || actual.acl === null) {
    return [unchecked(subject, 'type', TYPE_WORDS[desired.type] ?? desired.type, TYPE_WORDS[actual.type] ?? actual.type)];
  }

  const findings: Finding[] = [];
  if (actual.uid !== desired.owner.id) {
    findings.push(drift(subject, 'owner', desired.owner.name, userLabel(accounts, actual.uid), 'high'));
  }
  if (actual.gid !== desired.group.id) {
    findings.push(drift(subject, 'group', desired.group.name, groupLabel(accounts, actual.gid), 'high'));
  }
  findings.push(...compareWithDesired(subject, desired, actual, accounts));
  return findings;
}

/** Anything found below a data directory: subdirectories like the directory, files 0660 or tighter. */
export function checkContentEntry(contents: ContentsModel, actual: Inspection, accounts: AccountsSnapshot): Finding[] {
  const subject = actual.path;
  // Gone between listing and reading: the daemon took it. Nothing to check.
  if (actual.status === 'missing') return [];
  if (actual.status === 'unreadable') return [unchecked(subject, 'unreadable', 'readable', actual.error.message)];
  if (actual.type === 'symlink') {
    return [drift(subject, 'symlink', 'no symbolic links in a data directory', 'symbolic link (never followed)', 'high', false)];
  }
  if (actual.type === 'special' || actual.acl === null) {
    return [drift(subject, 'special-file', 'regular files and directories only', TYPE_WORDS.special ?? 'special file', 'high', false)];
  }
  // Changing it would change every other name of the inode too, possibly one outside the managed tree.
  if (actual.type === 'file' && actual.nlink > 1) {
    return [drift(subject, 'hard-link', 'one name per file', `${actual.nlink} hard links (left alone)`, 'high', false)];
  }

  const findings: Finding[] = [];
  if (actual.gid !== contents.group.id) {
    findings.push(drift(subject, 'group', contents.group.name, groupLabel(accounts, actual.gid), 'high'));
  }
  if (actual.type === 'directory') {
    findings.push(...compareWithDesired(subject, contents.directory, actual, accounts));
  } else {
    findings.push(...checkFile(subject, contents, actual, accounts));
  }
  return findings;
}

/** Severity of a difference: granting more than desired is high, granting less is medium. */
function severityOf(desiredBits: number, actualBits: number): Severity {
  return (actualBits & ~desiredBits) !== 0 ? 'high' : 'medium';
}

function entryText(entry: AclEntry, accounts: AccountsSnapshot, prefix = ''): string {
  const word = entry.tag === 'user_obj' ? 'user' : entry.tag === 'group_obj' ? 'group' : entry.tag;
  let qualifier = '';
  if (entry.tag === 'user') qualifier = userLabel(accounts, entry.id ?? -1);
  if (entry.tag === 'group') qualifier = groupLabel(accounts, entry.id ?? -1);
  return `${prefix}${word}:${qualifier}:${bitsText(permissionBits(entry))}`;
}

export function aclText(entries: readonly AclEntry[], accounts: AccountsSnapshot, prefix = ''): string {
  return entries.length === 0 ? '(none)' : entries.map((e) => entryText(e, accounts, prefix)).join(',');
}

/** Mode (setgid apart), access ACL and default ACL of a directory or managed file. */
function compareWithDesired(subject: string, desired: DesiredAcls, actual: PathState, accounts: AccountsSnapshot): Finding[] {
  const findings: Finding[] = [];
  const access = actual.acl?.access ?? [];
  const desiredMask = desired.access.find((e) => e.tag === 'mask');
  const actualMask = access.find((e) => e.tag === 'mask');

  if ((desired.mode ^ actual.mode) & SETGID) {
    const wanted = (desired.mode & SETGID) !== 0;
    findings.push(drift(subject, 'setgid', wanted ? 'set' : 'not set', wanted ? 'cleared' : 'set', wanted ? 'medium' : 'high'));
  }
  // With a mask on both sides the group digit is the mask, which the mask check reports on its own.
  const compared = 0o7777 & ~SETGID & ~(desiredMask !== undefined && actualMask !== undefined ? 0o070 : 0);
  if ((desired.mode & compared) !== (actual.mode & compared)) {
    findings.push(drift(subject, 'mode', modeText(desired.mode), modeText(actual.mode), severityOf(desired.mode & compared, actual.mode & compared)));
  }

  findings.push(...compareEntries(subject, desired.access, access, accounts, ''));

  const actualDefault = actual.acl?.defaultAcl ?? [];
  if (desired.defaultAcl.length > 0 && actualDefault.length === 0) {
    findings.push(drift(subject, 'default-acl-missing', aclText(desired.defaultAcl, accounts, 'default:'), '(none)', 'medium'));
  } else if (desired.defaultAcl.length === 0 && actualDefault.length > 0) {
    findings.push(drift(subject, 'default-acl-extra', '(none)', aclText(actualDefault, accounts, 'default:'), 'high'));
  } else if (desired.defaultAcl.length > 0) {
    findings.push(...compareEntries(subject, desired.defaultAcl, actualDefault, accounts, 'default:', true));
  }
  return findings;
}

/**
 * Entry by entry. For an access ACL the owner and other entries, and the owning group's when there is no
 * mask, are the mode's digits and were compared there; `all` compares every entry (default ACLs).
 */
function compareEntries(
  subject: string,
  desired: readonly AclEntry[],
  actual: readonly AclEntry[],
  accounts: AccountsSnapshot,
  prefix: string,
  all = false,
): Finding[] {
  const findings: Finding[] = [];
  const masked = desired.some((e) => e.tag === 'mask') || actual.some((e) => e.tag === 'mask');
  const relevant = (e: AclEntry): boolean => all || isNamed(e) || e.tag === 'mask' || (e.tag === 'group_obj' && masked);
  const actualByKey = new Map(actual.filter(relevant).map((e) => [entryKey(e), e]));
  const desiredKeys = new Set<string>();

  for (const wanted of desired.filter(relevant)) {
    const key = entryKey(wanted);
    desiredKeys.add(key);
    const found = actualByKey.get(key);
    const check = wanted.tag === 'mask' ? 'mask' : found === undefined ? 'acl-entry-missing' : 'acl-entry-permissions';
    if (found === undefined) {
      findings.push(drift(subject, check, entryText(wanted, accounts, prefix), '(none)', 'medium'));
    } else if (permissionBits(found) !== permissionBits(wanted)) {
      findings.push(
        drift(subject, check, entryText(wanted, accounts, prefix), entryText(found, accounts, prefix), severityOf(permissionBits(wanted), permissionBits(found))),
      );
    }
  }
  for (const [key, found] of actualByKey) {
    if (desiredKeys.has(key)) continue;
    findings.push(drift(subject, found.tag === 'mask' ? 'mask' : 'acl-entry-extra', '(none)', entryText(found, accounts, prefix), 'high'));
  }
  return findings;
}

/**
 * A file: at most fileMaxMode (no execute, nothing for other, no special bits), the named entries of the
 * directory's default ACL and no others, and a mask that lets those entries work.
 */
function checkFile(subject: string, contents: ContentsModel, actual: PathState, accounts: AccountsSnapshot): Finding[] {
  const findings: Finding[] = [];
  const access = actual.acl?.access ?? [];
  const max = contents.fileMaxMode;

  if ((actual.mode & ~max) !== 0) {
    findings.push(drift(subject, 'file-mode', `${modeText(max)} or tighter (no execute, nothing for other)`, modeText(actual.mode), 'high'));
  }

  const groupObj = access.find((e) => e.tag === 'group_obj');
  const mask = access.find((e) => e.tag === 'mask');
  const groupDigit = (max >> 3) & 7;
  // Behind a mask the owning group's entry is not in the mode; it must still stay within the limit.
  if (mask !== undefined && groupObj !== undefined && (permissionBits(groupObj) & ~groupDigit) !== 0) {
    findings.push(
      drift(subject, 'acl-entry-permissions', `group::${bitsText(groupDigit)} or less`, entryText(groupObj, accounts), 'high'),
    );
  }

  // Execute on a named entry only takes effect through the mask, which the mode check covers.
  const withoutExecute = (e: AclEntry): number => permissionBits(e) & ~1;
  const actualNamed = new Map(access.filter(isNamed).map((e) => [entryKey(e), e]));
  let needed = 0;
  for (const wanted of contents.fileNamedEntries) {
    needed |= permissionBits(wanted);
    const found = actualNamed.get(entryKey(wanted));
    actualNamed.delete(entryKey(wanted));
    if (found === undefined) {
      findings.push(drift(subject, 'acl-entry-missing', entryText(wanted, accounts), '(none)', 'medium'));
    } else if (withoutExecute(found) !== permissionBits(wanted)) {
      findings.push(
        drift(subject, 'acl-entry-permissions', entryText(wanted, accounts), entryText(found, accounts), severityOf(permissionBits(wanted), withoutExecute(found))),
      );
    }
  }
  for (const extra of actualNamed.values()) {
    findings.push(drift(subject, 'acl-entry-extra', '(none)', entryText(extra, accounts), 'high'));
  }
  if (contents.fileNamedEntries.length > 0 && mask !== undefined && (needed & ~permissionBits(mask)) !== 0) {
    findings.push(drift(subject, 'mask', `mask::${bitsText(needed)} or more (within ${modeText(max)})`, entryText(mask, accounts), 'medium'));
  }
  return findings;
}
