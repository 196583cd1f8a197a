// A reference for the small-file benchmark, not a target: the least a program can do per file and still keep
// the invariants' durability, against the same shell baseline, with the same clamd. It has none of the
// daemon's watcher, limits, permissions, logging or crash recovery; it opens the source without following
// links, holds a read lease, copies and hashes into quarantine, fsyncs, records the intake in a journal,
// removes the source, scans by descriptor, records the verdict in an audit log, renames into destination,
// checks the hash, publishes with link(2) and records the release. Every record shares its flush with the
// records made meanwhile, and so does every directory fsync.
//
//   npm run bench:floor
//
// Environment:
//   BENCH_ROUNDS        rounds (default 2); each runs the baseline, then the floor with and without fsyncs
//   BENCH_IN_FLIGHT     files in flight in the floor (default 64)
//   UV_THREADPOOL_SIZE  libuv's thread pool, where every fsync waits. `npm run bench:floor` and
//                       scripts/bench-on-fresh-fs.sh set 16, as bin/shuttle.js does for the daemon; it cannot be
//                       set from here, because loading this module has already started the pool. With Node's
//                       default of 4, at most four fsyncs wait at once and the floor is slower.
//
// The "without fsync" row does the same steps with every fsync and fdatasync left out: the difference to
// the durable row is what the flushes cost on this filesystem.

import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { runBaselineIn } from './baseline.js';
import { startClamd, type BenchClamd } from './clamd.js';
import { describeFilesystem } from './filesystem.js';
import { native, openLeasedSource, sha256 } from './floor-steps.js';
import { fixed } from './report.js';
import { dropFiles, stageFiles, type Workload } from './workload.js';

const WORKLOAD: Workload = { name: 'small', count: 2000, size: 4 * 1024 };
const SCAN_TIMEOUT_MS = 30_000;
const fsyncAsync = promisify(fs.fsync);
const fdatasyncAsync = promisify(fs.fdatasync);
const openAsync = promisify(fs.open);
const closeAsync = promisify(fs.close);

interface Flushes {
  file(fd: number): Promise<void>;
  data(fd: number): Promise<void>;
}

const DURABLE: Flushes = { file: fsyncAsync, data: fdatasyncAsync };
const NO_FLUSH: Flushes = { file: async () => undefined, data: async () => undefined };

/** Lines appended while a flush runs wait for the next one, together. */
class GroupCommitLog {
  private readonly fd: number;
  private lines: string[] = [];
  private waiters: Array<() => void> = [];
  private flushing = false;

  constructor(
    file: string,
    private readonly flushes: Flushes,
  ) {
    this.fd = fs.openSync(file, 'a', 0o600);
  }

  append(record: object): Promise<void> {
    return new Promise((resolve) => {
      this.lines.push(`${JSON.stringify(record)}\n`);
      this.waiters.push(resolve);
      if (!this.flushing) void this.flushLoop();
    });
  }

  close(): void {
    fs.closeSync(this.fd);
  }

  private async flushLoop(): Promise<void> {
    this.flushing = true;
    while (this.lines.length > 0) {
      const text = this.lines.join('');
      const waiters = this.waiters;
      this.lines = [];
      this.waiters = [];
      fs.writeSync(this.fd, text);
      await this.flushes.data(this.fd);
      for (const resolve of waiters) resolve();
    }
    this.flushing = false;
  }
}

/** A directory's fsync, shared by every caller that asks while one is running plus one more round. */
class SharedDirectorySync {
  private readonly fd: number;
  private running: Promise<void> | null = null;
  private next: Promise<void> | null = null;

