// `shuttle verify-permissions`: read the accounts, build the model, inspect every managed path and
// everything below the data directories, check, optionally fix and check again, then print. The exit
// status is the verdict: 0 conforms, 1 drift, 2 could not check.

import { setImmediate as yieldToEventLoop } from 'node:timers/promises';

import type { ShuttleConfig } from '../config.js';
import { Zone } from '../zone.js';
import { checkAccounts, readAccounts, type AccountsSnapshot } from './accounts.js';
import { selectAclBackend, type AclBackend } from './acl-backend.js';
import { checkContentEntry, checkManagedPath } from './checks.js';
import { EXIT_STATUS, verdictOf, type Finding } from './finding.js';
import { applyFixPlan, planContentFix, planManagedPathFix, type FixPlan, type FixRecord, type WriteGuard } from './fix.js';
import { inspectPath, walkTree } from './inspect.js';
import { accountNamesIn, buildPermissionModel, isMinimal, type PermissionModel } from './model.js';
import { formatJson, formatReport, type VerificationResult } from './report.js';

export interface ScanOptions {
  /** Walk below the data directories too (verify-permissions does; the daemon's start-up check does not). */
  readonly contents: boolean;
  /** Called with the plan for each path that has fixable findings; absent means report only. */
  readonly fix?: (plan: FixPlan) => Promise<void>;
  /** Ends the walk early (the daemon stopping); what was found so far is returned. */
  readonly signal?: AbortSignal;
}

export interface ScanResult {
  readonly findings: Finding[];
  readonly pathsChecked: number;
}

/** Inspects and checks every path of the model. Fixes, when asked, right after each path is checked. */
export async function scanModel(model: PermissionModel, accounts: AccountsSnapshot, backend: AclBackend, options: ScanOptions): Promise<ScanResult> {
  const findings: Finding[] = [];
  let pathsChecked = 0;
  for (const desired of model.paths) {
    const actual = await inspectPath(desired.path, backend);
    pathsChecked++;
    const found = checkManagedPath(desired, actual, accounts);
    findings.push(...found);
    if (options.fix !== undefined && actual.status === 'present' && found.some((f) => f.fixable)) {
      await options.fix(planManagedPathFix(desired, actual, accounts));
    }
    if (!options.contents || desired.contents === null || actual.status !== 'present' || actual.type !== 'directory') continue;

    const hints = {
      directoriesHaveExtendedAcls: !isMinimal(desired.contents.directory.access) || desired.contents.directory.defaultAcl.length > 0,
      filesHaveExtendedAcls: desired.contents.fileNamedEntries.length > 0,
    };
    for await (const batch of walkTree(desired.path, backend, hints)) {
      for (const entry of batch) {
        pathsChecked++;
        const entryFindings = checkContentEntry(desired.contents, entry, accounts);
        if (entryFindings.length === 0) continue;
        findings.push(...entryFindings);
        if (options.fix !== undefined && entry.status === 'present' && entryFindings.some((f) => f.fixable)) {
          await options.fix(planContentFix(desired.contents, entry, accounts));
        }
      }
      // Let timers and I/O in between batches: the daemon may run this on a large tree.
      await yieldToEventLoop();
      if (options.signal?.aborted) return { findings, pathsChecked };
    }
  }
  return { findings, pathsChecked };
}

/** A guard for the command line: the managed paths and everything below the managed directories. */
export function managedPathGuard(model: PermissionModel): WriteGuard {
  return new Zone(model.paths.map((managed) => managed.path));
}

export interface VerifyOptions {
  readonly fix: boolean;
  /** Defaults to the one config.permissionsBackend selects. */
  readonly backend?: AclBackend;
  /** Defaults to a fresh read of the account databases. */
  readonly accounts?: AccountsSnapshot;
  /** Defaults to managedPathGuard(model). */
  readonly guard?: WriteGuard;
}

export async function verifyPermissions(config: ShuttleConfig, options: VerifyOptions): Promise<VerificationResult> {
  const backend = options.backend ?? selectAclBackend(config.permissionsBackend);
  const accounts = options.accounts ?? (await readAccounts(accountNamesIn(config)));
  const { model, problems } = buildPermissionModel(config, accounts);
  const accountFindings = checkAccounts(model, accounts);

  const fixes: FixRecord[] = [];
  const guard = options.guard ?? managedPathGuard(model);
  const fix = options.fix
    ? async (plan: FixPlan): Promise<void> => {
        fixes.push(...(await applyFixPlan(plan, backend, guard)));
      }
    : undefined;

  const first = await scanModel(model, accounts, backend, { contents: true, ...(fix === undefined ? {} : { fix }) });
  const before = [...problems, ...accountFindings, ...first.findings];
  if (!options.fix) {
    return { verdict: verdictOf(before), backend: backend.name, pathsChecked: first.pathsChecked, findings: before, foundBeforeFix: null, fixes };
  }
  // Judge the result by looking again, not by trusting that each change did what it meant to.
  const second = fixes.length > 0 ? await scanModel(model, accounts, backend, { contents: true }) : first;
  const after = [...problems, ...accountFindings, ...second.findings];
  return { verdict: verdictOf(after), backend: backend.name, pathsChecked: second.pathsChecked, findings: after, foundBeforeFix: before, fixes };
}

export interface VerifyCommandOptions {
  readonly fix: boolean;
  readonly json: boolean;
  readonly write?: (text: string) => void;
}

/** The command: prints the report (or JSON) and returns the exit status. */
export async function runVerifyPermissions(config: ShuttleConfig, options: VerifyCommandOptions): Promise<number> {
  const write = options.write ?? ((text: string) => void process.stdout.write(text));
  const result = await verifyPermissions(config, { fix: options.fix });
  write(options.json ? formatJson(result) : formatReport(result));
  return EXIT_STATUS[result.verdict];
}
