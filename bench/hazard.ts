// Hazard archive throughput: 20 suspect files of 50 MiB through HazardArchiver.archive (header + stream into
// gpg, fsync, link, sidecar, secure removal of the plaintext) against plain `gpg --encrypt` of the same
// files with the same key, the same gpg options and a throw-away GNUPGHOME per file, sequentially in both.
// A third run adds to plain gpg what archive() guarantees on top (fsync of the output, secure removal of
// the input), to show what the header, the hash check and the pipe cost by themselves.
//
//   npm run bench:hazard            (BENCH_DIR=/some/disk to work elsewhere than the system temp directory)

import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import winston from 'winston';
import { HazardArchiver, keyringOptions, secureRemove } from '../src/hazard.js';
import { quarantineDataName, type ItemRecord } from '../src/item.js';
import { Zone } from '../src/zone.js';

const execFileAsync = promisify(execFile);
const GPG = process.env.SHUTTLE_BENCH_GPG ?? 'gpg';
const FILES = Number(process.env.BENCH_FILES ?? 20);
const FILE_MIB = Number(process.env.BENCH_FILE_MIB ?? 50);
const MiB = 1024 * 1024;
const TARGET_RATIO = 1.2;

async function main(): Promise<void> {
  const work = await fsp.realpath(await fsp.mkdtemp(path.join(process.env.BENCH_DIR ?? os.tmpdir(), 'shuttle-bench-hazard-')));
  try {
    const directories = { samples: path.join(work, 'samples'), quarantine: path.join(work, 'quarantine'), hazard: path.join(work, 'hazard'), plain: path.join(work, 'plain') };
    for (const directory of Object.values(directories)) await fsp.mkdir(directory, { mode: 0o700 });
    const keyPath = await makePublicKey(path.join(work, 'keys'));
    const samples = await writeSamples(directories.samples);
    const totalMiB = FILES * FILE_MIB;
    console.log(`hazard benchmark: ${FILES} files of ${FILE_MIB} MiB (${totalMiB} MiB), gpg ${await gpgVersion()}, ${os.cpus().length} CPUs, in ${work}`);

    // Each phase starts with the page cache clean, so no phase pays for another's writeback.
    await settle();
    const plain = await timePlainGpg(samples, keyPath, directories.plain, null);
    const durableCopies = await copyIntoQuarantine(samples, directories.quarantine);
    await settle();
    const durable = await timePlainGpg(durableCopies, keyPath, directories.plain, directories.quarantine);
    const quarantined = await copyIntoQuarantine(samples, directories.quarantine);
    await settle();
    const archived = await timeArchiver(quarantined, keyPath, directories.quarantine, directories.hazard);

    const rate = (seconds: number) => `${(totalMiB / seconds).toFixed(0)} MiB/s`;
    console.log(`plain gpg --encrypt                      ${plain.toFixed(2)} s  ${rate(plain)}`);
    console.log(`gpg --encrypt + fsync + secure removal   ${durable.toFixed(2)} s  ${rate(durable)}  (the same guarantees, no header)`);
    console.log(`HazardArchiver.archive                   ${archived.toFixed(2)} s  ${rate(archived)}`);
    const ratio = archived / plain;
    console.log(`ratio archive / plain gpg                ${ratio.toFixed(2)}x (target ${TARGET_RATIO}x): ${ratio <= TARGET_RATIO ? 'met' : 'missed'}`);
    console.log(`ratio archive / gpg with the guarantees  ${(archived / durable).toFixed(2)}x`);
  } finally {
    await execFileAsync('gpgconf', ['--homedir', path.join(work, 'keys'), '--kill', 'all']).catch(() => undefined);
    await fsp.rm(work, { recursive: true, force: true });
  }
}

/**
 * Baseline: per file, a fresh GNUPGHOME, import the key, gpg --encrypt the file to a file, remove the home.
 * With `removeFrom`, also what archive() guarantees besides: the output fsynced, the input overwritten and removed.
 */
async function timePlainGpg(samples: readonly Sample[], keyPath: string, output: string, removeFrom: string | null): Promise<number> {
  const zone = removeFrom === null ? null : new Zone([removeFrom]);
  const inputs = zone === null || removeFrom === null ? null : await zone.openDirectory(removeFrom);
  const started = performance.now();
  for (const [index, sample] of samples.entries()) {
    const home = await fsp.mkdtemp(path.join(output, '.gnupg-'));
    try {
      const options = keyringOptions(home);
      const { stdout } = await execFileAsync(GPG, [...options, '--status-fd', '1', '--import', keyPath]);
      const recipient = /IMPORT_OK \d+ ([0-9A-F]+)/.exec(stdout)?.[1];
      if (!recipient) throw new Error('the benchmark key did not import');
      const encrypted = path.join(output, `${removeFrom === null ? 'plain' : 'durable'}-${index}.gpg`);
      await execFileAsync(GPG, [...options, '--encrypt', '--recipient', recipient, '--output', encrypted, sample.path]);
      if (zone !== null && inputs !== null) {
        const handle = await fsp.open(encrypted, 'r');
        await handle.sync();
        await handle.close();
        await secureRemove(zone, inputs, path.basename(sample.path));
      }
    } finally {
      await fsp.rm(home, { recursive: true, force: true });
    }
  }
  const seconds = (performance.now() - started) / 1000;
  await inputs?.close();
  return seconds;
}

/** Shuttle: archive() of each quarantine copy, timing the whole job including the secure removal. */
async function timeArchiver(samples: readonly Sample[], keyPath: string, quarantinePath: string, hazardPath: string): Promise<number> {
  const zone = new Zone([quarantinePath, hazardPath]);
  const quarantine = await zone.openDirectory(quarantinePath);
  const hazard = await zone.openDirectory(hazardPath);
  const archiver = new HazardArchiver({ zone, hazardDirectory: hazard, keyPath, logger: winston.createLogger({ silent: true }), userName: async () => 'bench' });
  let seconds = 0;
  try {
    for (const [index, sample] of samples.entries()) {
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
      const started = performance.now();
      await archiver.archive(item, { directory: quarantine, name: quarantineDataName(id) }, new AbortController().signal);
      seconds += (performance.now() - started) / 1000;
    }
  } finally {
    await quarantine.close();
    await hazard.close();
  }
  return seconds;
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

async function settle(): Promise<void> {
  await execFileAsync('sync');
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