  constructor(
    directory: string,
    private readonly flushes: Flushes,
  ) {
    this.fd = fs.openSync(directory, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  }

  sync(): Promise<void> {
    if (this.running === null) {
      this.running = this.flushes.file(this.fd).finally(() => {
        this.running = null;
      });
      return this.running;
    }
    this.next ??= this.running.then(() => {
      this.next = null;
      return this.sync();
    });
    return this.next;
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}

async function runFloor(runDir: string, clamd: BenchClamd, flushes: Flushes, inFlight: number, tag: string): Promise<{ wallSeconds: number; cpuSeconds: number }> {
  const dirs = { staging: path.join(runDir, 'staging'), source: path.join(runDir, 'in'), quarantine: path.join(runDir, 'quarantine'), destination: path.join(runDir, 'out') };
  for (const directory of Object.values(dirs)) await mkdir(directory, { recursive: true });
  const names = stageFiles(WORKLOAD, dirs.staging, tag);
  const journal = new GroupCommitLog(path.join(runDir, 'journal'), flushes);
  const audit = new GroupCommitLog(path.join(runDir, 'audit'), flushes);
  const sourceSync = new SharedDirectorySync(dirs.source, flushes);
  const quarantineSync = new SharedDirectorySync(dirs.quarantine, flushes);
  const destinationSync = new SharedDirectorySync(dirs.destination, flushes);
  const { O_RDWR, O_CREAT, O_EXCL, O_NOFOLLOW } = fs.constants;

  const moveOne = async (name: string, buffer: Buffer): Promise<void> => {
    const sourcePath = path.join(dirs.source, name);
    const source = openLeasedSource(sourcePath);
    const id = randomUUID();
    const quarantinePath = path.join(dirs.quarantine, `${id}.data`);
    const copy = await openAsync(quarantinePath, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
    const size = fs.readSync(source, buffer, 0, buffer.length, 0);
    const digest = sha256(buffer.subarray(0, size));
    fs.writeSync(copy, buffer, 0, size, 0);
    await flushes.file(copy);
    await Promise.all([quarantineSync.sync(), journal.append({ op: 'item', id, name, sha256: digest, size })]);
    native.setLease(source, 'none');
    fs.closeSync(source);
    fs.unlinkSync(sourcePath);
    await Promise.all([sourceSync.sync(), audit.append({ event: 'quarantined', id, sha256: digest })]);

    const reply = await native.clamdScanDescriptor(clamd.socketPath, copy, SCAN_TIMEOUT_MS);
    if (!reply.endsWith(' OK')) throw new Error(`${name}: clamd answered '${reply}'`);
    await audit.append({ event: 'scanned', id, verdict: 'clean' });
    await journal.append({ op: 'scanned', id, state: 'clean' });

    const temporary = path.join(dirs.destination, `.${id}.tmp`);
    fs.renameSync(quarantinePath, temporary);
    fs.fchmodSync(copy, 0o660);
    const released = fs.readSync(copy, buffer, 0, buffer.length, 0);
    if (sha256(buffer.subarray(0, released)) !== digest) throw new Error(`${name}: released bytes differ from the intake`);
    fs.linkSync(temporary, path.join(dirs.destination, name));
    fs.unlinkSync(temporary);
    await Promise.all([destinationSync.sync(), flushes.file(copy)]);
    await Promise.all([audit.append({ event: 'released', id }), journal.append({ op: 'released', id })]);
    await closeAsync(copy);
  };

  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  dropFiles(names, dirs.staging, dirs.source);
  const queue = fs.readdirSync(dirs.source);
  const worker = async (): Promise<void> => {
    // One buffer per worker: a 4 KiB file and one byte more, to see its end in one read.
    const buffer = Buffer.allocUnsafe(WORKLOAD.size + 1);
    for (let name = queue.pop(); name !== undefined; name = queue.pop()) await moveOne(name, buffer);
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  const wallSeconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  for (const closable of [journal, audit, sourceSync, quarantineSync, destinationSync]) closable.close();
  const released = fs.readdirSync(dirs.destination).length;
  if (released !== names.length) throw new Error(`the floor released ${released} of ${names.length} files`);
  return { wallSeconds, cpuSeconds: (cpu.user + cpu.system) / 1e6 };
}

function log(message: string): void {
  process.stderr.write(`${message}\n`);
}

async function main(): Promise<void> {
  const rounds = Number(process.env.BENCH_ROUNDS ?? 2);
  const inFlight = Number(process.env.BENCH_IN_FLIGHT ?? 64);
  for (const [name, value] of [['BENCH_ROUNDS', rounds], ['BENCH_IN_FLIGHT', inFlight]] as const) {
    if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive integer`);
  }
  const root = await mkdtemp(path.join(os.tmpdir(), 'shuttle-floor-'));
  process.on('exit', () => fs.rmSync(root, { recursive: true, force: true }));
  let clamd: BenchClamd | null = null;
  try {
    clamd = await startClamd(path.join(root, 'clamd'), 12);
    log(`durable floor: ${rounds} round(s) of ${WORKLOAD.count} files of ${WORKLOAD.size / 1024} KiB, ${inFlight} in flight, ${process.env.UV_THREADPOOL_SIZE ?? 4} threads in the pool; working in ${root}: ${describeFilesystem(root)}`);
    const rows: Array<{ round: number; baseline: number; durable: number; durableCpu: number; unflushed: number }> = [];
    for (let round = 1; round <= rounds; round++) {
      const baseline = await runBaselineIn(root, `baseline-${round}`, WORKLOAD, clamd);
      const durable = await runFloor(path.join(root, `durable-${round}`), clamd, DURABLE, inFlight, `durable-${round}`);
      await rm(path.join(root, `durable-${round}`), { recursive: true, force: true });
      const unflushed = await runFloor(path.join(root, `unflushed-${round}`), clamd, NO_FLUSH, inFlight, `unflushed-${round}`);
      await rm(path.join(root, `unflushed-${round}`), { recursive: true, force: true });
      rows.push({ round, baseline: baseline.wallSeconds, durable: durable.wallSeconds, durableCpu: durable.cpuSeconds, unflushed: unflushed.wallSeconds });
      log(`round ${round}: baseline ${fixed(baseline.wallSeconds, 2)} s, floor ${fixed(durable.wallSeconds, 2)} s, floor without fsync ${fixed(unflushed.wallSeconds, 2)} s`);
    }
    process.stdout.write('\nround  baseline s  floor s  floor CPU s  floor/baseline  without fsync s  without fsync/baseline\n');
    for (const row of rows) {
      process.stdout.write(
        `${String(row.round).padEnd(7)}${fixed(row.baseline, 2).padEnd(12)}${fixed(row.durable, 2).padEnd(9)}${fixed(row.durableCpu, 2).padEnd(13)}` +
          `${fixed(row.durable / row.baseline, 2).padEnd(16)}${fixed(row.unflushed, 2).padEnd(17)}${fixed(row.unflushed / row.baseline, 2)}\n`,
      );
    }
  } finally {
    await clamd?.stop();
    await rm(root, { recursive: true, force: true });
  }
}

await main().catch((error: unknown) => {
  log(`bench:floor failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  process.exitCode = 2;
});
