import { describe, expect, it } from 'vitest';
import {
  classifyName,
  compileFilenamePolicy,
  DEFAULT_TEMPORARY_PATTERNS,
  globProblem,
  globToRegExp,
  insertBeforeExtension,
  MAX_NAME_BYTES,
  shortenName,
  type NameClassification,
} from '../../src/filename-policy.js';

const rename = compileFilenamePolicy({ policy: 'rename', temporaryPatterns: DEFAULT_TEMPORARY_PATTERNS });
const reject = compileFilenamePolicy({ policy: 'reject', temporaryPatterns: DEFAULT_TEMPORARY_PATTERNS });

const bytes = (text: string): number => Buffer.byteLength(text, 'utf8');
/** No unpaired surrogate: the text survives a round trip through UTF-8 unchanged. */
const wellFormed = (text: string): boolean => Buffer.from(text, 'utf8').toString('utf8') === text;

/** The released name under the rename policy; fails the test when the name is not renamed. */
function renamed(relativePath: string): string {
  const result = classifyName(relativePath, rename);
  if (result.kind !== 'rename') throw new Error(`${JSON.stringify(relativePath)} was classified ${result.kind}, not renamed`);
  return result.releaseAs;
}

/** Every name a rename produced must itself pass the policy untouched. */
function expectStorable(name: string): void {
  for (const component of name.split('/')) {
    expect(bytes(component)).toBeLessThanOrEqual(MAX_NAME_BYTES);
    expect(wellFormed(component)).toBe(true);
  }
  expect(classifyName(name, rename)).toEqual({ kind: 'ok', releaseAs: name });
}

describe('classifyName: names that are fine', () => {
  it.each([
    'report.csv',
    'a/b/c/x.csv',
    'Müller Straße/Übersicht 2026.xlsx',
    '日本語のファイル.txt',
    'emoji 🧪 run.dat',
    '.hidden',
    '..data',
    'a..b',
    ' leading space.txt',
    'CONSOLE.txt',
    'COM10',
    'NULL',
    'LPT',
    'aux_.txt',
    'con-fig.json',
    '~report.docx',
    'x'.repeat(255),
    `${'é'.repeat(127)}x`,
  ])('%j is taken as it is', (name) => {
    expect(classifyName(name, rename)).toEqual({ kind: 'ok', releaseAs: name });
    expect(classifyName(name, reject)).toEqual({ kind: 'ok', releaseAs: name });
  });
});

describe('classifyName: temporary names wait in source', () => {
  it.each([
    ['~$report.docx', '~$*'],
    ['~$x.docx', '~$*'],
    ['data.tmp', '*.tmp'],
    ['DATA.TMP', '*.tmp'],
    ['.~lock.report.odt#', '.~lock.*#'],
    ['~WRL0001.tmp', '*.tmp'],
    ['sub/dir/~$budget.xlsx', '~$*'],
  ])('%j matches %j', (name, pattern) => {
    expect(classifyName(name, rename)).toEqual({ kind: 'temporary', pattern });
    expect(classifyName(name, reject)).toEqual({ kind: 'temporary', pattern });
  });

  it('checks only the file name, not its directories', () => {
    expect(classifyName('x.tmp/report.csv', rename)).toEqual({ kind: 'ok', releaseAs: 'x.tmp/report.csv' });
    expect(classifyName('~$dir/report.csv', rename).kind).toBe('ok');
  });

  it('does not mistake near misses for temporary names', () => {
    for (const name of ['report.tmp.csv', 'tmp', '.~lock.report.odt', 'x~$y.docx', 'a.tmpx']) {
      expect(classifyName(name, rename).kind).toBe('ok');
    }
  });

  it('takes a temporary name with forbidden characters as temporary, not as a name to repair', () => {
    expect(classifyName('~$a:b.docx', reject)).toEqual({ kind: 'temporary', pattern: '~$*' });
  });

  it('uses the configured patterns only', () => {
    const custom = compileFilenamePolicy({ policy: 'rename', temporaryPatterns: ['*.part', '.upload-??????'] });
    expect(classifyName('movie.mkv.part', custom)).toEqual({ kind: 'temporary', pattern: '*.part' });
    expect(classifyName('.upload-a1B2c3', custom)).toEqual({ kind: 'temporary', pattern: '.upload-??????' });
    expect(classifyName('.upload-a1B2c', custom).kind).toBe('ok');
    expect(classifyName('data.tmp', custom).kind).toBe('ok');
    const none = compileFilenamePolicy({ policy: 'rename', temporaryPatterns: [] });
    expect(classifyName('~$x.docx', none).kind).toBe('ok');
  });
});

