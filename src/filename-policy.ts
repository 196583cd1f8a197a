// Which names in source_path may be taken, and under what name they are released. Samba users on Windows
// read the destination share, so a name must be one Windows can open, and every name must fit Linux's
// 255-byte limit for a path component. Pure functions: no file system access.
//
// Each component of the relative path is checked (directories too: `in/CON/a.txt` could not be opened
// from Windows either). Under the `rename` policy a component is repaired by these rules, in this order:
//   1. control characters (U+0000-U+001F, U+007F, newline included), the characters Windows forbids
//      (< > : " \ | ? *), bidirectional embedding/override/isolate controls (U+202A-U+202E,
//      U+2066-U+2069, which can make `invoice\u202Etxt.exe` display as `invoiceexe.txt`) and unpaired
//      UTF-16 surrogates each become `_`;
//   2. trailing dots and spaces are removed (Windows drops them, so `a.` and `a` would be one file);
//   3. a Windows device name (CON, PRN, AUX, NUL, COM0-9, LPT0-9, COM¹²³, LPT¹²³, CONIN$, CONOUT$, in
//      any case, with or without an extension) gets `_` after the device part: `nul.txt` -> `nul_.txt`;
//   4. a component longer than 255 bytes of UTF-8 is shortened at a character (grapheme) boundary,
//      keeping its extension when that is at most 32 bytes; trailing dots and spaces left at the cut
//      are removed;
//   5. a component that is left empty becomes `_`.
// Under the `reject` policy any of these problems refuses the file instead. Paths that no directory walk
// can produce (absolute, empty, `.` or `..` components) are always refused.
//
// Temporary names (uploads in progress that the client renames when done) are checked first, against the
// last component only; they are neither taken nor renamed.

import type { FilenameOptions, FilenamePolicyChoice } from './config.js';

/** Linux NAME_MAX, in bytes; NTFS allows 255 UTF-16 units, which is never fewer characters. */
export const MAX_NAME_BYTES = 255;
/** A longer "extension" is treated as part of the stem when shortening. */
const MAX_KEPT_EXTENSION_BYTES = 32;
const REPLACEMENT = '_';

export const DEFAULT_TEMPORARY_PATTERNS: readonly string[] = Object.freeze([
  '~$*', // Office owner files: ~$report.docx
  '*.tmp',
  '.~lock.*#', // LibreOffice lock files: .~lock.report.odt#
  '~*.tmp', // Word's working copies: ~WRL0001.tmp
]);

export type NameClassification =
  | { readonly kind: 'ok'; readonly releaseAs: string }
  /** An upload in progress: leave it in source_path; its writer will rename it. */
  | { readonly kind: 'temporary'; readonly pattern: string }
  | { readonly kind: 'rename'; readonly releaseAs: string; readonly reasons: readonly string[] }
  | { readonly kind: 'reject'; readonly reason: string };

/** The policy, with its patterns compiled once. Build it with compileFilenamePolicy. */
export interface FilenamePolicy {
  readonly policy: FilenamePolicyChoice;
  readonly temporary: readonly { readonly pattern: string; readonly regex: RegExp }[];
}

export function compileFilenamePolicy(options: FilenameOptions): FilenamePolicy {
  return Object.freeze({
    policy: options.policy,
    temporary: Object.freeze(options.temporaryPatterns.map((pattern) => Object.freeze({ pattern, regex: globToRegExp(pattern) }))),
  });
}

/**
 * What to do with the file at `relativePath` (relative to source_path, `/`-separated): take it under
 * the same name, leave it (temporary), take it under `releaseAs`, or refuse it. Never throws.
 */
export function classifyName(relativePath: string, policy: FilenamePolicy): NameClassification {
  const components = relativePath.split('/');
  const structural = structuralProblem(relativePath, components);
  if (structural !== null) return { kind: 'reject', reason: structural };

  const last = components[components.length - 1] ?? '';
  const temporary = policy.temporary.find((entry) => entry.regex.test(last));
  if (temporary !== undefined) return { kind: 'temporary', pattern: temporary.pattern };

  const repaired: string[] = [];
  const reasons: string[] = [];
  for (const component of components) {
    const result = repairComponent(component);
    repaired.push(result.name);
    reasons.push(...result.reasons);
  }
  if (reasons.length === 0) return { kind: 'ok', releaseAs: relativePath };
  if (policy.policy === 'reject') {
    return { kind: 'reject', reason: `the name cannot be stored safely on the destination share: ${reasons.join('; ')}` };
  }
  return { kind: 'rename', releaseAs: repaired.join('/'), reasons };
}

