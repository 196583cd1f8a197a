// A set of managed paths built to the shipped permission model with the admin's own tools (chown,
// chmod, setfacl), so that verify-permissions is judged against something it did not make itself.
// Needs root and the model's accounts (test/helpers/accounts.ts).

import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { parseConfig } from '../../../src/config-load.js';
import type { ShuttleConfig } from '../../../src/config.js';

export interface ModelTree {
  readonly root: string;
  readonly source: string;
  readonly destination: string;
  readonly quarantine: string;
  readonly hazard: string;
  readonly log: string;
  readonly key: string;
  readonly ledger: string;
  readonly configFile: string;
}

export function sh(command: string, ...args: string[]): string {
  return execFileSync(command, args, { encoding: 'utf8' });
}

/** getfacl's view of the whole tree (owner, group, flags and ACLs of every entry), for before/after comparisons. */
export function snapshot(tree: ModelTree): string {
  return sh('getfacl', '-R', '-p', '-n', tree.root);
}

/** The default ACLs of the shipped model (DEFAULT_PERMISSIONS), as setfacl takes them. */
const SHARE_DEFAULT_ACL: Readonly<Record<string, string>> = {
  shuttle_samba_in_users: 'user::rwx,group::rw-,group:shuttle_samba_in_users:rwx,other::---',
  shuttle_out_users: 'user::rw-,group::rw-,group:shuttle_out_users:r-x,other::---',
};

function shareDirectory(directory: string, namedGroup: string): void {
  sh('chown', 'root:shuttle_owners', directory);
  sh('chmod', '2770', directory);
  // A directory made inside a share inherits group::rw- from the default ACL, and chmod then sets only the
  // mask: the model wants group::rwx on directories, as the enforcer gives them.
  sh('setfacl', '-m', `group::rwX,group:${namedGroup}:rwX`, directory);
  sh('setfacl', '-d', '--set', SHARE_DEFAULT_ACL[namedGroup] ?? '', directory);
}

function privateDirectory(directory: string, group: string): void {
  sh('chown', `root:${group}`, directory);
  sh('chmod', '2770', directory);
}

function file(target: string, mode: string, group = 'shuttle_owners', owner = 'root'): void {
  writeFileSync(target, 'content\n');
  sh('chown', `${owner}:${group}`, target);
  sh('chmod', mode, target);
}

/** `extraConfig` is appended to the YAML (a permissions section, permissions_backend). */
export function buildModelTree(extraConfig = ''): ModelTree {
  const root = mkdtempSync(path.join(os.tmpdir(), 'shuttle-permissions-'));
  // Samba test users must be able to reach the shares, as they would through smbd.
  sh('chmod', '0755', root);
  const tree: ModelTree = {
    root,
    source: path.join(root, 'in'),
    destination: path.join(root, 'out'),
    quarantine: path.join(root, 'quarantine'),
    hazard: path.join(root, 'hazard'),
    log: path.join(root, 'log'),
    key: path.join(root, 'etc', 'hazard-public.asc'),
    ledger: path.join(root, 'etc', 'ledger.yaml'),
    configFile: path.join(root, 'shuttle.yaml'),
  };
  for (const directory of [tree.source, tree.destination, tree.quarantine, tree.hazard, tree.log, path.join(root, 'etc')]) mkdirSync(directory);
  shareDirectory(tree.source, 'shuttle_samba_in_users');
  shareDirectory(tree.destination, 'shuttle_out_users');
  privateDirectory(tree.quarantine, 'shuttle_owners');
  privateDirectory(tree.hazard, 'shuttle_owners');
  privateDirectory(tree.log, 'shuttle_log_owners');

  // Contents: a subdirectory made like its parent, and files as the pipeline leaves them.
  const batch = path.join(tree.source, 'batch');
  mkdirSync(batch);
  shareDirectory(batch, 'shuttle_samba_in_users');
  sh('chown', 'shuttle_test_in', batch);
  file(path.join(batch, 'a.csv'), '0660', 'shuttle_owners', 'shuttle_test_in');
  // Tighter than 0660 for the owning group; the mask still lets the share's group have what the default ACL gives.
  file(path.join(tree.source, 'b.csv'), '0660', 'shuttle_owners', 'shuttle_test_in');
  sh('setfacl', '-n', '-m', 'group::r--', path.join(tree.source, 'b.csv'));
  file(path.join(tree.destination, 'r.csv'), '0660');
  file(path.join(tree.quarantine, 'x.data'), '0600');
  file(path.join(tree.log, 'shuttle.log'), '0660', 'shuttle_log_owners');

  file(tree.key, '0640', 'shuttle_config_readers');
  file(tree.ledger, '0640', 'shuttle_config_readers');
  sh('setfacl', '-m', 'group:shuttle_log_owners:rw-', tree.ledger);

  writeFileSync(
    tree.configFile,
    [
      'paths:',
      `  source_path: ${tree.source}`,
      `  destination_path: ${tree.destination}`,
      `  quarantine_path: ${tree.quarantine}`,
      `  hazard_archive_path: ${tree.hazard}`,
      `  log_path: ${tree.log}`,
      `  hazard_encryption_key_path: ${tree.key}`,
      `  ledger_file_path: ${tree.ledger}`,
      'scanners:',
      '  clamd: { socket: /run/clamav/clamd.ctl }',
      extraConfig,
    ].join('\n'),
  );
  return tree;
}

export function configOf(tree: ModelTree, extraConfig = ''): ShuttleConfig {
  return parseConfig(readFileSync(tree.configFile, 'utf8') + extraConfig, tree.configFile);
}
