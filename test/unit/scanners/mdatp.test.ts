// Reading a verdict out of `mdatp scan custom` text. The process side (exit codes, timeouts, a missing
// command) runs the fake CLI in test/integration/scanners/mdatp.test.ts.

import { describe, expect, it } from 'vitest';
import { productVersionFromMdatpOutput, threatNameFromMdatpOutput, verdictFromMdatpOutput } from '../../../src/scanners/mdatp.js';

const CLEAN = 'Scan has finished\n\t1 file(s) scanned\n\t0 threat(s) detected\n';
const INFECTED = 'Scan has finished\n\t1 file(s) scanned\n\t1 threat(s) detected\nThreat(s) found\n\tVirus:DOS/EICAR_Test_File\n\t\t/q/eicar.com\n';

describe('verdictFromMdatpOutput', () => {
  it('is clean only when the output ends with a tab-indented "0 threat(s) detected"', () => {
    expect(verdictFromMdatpOutput(CLEAN, '')).toEqual({ kind: 'clean' });
    expect(verdictFromMdatpOutput(CLEAN.trimEnd(), '')).toEqual({ kind: 'clean' });
    expect(verdictFromMdatpOutput(`${CLEAN}  \n\n`, '')).toEqual({ kind: 'clean' });
  });

  it('is suspect on "Threat(s) found", even when the summary would read clean', () => {
    expect(verdictFromMdatpOutput(INFECTED, '')).toEqual({ kind: 'suspect', signature: 'Virus:DOS/EICAR_Test_File' });
    expect(verdictFromMdatpOutput(`Threat(s) found\n${CLEAN}`, '')).toMatchObject({ kind: 'suspect' });
    expect(verdictFromMdatpOutput('', 'Threat(s) found')).toEqual({ kind: 'suspect', signature: 'unknown' });
  });

  it('gives no verdict for anything else', () => {
    for (const output of [
      '',
      'Scan has finished\n\t1 file(s) scanned\n\t10 threat(s) detected\n',
      'Scan has finished\n\t1 file(s) scanned\n\t0 threat(s) detected\nsomething after\n',
      '0 threat(s) detected',
      'Error: daemon not running',
    ]) {
      expect(verdictFromMdatpOutput(output, '')).toBeNull();
    }
  });

  it('does not accept "0 threat(s) detected" when no file was scanned', () => {
    expect(verdictFromMdatpOutput('Scan has finished\n\t0 file(s) scanned\n\t0 threat(s) detected\n', '')).toMatchObject({
      kind: 'failed',
      code: 'io',
    });
  });

  it('tolerates a warning printed before the summary', () => {
    expect(verdictFromMdatpOutput(`ATTENTION: No license found. Contact your administrator for help.\n${CLEAN}`, '')).toEqual({ kind: 'clean' });
  });
});

describe('threatNameFromMdatpOutput', () => {
  it.each([
    [INFECTED, 'Virus:DOS/EICAR_Test_File'],
    ['Threat(s) found\n\t/q/x: Trojan:Win32/Wacatac.B!ml\n', 'Trojan:Win32/Wacatac.B!ml'],
    ['Threat(s) found\n\tSomethingOdd\n', 'SomethingOdd'],
    ['Threat(s) found', 'unknown'],
  ])('%j → %s', (output, name) => {
    expect(threatNameFromMdatpOutput(output)).toBe(name);
  });
});

describe('productVersionFromMdatpOutput', () => {
  it('reads "Product version: X"', () => {
    expect(productVersionFromMdatpOutput('Product version: 101.24092.0004\nEngine version: 1.1.24090.11\n')).toBe('101.24092.0004');
    expect(productVersionFromMdatpOutput('Engine version: 1.1\n')).toBeNull();
  });
});
