// Hazard archive throughput: 20 suspect files of 50 MiB through HazardArchiver.archive (header + stream into
// gpg, fsync, link, sidecar, secure removal of the plaintext) against plain `gpg --encrypt` of the same
// files with the same key, the same gpg options and a throw-away GNUPGHOME per file, one file after another.
//
// Rows besides the two that make the ratio:
// - plain gpg with one keyring for all files (the key imported once), the cheapest way gpg can do it;
// - plain gpg plus what archive() guarantees on top (fsync of the output, secure removal of the input);
// - archive() one call at a time, which is what a single suspect costs.
// The counted archive row calls archive() as the pipeline does, several suspects in flight (scan_concurrency,
// 4 by default), with encryptionConcurrency 1: at most one gpg encrypts at any moment, as in the baseline, so
// the gain comes from hiding the fsyncs and the secure removal behind the next encryption, not from a second
// core running a second gpg.
//
// Every row runs BENCH_ROUNDS times on fresh copies; the figures are medians. Within a round the two rows of
// the ratio run back to back, the first one alternating, so both see the same machine; the ratio is taken
// per round and its median reported. Each run also reports how much CPU other processes took meanwhile (in
// % of one core): on a shared machine, runs where that is high measure the neighbours, not this code.
//
//   npm run bench:hazard            (BENCH_DIR=/some/disk to work elsewhere than the system temp directory)
//   BENCH_ROWS=plain,inFlight       only those rows (names as in ROWS below)

import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import winston from 'winston';
import { HazardArchiver, keyringOptions, secureRemove, type HazardStageTimings } from '../src/hazard.js';
import { quarantineDataName, type ItemRecord } from '../src/item.js';
import { Zone } from '../src/zone.js';

const execFileAsync = promisify(execFile);
const GPG = process.env.SHUTTLE_BENCH_GPG ?? 'gpg';
const FILES = Number(process.env.BENCH_FILES ?? 20);
const FILE_MIB = Number(process.env.BENCH_FILE_MIB ?? 50);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
/** How many archive() calls are in flight at once (the pipeline allows up to scan_concurrency; gpg runs one at a time anyway). */
const IN_FLIGHT = Number(process.env.BENCH_IN_FLIGHT ?? 4);
const MiB = 1024 * 1024;
const TARGET_RATIO = 1.2;

type RowName = 'plain' | 'sharedKeyring' | 'durable' | 'oneAtATime' | 'inFlight';

const ROWS: Record<RowName, string> = {
  plain: 'plain gpg --encrypt (throw-away GNUPGHOME)',
  sharedKeyring: 'plain gpg --encrypt (one keyring)',
  durable: 'gpg --encrypt + fsync + secure removal',
  oneAtATime: 'archive(), one call at a time',
  inFlight: `archive(), ${IN_FLIGHT} in flight, 1 gpg at a time`,
};

const selectedRows = process.env.BENCH_ROWS === undefined ? null : process.env.BENCH_ROWS.split(',').map((row) => row.trim());

interface Directories {
  readonly samples: string;
  readonly quarantine: string;
  readonly hazard: string;
  readonly plain: string;
}