function structuralProblem(relativePath: string, components: readonly string[]): string | null {
  if (relativePath === '') return 'the path is empty';
  if (relativePath.startsWith('/')) return 'the path is absolute, not relative to source_path';
  for (const component of components) {
    if (component === '') return 'the path has an empty component (a doubled or trailing /)';
    if (component === '.' || component === '..') return `the path has a "${component}" component`;
  }
  return null;
}

// ---- the rules for one component ----

// Unpaired surrogates only: with the u flag a valid pair is one code point and does not match.
const UNSAFE_CHARACTERS = /[\u0000-\u001f\u007f<>:"\\|?*\u202a-\u202e\u2066-\u2069\ud800-\udfff]/gu;
const TRAILING_DOTS_AND_SPACES = /[. ]+$/;
const DEVICE_NAME = /^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³]|conin\$|conout\$) *(?:\.|$)/i;

export interface RepairedComponent {
  readonly name: string;
  /** Empty when the component needed nothing. */
  readonly reasons: readonly string[];
}

/** Applies rules 1-5 to one path component. */
export function repairComponent(component: string): RepairedComponent {
  const reasons: string[] = [];
  const shown = JSON.stringify(component);
  let name = component;

  const unsafe = [...name.matchAll(UNSAFE_CHARACTERS)].map((match) => match[0]);
  if (unsafe.length > 0) {
    reasons.push(`${shown} contains ${describeCharacters(unsafe)}`);
    name = name.replace(UNSAFE_CHARACTERS, REPLACEMENT);
  }
  if (TRAILING_DOTS_AND_SPACES.test(name)) {
    reasons.push(`${shown} ends with a dot or a space, which Windows drops`);
    name = name.replace(TRAILING_DOTS_AND_SPACES, '');
  }
  const device = deviceNameOf(name);
  if (device !== null) {
    reasons.push(`${shown} is the Windows device name ${device.toUpperCase()}`);
    name = withoutDeviceName(name, device);
  }
  if (Buffer.byteLength(name, 'utf8') > MAX_NAME_BYTES) {
    reasons.push(`${shown} is longer than ${MAX_NAME_BYTES} bytes${name === component ? '' : ' once repaired'}`);
    name = shortenName(name, MAX_NAME_BYTES);
    // A cut just after an enormous first character could leave a bare device name behind.
    const exposed = deviceNameOf(name);
    if (exposed !== null) name = withoutDeviceName(name, exposed);
  }
  if (name === '') {
    reasons.push(`${shown} is left empty`);
    name = REPLACEMENT;
  }
  return { name, reasons };
}

/** The device part (as written) when `name` is a Windows device name, with or without extension. */
function deviceNameOf(name: string): string | null {
  return DEVICE_NAME.exec(name)?.[1] ?? null;
}

function withoutDeviceName(name: string, device: string): string {
  return `${name.slice(0, device.length)}${REPLACEMENT}${name.slice(device.length)}`;
}

function describeCharacters(characters: readonly string[]): string {
  return [...new Set(characters)].map(describeCharacter).join(', ');
}

function describeCharacter(character: string): string {
  const code = character.codePointAt(0) ?? 0;
  const hex = `U+${code.toString(16).toUpperCase().padStart(4, '0')}`;
  if (code === 0x0a) return 'a newline';
  if (code < 0x20 || code === 0x7f) return `the control character ${hex}`;
  if (code >= 0xd800 && code <= 0xdfff) return `an unpaired surrogate ${hex} (not valid Unicode)`;
  if (code >= 0x202a) return `the bidirectional control ${hex}, which disguises the name`;
  return `"${character}", which Windows forbids`;
}

// ---- fitting a name into a byte budget ----

const graphemes = new Intl.Segmenter(undefined, { granularity: 'grapheme' });

/**
 * `name` cut to at most `maxBytes` of UTF-8 at a grapheme boundary (never inside a character), keeping
 * its extension where that is short. Trailing dots and spaces left at the cut are removed.
 */
