// Repairs: owner, group, mode and ACLs, never content. Planning is pure (desired + actual → steps);
// applying goes through a write guard and touches only the inode that was inspected.

import { chmodSync, chownSync, closeSync, fchmodSync, fchownSync, constants as fsc, fstatSync, openSync } from 'node:fs';

import type { AclEntry } from '../native.js';
import { groupLabel, userLabel, type AccountsSnapshot } from './accounts.js';
import type { AclBackend } from './acl-backend.js';
import { aclText } from './checks.js';
import type { PathState } from './inspect.js';
import {
  entryKey,
  fileAclFor,
  isMinimal,
  minimalAcl,
  modeText,
  permissionBits,
  statModeOf,
  type ContentsModel,
  type DesiredAcls,
  type ManagedPath,
} from './model.js';

/** What the daemon's Zone offers: refuse (throw) a write outside the directories Shuttle manages. */
export interface WriteGuard {
  assertWritable(operation: string, target: string): void;
}

export type FixStep =
  | { readonly kind: 'chown'; readonly uid: number; readonly gid: number; readonly description: string }
  | { readonly kind: 'chmod'; readonly mode: number; readonly description: string }
  | { readonly kind: 'set-acl'; readonly scope: 'access' | 'default'; readonly entries: readonly AclEntry[]; readonly description: string };

export interface FixPlan {
  readonly path: string;
  /** The inode that was inspected; a path that now names another one is left alone. */
  readonly dev: number;
  readonly ino: number;
  readonly steps: readonly FixStep[];
  /**
   * An open descriptor of exactly that inode, when the caller holds one: owner and mode change through it,
   * with no second lookup of the path.
   */
  readonly descriptor?: number;
}

export interface FixRecord {
  readonly path: string;
  readonly change: string;
  readonly ok: boolean;
  readonly error?: string;
}

function sameEntries(a: readonly AclEntry[], b: readonly AclEntry[]): boolean {
  if (a.length !== b.length) return false;
  const byKey = new Map(b.map((e) => [entryKey(e), permissionBits(e)]));
  return a.every((e) => byKey.get(entryKey(e)) === permissionBits(e));
}

/** The steps that bring a managed path to its model. */
export function planManagedPathFix(desired: ManagedPath, actual: PathState, accounts: AccountsSnapshot): FixPlan {
  const steps: FixStep[] = [];
  if (actual.uid !== desired.owner.id || actual.gid !== desired.group.id) {
    steps.push({
      kind: 'chown',
      uid: desired.owner.id,
      gid: desired.group.id,
      description: `owner ${desired.owner.name}:${desired.group.name} (was ${userLabel(accounts, actual.uid)}:${groupLabel(accounts, actual.gid)})`,
    });
  }
  steps.push(...aclSteps(desired, actual, accounts));
  return { path: actual.path, dev: actual.dev, ino: actual.ino, steps };
}

/** The steps that bring an entry below a data directory to the model (its owner is left as it is). */
export function planContentFix(contents: ContentsModel, actual: PathState, accounts: AccountsSnapshot): FixPlan {
  const steps: FixStep[] = [];
  if (actual.gid !== contents.group.id) {
    steps.push({ kind: 'chown', uid: -1, gid: contents.group.id, description: `group ${contents.group.name} (was ${groupLabel(accounts, actual.gid)})` });
  }
  if (actual.type === 'directory') {
    steps.push(...aclSteps(contents.directory, actual, accounts));
  } else if (actual.type === 'file') {
    steps.push(...fileSteps(contents, actual, accounts));
  }
  return { path: actual.path, dev: actual.dev, ino: actual.ino, steps };
}

