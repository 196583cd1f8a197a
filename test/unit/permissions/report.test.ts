import { describe, expect, it } from 'vitest';

import { drift, unchecked } from '../../../src/permissions/finding.js';
import { formatJson, formatReport, formatTable, summaryLine, type VerificationResult } from '../../../src/permissions/report.js';

const modeDrift = drift('/srv/shuttle/in', 'mode', '2770', '2777', 'high');
const setgidDrift = drift('/srv/shuttle/in/batch', 'setgid', 'set', 'cleared', 'medium');
const missing = unchecked('/srv/shuttle/out', 'missing', 'directory (destination_path)', 'missing');

function result(fields: Partial<VerificationResult>): VerificationResult {
  return { verdict: 'conforms', backend: 'native', pathsChecked: 100_012, findings: [], foundBeforeFix: null, fixes: [], ...fields };
}

describe('formatTable', () => {
  it('prints one aligned row per finding under a header', () => {
    expect(formatTable([modeDrift, setgidDrift, missing])).toBe(
      [
        'SEVERITY   PATH                   CHECK    EXPECTED                      FOUND',
        'high       /srv/shuttle/in        mode     2770                          2777',
        'medium     /srv/shuttle/in/batch  setgid   set                           cleared',
        'unchecked  /srv/shuttle/out       missing  directory (destination_path)  missing',
      ].join('\n'),
    );
  });
});

describe('summaryLine', () => {
  it('says what the exit status will be', () => {
    expect(summaryLine(result({}))).toBe('permissions conform to the model: 100,012 paths checked, backend native (exit status 0)');
    expect(summaryLine(result({ verdict: 'drift', findings: [modeDrift, setgidDrift] }))).toBe(
      'permissions drift: 2 findings (1 high, 1 medium) on 2 paths; 100,012 paths checked, backend native (exit status 1)',
    );
    expect(summaryLine(result({ verdict: 'unchecked', findings: [modeDrift, missing], backend: 'setfacl' }))).toBe(
      'permissions could not be fully checked: 1 problem and 1 finding; 100,012 paths checked, backend setfacl (exit status 2)',
    );
  });

  it('counts the changes made by --fix', () => {
    const fixed = result({ foundBeforeFix: [modeDrift], fixes: [{ path: '/srv/shuttle/in', change: 'mode 2770 (was 2777)', ok: true }] });
    expect(summaryLine(fixed)).toBe('permissions conform to the model after fixing: 1 change made; 100,012 paths checked, backend native (exit status 0)');
  });
});

describe('formatReport', () => {
  it('prints only the summary when everything conforms', () => {
    expect(formatReport(result({}))).toBe('permissions conform to the model: 100,012 paths checked, backend native (exit status 0)\n');
  });

  it('with --fix: what was found, what changed (and failed), what remains', () => {
    const text = formatReport(
      result({
        verdict: 'drift',
        findings: [setgidDrift],
        foundBeforeFix: [modeDrift, setgidDrift],
        fixes: [
          { path: '/srv/shuttle/in', change: 'mode 2770 (was 2777)', ok: true },
          { path: '/srv/shuttle/in/batch', change: 'mode 2770 (was 0770)', ok: false, error: 'EPERM: operation not permitted' },
        ],
      }),
    );
    expect(text).toContain('Found:\nSEVERITY');
    expect(text).toContain('Changed:\n  /srv/shuttle/in: mode 2770 (was 2777)\n  /srv/shuttle/in/batch: FAILED mode 2770 (was 0770): EPERM: operation not permitted');
    expect(text).toContain('Remaining after fixing:\nSEVERITY');
    expect(text.trimEnd().split('\n').at(-1)).toMatch(/^permissions drift after fixing: 1 finding .* 1 change made, 1 failed;/);
  });
});

describe('formatJson', () => {
  it('carries the same findings, the verdict and the exit status', () => {
    const parsed = JSON.parse(formatJson(result({ verdict: 'drift', findings: [modeDrift] })));
    expect(parsed).toEqual({ verdict: 'drift', exitStatus: 1, backend: 'native', pathsChecked: 100_012, findings: [modeDrift] });
    const fixedJson = JSON.parse(formatJson(result({ foundBeforeFix: [modeDrift], fixes: [{ path: '/srv/shuttle/in', change: 'mode', ok: true }] })));
    expect(fixedJson).toMatchObject({ verdict: 'conforms', exitStatus: 0, foundBeforeFix: [modeDrift], fixes: [{ ok: true }] });
  });
});
