// Faults injected into a running daemon while files stream in: kill -9 at random moments, clamd killed,
// a full destination filesystem, gpg failing. After each, every file pushed is accounted for exactly once
// (released byte-equal, encrypted into the hazard archive, or held with a reason), nothing suspect or
// partial reaches the destination, no working file is left behind, and the audit chain holds.
//
// The schedule (files, sizes, names, delays) follows from one seed, printed at the start; set
// SHUTTLE_FAULT_SEED to replay it.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startClamd, type ClamdHarness } from '../../helpers/clamd.js';
import {
  listFiles,
  makeDirectories,
  sharedHazardKey,
  startDaemon,
  startDaemonReady,
  stopDaemon,
  waitFor,
  writeConfig,
  type RunningDaemon,
  type ShuttleDirectories,
} from '../../helpers/daemon.js';
import {
  EICAR_BYTES,
  SEED_VARIABLE,
  SeededRandom,
  accountFor,
  describeAccounting,
  exists,
  faultSeed,
  freeBytes,
  hashTree,
  mountTmpfs,
  openArchives,
  planFiles,
  pushFile,
  readAudit,
  readDaemonLog,
  readJournal,
  resizeTmpfs,
  rewriteOf,
  seededBytes,
  sha256,
  sleep,
  summariseErrors,
  switchableGpg,
  unmount,
  verifyAudit,
  workingLeftovers,
  type Accounting,
  type AuditEntry,
  type PlannedFile,
} from '../../helpers/faults.js';

const MiB = 1024 * 1024;
const seed = faultSeed();
const random = new SeededRandom(seed);
let clamd: ClamdHarness;
const mounts: string[] = [];

beforeAll(async () => {
  console.log(`fault injection seed ${seed} (replay with ${SEED_VARIABLE}=${seed})`);
  clamd = await startClamd();
});

afterAll(async () => {
  for (const mount of mounts.splice(0).reverse()) await unmount(mount).catch(() => undefined);
  await clamd?.stop();
});

/**
 * Stop the daemon at the end of a scenario. It must exit 0; but when the scenario failed already, that
 * failure is the one to report, not the status of a daemon stopped in the middle of it.
 */
async function stopAfter(daemon: RunningDaemon | null, scenarioFailed: boolean): Promise<void> {
  if (daemon === null) return;
  const status = await stopDaemon(daemon);
  if (!scenarioFailed) expect(status, daemon.output().slice(-4000)).toBe(0);
}

/**
 * A run that passed leaves nothing behind (a failed one keeps its directories for a look): some hundred
 * megabytes per run would otherwise pile up in the temp directory.
 */
async function removePassed(directories: ShuttleDirectories): Promise<void> {
  const mounted = mounts.indexOf(directories.destination);
  if (mounted !== -1) {
    await unmount(directories.destination);
    mounts.splice(mounted, 1);
  }
  await fsp.rm(directories.root, { recursive: true, force: true });
}

/** Where each file ended up, from what the daemon left on disk once it stopped. */
async function accountAfterStop(directories: ShuttleDirectories, pushed: readonly PlannedFile[], movedAway?: string): Promise<Accounting> {
  const released = await hashTree(directories.destination);
  if (movedAway !== undefined) for (const [name, entry] of await hashTree(movedAway)) released.set(name, entry);
  const journal = await readJournal(directories.quarantine);
  return accountFor(pushed, {
    released,
    archives: await openArchives(directories.hazard, await sharedHazardKey()),
    failed: [...journal.values()].filter((item) => item.state === 'failed'),
    leftInSource: await hashTree(directories.source),
  });
}

/** Source holds no file and every item the journal still knows is failed: nothing more will happen by itself. */
async function pipelineIdle(directories: ShuttleDirectories): Promise<boolean> {
  if ((await listFiles(directories.source)).length > 0) return false;
  return [...(await readJournal(directories.quarantine)).values()].every((item) => item.state === 'failed');
}