describe('classifyName: the rename rule', () => {
  it.each([
    ['a:b.txt', 'a_b.txt'],
    ['what?.txt', 'what_.txt'],
    ['<x>|"y"*.csv', '_x___y__.csv'],
    ['back\\slash.txt', 'back_slash.txt'],
    ['line\nbreak.txt', 'line_break.txt'],
    ['tab\there', 'tab_here'],
    ['bell\u0007.bin', 'bell_.bin'],
    ['del\u007f.bin', 'del_.bin'],
    ['invoice\u202etxt.exe', 'invoice_txt.exe'],
    ['isolate\u2066x\u2069.pdf', 'isolate_x_.pdf'],
    ['lone\ud800half.txt', 'lone_half.txt'],
  ])('replaces unsafe characters: %j -> %j', (name, expected) => {
    expect(renamed(name)).toBe(expected);
    expectStorable(expected);
  });

  it.each([
    ['trailing.', 'trailing'],
    ['trailing ', 'trailing'],
    ['mixed. . .', 'mixed'],
    ['report.csv.', 'report.csv'],
  ])('strips trailing dots and spaces: %j -> %j', (name, expected) => {
    expect(renamed(name)).toBe(expected);
  });

  it.each([
    ['CON', 'CON_'],
    ['con', 'con_'],
    ['PRN.txt', 'PRN_.txt'],
    ['aux.tar.gz', 'aux_.tar.gz'],
    ['NUL', 'NUL_'],
    ['nul.', 'nul_'],
    ['COM1', 'COM1_'],
    ['com9.log', 'com9_.log'],
    ['COM0.txt', 'COM0_.txt'],
    ['LPT1', 'LPT1_'],
    ['lpt9.doc', 'lpt9_.doc'],
    ['COM¹.txt', 'COM¹_.txt'],
    ['LPT³', 'LPT³_'],
    ['CONIN$', 'CONIN$_'],
    ['conout$.txt', 'conout$_.txt'],
    ['NUL .txt', 'NUL_ .txt'],
  ])('appends _ to Windows device names: %j -> %j', (name, expected) => {
    expect(renamed(name)).toBe(expected);
    expectStorable(expected);
  });

  it('repairs every component of the path, directories included', () => {
    const result = classifyName('CON/bad:dir./ok/file?.txt', rename);
    expect(result.kind).toBe('rename');
    expect(result.kind === 'rename' && result.releaseAs).toBe('CON_/bad_dir/ok/file_.txt');
    expect(result.kind === 'rename' && result.reasons).toEqual([
      '"CON" is the Windows device name CON',
      '"bad:dir." contains ":", which Windows forbids',
      '"bad:dir." ends with a dot or a space, which Windows drops',
      '"file?.txt" contains "?", which Windows forbids',
    ]);
  });

  it('maps the same directory to the same name for every file in it', () => {
    expect(renamed('a:b/one.txt').split('/')[0]).toBe(renamed('a:b/two.txt').split('/')[0]);
  });

  it.each([
    ['...', '_'],
    [' ', '_'],
    ['. .', '_'],
  ])('gives a name that would be left empty a placeholder: %j -> %j', (name, expected) => {
    expect(renamed(name)).toBe(expected);
  });

  it('explains each repair by naming the character', () => {
    const result = classifyName('a\nb\u202e:c', rename) as Extract<NameClassification, { kind: 'rename' }>;
    expect(result.reasons).toHaveLength(1);
    expect(result.reasons[0]).toContain('a newline');
    expect(result.reasons[0]).toContain('U+202E');
    expect(result.reasons[0]).toContain('":", which Windows forbids');
  });

  it('never throws, whatever the name', () => {
    const alphabet = ['a', '.', ' ', ':', '\n', 'é', '🧪', '\u0301', 'C', 'O', 'N', '/', '\u202e', '\ud800', '*'];
    let seed = 42;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    for (let round = 0; round < 2000; round++) {
      const length = 1 + Math.floor(random() * 300);
      let name = '';
      for (let i = 0; i < length; i++) name += alphabet[Math.floor(random() * alphabet.length)];
      const result = classifyName(name, rename);
      if (result.kind === 'rename') expectStorable(result.releaseAs);
      if (result.kind === 'ok') expectStorable(result.releaseAs);
    }
  });
});

