// The shell baseline: the least a script could do for the same batch, with the same clamd. Copy into
// quarantine, remove the sources, hash, scan the quarantine directory with clamdscan (descriptor passing,
// multiscan), move into the destination, sync. No journal, no per-file fsync, no checks: what the daemon
// costs on top of this is the price of its guarantees.

import { spawn } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { BenchClamd } from './clamd.js';
import { dropFiles, stageFiles, type Workload } from './workload.js';

const SCRIPT = String.raw`
set -euo pipefail
source_dir=$1 quarantine=$2 destination=$3 clamd_conf=$4 hashes=$5
cd "$source_dir"
cp -- * "$quarantine"/
rm -f -- *
cd "$quarantine"
sha256sum -- * > "$hashes"
clamdscan --config-file="$clamd_conf" --fdpass -m --no-summary "$quarantine"
mv -- "$quarantine"/* "$destination"/
sync
times
`;

export interface BaselineResult {
  readonly wallSeconds: number;
  /** CPU seconds of the commands the script ran (cp, sha256sum, clamdscan, mv, sync), user + system. */
  readonly commandCpuSeconds: number;
}

export interface BaselinePaths {
  readonly source: string;
  readonly quarantine: string;
  readonly destination: string;
  readonly clamdConf: string;
  readonly hashes: string;
}

export async function runBaseline(paths: BaselinePaths): Promise<BaselineResult> {
  const started = performance.now();
  const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn('bash', ['-c', SCRIPT, 'baseline', paths.source, paths.quarantine, paths.destination, paths.clamdConf, paths.hashes], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => (out += text));
    child.stderr.setEncoding('utf8').on('data', (text: string) => (err += text));
    child.once('error', reject);
    child.once('exit', (exitCode) => resolve({ code: exitCode, stdout: out, stderr: err }));
  });
  const wallSeconds = (performance.now() - started) / 1000;
  if (code !== 0) throw new Error(`baseline script failed (exit ${code}):\n${stderr.slice(-2000)}\n${stdout.slice(-2000)}`);
  return { wallSeconds, commandCpuSeconds: childrenCpu(stdout) };
}

/** The second line of bash's `times` is the children's user and system time, e.g. "0m1.234s 0m0.567s". */
function childrenCpu(output: string): number {
  const lines = output.trim().split('\n');
  const children = lines[lines.length - 1] ?? '';
  let total = 0;
  for (const match of children.matchAll(/(\d+)m([\d.]+)s/g)) total += Number(match[1]) * 60 + Number(match[2]);
  return total;
}

/** One baseline run on `workload`, staged and dropped in a directory of its own under `root`, removed afterwards. */
export async function runBaselineIn(root: string, tag: string, workload: Workload, clamd: BenchClamd): Promise<BaselineResult> {
  const directory = path.join(root, tag);
  const paths = { staging: path.join(directory, 'staging'), source: path.join(directory, 'in'), quarantine: path.join(directory, 'quarantine'), destination: path.join(directory, 'out') };
  for (const each of Object.values(paths)) await mkdir(each, { recursive: true });
  dropFiles(stageFiles(workload, paths.staging, tag), paths.staging, paths.source);
  try {
    return await runBaseline({ ...paths, clamdConf: clamd.conf, hashes: path.join(directory, 'sha256sums') });
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}
