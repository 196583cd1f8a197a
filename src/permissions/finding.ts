// What a permission check reports: one Finding per difference between the model and the file system,
// and the verdict (the exit status) that a list of findings adds up to.

/** The aspect of a path (or account) that differs from the model. */
export type FindingCheck =
  | 'missing'
  | 'type'
  | 'unreadable'
  | 'owner'
  | 'group'
  | 'mode'
  | 'setgid'
  | 'file-mode'
  | 'acl-entry-missing'
  | 'acl-entry-extra'
  | 'acl-entry-permissions'
  | 'mask'
  | 'default-acl-missing'
  | 'default-acl-extra'
  | 'symlink'
  | 'special-file'
  | 'hard-link'
  | 'account-missing'
  | 'login-shell'
  | 'extra-group'
  | 'model';

/**
 * high: grants more than the model (someone can read, write or run what they should not), or could not
 * be checked at all. medium: grants less, or breaks inheritance (new entries would come out wrong).
 */
export type Severity = 'high' | 'medium';

/** drift: the system differs from the model. unchecked: the check itself could not be made. */
export type FindingKind = 'drift' | 'unchecked';

export interface Finding {
  /** A file system path; for account findings `user:NAME` or `group:NAME`; for the model, its config key. */
  readonly path: string;
  readonly check: FindingCheck;
  readonly expected: string;
  readonly found: string;
  readonly severity: Severity;
  readonly kind: FindingKind;
  /** Whether --fix can repair it (owner, group, mode, ACLs); never true for content or accounts. */
  readonly fixable: boolean;
}

export type Verdict = 'conforms' | 'drift' | 'unchecked';

export const EXIT_STATUS: Readonly<Record<Verdict, number>> = { conforms: 0, drift: 1, unchecked: 2 };

export function verdictOf(findings: readonly Finding[]): Verdict {
  if (findings.some((finding) => finding.kind === 'unchecked')) return 'unchecked';
  return findings.length > 0 ? 'drift' : 'conforms';
}

export function drift(
  subject: string,
  check: FindingCheck,
  expected: string,
  found: string,
  severity: Severity,
  fixable = true,
): Finding {
  return { path: subject, check, expected, found, severity, kind: 'drift', fixable };
}

export function unchecked(subject: string, check: FindingCheck, expected: string, found: string): Finding {
  return { path: subject, check, expected, found, severity: 'high', kind: 'unchecked', fixable: false };
}