export function shortenName(name: string, maxBytes: number = MAX_NAME_BYTES): string {
  return insertBeforeExtension(name, '', maxBytes);
}

/**
 * `name` with `insert` before its extension (`report.csv`, " (1)" -> `report (1).csv`), the stem
 * shortened so the result is at most `maxBytes` of UTF-8. Release can use it for collision names, which
 * must fit the same limit.
 */
export function insertBeforeExtension(name: string, insert: string, maxBytes: number = MAX_NAME_BYTES): string {
  const dot = name.lastIndexOf('.');
  let extension = dot > 0 ? name.slice(dot) : '';
  if (Buffer.byteLength(extension, 'utf8') > MAX_KEPT_EXTENSION_BYTES) extension = '';
  const stem = name.slice(0, name.length - extension.length);
  const budget = maxBytes - Buffer.byteLength(insert, 'utf8') - Buffer.byteLength(extension, 'utf8');
  if (Buffer.byteLength(stem, 'utf8') <= budget) return `${stem}${insert}${extension}`;
  let kept = cutToBytes(stem, budget).replace(TRAILING_DOTS_AND_SPACES, '');
  if (kept === '' && insert === '') kept = REPLACEMENT;
  return `${kept}${insert}${extension}`;
}

/** The longest prefix of `text` of at most `maxBytes` UTF-8 bytes that ends on a grapheme boundary. */
function cutToBytes(text: string, maxBytes: number): string {
  if (maxBytes <= 0) return '';
  let used = 0;
  let end = 0;
  for (const { segment, index } of graphemes.segment(text)) {
    const bytes = Buffer.byteLength(segment, 'utf8');
    if (used + bytes > maxBytes) {
      // A first grapheme larger than the whole budget (a long run of combining marks): cut between code points.
      if (end === 0) return cutCodePoints(text, maxBytes);
      break;
    }
    used += bytes;
    end = index + segment.length;
  }
  return text.slice(0, end);
}

function cutCodePoints(text: string, maxBytes: number): string {
  let used = 0;
  let end = 0;
  for (const character of text) {
    const bytes = Buffer.byteLength(character, 'utf8');
    if (used + bytes > maxBytes) break;
    used += bytes;
    end += character.length;
  }
  return text.slice(0, end);
}

// ---- temporary-name globs ----

/**
 * `*` any run of characters, `?` one character, `[abc]`, `[a-z]` and `[!abc]` one of (or none of) a set;
 * everything else is literal. Matching is case-insensitive, over the whole name. Throws on a pattern
 * globProblem() refuses.
 */
export function globToRegExp(pattern: string): RegExp {
  const problem = globProblem(pattern);
  if (problem !== null) throw new Error(`invalid pattern ${JSON.stringify(pattern)}: ${problem}`);
  let source = '';
  for (let index = 0; index < pattern.length; index++) {
    const character = pattern[index] ?? '';
    if (character === '*') {
      source += '.*';
    } else if (character === '?') {
      source += '.';
    } else if (character === '[') {
      const negated = pattern[index + 1] === '!';
      const firstMember = negated ? index + 2 : index + 1;
      // `]` right after `[` or `[!` is a member of the set, as in shell globs.
      const close = pattern.indexOf(']', firstMember + 1);
      const members = pattern.slice(firstMember, close);
      source += `[${negated ? '^' : ''}${members.replace(/[\\\]^[]/g, '\\$&')}]`;
      index = close;
    } else {
      // Only syntax characters may be escaped in a u-flag regex.
      source += character.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
    }
  }
  return new RegExp(`^${source}$`, 'isu');
}

/** Why `pattern` is not a usable temporary-name glob, or null. Config validation uses it. */
export function globProblem(pattern: string): string | null {
  if (pattern === '') return 'it is empty';
  if (pattern.includes('/')) return 'it contains "/"; patterns match the file name alone, not its directory';
  for (let index = 0; index < pattern.length; index++) {
    if (pattern[index] !== '[') continue;
    const firstMember = pattern[index + 1] === '!' ? index + 2 : index + 1;
    const close = pattern.indexOf(']', firstMember + 1);
    if (close === -1) return `the "[" at position ${index + 1} is never closed by "]"`;
    index = close;
  }
  return null;
}