async function describeProgress(directories: ShuttleDirectories, daemon: RunningDaemon | null): Promise<string> {
  const states = new Map<string, number>();
  for (const item of (await readJournal(directories.quarantine)).values()) states.set(item.state, (states.get(item.state) ?? 0) + 1);
  return [
    `source: ${(await listFiles(directories.source)).length} files; journal: ${JSON.stringify(Object.fromEntries(states))}`,
    daemon === null ? '' : daemon.output().split('\n').slice(-40).join('\n'),
  ].join('\n');
}

/**
 * Invariant 2 read from the audit log: every release follows a clean verdict on that item from every
 * scanner, and no item with a suspect verdict is ever released.
 */
function releasesWithoutCleanScan(records: readonly AuditEntry[]): string[] {
  const verdicts = new Map<string, string[]>();
  const problems: string[] = [];
  for (const record of records) {
    const id = String(record.id);
    if (record.event === 'scanned') {
      const scanners = (record.scanners as Array<{ verdict: string }> | undefined) ?? [];
      const clean = record.verdict === 'clean' && scanners.length > 0 && scanners.every((scanner) => scanner.verdict === 'clean');
      verdicts.set(id, [...(verdicts.get(id) ?? []), clean ? 'clean' : String(record.verdict)]);
    } else if (record.event === 'released') {
      const seen = verdicts.get(id) ?? [];
      if (!seen.includes('clean') || seen.includes('suspect')) problems.push(`seq ${record.seq}: ${String(record.path)} (item ${id}) released after verdicts [${seen.join(', ')}]`);
    }
  }
  return problems;
}

/** Quarantine entries that should not be there once the pipeline is idle: bytes of items no longer held. */
async function strayQuarantineData(directories: ShuttleDirectories): Promise<string[]> {
  const failed = new Set([...(await readJournal(directories.quarantine)).values()].filter((item) => item.state === 'failed').map((item) => `${item.id}.data`));
  return (await fsp.readdir(directories.quarantine)).filter((name) => name.endsWith('.data') && !failed.has(name));
}

/** Assertions every scenario ends with, once its daemon has stopped cleanly. */
async function expectCleanEnd(directories: ShuttleDirectories, configFile: string, accounting: Accounting): Promise<void> {
  expect(describeAccounting(accounting)).toBe('');
  const released = await hashTree(directories.destination);
  expect([...released].filter(([, entry]) => entry.eicar).map(([name]) => name)).toEqual([]);
  expect([...released].filter(([, entry]) => (entry.mode & 0o777) !== 0o660).map(([name, entry]) => `${name} ${entry.mode.toString(8)}`)).toEqual([]);
  expect(await workingLeftovers([directories.destination, directories.hazard, directories.quarantine])).toEqual([]);
  expect(await strayQuarantineData(directories)).toEqual([]);
  for (const archive of await openArchives(directories.hazard, await sharedHazardKey())) {
    expect(archive.payloadSha256, archive.archive).toBe(archive.sha256);
    expect(archive.sidecar, `sidecar of ${archive.archive}`).toEqual({ sha256: archive.sha256, signature: expect.any(String), archive: archive.archive });
  }
  const audit = await readAudit(directories.log);
  expect(releasesWithoutCleanScan(audit)).toEqual([]);
  const verification = await verifyAudit(configFile);
  expect(verification.status, verification.output).toBe(0);
}

function summary(label: string, accounting: Accounting, extra: string): string {
  const { released, hazarded, failed } = accounting.counts;
  return `${label} (seed ${seed}): ${extra}, released ${released}, hazarded ${hazarded}, failed ${failed}, lost ${accounting.lost.length}, extra ${accounting.extras.length}`;
}