function aclSteps(desired: DesiredAcls, actual: PathState, accounts: AccountsSnapshot): FixStep[] {
  const steps: FixStep[] = [];
  const access = actual.acl?.access ?? minimalAcl(actual.mode);
  const defaultAcl = actual.acl?.defaultAcl ?? [];
  const accessDiffers = !sameEntries(desired.access, access);
  if (accessDiffers) {
    steps.push({
      kind: 'set-acl',
      scope: 'access',
      entries: desired.access,
      description: `access ACL ${aclText(desired.access, accounts)} (was ${aclText(access, accounts)})`,
    });
  }
  // chmod last among the access changes: it restores special bits, and with a mask its group digit is the mask.
  if (accessDiffers || actual.mode !== desired.mode) {
    steps.push({ kind: 'chmod', mode: desired.mode, description: `mode ${modeText(desired.mode)} (was ${modeText(actual.mode)})` });
  }
  if (!sameEntries(desired.defaultAcl, defaultAcl)) {
    steps.push({
      kind: 'set-acl',
      scope: 'default',
      entries: desired.defaultAcl,
      description: `default ACL ${aclText(desired.defaultAcl, accounts)} (was ${aclText(defaultAcl, accounts)})`,
    });
  }
  return steps;
}

/** Tighten, never loosen: what the owner and owning group keep is what they had, within the limit. */
function fileSteps(contents: ContentsModel, actual: PathState, accounts: AccountsSnapshot): FixStep[] {
  const access = actual.acl?.access ?? minimalAcl(actual.mode);
  const wanted = fileAclFor(contents, access);
  const mode = statModeOf(wanted, 0);
  const steps: FixStep[] = [];
  if (!(isMinimal(access) && isMinimal(wanted)) && !sameEntries(wanted, access)) {
    steps.push({ kind: 'set-acl', scope: 'access', entries: wanted, description: `access ACL ${aclText(wanted, accounts)} (was ${aclText(access, accounts)})` });
  }
  if (steps.length > 0 || actual.mode !== mode) {
    steps.push({ kind: 'chmod', mode, description: `mode ${modeText(mode)} (was ${modeText(actual.mode)})` });
  }
  return steps;
}

/** Linux's O_PATH (the same value on x86-64 and arm64); Node does not export it. */
const O_PATH = 0o10000000;

/**
 * Runs `change` on the inode at `target`, reached without following a symlink at the last component and
 * only if it is still the inode that was inspected. The change goes through /proc/self/fd/N, which
 * names exactly that inode, so a name swapped for a symlink meanwhile cannot redirect it; an O_PATH
 * descriptor needs no read permission on the file.
 */
async function onSameInode(target: string, dev: number, ino: number, change: (procPath: string) => Promise<void>): Promise<void> {
  const fd = openSync(target, O_PATH | fsc.O_NOFOLLOW);
  try {
    const stats = fstatSync(fd);
    if (stats.isSymbolicLink()) throw Object.assign(new Error(`'${target}' is now a symbolic link; left alone`), { code: 'ELOOP' });
    if (stats.dev !== dev || stats.ino !== ino) {
      throw Object.assign(new Error(`'${target}' was replaced since it was inspected; left alone`), { code: 'ESTALE' });
    }
    await change(`/proc/self/fd/${fd}`);
  } finally {
    closeSync(fd);
  }
}

/** Applies a plan step by step; a failed step is recorded and stops the rest of that path's plan. */
export async function applyFixPlan(plan: FixPlan, backend: AclBackend, guard: WriteGuard): Promise<FixRecord[]> {
  const records: FixRecord[] = [];
  for (const step of plan.steps) {
    try {
      switch (step.kind) {
        case 'chown':
          guard.assertWritable('chown', plan.path);
          if (plan.descriptor !== undefined) fchownSync(plan.descriptor, step.uid, step.gid);
          else await onSameInode(plan.path, plan.dev, plan.ino, async (proc) => chownSync(proc, step.uid, step.gid));
          break;
        case 'chmod':
          guard.assertWritable('chmod', plan.path);
          if (plan.descriptor !== undefined) fchmodSync(plan.descriptor, step.mode);
          else await onSameInode(plan.path, plan.dev, plan.ino, async (proc) => chmodSync(proc, step.mode));
          break;
        case 'set-acl':
          guard.assertWritable('setfacl', plan.path);
          await backend.setAcl(plan.path, step.scope, step.entries);
          break;
      }
      records.push({ path: plan.path, change: step.description, ok: true });
    } catch (error) {
      records.push({ path: plan.path, change: step.description, ok: false, error: (error as Error).message });
      break;
    }
  }
  return records;
}
