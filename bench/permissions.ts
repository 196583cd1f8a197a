// verify-permissions over a large tree: the addon backend and the getfacl/setfacl backend, each run as
// the real command (`node bin/shuttle.js verify-permissions`), against `getfacl -R -p` on the same tree
// in the same run. Target: the addon within 1.5x of getfacl -R.
//
// The tree: source_path holds DIRS directories of FILES files each (100 × 1000 by default; set
// SHUTTLE_BENCH_DIRS / SHUTTLE_BENCH_FILES), every directory setgid 2770 with a named access entry and a
// default ACL, every file inheriting it. Two layouts: the shipped model's default ACL (no named entries:
// files carry no extended ACL) and one whose default ACL names a group (every file carries one).
// Accounts: the current user and its primary group; named entries use a numeric gid, so no account
// needs creating. Run as root or not; the tree lives under the system temp directory.

import { execFileSync, spawn } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SHUTTLE_BIN = path.join(REPO_ROOT, 'bin/shuttle.js');
const DIRECTORIES = Number(process.env.SHUTTLE_BENCH_DIRS ?? 100);
const FILES_PER_DIRECTORY = Number(process.env.SHUTTLE_BENCH_FILES ?? 1000);
const RUNS = Number(process.env.SHUTTLE_BENCH_RUNS ?? 3);
/** A gid for named ACL entries; it needs no account. */
const NAMED_GID = 64_999;

interface Layout {
  readonly name: string;
  readonly defaultAcl: readonly string[];
}

const LAYOUTS: readonly Layout[] = [
  { name: 'shipped model (files without extended ACL)', defaultAcl: ['user::rw-', 'group::rw-', 'other::---'] },
  { name: 'named default entry (every file has an extended ACL)', defaultAcl: ['user::rw-', 'group::rw-', `group:${NAMED_GID}:r--`, 'other::---'] },
];

function currentAccounts(): { user: string; group: string } {
  const user = os.userInfo().username;
  const group = execFileSync('id', ['-gn'], { encoding: 'utf8' }).trim();
  return { user, group };
}

function buildTree(root: string, layout: Layout): string {
  const { user, group } = currentAccounts();
  const directories = Object.fromEntries(['in', 'out', 'quarantine', 'hazard', 'log', 'etc'].map((name) => [name, path.join(root, name)]));
  for (const directory of Object.values(directories)) {
    mkdirSync(directory, { recursive: true });
    execFileSync('chmod', ['2770', directory]);
  }
  const source = directories.in as string;
  execFileSync('setfacl', ['-m', `group:${NAMED_GID}:rwX`, source]);
  execFileSync('setfacl', ['-d', '--set', layout.defaultAcl.join(','), source]);
  // New directories inherit the default ACL as both their access and default ACL; set the access
  // ACL and mode that the model wants on each.
  for (let d = 0; d < DIRECTORIES; d++) {
    const directory = path.join(source, `dir-${String(d).padStart(4, '0')}`);
    mkdirSync(directory);
    for (let f = 0; f < FILES_PER_DIRECTORY; f++) writeFileSync(path.join(directory, `file-${f}.csv`), '', { mode: 0o660 });
  }
  execFileSync('find', [source, '-mindepth', '1', '-type', 'd', '-exec', 'setfacl', '--set', `user::rwx,group::rwx,group:${NAMED_GID}:rwx,other::---`, '{}', '+']);
  execFileSync('find', [source, '-mindepth', '1', '-type', 'd', '-exec', 'chmod', '2770', '{}', '+']);
  execFileSync('find', [source, '-mindepth', '1', '-type', 'd', '-exec', 'setfacl', '-d', '--set', layout.defaultAcl.join(','), '{}', '+']);
  for (const file of ['key', 'ledger']) writeFileSync(path.join(directories.etc as string, file), '', { mode: 0o640 });

  const spec = (mode: string, extra = ''): string => `{ owner: ${user}, group: ${group}, mode: "${mode}"${extra} }`;
  const config = path.join(root, 'shuttle.yaml');
  const sourceSpec = spec('2770', `, acl: ["group:${NAMED_GID}:rwX"], default_acl: [${layout.defaultAcl.map((e) => `"${e}"`).join(', ')}]`);
  writeFileSync(
    config,
    [
      'paths:',
      `  source_path: ${directories.in}`,
      `  destination_path: ${directories.out}`,
      `  quarantine_path: ${directories.quarantine}`,
      `  hazard_archive_path: ${directories.hazard}`,
      `  log_path: ${directories.log}`,
      `  hazard_encryption_key_path: ${path.join(directories.etc as string, 'key')}`,
      `  ledger_file_path: ${path.join(directories.etc as string, 'ledger')}`,
      'scanners:',
      '  clamd: { socket: /run/clamav/clamd.ctl }',
      'permissions:',
      `  source_path: ${sourceSpec}`,
      `  destination_path: ${spec('2770')}`,
      `  quarantine_path: ${spec('2770')}`,
      `  hazard_archive_path: ${spec('2770')}`,
      `  log_path: ${spec('2770')}`,
      `  hazard_encryption_key_path: ${spec('0640')}`,
      `  ledger_file_path: ${spec('0640')}`,
      '',
    ].join('\n'),
  );
  return config;
}