async function main(): Promise<void> {
  const unknown = selectedRows?.filter((row) => !(row in ROWS)) ?? [];
  if (unknown.length > 0) throw new Error(`BENCH_ROWS: no row named ${unknown.join(', ')}; the rows are ${Object.keys(ROWS).join(', ')}`);
  const work = await fsp.realpath(await fsp.mkdtemp(path.join(process.env.BENCH_DIR ?? os.tmpdir(), 'shuttle-bench-hazard-')));
  try {
    const directories: Directories = { samples: path.join(work, 'samples'), quarantine: path.join(work, 'quarantine'), hazard: path.join(work, 'hazard'), plain: path.join(work, 'plain') };
    for (const directory of Object.values(directories)) await fsp.mkdir(directory, { mode: 0o700 });
    const keyPath = await makePublicKey(path.join(work, 'keys'));
    const samples = await writeSamples(directories.samples);
    const totalMiB = FILES * FILE_MIB;
    console.log(`hazard benchmark: ${FILES} files of ${FILE_MIB} MiB (${totalMiB} MiB), ${ROUNDS} rounds, gpg ${await gpgVersion()}, ${os.cpus().length} CPUs, in ${work}`);

    const seconds: Record<RowName, number[]> = { plain: [], sharedKeyring: [], durable: [], oneAtATime: [], inFlight: [] };
    const foreign: Record<RowName, number[]> = { plain: [], sharedKeyring: [], durable: [], oneAtATime: [], inFlight: [] };
    const stages: Record<'oneAtATime' | 'inFlight', HazardStageTimings[]> = { oneAtATime: [], inFlight: [] };
    const order = (Object.keys(ROWS) as RowName[]).filter((row) => selectedRows === null || selectedRows.includes(row));
    for (let round = 0; round < ROUNDS; round++) {
      const pair: RowName[] = round % 2 === 0 ? ['plain', 'inFlight'] : ['inFlight', 'plain'];
      const others: RowName[] = ['sharedKeyring', 'durable', 'oneAtATime'];
      const rotated = [...others.slice(round % others.length), ...others.slice(0, round % others.length)];
      for (const row of [...pair, ...rotated].filter((name) => order.includes(name))) {
        // Each run starts from fresh quarantine copies and a clean page cache, so no run pays for another's writeback.
        const copies = await copyIntoQuarantine(samples, directories.quarantine);
        await settle();
        const cpuBefore = cpuSnapshot();
        let elapsed: number;
        if (row === 'plain') elapsed = await timePlainGpg(copies, keyPath, directories.plain, { sharedKeyring: false, durable: false });
        else if (row === 'sharedKeyring') elapsed = await timePlainGpg(copies, keyPath, directories.plain, { sharedKeyring: true, durable: false });
        else if (row === 'durable') elapsed = await timePlainGpg(copies, keyPath, directories.plain, { sharedKeyring: false, durable: true, removeFrom: directories.quarantine });
        else {
          const result = await timeArchiver(copies, keyPath, directories.quarantine, directories.hazard, row === 'oneAtATime' ? 1 : IN_FLIGHT);
          elapsed = result.seconds;
          stages[row].push(...result.stages);
        }
        foreign[row].push(foreignCpuPercent(cpuBefore, cpuSnapshot()));
        seconds[row].push(elapsed);
        await emptyDirectory(directories.quarantine);
        await emptyDirectory(directories.hazard);
        await emptyDirectory(directories.plain);
      }
    }

    const rate = (value: number) => `${(totalMiB / value).toFixed(0)} MiB/s`;
    for (const row of order) {
      const value = median(seconds[row]);
      const runs = seconds[row].map((run, index) => `${run.toFixed(2)} (${(foreign[row][index] ?? 0).toFixed(0)}%)`).join(' ');
      console.log(`${ROWS[row].padEnd(46)} ${value.toFixed(2)} s  ${rate(value).padStart(9)}   runs (others' CPU): ${runs}`);
    }
    console.log('per file, median ms (one call at a time | in flight):');
    for (const stage of Object.keys(stages.oneAtATime[0] ?? stages.inFlight[0] ?? {}) as (keyof HazardStageTimings)[]) {
      const of = (list: HazardStageTimings[]) => median(list.map((timing) => timing[stage])).toFixed(0).padStart(5);
      console.log(`  ${stage.padEnd(10)} ${of(stages.oneAtATime)} | ${of(stages.inFlight)}`);
    }
    const ratios = (row: RowName, baseline: RowName) => seconds[row].map((value, round) => value / (seconds[baseline][round] ?? Number.NaN));
    const show = (label: string, row: RowName, baseline: RowName) => {
      if (!order.includes(row) || !order.includes(baseline)) return;
      const values = ratios(row, baseline);
      console.log(`${label.padEnd(44)} ${median(values).toFixed(2)}x (runs: ${values.map((value) => value.toFixed(2)).join(' ')})`);
    };
    show('ratio archive in flight / plain gpg', 'inFlight', 'plain');
    show('ratio archive in flight / one keyring', 'inFlight', 'sharedKeyring');
    show('ratio archive in flight / gpg+guarantees', 'inFlight', 'durable');
    show('ratio archive one at a time / plain gpg', 'oneAtATime', 'plain');
    if (order.includes('inFlight') && order.includes('plain')) {
      const counted = median(ratios('inFlight', 'plain'));
      console.log(`target ${TARGET_RATIO}x against plain gpg: ${counted <= TARGET_RATIO ? 'met' : 'missed'} (${counted.toFixed(2)}x)`);
    }
  } finally {
    await execFileAsync('gpgconf', ['--homedir', path.join(work, 'keys'), '--kill', 'all']).catch(() => undefined);
    await fsp.rm(work, { recursive: true, force: true });
  }
}