describe('classifyName: names over 255 bytes', () => {
  it('shortens an ASCII name that only a repair made too long, keeping the extension', () => {
    const name = `NUL.${'x'.repeat(247)}.txt`; // 255 bytes; the `_` makes it 256
    expect(bytes(name)).toBe(255);
    const released = renamed(name);
    expect(bytes(released)).toBe(255);
    expect(released.startsWith('NUL_.')).toBe(true);
    expect(released.endsWith('x.txt')).toBe(true);
  });

  it('shortens a repaired name too long at a multi-byte character, without splitting it', () => {
    // 1 + 84 × 3 + 2 = 255 bytes of which the `:` becomes `_` (same length): stays.
    const fits = `:${'日'.repeat(84)}.a`;
    expect(bytes(fits)).toBe(255);
    expect(renamed(fits)).toBe(`_${'日'.repeat(84)}.a`);
    // The device suffix makes it 256 bytes; the cut falls inside the last 日, which goes whole.
    const over = `AUX.${'日'.repeat(83)}.a`;
    expect(bytes(over)).toBe(255);
    const released = renamed(over);
    expect(released).toBe(`AUX_.${'日'.repeat(82)}.a`);
    expect(bytes(released)).toBe(253);
    expectStorable(released);
  });

  it('never leaves half a character: 4-byte emoji at the edge', () => {
    const name = `con.xxx${'🧪'.repeat(61)}.bin`; // 4 + 3 + 244 + 4 = 255; 256 with the `_`
    expect(bytes(name)).toBe(255);
    const released = renamed(name);
    expect(released).toBe(`con_.xxx${'🧪'.repeat(60)}.bin`);
    expect(bytes(released)).toBe(252);
    expect(wellFormed(released)).toBe(true);
    expectStorable(released);
  });

  it('keeps a base letter and its combining accent together', () => {
    // "e" + U+0301 is one grapheme of 3 bytes.
    const name = `COM1.${'e\u0301'.repeat(83)}`; // 5 + 249 = 254 bytes, 255 with the `_`: fits
    expect(bytes(renamed(name))).toBe(255);
    const longer = `COM1.${'e\u0301'.repeat(84)}`; // 257 bytes once repaired; no extension to keep
    const released = renamed(longer);
    expect(bytes(released)).toBeLessThanOrEqual(255);
    expect(released.endsWith('e\u0301')).toBe(true);
  });
});

describe('classifyName: the reject policy', () => {
  it.each(['a:b.txt', 'CON', 'trailing.', 'line\nbreak', 'x/NUL.txt', 'ok/dir?/file'])('refuses %j and says why', (name) => {
    const result = classifyName(name, reject);
    expect(result.kind).toBe('reject');
    expect(result.kind === 'reject' && result.reason).toMatch(/^the name cannot be stored safely on the destination share: /);
  });

  it('lists every problem in the reason', () => {
    const result = classifyName('PRN/a|b.', reject);
    expect(result).toEqual({
      kind: 'reject',
      reason:
        'the name cannot be stored safely on the destination share: "PRN" is the Windows device name PRN; ' +
        '"a|b." contains "|", which Windows forbids; "a|b." ends with a dot or a space, which Windows drops',
    });
  });
});

