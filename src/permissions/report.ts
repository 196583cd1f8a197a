// Printing a verification: a table with one row per finding and a summary line, or the same as JSON.
// Takes a finished result; decides nothing.

import type { AclBackendName } from './acl-backend.js';
import { EXIT_STATUS, type Finding, type Verdict } from './finding.js';
import type { FixRecord } from './fix.js';

export interface VerificationResult {
  readonly verdict: Verdict;
  readonly backend: AclBackendName;
  /** Managed paths plus every entry found below the data directories. */
  readonly pathsChecked: number;
  /** What the verdict rests on: after fixing, when fixing. */
  readonly findings: readonly Finding[];
  /** With --fix: what was found before anything was changed; null without --fix. */
  readonly foundBeforeFix: readonly Finding[] | null;
  readonly fixes: readonly FixRecord[];
}

const COLUMNS = ['SEVERITY', 'PATH', 'CHECK', 'EXPECTED', 'FOUND'] as const;

export function formatTable(findings: readonly Finding[]): string {
  const rows = findings.map((f) => [f.kind === 'unchecked' ? 'unchecked' : f.severity, f.path, f.check, f.expected, f.found]);
  const widths = COLUMNS.map((title, column) => Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((cell, column) => (column === cells.length - 1 ? cell : cell.padEnd(widths[column] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(COLUMNS), ...rows.map(line)].join('\n');
}

const count = (n: number): string => n.toLocaleString('en-US');
const plural = (n: number, word: string): string => `${count(n)} ${word}${n === 1 ? '' : 's'}`;

export function summaryLine(result: VerificationResult): string {
  const { findings, fixes } = result;
  const checked = `${plural(result.pathsChecked, 'path')} checked, backend ${result.backend}`;
  const changed = fixes.filter((fix) => fix.ok).length;
  const failed = fixes.length - changed;
  const fixed = result.foundBeforeFix === null ? '' : `${plural(changed, 'change')} made${failed > 0 ? `, ${count(failed)} failed` : ''}; `;
  const paths = new Set(findings.map((f) => f.path)).size;
  const high = findings.filter((f) => f.kind === 'drift' && f.severity === 'high').length;
  const medium = findings.filter((f) => f.kind === 'drift' && f.severity === 'medium').length;
  const problems = findings.filter((f) => f.kind === 'unchecked').length;
  const after = result.foundBeforeFix === null ? '' : ' after fixing';
  switch (result.verdict) {
    case 'conforms':
      return `permissions conform to the model${after}: ${fixed}${checked} (exit status ${EXIT_STATUS.conforms})`;
    case 'drift':
      return `permissions drift${after}: ${plural(findings.length, 'finding')} (${count(high)} high, ${count(medium)} medium) on ${plural(paths, 'path')}; ${fixed}${checked} (exit status ${EXIT_STATUS.drift})`;
    case 'unchecked':
      return `permissions could not be fully checked: ${plural(problems, 'problem')} and ${plural(findings.length - problems, 'finding')}${after}; ${fixed}${checked} (exit status ${EXIT_STATUS.unchecked})`;
  }
}

/** The human report: tables, the changes made, and the summary line last. */
export function formatReport(result: VerificationResult): string {
  const parts: string[] = [];
  if (result.foundBeforeFix !== null) {
    if (result.foundBeforeFix.length > 0) parts.push(`Found:\n${formatTable(result.foundBeforeFix)}`);
    if (result.fixes.length > 0) {
      const lines = result.fixes.map((fix) => (fix.ok ? `  ${fix.path}: ${fix.change}` : `  ${fix.path}: FAILED ${fix.change}: ${fix.error ?? ''}`));
      parts.push(`Changed:\n${lines.join('\n')}`);
    }
    if (result.findings.length > 0) parts.push(`Remaining after fixing:\n${formatTable(result.findings)}`);
  } else if (result.findings.length > 0) {
    parts.push(formatTable(result.findings));
  }
  parts.push(summaryLine(result));
  return `${parts.join('\n\n')}\n`;
}

export function formatJson(result: VerificationResult): string {
  return `${JSON.stringify(
    {
      verdict: result.verdict,
      exitStatus: EXIT_STATUS[result.verdict],
      backend: result.backend,
      pathsChecked: result.pathsChecked,
      findings: result.findings,
      ...(result.foundBeforeFix === null ? {} : { foundBeforeFix: result.foundBeforeFix, fixes: result.fixes }),
    },
    null,
    2,
  )}\n`;
}
