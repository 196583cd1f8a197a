// Continuous enforcement inside the daemon: at start the managed paths are verified and fixed (or the
// daemon refuses to start, naming path and problem); while it runs, new directories and files under
// source_path and destination_path are brought to the model as soon as chokidar reports them; files
// the daemon moves get their group, ACL and mode set explicitly (a rename keeps the old ones).

import { fstatSync, lstatSync, promises as fsp, type Stats } from 'node:fs';
import path from 'node:path';
import type { FSWatcher } from 'chokidar';
import type { Logger } from 'winston';

import type { ManagedPathKey, ShuttleConfig } from '../config.js';
import { itemIdOfReleaseTemporary } from '../item.js';
import { watchTree } from '../tree-watch.js';
import type { AclEntry } from '../native.js';
import { checkAccounts, readAccounts, type AccountsSnapshot } from './accounts.js';
import { selectAclBackend, type AclBackend } from './acl-backend.js';
import { checkContentEntry } from './checks.js';
import type { Finding } from './finding.js';
import { applyFixPlan, planContentFix, type FixPlan, type FixStep, type WriteGuard } from './fix.js';
import { inspectPath } from './inspect.js';
import {
  DEFAULT_FILE_MAX_MODE,
  accountNamesIn,
  aclBitsWithin,
  buildPermissionModel,
  isMinimal,
  minimalAcl,
  statModeOf,
  type ContentsModel,
  type PermissionModel,
} from './model.js';
import { scanModel } from './verify.js';

/** The part of chokidar's FSWatcher the enforcer uses. */
export type EnforcerWatcher = Pick<FSWatcher, 'on' | 'once' | 'close'>;

export type EnforcerLogger = Pick<Logger, 'debug' | 'info' | 'warn' | 'error'>;

export interface PermissionEnforcerOptions {
  readonly model: PermissionModel;
  /** For names in log lines; ids are what is compared. */
  readonly accounts: AccountsSnapshot;
  readonly backend: AclBackend;
  readonly logger: EnforcerLogger;
  /** Every change is asserted here first (the daemon's Zone; see permissionGuard for the managed files). */
  readonly guard: WriteGuard;
  /** Starts watching the trees; chokidar in production. */
  readonly watch?: (roots: readonly string[]) => EnforcerWatcher;
}

/** The daemon must not start: the message names each path and what is wrong with it. */
export class PermissionEnforcementError extends Error {
  constructor(readonly findings: readonly Finding[]) {
    super(
      `permissions of managed paths do not match the model and could not be fixed:\n${findings
        .map((f) => `  ${f.path}: ${f.check}: expected ${f.expected}, found ${f.found}`)
        .join('\n')}`,
    );
    this.name = 'PermissionEnforcementError';
  }
}

/** A guard that lets the managed paths themselves through (the key and ledger files live outside the zone) and defers the rest to `zone`. */
export function permissionGuard(zone: WriteGuard, model: PermissionModel): WriteGuard {
  const managed = new Set(model.paths.map((managedPath) => managedPath.path));
  return {
    assertWritable(operation: string, target: string): void {
      if (managed.has(path.resolve(target))) return;
      zone.assertWritable(operation, target);
    },
  };
}

/** The mode a file moved into a directory gets; tighter where the model's file_mode is. */
const MOVED_FILE_MODE = 0o660;

export class PermissionEnforcer {
  private watcher: EnforcerWatcher | null = null;
  private readonly running = new Map<string, Promise<Finding[]>>();
  private readonly rerun = new Set<string>();
  private readonly idle = new Set<Promise<unknown>>();
  /** Files waiting for their burst of events to end (noticeSettled). */
  private readonly settling = new Map<string, NodeJS.Timeout>();
  /** Paths last found as the model wants them, with what lstat said then (see identityOf). */
  private readonly compliant = new Map<string, string>();
  /** Per destination directory: the ACL a moved file gets there, and the directory state it came from. */
  private readonly inheritedAcls = new Map<string, { readonly key: string; readonly entries: readonly AclEntry[] }>();
  /** Aborted by close(): a sweep of a large tree must not hold up a stop. */
  private readonly closing = new AbortController();