describe('classifyName: paths no walk produces', () => {
  it.each([
    ['', 'empty'],
    ['/etc/passwd', 'absolute'],
    ['a//b', 'empty component'],
    ['a/', 'empty component'],
    ['../x', '".." component'],
    ['a/./b', '"." component'],
  ])('refuses %j under either policy', (name, fragment) => {
    for (const policy of [rename, reject]) {
      const result = classifyName(name, policy);
      expect(result.kind).toBe('reject');
      expect(result.kind === 'reject' && result.reason).toContain(fragment);
    }
  });
});

describe('shortenName and insertBeforeExtension', () => {
  it('leaves a name that fits alone', () => {
    expect(shortenName('report.csv', 255)).toBe('report.csv');
    expect(insertBeforeExtension('report.csv', ' (1)')).toBe('report (1).csv');
    expect(insertBeforeExtension('.profile', ' (2)')).toBe('.profile (2)');
  });

  it('cuts exactly at the byte limit, at every position of a multi-byte character', () => {
    for (let limit = 10; limit <= 20; limit++) {
      const cut = shortenName('ab€€€€€€€€€€', limit); // € is 3 bytes
      expect(bytes(cut)).toBeLessThanOrEqual(limit);
      expect(bytes(cut)).toBeGreaterThan(limit - 3);
      expect(wellFormed(cut)).toBe(true);
    }
  });

  it('makes a collision suffix fit a name that already uses all 255 bytes', () => {
    const name = `${'ü'.repeat(125)}x.csv`; // 250 + 1 + 4 bytes
    expect(bytes(name)).toBe(255);
    const numbered = insertBeforeExtension(name, ' (12)');
    expect(bytes(numbered)).toBeLessThanOrEqual(255);
    expect(numbered.endsWith(' (12).csv')).toBe(true);
    expect(numbered.startsWith('üü')).toBe(true);
  });

  it('treats a very long "extension" as part of the stem', () => {
    const name = `a.${'b'.repeat(300)}`;
    const cut = shortenName(name, 255);
    expect(cut).toBe(`a.${'b'.repeat(253)}`);
  });

  it('removes dots and spaces the cut leaves at the end', () => {
    expect(shortenName(`${'a'.repeat(250)}    bbbbbbbbbb`, 252)).toBe('a'.repeat(250));
    expect(shortenName(`${'a'.repeat(245)}. . .xyz.txt`, 252)).toBe(`${'a'.repeat(245)}.txt`);
  });
});

describe('temporary-name globs', () => {
  it.each([
    ['*.tmp', 'a.tmp', true],
    ['*.tmp', 'a.TMP', true],
    ['*.tmp', 'a.tmpx', false],
    ['?.log', 'a.log', true],
    ['?.log', 'ab.log', false],
    ['[abc].x', 'b.x', true],
    ['[abc].x', 'd.x', false],
    ['[!abc].x', 'd.x', true],
    ['[!abc].x', 'a.x', false],
    ['[a-c]1', 'B1', true],
    ['[]]x', ']x', true],
    ['~$*', '~$a.docx', true],
    ['a+b(c).{d}^$|', 'a+b(c).{d}^$|', true],
    ['*', 'new\nline', true],
    ['?', '🧪', true],
  ])('%j against %j: %s', (pattern, name, matches) => {
    expect(globToRegExp(pattern).test(name)).toBe(matches);
  });

  it('reports unusable patterns', () => {
    expect(globProblem('')).toBe('it is empty');
    expect(globProblem('a/*.tmp')).toContain('"/"');
    expect(globProblem('*.[tT')).toContain('never closed');
    expect(globProblem('[]')).toContain('never closed');
    expect(globProblem('[]]')).toBeNull();
    expect(() => globToRegExp('[x')).toThrow(/invalid pattern "\[x"/);
  });
});
