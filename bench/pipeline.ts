// End-to-end benchmark: many small files and a few large ones through the whole daemon (a child process
// with a real private clamd), against a shell baseline doing the same batch with cp, sha256sum, clamdscan
// and mv. Rounds alternate baseline and daemon so drift on the host hits both alike.
//
//   npm run bench
//
// Environment:
//   BENCH_ROUNDS                 rounds per workload and system (default 2)
//   BENCH_WORKLOADS              comma list of small,large (default both)
//   BENCH_SYSTEMS                comma list of baseline,shuttle (default both)
//   BENCH_INTAKE_CONCURRENCY     pipeline.intake_concurrency for the daemon (default: the daemon's own)
//   BENCH_SCAN_CONCURRENCY       pipeline.scan_concurrency for the daemon (default: the daemon's own)
//   BENCH_LOG_LEVEL              logging.level for the daemon (default: the daemon's own)
//   BENCH_CPU_PROF               directory: run the daemon under node --cpu-prof, one profile per run
//   BENCH_NODE_ARGS              more options for the daemon's node, space-separated (for example --max-semi-space-size=32)
//   BENCH_WARMUP                 files of the workload's size each daemon takes before the measured batch, not counted
//                                (default 0): the figure for a daemon whose code V8 has already compiled
//   BENCH_JSON                   also write the results as JSON to this file
//
// Exit status: 0 when every target is met, 1 when one is missed, 2 when the benchmark itself failed.
// Summarise a profile with `node dist/bench/cpu-profile.js FILE.cpuprofile`.

import { readdirSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { runBaseline } from './baseline.js';
import { startClamd, type BenchClamd } from './clamd.js';
import { describeFilesystem } from './filesystem.js';
import { medianRun, median, fixed, renderTable, summarizeLatencies, type BaselineRun, type DaemonRun, type Target, type WorkloadResult } from './report.js';
import { cpuSeconds, mainThreadSchedule, makeDirectories, ShuttleProcess, stageMarks, writeConfig, type ShuttleSettings } from './shuttle.js';
import { dropFiles, ReleaseWatcher, stageFiles, type Workload } from './workload.js';

const MIB = 1024 * 1024;
const WORKLOADS: readonly Workload[] = [
  { name: 'small', count: 2000, size: 4 * 1024 },
  { name: 'large', count: 20, size: 50 * MIB },
];
/** daemon/baseline wall-time ratios and the memory ceiling the daemon must stay under. */
const RATIO_TARGETS: Readonly<Record<string, number>> = { small: 2.0, large: 1.3 };
const PEAK_RSS_TARGET_BYTES = 150 * 1000 * 1000;
const CLAMD_MAX_THREADS = 12;
const RELEASE_TIMEOUT_MS = 300_000;

interface BenchOptions {
  readonly rounds: number;
  readonly workloads: readonly Workload[];
  readonly systems: ReadonlySet<'baseline' | 'shuttle'>;
  readonly pipeline: Readonly<Record<string, number>>;
  readonly logLevel: string | null;
  readonly cpuProfileDir: string | null;
  readonly nodeArgs: readonly string[];
  readonly warmupFiles: number;
  readonly jsonFile: string | null;
}

function readOptions(env: NodeJS.ProcessEnv): BenchOptions {
  const positiveInteger = (name: string, fallback: number | null): number | null => {
    const text = env[name];
    if (text === undefined || text === '') return fallback;
    const value = Number(text);
    if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive integer, not '${text}'`);
    return value;
  };
  const list = (name: string, known: readonly string[]): string[] => {
    const text = env[name];
    if (text === undefined || text === '') return [...known];
    const values = text.split(',').map((value) => value.trim());
    const unknown = values.filter((value) => !known.includes(value));
    if (unknown.length > 0) throw new Error(`${name}: unknown ${unknown.join(', ')} (choose from ${known.join(', ')})`);
    return values;
  };
  const pipeline: Record<string, number> = {};
  const intake = positiveInteger('BENCH_INTAKE_CONCURRENCY', null);
  const scan = positiveInteger('BENCH_SCAN_CONCURRENCY', null);
  if (intake !== null) pipeline.intake_concurrency = intake;
  if (scan !== null) pipeline.scan_concurrency = scan;
  const workloadNames = list('BENCH_WORKLOADS', WORKLOADS.map((workload) => workload.name));
  return {
    rounds: positiveInteger('BENCH_ROUNDS', 2) as number,
    workloads: WORKLOADS.filter((workload) => workloadNames.includes(workload.name)),
    systems: new Set(list('BENCH_SYSTEMS', ['baseline', 'shuttle']) as Array<'baseline' | 'shuttle'>),
    pipeline,
    logLevel: env.BENCH_LOG_LEVEL || null,
    cpuProfileDir: env.BENCH_CPU_PROF ? path.resolve(env.BENCH_CPU_PROF) : null,
    nodeArgs: (env.BENCH_NODE_ARGS ?? '').split(' ').filter((arg) => arg !== ''),
    warmupFiles: env.BENCH_WARMUP === '0' ? 0 : (positiveInteger('BENCH_WARMUP', 0) as number),
    jsonFile: env.BENCH_JSON ? path.resolve(env.BENCH_JSON) : null,
  };
}

let runCounter = 0;

async function benchBaseline(root: string, clamd: BenchClamd, workload: Workload, round: number): Promise<BaselineRun> {
  const runDir = path.join(root, `run-${++runCounter}-baseline-${workload.name}`);
  const paths = {
    staging: path.join(runDir, 'staging'),
    source: path.join(runDir, 'in'),
    quarantine: path.join(runDir, 'quarantine'),
    destination: path.join(runDir, 'out'),
  };
  for (const directory of Object.values(paths)) await mkdir(directory, { recursive: true });
  try {
    const names = stageFiles(workload, paths.staging, `${process.pid}-${runCounter}`);
    dropFiles(names, paths.staging, paths.source);
    const clamdBefore = cpuSeconds(clamd.pid);
    const result = await runBaseline({ ...paths, clamdConf: clamd.conf, hashes: path.join(runDir, 'sha256sums') });
    const clamdCpuSeconds = cpuSeconds(clamd.pid) - clamdBefore;
    const released = (await readdir(paths.destination)).length;
    if (released !== names.length) throw new Error(`baseline left ${released} of ${names.length} files in the destination`);
    return { round, wallSeconds: result.wallSeconds, commandCpuSeconds: result.commandCpuSeconds, clamdCpuSeconds };
  } finally {
    await rm(runDir, { recursive: true, force: true });
  }
}

async function benchShuttle(root: string, clamd: BenchClamd, workload: Workload, round: number, options: BenchOptions): Promise<DaemonRun> {
  const runDir = path.join(root, `run-${++runCounter}-shuttle-${workload.name}`);
  const staging = path.join(runDir, 'staging');
  await mkdir(staging, { recursive: true });
  try {
    const directories = await makeDirectories(runDir);
    const settings: ShuttleSettings = { clamdSocket: clamd.socketPath, pipeline: options.pipeline, logLevel: options.logLevel };
    const configFile = await writeConfig(directories, settings);
    const names = stageFiles(workload, staging, `${process.pid}-${runCounter}`);
    const warmup: Workload = { name: `warmup-${workload.name}`, count: options.warmupFiles, size: workload.size };
    const warmupNames = warmup.count > 0 ? stageFiles(warmup, staging, `${process.pid}-${runCounter}-warmup`) : [];
    const profile = options.cpuProfileDir === null ? [] : ['--cpu-prof', `--cpu-prof-dir=${options.cpuProfileDir}`, `--cpu-prof-name=shuttle-${workload.name}-${round}.cpuprofile`];
    const daemon = await ShuttleProcess.start(configFile, [...options.nodeArgs, ...profile]);
    let stopped = false;
    try {
      if (warmupNames.length > 0) {
        const warmupWatcher = new ReleaseWatcher(directories.destination, warmupNames);
        try {
          dropFiles(warmupNames, staging, directories.source);
          await warmupWatcher.complete(RELEASE_TIMEOUT_MS);
        } finally {
          warmupWatcher.close();
        }
      }
      const daemonCpuBefore = cpuSeconds(daemon.pid);
      const scheduleBefore = mainThreadSchedule(daemon.pid);
      const clamdCpuBefore = cpuSeconds(clamd.pid);
      const watcher = new ReleaseWatcher(directories.destination, names);
      let dropped: Map<string, number>;
      try {
        dropped = dropFiles(names, staging, directories.source);
        await watcher.complete(RELEASE_TIMEOUT_MS).catch((error: Error) => {
          throw new Error(`${error.message}\n${daemon.tail()}`);
        });
      } finally {
        watcher.close();
      }
      const daemonCpuSeconds = cpuSeconds(daemon.pid) - daemonCpuBefore;
      const scheduleAfter = mainThreadSchedule(daemon.pid);
      const clamdCpuSeconds = cpuSeconds(clamd.pid) - clamdCpuBefore;
      const peakRssBytes = daemon.peakRss();
      const latencies = names.map((name) => (watcher.released.get(name) as number) - (dropped.get(name) as number));
      const firstDrop = Math.min(...dropped.values());
      const lastRelease = Math.max(...watcher.released.values());
      stopped = true;
      const status = await daemon.stop();
      if (status !== 0) throw new Error(`shuttle exited with ${status} after the run:\n${daemon.tail()}`);
      const leftInQuarantine = readdirSync(directories.quarantine).filter((name) => name.endsWith('.data'));
      const leftInSource = readdirSync(directories.source);
      const strayInDestination = readdirSync(directories.destination).filter((name) => !watcher.released.has(name) && !warmupNames.includes(name));
      const marks = stageMarks(path.join(directories.log, 'shuttle.log'));
      const intake: number[] = [];
      const scanAndRelease: number[] = [];
      for (const name of names) {
        const mark = marks.get(name);
        if (mark?.quarantinedAt !== undefined) intake.push(mark.quarantinedAt - (performance.timeOrigin + (dropped.get(name) as number)));
        if (mark?.quarantinedAt !== undefined && mark.releasedAt !== undefined) scanAndRelease.push(mark.releasedAt - mark.quarantinedAt);
      }
      // A file released but still in source would be taken again after a restart: a duplicate.
      if (leftInQuarantine.length > 0 || leftInSource.length > 0 || strayInDestination.length > 0) {
        throw new Error(
          `after the run: ${leftInQuarantine.length} files still in quarantine, ${leftInSource.length} still in source ` +
            `(${leftInSource.slice(0, 5).join(', ')}), unexpected in destination: ${strayInDestination.slice(0, 5).join(', ')}`,
        );
      }
      return {
        round,
        wallSeconds: (lastRelease - firstDrop) / 1000,
        latency: summarizeLatencies(latencies),
        stages: {
          intake: intake.length === names.length ? summarizeLatencies(intake) : null,
          scanAndRelease: scanAndRelease.length === names.length ? summarizeLatencies(scanAndRelease) : null,
        },
        peakRssBytes,
        daemonCpuSeconds,
        mainThread: {
          onCpuSeconds: scheduleAfter.onCpuSeconds - scheduleBefore.onCpuSeconds,
          waitingSeconds: scheduleAfter.waitingSeconds - scheduleBefore.waitingSeconds,
        },
        clamdCpuSeconds,
        releasesSeenByPoll: watcher.polledOnly,
      };
    } finally {
      if (!stopped) await daemon.stop();
    }
  } finally {
    await rm(runDir, { recursive: true, force: true });
  }
}

function targetsFor(results: readonly WorkloadResult[]): Target[] {
  const targets: Target[] = [];
  for (const result of results) {
    const limit = RATIO_TARGETS[result.name];
    if (limit === undefined || result.baseline.length === 0 || result.daemon.length === 0) continue;
    const ratio = median(result.daemon.map((run) => run.wallSeconds)) / median(result.baseline.map((run) => run.wallSeconds));
    targets.push({ what: `${result.name}: shuttle/baseline wall time`, limit: `<= ${limit.toFixed(1)}`, measured: fixed(ratio, 2), pass: ratio <= limit });
  }
  const peaks = results.flatMap((result) => result.daemon.map((run) => run.peakRssBytes));
  if (peaks.length > 0) {
    const peak = Math.max(...peaks);
    targets.push({ what: 'shuttle peak RSS (VmHWM)', limit: `< ${PEAK_RSS_TARGET_BYTES / 1e6} MB`, measured: `${fixed(peak / 1e6, 1)} MB`, pass: peak < PEAK_RSS_TARGET_BYTES });
  }
  return targets;
}

function log(message: string): void {
  process.stderr.write(`${message}\n`);
}

async function main(): Promise<number> {
  const options = readOptions(process.env);
  const root = await mkdtemp(path.join(os.tmpdir(), 'shuttle-bench-'));
  // Last resort for an interrupted run; the clamd module kills the children on exit.
  process.on('exit', () => rmSync(root, { recursive: true, force: true }));
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => process.exit(130));

  let clamd: BenchClamd | null = null;
  try {
    clamd = await startClamd(path.join(root, 'clamd'), CLAMD_MAX_THREADS);
    if (options.cpuProfileDir !== null) await mkdir(options.cpuProfileDir, { recursive: true });
    log(`shuttle bench: ${options.rounds} round(s); files are staged, fsynced, then renamed into source_path (drop = rename)`);
    log(`pipeline settings: ${Object.keys(options.pipeline).length > 0 ? JSON.stringify(options.pipeline) : 'daemon defaults'}; cores: ${os.availableParallelism()}`);
    if (options.warmupFiles > 0) log(`each daemon first takes ${options.warmupFiles} files that are not counted (BENCH_WARMUP)`);
    log(`working in ${root}: ${describeFilesystem(root)}`);
    const results: WorkloadResult[] = [];
    for (const workload of options.workloads) {
      const result: WorkloadResult = { name: workload.name, files: workload.count, fileBytes: workload.size, baseline: [], daemon: [] };
      results.push(result);
      for (let round = 1; round <= options.rounds; round++) {
        if (options.systems.has('baseline')) {
          const run = await benchBaseline(root, clamd, workload, round);
          result.baseline.push(run);
          log(`${workload.name} round ${round} baseline: ${fixed(run.wallSeconds, 2)} s`);
        }
        if (options.systems.has('shuttle')) {
          const run = await benchShuttle(root, clamd, workload, round, options);
          result.daemon.push(run);
          const { latency } = run;
          log(
            `${workload.name} round ${round} shuttle:  ${fixed(run.wallSeconds, 2)} s, latency mean/p50/p95/max ` +
              `${[latency.meanMs, latency.p50Ms, latency.p95Ms, latency.maxMs].map((value) => fixed(value, 0)).join('/')} ms, ` +
              `peak RSS ${fixed(run.peakRssBytes / MIB, 1)} MiB, main thread on a CPU ${fixed(run.mainThread.onCpuSeconds, 2)} s ` +
              `and waiting for one ${fixed(run.mainThread.waitingSeconds, 2)} s`,
          );
        }
      }
    }

    const targets = targetsFor(results);
    process.stdout.write(`\n${renderTable(results, targets)}\n`);
    process.stdout.write(
      '\nwall = first drop to last release (shuttle) or script start to end (baseline). latency = rename into source_path to the\n' +
        'final name appearing in destination_path (inotify), for the median run. CPU = user+system seconds during the run.\n',
    );
    if (options.jsonFile !== null) {
      const summary = results.map((result) => ({ ...result, typicalDaemonRun: medianRun(result.daemon) ?? null }));
      writeFileSync(options.jsonFile, `${JSON.stringify({ date: new Date().toISOString(), cores: os.availableParallelism(), filesystem: describeFilesystem(root), options: { ...options, systems: [...options.systems] }, results: summary, targets }, null, 2)}\n`);
      log(`results written to ${options.jsonFile}`);
    }
    return targets.every((target) => target.pass) ? 0 : 1;
  } finally {
    await clamd?.stop();
    await rm(root, { recursive: true, force: true });
  }
}

process.exitCode = await main().catch((error: unknown) => {
  log(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  return 2;
});