  constructor(private readonly options: PermissionEnforcerOptions) {}

  /**
   * Reads the account databases and builds the model from `config`, with the managed paths resolved to
   * real paths (as the daemon's Zone has them). `guard` is the daemon's Zone: it is wrapped with
   * permissionGuard so that the managed key and ledger files may be corrected too. Throws
   * PermissionEnforcementError when the model names accounts that do not exist.
   */
  static async create(
    config: ShuttleConfig,
    collaborators: Pick<PermissionEnforcerOptions, 'logger' | 'guard' | 'watch'> & { backend?: AclBackend },
  ): Promise<PermissionEnforcer> {
    const accounts = await readAccounts(accountNamesIn(config));
    const realPaths = Object.fromEntries(
      await Promise.all(Object.entries(config.paths).map(async ([field, value]) => [field, await fsp.realpath(value).catch(() => value)])),
    ) as unknown as ShuttleConfig['paths'];
    const { model, problems } = buildPermissionModel({ ...config, paths: realPaths }, accounts);
    if (problems.length > 0) throw new PermissionEnforcementError(problems);
    return new PermissionEnforcer({
      model,
      accounts,
      backend: collaborators.backend ?? selectAclBackend(config.permissionsBackend),
      logger: collaborators.logger,
      guard: permissionGuard(collaborators.guard, model),
      ...(collaborators.watch === undefined ? {} : { watch: collaborators.watch }),
    });
  }

  get model(): PermissionModel {
    return this.options.model;
  }

  get accounts(): AccountsSnapshot {
    return this.options.accounts;
  }

  /**
   * Verifies the managed paths (not their contents), fixes what differs, and verifies again. Returns
   * what was found and corrected; throws PermissionEnforcementError naming each path and problem that
   * remains. Samba accounts that break the model are logged, not fatal.
   */
  async verifyAndFixManagedPaths(): Promise<Finding[]> {
    const { model, accounts, backend, logger } = this.options;
    for (const finding of checkAccounts(model, accounts)) {
      logger.warn('account does not match the permission model', { account: finding.path, check: finding.check, expected: finding.expected, found: finding.found });
    }
    const first = await scanModel(model, accounts, backend, {
      contents: false,
      fix: async (plan) => {
        await this.apply(plan);
      },
    });
    if (first.findings.length === 0) return [];
    const second = await scanModel(model, accounts, backend, { contents: false });
    if (second.findings.length > 0) throw new PermissionEnforcementError(second.findings);
    for (const finding of first.findings) this.logCorrection(finding);
    return first.findings;
  }

  /** Walks every data directory and corrects what it finds; the daemon may run this at start, in the background. */
  async enforceAll(): Promise<Finding[]> {
    const { model, accounts, backend } = this.options;
    const corrected: Finding[] = [];
    const failedPaths = new Set<string>();
    const { findings } = await scanModel(model, accounts, backend, {
      contents: true,
      signal: this.closing.signal,
      fix: async (plan) => {
        if ((await this.apply(plan)) > 0) failedPaths.add(plan.path);
      },
    });
    for (const finding of findings) {
      if (!finding.fixable) {
        this.options.logger.warn('permission drift cannot be corrected', { ...findingMeta(finding) });
        continue;
      }
      if (failedPaths.has(finding.path)) continue;
      this.logCorrection(finding);
      corrected.push(finding);
    }
    return corrected;
  }

  /** A directory below a data directory gets the mode (setgid), group, access and default ACL of the model. */
  enforceDirectory(directory: string): Promise<Finding[]> {
    return this.enforce(directory);
  }

  /** A file below a data directory gets the directory's group and at most mode 0660, no execute. */
  enforceFile(file: string): Promise<Finding[]> {
    return this.enforce(file);
  }