/**
 * Baseline: per file, gpg --encrypt the file to a file. With a throw-away GNUPGHOME, each file gets a fresh
 * home with the key imported, removed afterwards, as archive() does; with `sharedKeyring`, the key is
 * imported once, outside the timing. With `durable`, also what archive() guarantees besides: the output
 * fsynced, the input overwritten and removed.
 */
async function timePlainGpg(
  samples: readonly Sample[],
  keyPath: string,
  output: string,
  mode: { sharedKeyring: boolean; durable: boolean; removeFrom?: string },
): Promise<number> {
  const zone = mode.removeFrom === undefined ? null : new Zone([mode.removeFrom]);
  const inputs = zone === null || mode.removeFrom === undefined ? null : await zone.openDirectory(mode.removeFrom);
  const shared = mode.sharedKeyring ? await makeKeyring(output, keyPath) : null;
  try {
    const started = performance.now();
    for (const [index, sample] of samples.entries()) {
      const keyring = shared ?? (await makeKeyring(output, keyPath));
      try {
        const encrypted = path.join(output, `${index}.gpg`);
        await execFileAsync(GPG, [...keyringOptions(keyring.home), '--encrypt', '--recipient', keyring.recipient, '--output', encrypted, sample.path]);
        if (mode.durable && zone !== null && inputs !== null) {
          const handle = await fsp.open(encrypted, 'r');
          await handle.sync();
          await handle.close();
          await secureRemove(zone, inputs, path.basename(sample.path));
        }
      } finally {
        if (shared === null) await fsp.rm(keyring.home, { recursive: true, force: true });
      }
    }
    return (performance.now() - started) / 1000;
  } finally {
    await inputs?.close();
    if (shared !== null) await fsp.rm(shared.home, { recursive: true, force: true });
  }
}

async function makeKeyring(directory: string, keyPath: string): Promise<{ home: string; recipient: string }> {
  const home = await fsp.mkdtemp(path.join(directory, '.gnupg-'));
  const { stdout } = await execFileAsync(GPG, [...keyringOptions(home), '--status-fd', '1', '--import', keyPath]);
  const recipient = /IMPORT_OK \d+ ([0-9A-F]+)/.exec(stdout)?.[1];
  if (!recipient) throw new Error('the benchmark key did not import');
  return { home, recipient };
}

/** Shuttle: archive() of every quarantine copy, at most `inFlight` at once, timing the whole batch. */
async function timeArchiver(
  samples: readonly Sample[],
  keyPath: string,
  quarantinePath: string,
  hazardPath: string,
  inFlight: number,
): Promise<{ seconds: number; stages: HazardStageTimings[] }> {
  const zone = new Zone([quarantinePath, hazardPath]);
  const quarantine = await zone.openDirectory(quarantinePath);
  const hazard = await zone.openDirectory(hazardPath);
  const stages: HazardStageTimings[] = [];
  const logger = winston.createLogger({
    format: winston.format.json(),
    transports: [
      new winston.transports.Stream({
        stream: new Writable({
          write(chunk: Buffer, _encoding, done) {
            for (const line of chunk.toString('utf8').split('\n')) {
              if (line.trim() === '') continue;
              const entry = JSON.parse(line) as { stagesMs?: HazardStageTimings };
              if (entry.stagesMs) stages.push(entry.stagesMs);
            }
            done();
          },
        }),
      }),
    ],
  });
  const archiver = new HazardArchiver({ zone, hazardDirectory: hazard, keyPath, logger, userName: async () => 'bench', encryptionConcurrency: 1 });
  try {
    const started = performance.now();
    let next = 0;
    const worker = async () => {
      for (let index = next++; index < samples.length; index = next++) {
        const sample = samples[index];
        if (sample === undefined) break;
        const id = path.basename(sample.path, '.data');
        const item: ItemRecord = {
          id,
          relativePath: `bench/${index}.bin`,
          size: sample.size,
          sha256: sample.sha256,
          uploaderUid: 0,
          source: { dev: 0, ino: 0, size: sample.size, mtimeNs: '0' },
          quarantinedAt: new Date().toISOString(),
          state: 'suspect',
          signature: 'Bench.Signature',
          reports: [{ scanner: 'clamd', version: 'ClamAV bench', verdict: { kind: 'suspect', signature: 'Bench.Signature' }, durationMs: 1 }],
        };
        await archiver.archive(item, { directory: quarantine, name: quarantineDataName(id) }, new AbortController().signal);
      }
    };
    await Promise.all(Array.from({ length: inFlight }, worker));
    return { seconds: (performance.now() - started) / 1000, stages };
  } finally {
    await quarantine.close();
    await hazard.close();
  }
}

