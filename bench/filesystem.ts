// Which filesystem the benchmark runs on, for its report: the figures depend on it (see README).

import { existsSync, readdirSync, readFileSync, realpathSync } from 'node:fs';
import path from 'node:path';

/** e.g. "ext4 on /dev/vda (mounted at /), no journal". */
export function describeFilesystem(directory: string): string {
  const target = realpathSync(directory);
  let best: { mountPoint: string; type: string; source: string } | null = null;
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    // id parent major:minor root mount-point options [optional fields] - type source super-options
    const [before, after] = line.split(' - ');
    if (before === undefined || after === undefined) continue;
    const mountPoint = unescapeMountPath(before.split(' ')[4] ?? '');
    const [type = '?', source = '?'] = after.split(' ');
    const inside = target === mountPoint || target.startsWith(mountPoint.endsWith('/') ? mountPoint : `${mountPoint}/`);
    if (inside && (best === null || mountPoint.length >= best.mountPoint.length)) best = { mountPoint, type, source };
  }
  if (best === null) return 'unknown';
  let text = `${best.type} on ${best.source} (mounted at ${best.mountPoint})`;
  if (best.type === 'ext4') text += hasJournal(best.source) ? ', with a journal' : ', no journal';
  return text;
}

/** jbd2 lists a journal as /proc/fs/jbd2/<device>-<inode>, e.g. "vda-8" or "loop0-8". */
function hasJournal(source: string): boolean {
  const device = path.basename(source);
  if (!existsSync('/proc/fs/jbd2')) return false;
  return readdirSync('/proc/fs/jbd2').some((entry) => entry.startsWith(`${device}-`));
}

/** mountinfo escapes space, tab, newline and backslash as octal. */
function unescapeMountPath(text: string): string {
  return text.replace(/\\([0-7]{3})/g, (_match, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}