  /** Schedules enforcement of whatever `target` is now; for callers that have watcher events of their own. */
  notice(target: string): void {
    // A release's temporary name is the releaser's to set up (applyAfterMove) before it gets its final name.
    if (itemIdOfReleaseTemporary(path.basename(target)) !== null) return;
    const pending = this.enforce(target).catch((error: unknown) => {
      this.options.logger.error('cannot enforce permissions', { path: target, error: (error as Error).message, code: (error as NodeJS.ErrnoException).code });
      return [];
    });
    this.idle.add(pending);
    void pending.finally(() => this.idle.delete(pending));
  }

  /**
   * A file's events come in bursts (a release alone draws its name, two link-count changes and the
   * permission changes on its temporary name): one look a moment after the first event instead of one per
   * event; events meanwhile are covered by that look.
   * Directories are not delayed, so that a folder an uploader just made is usable at once.
   */
  private noticeSettled(target: string): void {
    if (this.settling.has(target) || this.closing.signal.aborted) return;
    if (itemIdOfReleaseTemporary(path.basename(target)) !== null) return;
    const timer = setTimeout(() => {
      this.settling.delete(target);
      this.notice(target);
    }, FILE_EVENT_SETTLE_MS);
    this.settling.set(target, timer);
  }

  /**
   * After the daemon moved a file into a directory: the directory's group, an access ACL derived from
   * the directory's default ACL as the kernel would for a new file of mode 0660 (without execute
   * anywhere), and that mode. Throws when a change fails. `descriptor`, when the caller has the file open:
   * owner and mode are changed through it.
   */
  async applyAfterMove(filePath: string, descriptor?: number): Promise<void> {
    const { backend, guard } = this.options;
    const target = path.resolve(filePath);
    const directory = path.dirname(target);
    const directoryStats = lstatSync(directory);
    const fileStats = descriptor === undefined ? lstatSync(target) : fstatSync(descriptor);
    if (!fileStats.isFile()) throw Object.assign(new Error(`'${target}' is not a regular file; its permissions are left alone`), { code: 'EINVAL' });
    const maxMode = MOVED_FILE_MODE & (this.contentsFor(target)?.fileMaxMode ?? DEFAULT_FILE_MAX_MODE);
    const wanted = await this.inheritedFileAcl(directory, directoryStats, maxMode);
    const mode = statModeOf(wanted, 0);

    const steps: FixStep[] = [];
    if (fileStats.gid !== directoryStats.gid) steps.push({ kind: 'chown', uid: -1, gid: directoryStats.gid, description: 'group of the directory' });
    // A named entry in what is wanted means the ACL is set whatever the file has now; only a minimal wanted
    // ACL needs a look at the file's, to clear extended entries it may carry.
    if (!isMinimal(wanted) || !isMinimal(await backend.getAcl(target, 'access'))) {
      steps.push({ kind: 'set-acl', scope: 'access', entries: wanted, description: 'ACL from the directory default ACL' });
    }
    steps.push({ kind: 'chmod', mode, description: `mode ${mode.toString(8).padStart(4, '0')}` });
    const records = await applyFixPlan({ path: target, dev: fileStats.dev, ino: fileStats.ino, steps, descriptor }, backend, guard);
    const failed = records.find((record) => !record.ok);
    if (failed !== undefined) throw new Error(`cannot set permissions of moved file '${target}': ${failed.change}: ${failed.error ?? ''}`);
  }

  /**
   * The access ACL a file moved into `directory` gets, from the directory's default ACL. Remembered per
   * directory while its inode and change time stay the same (setting an ACL changes the change time), so
   * that a burst of releases into one directory reads its default ACL once.
   */
  private async inheritedFileAcl(directory: string, stats: Stats, maxMode: number): Promise<readonly AclEntry[]> {
    const key = `${stats.dev}:${stats.ino}:${stats.ctimeMs}:${maxMode}`;
    const known = this.inheritedAcls.get(directory);
    if (known?.key === key) return known.entries;
    const inherited = await this.options.backend.getAcl(directory, 'default');
    const entries = inherited.length === 0 ? minimalAcl(maxMode) : inheritForFile(inherited, maxMode);
    this.inheritedAcls.delete(directory);
    this.inheritedAcls.set(directory, { key, entries });
    if (this.inheritedAcls.size > MAX_REMEMBERED_DIRECTORY_ACLS) this.inheritedAcls.delete(this.inheritedAcls.keys().next().value as string);
    return entries;
  }