/** Quarantine copies named as intake names them, `<id>.data`. */
async function copyIntoQuarantine(samples: readonly Sample[], quarantinePath: string): Promise<Sample[]> {
  const copies: Sample[] = [];
  for (const [index, sample] of samples.entries()) {
    const target = path.join(quarantinePath, quarantineDataName(`bench${index}-${randomBytes(6).toString('hex')}`));
    await fsp.copyFile(sample.path, target);
    copies.push({ ...sample, path: target });
  }
  return copies;
}

async function emptyDirectory(directory: string): Promise<void> {
  for (const name of await fsp.readdir(directory)) await fsp.rm(path.join(directory, name), { recursive: true, force: true });
}

interface CpuSnapshot {
  /** Jiffies of all CPUs, and how many of them were not idle. */
  readonly total: number;
  readonly busy: number;
  /** This process and the children it has waited for, in jiffies (USER_HZ, 100 a second on Linux). */
  readonly own: number;
}

function cpuSnapshot(): CpuSnapshot {
  const fields = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').trim().split(/\s+/).slice(1, 9).map(Number);
  const total = fields.reduce((sum, value) => sum + value, 0);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  // /proc/self/stat after the command name: utime is field 14, stime 15, cutime 16, cstime 17 (proc(5)).
  const self = (readFileSync('/proc/self/stat', 'utf8').split(') ')[1] ?? '').split(' ').map(Number);
  const children = (self[13] ?? 0) + (self[14] ?? 0);
  const usage = process.cpuUsage();
  return { total, busy: total - idle, own: children + (usage.user + usage.system) / 10_000 };
}

/** CPU that other processes used between two snapshots, in % of one core (kernel writeback counts as other). */
function foreignCpuPercent(before: CpuSnapshot, after: CpuSnapshot): number {
  const elapsed = after.total - before.total;
  if (elapsed <= 0) return 0;
  const others = Math.max(0, after.busy - before.busy - (after.own - before.own));
  return (100 * os.cpus().length * others) / elapsed;
}

async function settle(): Promise<void> {
  await execFileAsync('sync');
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] ?? Number.NaN) : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
}

interface Sample {
  readonly path: string;
  readonly size: number;
  readonly sha256: string;
}

async function writeSamples(directory: string): Promise<Sample[]> {
  const samples: Sample[] = [];
  for (let index = 0; index < FILES; index++) {
    const file = path.join(directory, `${index}.bin`);
    const hash = createHash('sha256');
    const handle = await fsp.open(file, 'w', 0o600);
    try {
      for (let written = 0; written < FILE_MIB * MiB; written += MiB) {
        const chunk = randomBytes(MiB);
        hash.update(chunk);
        await handle.write(chunk);
      }
    } finally {
      await handle.close();
    }
    samples.push({ path: file, size: FILE_MIB * MiB, sha256: hash.digest('hex') });
  }
  return samples;
}

/** An ed25519/cv25519 key pair in its own keyring; resolves with the exported public key. */
async function makePublicKey(home: string): Promise<string> {
  await fsp.mkdir(home, { mode: 0o700 });
  const parameters = path.join(home, 'parameters');
  await fsp.writeFile(
    parameters,
    ['%no-protection', 'Key-Type: eddsa', 'Key-Curve: ed25519', 'Key-Usage: sign', 'Subkey-Type: ecdh', 'Subkey-Curve: cv25519', 'Subkey-Usage: encrypt', 'Name-Real: Shuttle Bench', 'Expire-Date: 0', '%commit', ''].join('\n'),
  );
  const gpg = (args: string[]) => execFileAsync(GPG, ['--homedir', home, '--batch', '--no-tty', '--pinentry-mode', 'loopback', '--passphrase', '', ...args], { encoding: 'buffer', maxBuffer: 16 * MiB });
  await gpg(['--gen-key', parameters]);
  const publicKey = path.join(home, 'public.asc');
  await fsp.writeFile(publicKey, (await gpg(['--armor', '--export'])).stdout);
  return publicKey;
}

async function gpgVersion(): Promise<string> {
  const { stdout } = await execFileAsync(GPG, ['--version']);
  return stdout.split('\n')[0]?.replace(/^gpg \(GnuPG\) /, '') ?? 'unknown';
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
