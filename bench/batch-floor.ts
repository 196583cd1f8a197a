// A second reference for the small-file benchmark, beside durable-floor.ts: the same durable steps, done in
// lockstep batches. Each step runs for every file of a batch before the next step, and one flush serves the
// whole batch (the addon's batched fsync of every copy, the journal and the directories). It runs twice per
// round: bare, and with the daemon's own components doing their part for each file:
//   log       the logger, with the two info lines a file gets (quarantined, released)
//   audit     the audit log, with a file's four records (detected, quarantined, scanned, released)
//   watch     the tree watcher on source_path and destination_path, with an lstat per event, as the
//             pipeline and the permission enforcer make
//   acl       the released file's access ACL, set from the destination's default ACL
//   scanner   ClamdScanner (descriptor passing in sessions, the hash beside it) instead of one raw session
//             per batch
// The difference between the two rows is what those components cost in a design built around batches.
//
//   npm run bench:batch-floor
//
// Environment:
//   BENCH_ROUNDS      rounds (default 2); each runs the baseline, the bare floor and the floor with components
//   BENCH_BATCH       files per batch (default 64)
//   BENCH_COMPONENTS  which components the second row uses, comma-separated (default: all of the above)

import { randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import fs from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { AuditLog } from '../src/audit.js';
import { createLogger, flushLogger } from '../src/logger.js';
import type { AclEntry } from '../src/native.js';
import { ClamdScanner, sessionDescriptorPasser } from '../src/scanners/clamd.js';
import { watchTree, type TreeWatcher } from '../src/tree-watch.js';
import { Zone } from '../src/zone.js';
import { runBaselineIn } from './baseline.js';
import { startClamd, type BenchClamd } from './clamd.js';
import { describeFilesystem } from './filesystem.js';
import { native, openLeasedSource, sha256 } from './floor-steps.js';
import { fixed } from './report.js';
import { dropFiles, stageFiles, type Workload } from './workload.js';

const WORKLOAD: Workload = { name: 'small', count: 2000, size: 4 * 1024 };
const SCAN_TIMEOUT_MS = 30_000;
const COMPONENTS = ['log', 'audit', 'watch', 'acl', 'scanner'] as const;
type Component = (typeof COMPONENTS)[number];
/** The group named in the destination's default ACL: `users` on Debian. */
const SHARE_GROUP_ID = 100;
const { O_RDONLY, O_RDWR, O_CREAT, O_EXCL, O_NOFOLLOW, O_DIRECTORY } = fs.constants;

interface Taken {
  readonly name: string;
  readonly id: string;
  readonly sourcePath: string;
  readonly quarantinePath: string;
  readonly source: number;
  readonly copy: number;
  readonly sha256: string;
}

function entry(tag: AclEntry['tag'], execute: boolean, id?: number): AclEntry {
  return { tag, read: true, write: true, execute, ...(id === undefined ? {} : { id }) };
}

/** fsync of every descriptor in one job of the addon; throws the first failure. */
async function flush(fds: readonly number[]): Promise<void> {
  const failure = (await native.syncDescriptors(fds)).find((outcome) => outcome !== null);
  if (failure) throw failure;
}

async function runFloor(runDir: string, clamd: BenchClamd, batchSize: number, components: ReadonlySet<Component>): Promise<{ wallSeconds: number; cpuSeconds: number }> {
  const dirs = { staging: path.join(runDir, 'staging'), source: path.join(runDir, 'in'), quarantine: path.join(runDir, 'quarantine'), destination: path.join(runDir, 'out'), log: path.join(runDir, 'log') };
  for (const directory of Object.values(dirs)) await mkdir(directory, { recursive: true });
  const names = stageFiles(WORKLOAD, dirs.staging, path.basename(runDir));
  const directoryFd = (directory: string): number => fs.openSync(directory, O_RDONLY | O_DIRECTORY);
  const sourceFd = directoryFd(dirs.source);
  const quarantineFd = directoryFd(dirs.quarantine);
  const destinationFd = directoryFd(dirs.destination);
  const journal = fs.openSync(path.join(runDir, 'journal'), 'a', 0o600);
  const plainAudit = fs.openSync(path.join(runDir, 'audit'), 'a', 0o600);

  const logger = createLogger({ level: components.has('log') ? 'info' : 'warn', logDir: dirs.log, consoleStream: fs.createWriteStream('/dev/null') });
  const audit = components.has('audit') ? await AuditLog.open(new Zone([dirs.log]), dirs.log, logger) : null;
  let watcher: TreeWatcher | null = null;
  if (components.has('watch')) {
    watcher = watchTree([dirs.source, dirs.destination]);
    watcher.on('add', (added: string) => fs.lstatSync(added, { throwIfNoEntry: false }));
    await new Promise<void>((resolve) => watcher?.once('ready', () => resolve()));
  }
  let releasedAcl: AclEntry[] | null = null;
  if (components.has('acl')) {
    native.setAclSync(dirs.destination, 'default', [entry('user_obj', true), entry('group_obj', true), entry('group', true, SHARE_GROUP_ID), entry('mask', true), { tag: 'other', read: false, write: false, execute: false }]);
    releasedAcl = native.getAclSync(dirs.destination, 'default').map((each) => ({ ...each, execute: false }));
  }
  const scanner = components.has('scanner')
    ? new ClamdScanner({ endpoint: { kind: 'unix', socket: clamd.socketPath }, fdpass: true, timeoutMs: SCAN_TIMEOUT_MS, maxFileSize: 200 * 1024 * 1024 }, sessionDescriptorPasser(native))
    : null;
  const scanning = new AbortController();
  // Every scan of a batch listens to it at once, as every scan in flight listens to the daemon's.
  setMaxListeners(2 * batchSize, scanning.signal);
  const buffer = Buffer.allocUnsafe(WORKLOAD.size + 1);

  const takeBatch = async (batch: readonly string[]): Promise<Taken[]> => {
    const taken: Taken[] = [];
    let journalLines = '';
    let auditLines = '';
    for (const name of batch) {
      const sourcePath = path.join(dirs.source, name);
      const source = openLeasedSource(sourcePath);
      const id = randomUUID();
      const quarantinePath = path.join(dirs.quarantine, `${id}.data`);
      const copy = fs.openSync(quarantinePath, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
      const size = fs.readSync(source, buffer, 0, buffer.length, 0);
      const digest = sha256(buffer.subarray(0, size));
      fs.writeSync(copy, buffer, 0, size, 0);
      taken.push({ name, id, sourcePath, quarantinePath, source, copy, sha256: digest });
      journalLines += `${JSON.stringify({ op: 'item', id, name, sha256: digest, size })}\n`;
      if (audit === null) auditLines += `${JSON.stringify({ event: 'quarantined', id, sha256: digest })}\n`;
    }
    fs.writeSync(journal, journalLines);
    if (auditLines !== '') fs.writeSync(plainAudit, auditLines);
    await flush([...taken.map((file) => file.copy), quarantineFd, journal, plainAudit]);
    if (audit !== null) {
      await Promise.all(
        taken.flatMap((file) => [
          audit.append({ event: 'detected', path: file.name }),
          audit.append({ event: 'quarantined', id: file.id, path: file.name, sha256: file.sha256, size: WORKLOAD.size, uploader: { uid: 0, name: 'root' } }),
        ]),
      );
    }
    for (const file of taken) {
      native.setLease(file.source, 'none');
      fs.closeSync(file.source);
      fs.unlinkSync(file.sourcePath);
      logger.info('quarantined', { path: file.sourcePath, id: file.id, sha256: file.sha256, size: WORKLOAD.size });
    }
    return taken;
  };

  const scanBatch = async (taken: readonly Taken[]): Promise<void> => {
    if (scanner === null) {
      const replies = await native.clamdScanDescriptors(clamd.socketPath, taken.map((file) => file.copy), SCAN_TIMEOUT_MS);
      const unclean = replies.find((reply) => typeof reply !== 'string' || !reply.endsWith(' OK'));
      if (unclean !== undefined) throw new Error(`clamd answered '${String(unclean)}'`);
      return;
    }
    const reports = await Promise.all(taken.map((file) => scanner.scan({ path: file.quarantinePath, size: WORKLOAD.size, sha256: file.sha256 }, scanning.signal)));
    const unclean = reports.find((report) => report.verdict.kind !== 'clean');
    if (unclean !== undefined) throw new Error(`clamd: ${JSON.stringify(unclean.verdict)}`);
    if (audit !== null) await Promise.all(taken.map((file) => audit.append({ event: 'scanned', id: file.id, verdict: 'clean', scanners: [] })));
  };

  const releaseBatch = async (taken: readonly Taken[]): Promise<void> => {
    let journalLines = '';
    let auditLines = '';
    for (const file of taken) {
      const temporary = path.join(dirs.destination, `.${file.id}.tmp`);
      fs.renameSync(file.quarantinePath, temporary);
      fs.fchmodSync(file.copy, 0o660);
      if (releasedAcl !== null) native.setAclSync(temporary, 'access', releasedAcl);
      const size = fs.readSync(file.copy, buffer, 0, buffer.length, 0);
      if (sha256(buffer.subarray(0, size)) !== file.sha256) throw new Error(`${file.name}: released bytes differ from the intake`);
      const finalPath = path.join(dirs.destination, file.name);
      fs.linkSync(temporary, finalPath);
      fs.unlinkSync(temporary);
      logger.info('released', { id: file.id, path: finalPath, sha256: file.sha256, size: WORKLOAD.size });
      journalLines += `${JSON.stringify({ op: 'released', id: file.id })}\n`;
      if (audit === null) auditLines += `${JSON.stringify({ event: 'released', id: file.id })}\n`;
    }
    if (audit !== null) await Promise.all(taken.map((file) => audit.append({ event: 'released', id: file.id, path: file.name, requestedPath: file.name, renamed: false })));
    fs.writeSync(journal, journalLines);
    if (auditLines !== '') fs.writeSync(plainAudit, auditLines);
    await flush([destinationFd, sourceFd, journal, plainAudit]);
    for (const file of taken) fs.closeSync(file.copy);
  };

  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  dropFiles(names, dirs.staging, dirs.source);
  const queue = fs.readdirSync(dirs.source);
  for (let first = 0; first < queue.length; first += batchSize) {
    const taken = await takeBatch(queue.slice(first, first + batchSize));
    await scanBatch(taken);
    await releaseBatch(taken);
  }
  const wallSeconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  await watcher?.close();
  await audit?.close();
  await flushLogger(logger);
  for (const fd of [sourceFd, quarantineFd, destinationFd, journal, plainAudit]) fs.closeSync(fd);
  const released = fs.readdirSync(dirs.destination).length;
  if (released !== names.length) throw new Error(`the floor released ${released} of ${names.length} files`);
  return { wallSeconds, cpuSeconds: (cpu.user + cpu.system) / 1e6 };
}

function log(message: string): void {
  process.stderr.write(`${message}\n`);
}

function readComponents(text: string | undefined): Set<Component> {
  if (text === undefined || text === '') return new Set(COMPONENTS);
  const chosen = text.split(',').map((name) => name.trim());
  for (const name of chosen) {
    if (!(COMPONENTS as readonly string[]).includes(name)) throw new Error(`BENCH_COMPONENTS: unknown ${name} (choose from ${COMPONENTS.join(', ')})`);
  }
  return new Set(chosen as Component[]);
}

async function main(): Promise<void> {
  const rounds = Number(process.env.BENCH_ROUNDS ?? 2);
  const batchSize = Number(process.env.BENCH_BATCH ?? 64);
  for (const [name, value] of [['BENCH_ROUNDS', rounds], ['BENCH_BATCH', batchSize]] as const) {
    if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive integer`);
  }
  const components = readComponents(process.env.BENCH_COMPONENTS);
  const root = await mkdtemp(path.join(os.tmpdir(), 'shuttle-batch-floor-'));
  process.on('exit', () => fs.rmSync(root, { recursive: true, force: true }));
  let clamd: BenchClamd | null = null;
  try {
    clamd = await startClamd(path.join(root, 'clamd'), 12);
    log(`batch floor: ${rounds} round(s) of ${WORKLOAD.count} files of ${WORKLOAD.size / 1024} KiB in batches of ${batchSize}; components: ${[...components].join(', ')}; working in ${root}: ${describeFilesystem(root)}`);
    const rows: Array<{ round: number; baseline: number; bare: { wallSeconds: number; cpuSeconds: number }; full: { wallSeconds: number; cpuSeconds: number } }> = [];
    for (let round = 1; round <= rounds; round++) {
      const baseline = await runBaselineIn(root, `baseline-${round}`, WORKLOAD, clamd);
      const bare = await runFloor(path.join(root, `bare-${round}`), clamd, batchSize, new Set());
      await rm(path.join(root, `bare-${round}`), { recursive: true, force: true });
      const full = await runFloor(path.join(root, `components-${round}`), clamd, batchSize, components);
      await rm(path.join(root, `components-${round}`), { recursive: true, force: true });
      rows.push({ round, baseline: baseline.wallSeconds, bare, full });
      log(`round ${round}: baseline ${fixed(baseline.wallSeconds, 2)} s, bare ${fixed(bare.wallSeconds, 2)} s, with components ${fixed(full.wallSeconds, 2)} s`);
    }
    process.stdout.write('\nround  baseline s  bare s  bare CPU s  bare/baseline  components s  components CPU s  components/baseline\n');
    for (const { round, baseline, bare, full } of rows) {
      process.stdout.write(
        `${String(round).padEnd(7)}${fixed(baseline, 2).padEnd(12)}${fixed(bare.wallSeconds, 2).padEnd(8)}${fixed(bare.cpuSeconds, 2).padEnd(12)}${fixed(bare.wallSeconds / baseline, 2).padEnd(15)}` +
          `${fixed(full.wallSeconds, 2).padEnd(14)}${fixed(full.cpuSeconds, 2).padEnd(18)}${fixed(full.wallSeconds / baseline, 2)}\n`,
      );
    }
  } finally {
    await clamd?.stop();
    await rm(root, { recursive: true, force: true });
  }
}

await main().catch((error: unknown) => {
  log(`bench:batch-floor failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  process.exitCode = 2;
});