  /** Watches source_path and destination_path for new directories and files (chokidar, never following symlinks). */
  async start(keys: readonly ManagedPathKey[] = ['source_path', 'destination_path']): Promise<void> {
    if (this.watcher !== null) return;
    const roots = this.options.model.paths.filter((p) => keys.includes(p.key)).map((p) => p.path);
    if (roots.length === 0) return;
    const watcher = (this.options.watch ?? watchSharedTrees)(roots);
    this.watcher = watcher;
    const onEvent = (changed: string): void => this.notice(changed);
    const onFileEvent = (changed: string): void => this.noticeSettled(changed);
    watcher
      .on('addDir', onEvent)
      .on('add', onFileEvent)
      .on('change', onFileEvent)
      .on('error', (error: unknown) => this.options.logger.warn('permission watcher error', { error: (error as Error).message, code: (error as NodeJS.ErrnoException).code }));
    await new Promise<void>((resolve) => watcher.once('ready', resolve));
    this.options.logger.debug('enforcing permissions', { paths: roots });
  }

  /** Stops watching and waits for corrections in flight. Safe to call more than once. */
  async close(): Promise<void> {
    this.closing.abort();
    for (const timer of this.settling.values()) clearTimeout(timer);
    this.settling.clear();
    const watcher = this.watcher;
    this.watcher = null;
    await watcher?.close();
    await Promise.all([...this.idle]);
  }

  private contentsFor(target: string): ContentsModel | null {
    for (const managed of this.options.model.paths) {
      if (managed.contents !== null && target.startsWith(managed.path + path.sep)) return managed.contents;
    }
    return null;
  }

  /** One correction per path at a time; events during a run ask for one more run, not one each. */
  private enforce(target: string): Promise<Finding[]> {
    const key = path.resolve(target);
    const inFlight = this.running.get(key);
    if (inFlight !== undefined) {
      this.rerun.add(key);
      return inFlight;
    }
    const run = (async (): Promise<Finding[]> => {
      try {
        let corrected = await this.enforceOnce(key);
        while (this.rerun.delete(key)) corrected = [...corrected, ...(await this.enforceOnce(key))];
        return corrected;
      } finally {
        this.running.delete(key);
      }
    })();
    this.running.set(key, run);
    return run;
  }

  private async enforceOnce(target: string): Promise<Finding[]> {
    const contents = this.contentsFor(target);
    if (contents === null) return [];
    const { accounts, backend, logger } = this.options;
    const identity = identityOf(target);
    if (identity !== null && this.compliant.get(target) === identity) return [];
    // Watcher events are hints: look at what is there now.
    const actual = await inspectPath(target, backend);
    const findings = checkContentEntry(contents, actual, accounts);
    if (findings.length === 0 && actual.status === 'present' && identity !== null) this.rememberCompliant(target, identity);
    if (findings.length === 0 || actual.status !== 'present') return [];
    const fixable = findings.filter((f) => f.fixable);
    // A second name is normal for an instant during a release (the temporary and the final name); intake
    // refuses hard links in source_path, and verify-permissions reports them.
    for (const finding of findings.filter((f) => !f.fixable && f.check !== 'hard-link')) logger.warn('permission drift cannot be corrected', { ...findingMeta(finding) });
    if (fixable.length === 0) return [];
    const failures = await this.apply(planContentFix(contents, actual, accounts));
    if (failures > 0) return [];
    for (const finding of fixable) this.logCorrection(finding);
    return fixable;
  }