describe('fault injection', () => {
  it('kill -9 at 30+ random moments while 500+ files stream in: every file ends in exactly one place', async () => {
    const MIN_KILLS = 30;
    const rng = random.derive('kill -9');
    const directories = await makeDirectories();
    const staging = path.join(directories.root, 'staging');
    await fsp.mkdir(staging);
    const config = await writeConfig(directories, { clamdSocket: clamd.socketPath });
    const planned = planFiles(rng.derive('files'), {
      count: 520,
      eicarShare: 0.05,
      maxBytes: 2 * MiB,
      folders: ['lab-a', 'lab-b', 'imaging', 'exports'],
      label: 'k',
    });

    const pushed: PlannedFile[] = [];
    let rewrites = 0;
    let stopProducing = false;
    const pace = rng.derive('producer');
    // About 60 s of uploads, so the kills fall while files arrive, not only after.
    const producer = (async () => {
      for (const [index, file] of planned.entries()) {
        if (stopProducing) return;
        await sleep(pace.int(0, 230));
        await pushFile(directories.source, staging, file, pace.chance(0.7) ? 'in-place' : 'rename');
        pushed.push(file);
        // Now and then a client uploads a name again once the first file has left the source.
        if (index >= 60 && pace.chance(1 / 40)) {
          const earlier = pushed[pace.int(0, index - 50)] as PlannedFile;
          if (!earlier.eicar && !(await exists(path.join(directories.source, earlier.relativePath)))) {
            const again = rewriteOf(earlier, seed, `rewrite-${index}`, pace.int(0, 300_000));
            await pushFile(directories.source, staging, again, 'in-place');
            pushed.push(again);
            rewrites++;
          }
        }
      }
    })();
    let producing = true;
    const producerDone = (): void => {
      producing = false;
    };
    producer.then(producerDone, producerDone);

    const killer = rng.derive('kills');
    let kills = 0;
    let killsDuringStartUp = 0;
    let daemon = startDaemon(config);
    const deadline = Date.now() + 150_000;
    let scenarioFailed = true;
    try {
      while (producing || kills < MIN_KILLS) {
        if (Date.now() > deadline) throw new Error(`the kill schedule overran: ${kills} kills, producer ${producing ? 'still running' : 'done'}`);
        // A quarter of the kills land early: during start-up, journal recovery, the first rescan.
        const after = killer.chance(0.25) ? killer.int(30, 500) : killer.int(500, 3000);
        const ended = await Promise.race([daemon.exited, sleep(after).then(() => null)]);
        if (ended !== null) throw new Error(`the daemon exited by itself (${ended}) after ${kills} kills:\n${daemon.output().slice(-4000)}`);
        const started = /shuttle started/.test(daemon.output());
        daemon.signal('SIGKILL');
        expect(await daemon.exited).toBe('SIGKILL');
        kills++;
        if (!started) killsDuringStartUp++;
        await sleep(killer.int(0, 400));
        daemon = startDaemon(config);
      }
      await producer;
      await daemon.waitForOutput(/shuttle started/, 60_000);
      await waitFor(() => pipelineIdle(directories), 150_000, () => describeProgress(directories, daemon));
      scenarioFailed = false;
    } finally {
      stopProducing = true;
      await producer.catch(() => undefined);
      await stopAfter(daemon, scenarioFailed);
    }

    const accounting = await accountAfterStop(directories, pushed);
    const bytes = pushed.reduce((total, file) => total + file.content.length, 0);
    const eicar = pushed.filter((file) => file.eicar).length;
    console.log(
      summary(
        'kill -9',
        accounting,
        `pushed ${pushed.length} files (${(bytes / MiB).toFixed(1)} MiB, ${eicar} EICAR, ${rewrites} names written twice), survived ${kills} kills (${killsDuringStartUp} during start-up)`,
      ),
    );
    console.log(`kill -9: errors the daemon logged: ${summariseErrors(await readDaemonLog(directories.log))}`);

    expect(kills).toBeGreaterThanOrEqual(MIN_KILLS);
    expect(pushed.length).toBeGreaterThanOrEqual(500);
    await expectCleanEnd(directories, config, accounting);
    expect(accounting.counts.failed).toBe(0);
    expect(accounting.counts.hazarded).toBe(eicar);
    expect(accounting.counts.released).toBe(pushed.length - eicar);
    // The audit log names every release and every archive, and nothing that is not there.
    const audit = await readAudit(directories.log);
    expect(new Set(audit.filter((record) => record.event === 'released').map((record) => String(record.path)))).toEqual(new Set(await listFiles(directories.destination)));
    const archives = (await fsp.readdir(directories.hazard)).filter((name) => name.endsWith('.gpg'));
    expect(new Set(audit.filter((record) => record.event === 'hazarded').map((record) => String(record.archive)))).toEqual(new Set(archives));
    await removePassed(directories);
  }, 300_000);

  it('clamd killed mid-stream and restarted: nothing is released while it is down, everything is once it is back', async () => {
    const rng = random.derive('clamd');
    const scanner = await startClamd();
    const directories = await makeDirectories();
    const staging = path.join(directories.root, 'staging');
    await fsp.mkdir(staging);
    const config = await writeConfig(directories, { clamdSocket: scanner.socketPath });
    let daemon: RunningDaemon | null = null;
    const pushed: PlannedFile[] = [];
    let outages = 0;
    let scenarioFailed = true;
    try {
      daemon = await startDaemonReady(config);
      const planned = planFiles(rng.derive('files'), { count: 100, eicarShare: 0.06, maxBytes: MiB, folders: ['scans', 'reports'], label: 'c' });
      const pace = rng.derive('producer');
      const producer = (async () => {
        for (const file of planned) {
          await sleep(pace.int(0, 300));
          await pushFile(directories.source, staging, file, pace.chance(0.5) ? 'in-place' : 'rename');
          pushed.push(file);
        }
      })();
      // Awaited below; if an outage fails first, its error is the one reported.
      producer.catch(() => undefined);

      const schedule = rng.derive('outages');
      for (let outage = 0; outage < 4; outage++) {
        await sleep(schedule.int(1000, 4000));
        await scanner.kill();
        outages++;
        // Files that arrive while clamd is dead cannot have been scanned by anyone: none may be released.
        const unscannable = planFiles(schedule.derive(`outage-${outage}`), { count: 4, eicarShare: 0, maxBytes: 256 * 1024, folders: ['during-outage'], label: `o${outage}` });
        unscannable.push({ relativePath: `during-outage/o${outage}-payload.exe`, content: EICAR_BYTES, sha256: sha256(EICAR_BYTES), eicar: true });
        for (const file of unscannable) {
          await pushFile(directories.source, staging, file, 'rename');
          pushed.push(file);
        }
        const paths = new Set(unscannable.map((file) => file.relativePath));
        await waitFor(
          async () => {
            const refused = new Set((await readDaemonLog(directories.log)).filter((record) => /^not scanned/.test(record.message) && record.code === 'unreachable').map((record) => String(record.path)));
            return [...paths].every((name) => refused.has(name));
          },
          60_000,
          () => describeProgress(directories, daemon),
        );
        const released = await listFiles(directories.destination);
        expect(released.filter((name) => paths.has(name))).toEqual([]);
        const held = [...(await readJournal(directories.quarantine)).values()].filter((item) => paths.has(item.relativePath));
        expect(held.map((item) => `${item.relativePath}:${item.state}`).sort()).toEqual([...paths].map((name) => `${name}:quarantined`).sort());
        await sleep(schedule.int(200, 1500));
        await scanner.start();
      }
      await producer;
      await waitFor(() => pipelineIdle(directories), 120_000, () => describeProgress(directories, daemon));
      scenarioFailed = false;
    } finally {
      await stopAfter(daemon, scenarioFailed);
      await scanner.stop();
    }

    const accounting = await accountAfterStop(directories, pushed);
    const eicar = pushed.filter((file) => file.eicar).length;
    console.log(summary('clamd outages', accounting, `pushed ${pushed.length} files (${eicar} EICAR), clamd killed ${outages} times`));
    await expectCleanEnd(directories, config, accounting);
    expect(accounting.counts.hazarded).toBe(eicar);
    expect(accounting.counts.released).toBe(pushed.length - eicar);
    expect(outages).toBe(4);
    await removePassed(directories);
  }, 180_000);

  it('destination filesystem full: files wait whole in quarantine or source, nothing partial appears, all arrive once there is room', async (context) => {
    const rng = random.derive('full destination');
    const directories = await makeDirectories();
    try {
      await mountTmpfs(directories.destination, '8m');
      mounts.push(directories.destination);
    } catch (error) {
      context.skip(`cannot mount a small tmpfs as the destination: ${(error as Error).message}`);
    }
    const staging = path.join(directories.root, 'staging');
    const movedAway = path.join(directories.root, 'moved-away');
    await fsp.mkdir(staging);
    await fsp.mkdir(movedAway);
    // No reserve: the tmpfs is meant to fill to the last block.
    const config = await writeConfig(directories, { clamdSocket: clamd.socketPath, extraYaml: 'limits:\n  free_space_reserve: 0' });
    const sizes = rng.derive('sizes');
    const large = Array.from({ length: 24 }, (_, index): PlannedFile => {
      const content = seededBytes(seed, `large-${index}`, sizes.int(400 * 1024, 900 * 1024));
      return { relativePath: `big/large-${String(index).padStart(2, '0')}.bin`, content, sha256: sha256(content), eicar: false };
    });
    const small = planFiles(rng.derive('small'), { count: 12, eicarShare: 0.1, maxBytes: 16 * 1024, folders: ['small'], label: 'small' });
    const pushed = sizes.shuffle([...large, ...small]);
    const totalBytes = pushed.reduce((total, file) => total + file.content.length, 0);
    expect(totalBytes).toBeGreaterThan(12 * MiB);

    const daemon = await startDaemonReady(config);
    let scenarioFailed = true;
    try {
      const pace = rng.derive('producer');
      for (const file of pushed) {
        await pushFile(directories.source, staging, file, pace.chance(0.5) ? 'in-place' : 'rename');
        await sleep(pace.int(0, 60));
      }
      // Full: the daemon said so (a release that hit ENOSPC, or intake waiting for space), nothing is being
      // scanned, and nothing still waiting, in source or in quarantine, fits in what is left.
      await waitFor(
        async () => {
          const log = await readDaemonLog(directories.log);
          const short = log.some(
            (record) => (/^release failed/.test(record.message) && record.code === 'ENOSPC') || (/^not taken yet/.test(record.message) && /space/.test(String(record.reason))),
          );
          if (!short) return false;
          const items = [...(await readJournal(directories.quarantine)).values()];
          if (items.some((item) => item.state !== 'clean')) return false;
          const inSource = await Promise.all((await listFiles(directories.source)).map(async (name) => (await fsp.stat(path.join(directories.source, name))).size));
          const waiting = [...items.map((item) => item.size), ...inSource].filter((size) => size > 0);
          return waiting.length > 0 && (await freeBytes(directories.destination)) < Math.min(...waiting);
        },
        60_000,
        () => describeProgress(directories, daemon),
      );

      // Look while nothing moves: every file is whole in destination, in quarantine, in the hazard archive or
      // still in source; nothing under a final name in destination is partial.
      daemon.signal('SIGSTOP');
      try {
        const visible = new Map([...(await hashTree(directories.destination))].filter(([name]) => !path.basename(name).startsWith('.')));
        const inSource = await hashTree(directories.source);
        const archived = await openArchives(directories.hazard, await sharedHazardKey());
        const wholeInQuarantine = new Set<string>();
        for (const item of (await readJournal(directories.quarantine)).values()) {
          const data = await fsp.readFile(path.join(directories.quarantine, `${item.id}.data`)).catch(() => null);
          if (data !== null && sha256(data) === item.sha256) wholeInQuarantine.add(`${item.relativePath}:${item.sha256}`);
        }
        const pushedSha = new Map(pushed.map((file) => [file.relativePath, file.sha256]));
        expect([...visible].filter(([name, entry]) => pushedSha.get(name) !== entry.sha256).map(([name]) => name)).toEqual([]);
        const where = (file: PlannedFile): string | null => {
          if (visible.get(file.relativePath)?.sha256 === file.sha256) return 'released';
          if (archived.some((archive) => archive.relativePath === file.relativePath && archive.payloadSha256 === file.sha256)) return 'hazarded';
          if (wholeInQuarantine.has(`${file.relativePath}:${file.sha256}`)) return 'quarantine';
          if (inSource.get(file.relativePath)?.sha256 === file.sha256) return 'source';
          return null;
        };
        const places = pushed.map(where);
        expect(pushed.filter((_, index) => places[index] === null).map((file) => file.relativePath)).toEqual([]);
        const waitingIn = (place: string): number => places.filter((found) => found === place).length;
        expect(waitingIn('quarantine') + waitingIn('source')).toBeGreaterThan(0);
        console.log(`full destination: ${waitingIn('released')} of ${pushed.length} files released, ${waitingIn('quarantine')} waiting in quarantine, ${waitingIn('source')} in source`);
      } finally {
        daemon.signal('SIGCONT');
      }

      // Room made by taking released files away: more arrive.
      const before = new Set(await listFiles(directories.destination));
      for (const name of before) {
        if (path.basename(name).startsWith('.')) continue;
        await fsp.mkdir(path.dirname(path.join(movedAway, name)), { recursive: true });
        await fsp.copyFile(path.join(directories.destination, name), path.join(movedAway, name));
        await fsp.rm(path.join(directories.destination, name));
      }
      await waitFor(async () => (await listFiles(directories.destination)).some((name) => !path.basename(name).startsWith('.') && !before.has(name)), 60_000, () => describeProgress(directories, daemon));

      // Room made by growing the filesystem: everything arrives.
      await resizeTmpfs(directories.destination, '64m');
      await waitFor(() => pipelineIdle(directories), 90_000, () => describeProgress(directories, daemon));
      scenarioFailed = false;
    } finally {
      await stopAfter(daemon, scenarioFailed);
    }

    const accounting = await accountAfterStop(directories, pushed, movedAway);
    console.log(summary('full destination', accounting, `pushed ${pushed.length} files (${(totalBytes / MiB).toFixed(1)} MiB) into an 8 MiB destination`));
    await expectCleanEnd(directories, config, accounting);
    expect(accounting.counts.released).toBe(pushed.filter((file) => !file.eicar).length);
    await removePassed(directories);
  }, 180_000);

  it('gpg failing for a while: suspect files are held as failed, owner-only, with a reason; clean files keep flowing', async () => {
    const rng = random.derive('gpg');
    const directories = await makeDirectories();
    const staging = path.join(directories.root, 'staging');
    await fsp.mkdir(staging);
    const config = await writeConfig(directories, { clamdSocket: clamd.socketPath });
    const gpg = await switchableGpg(directories.root);
    const environment = { PATH: `${gpg.binDirectory}:${process.env.PATH ?? ''}` };
    const pushed: PlannedFile[] = [];
    const pushAll = async (files: readonly PlannedFile[]): Promise<void> => {
      const pace = rng.derive(`producer-${pushed.length}`);
      for (const file of files) {
        await pushFile(directories.source, staging, file, pace.chance(0.5) ? 'in-place' : 'rename');
        pushed.push(file);
        await sleep(pace.int(0, 80));
      }
    };
    const withEicar = (files: PlannedFile[], count: number, label: string): PlannedFile[] => {
      for (let index = 0; index < count; index++) {
        files.splice(rng.int(0, files.length), 0, { relativePath: `suspect/${label}-${index}.exe`, content: EICAR_BYTES, sha256: sha256(EICAR_BYTES), eicar: true });
      }
      return files;
    };

    let daemon: RunningDaemon = await startDaemonReady(config, environment);
    let failedIds: string[] = [];
    let scenarioFailed = true;
    try {
      await gpg.fail();
      const whileBroken = withEicar(planFiles(rng.derive('broken'), { count: 40, eicarShare: 0, maxBytes: 512 * 1024, folders: ['flowing'], label: 'b' }), 6, 'broken');
      await pushAll(whileBroken);
      const suspects = new Set(whileBroken.filter((file) => file.eicar).map((file) => file.relativePath));
      await waitFor(
        async () => {
          const items = [...(await readJournal(directories.quarantine)).values()];
          const released = new Set(await listFiles(directories.destination));
          return (
            (await listFiles(directories.source)).length === 0 &&
            items.filter((item) => item.state === 'failed').length === suspects.size &&
            whileBroken.every((file) => file.eicar || released.has(file.relativePath))
          );
        },
        90_000,
        () => describeProgress(directories, daemon),
      );

      const failed = [...(await readJournal(directories.quarantine)).values()].filter((item) => item.state === 'failed');
      failedIds = failed.map((item) => item.id);
      expect(new Set(failed.map((item) => item.relativePath))).toEqual(suspects);
      for (const item of failed) {
        expect(item.reason, item.relativePath).toMatch(/hazard archive failed.*injected/);
        const data = path.join(directories.quarantine, `${item.id}.data`);
        expect((await fsp.stat(data)).mode & 0o777, item.relativePath).toBe(0o600);
        expect(sha256(await fsp.readFile(data))).toBe(item.sha256);
      }
      expect(await fsp.readdir(directories.hazard)).toEqual([]);
      expect(await gpg.failedRuns()).toBeGreaterThanOrEqual(suspects.size);
      const auditFailures = (await readAudit(directories.log)).filter((record) => record.event === 'failed');
      expect(new Set(auditFailures.map((record) => String(record.id)))).toEqual(new Set(failedIds));
      expect(auditFailures.every((record) => /injected/.test(String(record.reason)))).toBe(true);

      // gpg works again: new suspects are archived; the ones already failed stay held, also across a restart.
      await gpg.heal();
      await pushAll(withEicar(planFiles(rng.derive('healed'), { count: 10, eicarShare: 0, maxBytes: 256 * 1024, folders: ['flowing'], label: 'h' }), 3, 'healed'));
      await waitFor(() => pipelineIdle(directories), 90_000, () => describeProgress(directories, daemon));
      expect(await stopDaemon(daemon)).toBe(0);
      daemon = await startDaemonReady(config, environment);
      await pushAll(withEicar([], 1, 'restarted'));
      await waitFor(() => pipelineIdle(directories), 90_000, () => describeProgress(directories, daemon));
      scenarioFailed = false;
    } finally {
      await gpg.heal();
      await stopAfter(daemon, scenarioFailed);
    }

    const accounting = await accountAfterStop(directories, pushed);
    console.log(summary('gpg failing', accounting, `pushed ${pushed.length} files (${pushed.filter((file) => file.eicar).length} EICAR), ${await gpg.failedRuns()} gpg runs failed`));
    await expectCleanEnd(directories, config, accounting);
    const held = [...(await readJournal(directories.quarantine)).values()].filter((item) => item.state === 'failed');
    expect(held.map((item) => item.id).sort()).toEqual([...failedIds].sort());
    for (const item of held) expect((await fsp.stat(path.join(directories.quarantine, `${item.id}.data`))).mode & 0o777).toBe(0o600);
    expect(accounting.counts).toEqual({ released: pushed.filter((file) => !file.eicar).length, hazarded: 4, failed: 6, 'left in source': 0 });
    await removePassed(directories);
  }, 180_000);
});