function withBackend(config: string, backend: 'native' | 'setfacl'): string {
  const file = config.replace(/\.yaml$/, `.${backend}.yaml`);
  writeFileSync(file, `${execFileSync('cat', [config], { encoding: 'utf8' })}permissions_backend: ${backend}\n`);
  return file;
}

/** Wall time of one command, output discarded; throws unless its exit status is `expectedStatus`. */
function timeCommand(command: string, args: readonly string[], expectedStatus = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    const devNull = openSync('/dev/null', 'w');
    const started = performance.now();
    const child = spawn(command, [...args], { stdio: ['ignore', devNull, 'pipe'] });
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    child.once('error', reject);
    child.once('exit', (status) => {
      closeSync(devNull);
      const seconds = (performance.now() - started) / 1000;
      if (status !== expectedStatus) reject(new Error(`${command} ${args.join(' ')}: exit status ${status}\n${stderr.slice(-2000)}`));
      else resolve(seconds);
    });
  });
}

async function median(runs: number, measure: () => Promise<number>): Promise<number> {
  const times: number[] = [];
  for (let run = 0; run < runs; run++) times.push(await measure());
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)] as number;
}

async function benchLayout(layout: Layout): Promise<void> {
  const root = mkdtempSync(path.join(os.tmpdir(), 'shuttle-bench-permissions-'));
  try {
    const built = performance.now();
    const config = buildTree(root, layout);
    const entries = DIRECTORIES * (FILES_PER_DIRECTORY + 1);
    console.log(`\n${layout.name}: ${entries.toLocaleString('en-US')} entries built in ${((performance.now() - built) / 1000).toFixed(1)} s`);

    const source = path.join(root, 'in');
    // Warm the dentry and inode caches so that the first contender does not pay for the others.
    await timeCommand('getfacl', ['-R', '-p', source]);
    const getfacl = await median(RUNS, () => timeCommand('getfacl', ['-R', '-p', source]));
    // For reference: getfacl without name lookups, which is what verify-permissions does too.
    const getfaclNumeric = await median(RUNS, () => timeCommand('getfacl', ['-R', '-p', '-n', source]));
    const native = await median(RUNS, () => timeCommand(process.execPath, [SHUTTLE_BIN, 'verify-permissions', '--config', withBackend(config, 'native')]));
    const setfacl = await median(RUNS, () => timeCommand(process.execPath, [SHUTTLE_BIN, 'verify-permissions', '--config', withBackend(config, 'setfacl')]));

    const row = (name: string, seconds: number): string =>
      `  ${name.padEnd(34)} ${seconds.toFixed(3).padStart(8)} s   ${(seconds / getfacl).toFixed(2).padStart(6)}x getfacl -R`;
    console.log(row('getfacl -R -p > /dev/null', getfacl));
    console.log(row('getfacl -R -p -n > /dev/null', getfaclNumeric));
    console.log(row('verify-permissions, addon', native));
    console.log(row('verify-permissions, getfacl/setfacl', setfacl));
    const ratio = native / getfacl;
    console.log(`  addon/getfacl ${ratio.toFixed(2)}, setfacl/getfacl ${(setfacl / getfacl).toFixed(2)}; target addon within 1.50x: ${ratio <= 1.5 ? 'met' : 'MISSED'}`);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

console.log(`verify-permissions benchmark: ${DIRECTORIES} directories x ${FILES_PER_DIRECTORY} files, median of ${RUNS} runs, ${os.cpus().length} CPUs`);
for (const layout of LAYOUTS) await benchLayout(layout);