  private rememberCompliant(target: string, identity: string): void {
    this.compliant.delete(target);
    this.compliant.set(target, identity);
    if (this.compliant.size > MAX_REMEMBERED_COMPLIANT) this.compliant.delete(this.compliant.keys().next().value as string);
  }

  /** Applies a plan; logs and counts failed steps. */
  private async apply(plan: FixPlan): Promise<number> {
    const records = await applyFixPlan(plan, this.options.backend, this.options.guard);
    const failed = records.filter((record) => !record.ok);
    for (const record of failed) {
      // Gone meanwhile (the pipeline took it): nothing left to correct.
      if (/ENOENT/.test(record.error ?? '')) continue;
      this.options.logger.error('cannot correct permissions', { path: record.path, change: record.change, error: record.error });
    }
    return failed.length;
  }

  private logCorrection(finding: Finding): void {
    this.options.logger.warn('permission drift corrected', findingMeta(finding));
  }
}

function findingMeta(finding: Finding): Record<string, string> {
  return { path: finding.path, check: finding.check, expected: finding.expected, found: finding.found };
}

/**
 * What a new file of mode `mode` would get from a directory's default ACL (acl(5), "object creation"):
 * the owner's entry and the mask (or owning group) limited by the mode's digits, other by its last.
 * Named entries lose execute too, so no entry ever offers it.
 */
export function inheritForFile(defaultAcl: readonly AclEntry[], mode: number): AclEntry[] {
  const hasMask = defaultAcl.some((e) => e.tag === 'mask');
  return defaultAcl.map((e) => {
    switch (e.tag) {
      case 'user_obj':
        return aclBitsWithin(e, (mode >> 6) & 7);
      case 'mask':
        return aclBitsWithin(e, (mode >> 3) & 7);
      case 'group_obj':
        // Behind a mask the kernel leaves it as it is; execute goes anyway.
        return aclBitsWithin(e, (hasMask ? 0o7 : (mode >> 3) & 7) & 0o6);
      case 'other':
        return aclBitsWithin(e, mode & 7);
      default:
        return aclBitsWithin(e, 0o6);
    }
  });
}

/**
 * A released file draws several events (its name appears, its link count changes twice, ...), each of which
 * would read its ACLs again. A path found right is remembered with its inode, mode, owner, link count and
 * ctime; an event that finds all of them unchanged needs no second look, since any chmod, chown, ACL change
 * or link moves ctime. (On kernels with coarse timestamps two changes within one tick can share a ctime;
 * a change that also leaves the mode alone is then left for the periodic sweep.)
 */
function identityOf(target: string): string | null {
  let stats;
  try {
    stats = lstatSync(target, { throwIfNoEntry: false, bigint: true });
  } catch {
    return null; // inspectPath looks again and reports what is wrong
  }
  if (stats === undefined) return null;
  return `${stats.dev}:${stats.ino}:${stats.mode}:${stats.uid}:${stats.gid}:${stats.nlink}:${stats.ctimeNs}`;
}

/** How long a file's events must pause before the enforcer looks at it. */
const FILE_EVENT_SETTLE_MS = 200;

/** Remembered paths, oldest forgotten first: enough for a busy share's recent releases, bounded memory. */
const MAX_REMEMBERED_COMPLIANT = 20_000;

/** Destination directories whose inherited file ACL is remembered (see inheritedFileAcl). */
const MAX_REMEMBERED_DIRECTORY_ACLS = 1_000;

/**
 * chokidar for the directory tree, fs.watch for entry names: chokidar alone re-lists a directory and lstats
 * all of it on every event in it (see tree-watch.ts). The cast only narrows chokidar's `this` return type,
 * which names its whole FSWatcher class; the enforcer uses on/once/close and nothing else.
 */
function watchSharedTrees(roots: readonly string[]): EnforcerWatcher {
  // A release's temporary name is the releaser's to set up (see notice): its events are not even looked at.
  return watchTree(roots, { ignoreName: (name) => itemIdOfReleaseTemporary(name) !== null }) as unknown as EnforcerWatcher;
}
