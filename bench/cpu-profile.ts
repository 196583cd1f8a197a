// Summarise a V8 .cpuprofile (from `BENCH_CPU_PROF=dir npm run bench`): where the daemon's main thread spends
// its time, by function, as self time and as inclusive time.
//
//   node dist/bench/cpu-profile.js FILE.cpuprofile [TOP]

import { readFileSync } from 'node:fs';
import path from 'node:path';

interface ProfileNode {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
  readonly children?: readonly number[];
}

interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

function label(node: ProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame;
  const where = url === '' ? '' : ` ${shortUrl(url)}:${lineNumber + 1}`;
  return `${functionName === '' ? '(anonymous)' : functionName}${where}`;
}

function shortUrl(url: string): string {
  const file = url.replace(/^file:\/\//, '');
  const nodeModules = file.lastIndexOf('node_modules/');
  if (nodeModules !== -1) return file.slice(nodeModules + 'node_modules/'.length);
  const dist = file.lastIndexOf('/dist/');
  if (dist !== -1) return file.slice(dist + 1);
  return file.startsWith('node:') ? file : path.basename(file);
}

export function summarize(profile: CpuProfile, top: number): string {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfUs = new Map<number, number>();
  profile.samples.forEach((id, index) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[index] ?? 0)));

  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);

  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  for (const [id, micros] of selfUs) {
    const node = byId.get(id);
    if (node === undefined) continue;
    self.set(label(node), (self.get(label(node)) ?? 0) + micros);
    // Each sample counts once for every distinct function on its stack.
    const onStack = new Set<string>();
    for (let current: number | undefined = id; current !== undefined; current = parent.get(current)) {
      const frame = byId.get(current);
      if (frame !== undefined) onStack.add(label(frame));
    }
    for (const name of onStack) inclusive.set(name, (inclusive.get(name) ?? 0) + micros);
  }

  const totalUs = profile.endTime - profile.startTime;
  const idleUs = [...self.entries()].filter(([name]) => name.startsWith('(idle)')).reduce((sum, [, micros]) => sum + micros, 0);
  const rows = (table: Map<string, number>): string[] =>
    [...table.entries()]
      .filter(([name]) => !name.startsWith('(idle)') && !name.startsWith('(root)'))
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, micros]) => `${(micros / 1000).toFixed(0).padStart(8)} ms ${((micros / totalUs) * 100).toFixed(1).padStart(5)}%  ${name}`);
  return [
    `profile: ${(totalUs / 1e6).toFixed(2)} s, main thread busy ${((totalUs - idleUs) / 1e6).toFixed(2)} s`,
    '',
    'self time:',
    ...rows(self),
    '',
    'inclusive time:',
    ...rows(inclusive),
  ].join('\n');
}

const [file, topText] = process.argv.slice(2);
if (file === undefined) {
  process.stderr.write('usage: node dist/bench/cpu-profile.js FILE.cpuprofile [TOP]\n');
  process.exitCode = 2;
} else {
  process.stdout.write(`${summarize(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile, Number(topText ?? 25))}\n`);
}
