// Suspect files leave quarantine only encrypted (invariant 6). The quarantine copy is encrypted with
// `gpg --encrypt` to the security staff's public key, in a keyring made for that one archive and removed
// afterwards, so no keyring of the host is read or changed. The bytes stream from the file to gpg through
// the kernel (cat joins header and file into gpg's pipe), so memory stays flat for files of any size.
//
// What gpg encrypts is one line of JSON (the header: where the file came from, who uploaded it, what the
// scanners said) followed by exactly `payloadBytes` bytes of the file. Decrypted elsewhere, the first
// newline separates the two. An unencrypted sidecar beside the archive holds only what triage needs.
//
// Order of durability: the archive first (temporary name, fsync, link to a fresh name, fsync the directory);
// only then the sidecar (written the same way) and the secure removal of the plaintext (overwritten with
// random bytes, fsynced, unlinked). When anything before the archive is durable fails, the plaintext is left
// exactly as it was.
//
// gpg keeps one core busy for as long as it encrypts; everything else an archive does is mostly waiting for
// the disk. Archives run concurrently (the pipeline hands over several suspects at once), but only
// `encryptionConcurrency` of them encrypt at a time: while one encrypts, the others import their key or
// fsync, publish and securely remove, so the disk work hides behind the encryption instead of adding to it.

import { createHash, randomFill } from 'node:crypto';
import { constants as fsc, promises as fsp, type Stats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import type { Logger } from 'winston';
import type { ItemRecord } from './item.js';
import type { ScanReport } from './scanners/scanner.js';
import type { VerifiedDirectory, Zone } from './zone.js';

export const HAZARD_FORMAT = 'shuttle-hazard/1';
export const HAZARD_SIDECAR_FORMAT = 'shuttle-hazard-sidecar/1';
/** Archives and sidecars: owner and group, never executable (invariant 7). Their contents are ciphertext or triage data. */
export const HAZARD_FILE_MODE = 0o660;
export const DEFAULT_GPG_COMMAND = 'gpg';
/** coreutils cat: joins the header and the file in the kernel's pipe, so the bytes skip this process. */
const JOIN_COMMAND = 'cat';

const CHUNK_BYTES = 1024 * 1024;
/** Keyrings live next to the plaintext, inside the zone, under this prefix; a crash may leave one behind. */
const SCRATCH_PREFIX = '.shuttle-gnupg-';
const ARCHIVE_TEMPORARY = /^\.shuttle-[0-9a-z]+-[0-9a-f]+\.(?:gpg|json)\.tmp$/;
/** How many `.N` suffixes to try before giving up on a free name. */
const MAX_NAME_SUFFIX = 1000;
const STDERR_QUOTE_CHARS = 600;
const KEY_CHECK_TIMEOUT_MS = 30_000;
const NAME_LOOKUP_TIMEOUT_MS = 5_000;

/** One scanner's say about the file, as carried inside the archive. */
export interface HazardVerdict {
  readonly scanner: string;
  readonly version: string | null;
  readonly verdict: 'clean' | 'suspect' | 'failed';
  readonly signature: string | null;
  readonly reason?: string;
  readonly durationMs: number;
}

/** The JSON line at the start of the encrypted payload. */
export interface HazardHeader {
  readonly format: typeof HAZARD_FORMAT;
  readonly id: string;
  /** Path relative to source_path, as uploaded. */
  readonly relativePath: string;
  readonly size: number;
  readonly sha256: string;
  readonly uploader: { readonly uid: number; readonly name: string | null };
  readonly quarantinedAt: string;
  readonly archivedAt: string;
  /** The combined signature name(s) the item was held for. */
  readonly signature: string | null;
  readonly verdicts: readonly HazardVerdict[];
  /** Exactly this many bytes of the original file follow the header's newline. */
  readonly payloadBytes: number;
}

/** The unencrypted `<archive base>.json`: enough to triage without decrypting, nothing about who or where. */
export interface HazardSidecar {
  readonly format: typeof HAZARD_SIDECAR_FORMAT;
  readonly id: string;
  readonly archive: string;
  readonly signature: string | null;
  readonly size: number;
  readonly sha256: string;
  readonly quarantinedAt: string;
  readonly archivedAt: string;
}

export type HazardStage = 'key' | 'read' | 'encrypt' | 'verify' | 'store' | 'remove';

/**
 * Archiving a suspect file did not complete. Unless `archiveName` is set, nothing was published and the
 * plaintext is untouched in quarantine. With `archiveName`, the archive is durable and only the secure
 * removal of the plaintext failed: retry that with `secureRemove`, not a second archive.
 */
export class HazardError extends Error {
  readonly code = 'EHAZARD';
  constructor(
    readonly id: string,
    readonly stage: HazardStage,
    message: string,
    readonly archiveName: string | null = null,
    options?: { cause?: unknown },
  ) {
    super(`hazard archive of item ${id}: ${message}`, options);
    this.name = 'HazardError';
  }

  get archived(): boolean {
    return this.archiveName !== null;
  }
}

/** The configured public key cannot be used to encrypt. The daemon must not start with it. */
export class HazardKeyError extends Error {
  readonly code = 'EHAZARDKEY';
  constructor(
    readonly keyPath: string,
    readonly problem: string,
  ) {
    super(`hazard encryption key ${keyPath}: ${problem}`);
    this.name = 'HazardKeyError';
  }
}

export interface HazardArchiverDependencies {
  readonly zone: Zone;
  /** hazard_archive_path, opened through the zone. */
  readonly hazardDirectory: VerifiedDirectory;
  /** hazard_encryption_key_path: one or more OpenPGP public keys; the archive is encrypted to each. */
  readonly keyPath: string;
  readonly logger: Logger;
  readonly gpgCommand?: string;
  readonly now?: () => Date;
  /** uid → account name; defaults to `getent passwd`, so NSS accounts (winbind, LDAP) resolve too. */
  readonly userName?: (uid: number) => Promise<string | null>;
  /**
   * How many gpg encryptions may run at once (each keeps one core busy); further archives wait their turn
   * after preparing. Default: half the cores, at least one, which leaves the rest to the scanners.
   */
  readonly encryptionConcurrency?: number;
}

export interface HazardPlaintext {
  /** Where the quarantine copy is (quarantine_path); the throw-away keyring is made here too. */
  readonly directory: VerifiedDirectory;
  readonly name: string;
}

export interface HazardArchiveResult {
  readonly archiveName: string;
  /** null when the sidecar could not be written (logged); the archive itself is complete. */
  readonly sidecarName: string | null;
}

/** Milliseconds spent in each stage of one archive, as logged when it completes. */
export interface HazardStageTimings {
  /** Throw-away keyring made and the key imported. */
  keyMs: number;
  /** Waiting for an encryption slot while other archives encrypted. */
  queuedMs: number;
  /** gpg encrypting, with the plaintext hashed on the side. */
  encryptMs: number;
  /** fsync of the archive. */
  syncMs: number;
  /** Linked under its final name, the directory fsynced. */
  publishMs: number;
  /** Sidecar written and the plaintext securely removed (side by side). */
  removeMs: number;
}

/** Encrypts suspect quarantine copies into hazard_archive_path and then securely removes them. */
export class HazardArchiver {
  private readonly gpgCommand: string;
  private readonly now: () => Date;
  private readonly userName: (uid: number) => Promise<string | null>;
  private readonly encryptionSlots: Slots;

  constructor(private readonly deps: HazardArchiverDependencies) {
    this.gpgCommand = deps.gpgCommand ?? DEFAULT_GPG_COMMAND;
    this.now = deps.now ?? (() => new Date());
    this.userName = deps.userName ?? lookUpUserName;
    const concurrency = deps.encryptionConcurrency ?? Math.max(1, Math.floor(os.availableParallelism() / 2));
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError(`encryptionConcurrency must be a positive integer, not ${concurrency}`);
    this.encryptionSlots = new Slots(concurrency);
  }

  /**
   * Encrypt `plaintext` (the quarantine copy of `item`, which must be suspect) into a new archive, write its
   * sidecar, then securely remove the plaintext. Throws HazardError; see there for what each case leaves.
   */
  async archive(item: ItemRecord, plaintext: HazardPlaintext, signal: AbortSignal): Promise<HazardArchiveResult> {
    if (item.state !== 'suspect') {
      throw new HazardError(item.id, 'read', `the item is ${item.state}, not suspect: refusing to archive it`);
    }
    const started = performance.now();
    const clock = new StageClock();
    const archiveName = await this.encryptAndStore(item, plaintext, signal, clock);
    // Both need only the archive to be durable, not each other: their fsyncs may share a journal commit.
    const [sidecarName, removal] = await Promise.all([
      this.writeSidecar(item, archiveName),
      secureRemove(this.deps.zone, plaintext.directory, plaintext.name).then(
        () => null,
        (error: unknown) => ({ error }),
      ),
    ]);
    clock.lap('removeMs');
    if (removal !== null) {
      const { error } = removal;
      throw new HazardError(
        item.id,
        'remove',
        `the archive ${archiveName} is complete, but the plaintext ${plaintext.directory.realEntry(plaintext.name)} could not be removed: ${errorText(error)}`,
        archiveName,
        { cause: error },
      );
    }
    this.deps.logger.info('suspect file encrypted into the hazard archive; plaintext removed', {
      id: item.id,
      sha256: item.sha256,
      size: item.size,
      signature: item.signature,
      archive: this.deps.hazardDirectory.realEntry(archiveName),
      durationMs: Math.round(performance.now() - started),
      stagesMs: clock.rounded(),
    });
    return { archiveName, sidecarName };
  }

  /**
   * Remove what an interrupted archive left: throw-away keyrings in `scratchDirectory` (the quarantine) and
   * temporary archive and sidecar names in hazard_archive_path. Call once at start, before any archive runs.
   */
  async removeLeftovers(scratchDirectory: VerifiedDirectory): Promise<void> {
    const { zone, hazardDirectory, logger } = this.deps;
    for (const name of await scratchDirectory.list()) {
      if (!name.startsWith(SCRATCH_PREFIX)) continue;
      await removeScratch(zone, scratchDirectory, name);
      logger.info('removed a keyring left by an interrupted hazard archive', { path: scratchDirectory.realEntry(name) });
    }
    for (const name of await hazardDirectory.list()) {
      if (!ARCHIVE_TEMPORARY.test(name)) continue;
      await zone.unlinkIn(hazardDirectory, name);
      logger.info('removed an incomplete hazard archive', { path: hazardDirectory.realEntry(name) });
    }
    await hazardDirectory.sync();
  }

  /** Everything up to a durable archive under its final name. On failure, nothing is published. */
  private async encryptAndStore(item: ItemRecord, plaintext: HazardPlaintext, signal: AbortSignal, clock: StageClock): Promise<string> {
    const { zone, hazardDirectory } = this.deps;
    const source = await this.openPlaintext(item, plaintext);
    const temporary = archiveTemporaryName(item.id, 'gpg');
    let keyring: ScratchKeyring | null = null;
    let published = false;
    try {
      keyring = await ScratchKeyring.create(zone, plaintext.directory, item.id, this.gpgCommand, signal).catch((error: unknown) => {
        throw new HazardError(item.id, 'key', errorText(error), null, { cause: error });
      });
      // The account name lookup runs while the key is imported.
      const headerPromise = this.header(item);
      const recipients = await keyring.importKeys(this.deps.keyPath).catch((error: unknown) => {
        throw new HazardError(item.id, 'key', errorText(error), null, { cause: error });
      });
      const header = await headerPromise;
      await removeIfPresent(zone, hazardDirectory, temporary);
      const target = await zone.createExclusive(hazardDirectory, temporary, HAZARD_FILE_MODE);
      try {
        await target.chmod(HAZARD_FILE_MODE);
        clock.lap('keyMs');
        await this.runGpg(item, header, source, target, keyring, recipients, signal, clock);
        await target.sync();
        clock.lap('syncMs');
      } finally {
        await target.close();
      }
      const archiveName = await publishUnderFreshName(zone, hazardDirectory, temporary, archiveBaseName(this.now(), item.id), '.gpg');
      published = true;
      clock.lap('publishMs');
      return archiveName;
    } catch (error) {
      if (error instanceof HazardError) throw error;
      throw new HazardError(item.id, 'store', `${errorText(error)}; the plaintext stays in quarantine`, null, { cause: error });
    } finally {
      await source.close().catch(() => undefined);
      if (keyring !== null) await keyring.remove().catch((error: unknown) => this.warnCleanup(plaintext.directory, error));
      if (!published) {
        await removeIfPresent(zone, hazardDirectory, temporary).catch((error: unknown) => this.warnCleanup(hazardDirectory, error));
        await keepOwnerOnly(zone, plaintext);
      }
    }
  }

  private async openPlaintext(item: ItemRecord, plaintext: HazardPlaintext): Promise<FileHandle> {
    let handle: FileHandle;
    try {
      handle = await fsp.open(plaintext.directory.entry(plaintext.name), fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
    } catch (error) {
      throw new HazardError(item.id, 'read', `cannot open ${plaintext.directory.realEntry(plaintext.name)}: ${errorText(error)}`, null, { cause: error });
    }
    const stats = await handle.stat();
    if (!stats.isFile() || stats.size !== item.size) {
      await handle.close();
      const what = stats.isFile() ? `${stats.size} bytes, but ${item.size} were taken at intake` : 'not a regular file';
      throw new HazardError(item.id, 'verify', `${plaintext.directory.realEntry(plaintext.name)} is ${what}`);
    }
    return handle;
  }

  private async header(item: ItemRecord): Promise<HazardHeader> {
    return {
      format: HAZARD_FORMAT,
      id: item.id,
      relativePath: item.relativePath,
      size: item.size,
      sha256: item.sha256,
      uploader: { uid: item.uploaderUid, name: await Promise.resolve(item.uploaderUid).then(this.userName).catch(() => null) },
      quarantinedAt: item.quarantinedAt,
      archivedAt: this.now().toISOString(),
      signature: item.signature ?? null,
      verdicts: (item.reports ?? []).map(hazardVerdict),
      payloadBytes: item.size,
    };
  }

  /**
   * The file's bytes never pass through this process: `cat` joins the header line and the quarantine copy
   * (handed over as an open descriptor) straight into gpg's input pipe, and gpg writes the ciphertext into
   * `target` by descriptor. Meanwhile the same bytes are hashed here, and must be the ones taken at intake.
   *
   * gpg and cat are started before this archive's turn to encrypt comes: gpg loads the key and both wait
   * for the header while another archive encrypts. The turn (an encryption slot) starts the bytes flowing
   * and ends when gpg has written its last byte.
   */
  private async runGpg(
    item: ItemRecord,
    header: HazardHeader,
    source: FileHandle,
    target: FileHandle,
    keyring: ScratchKeyring,
    recipients: readonly string[],
    signal: AbortSignal,
    clock: StageClock,
  ): Promise<void> {
    const gpg = execa(this.gpgCommand, [...keyring.gpgOptions(), '--encrypt', ...recipients.flatMap((fpr) => ['--recipient', fpr]), '--output', '-'], {
      stdin: 'pipe',
      stdout: descriptor(target.fd),
      stderr: 'pipe',
      cancelSignal: signal,
      reject: false,
      env: keyring.env(),
    });
    let joiner;
    try {
      // cat reads the header from its input before the file: until the header comes, nothing flows.
      joiner = execa(JOIN_COMMAND, ['-', '/dev/fd/3'], {
        stdio: ['pipe', gpg.stdin, 'pipe', descriptor(source.fd)],
        cancelSignal: signal,
        reject: false,
        env: { LC_ALL: 'C' },
      });
    } finally {
      // gpg's input is now cat's alone: gpg sees its end when cat exits (or if cat never started).
      gpg.stdin.destroy();
    }
    let release: () => void;
    try {
      release = await this.encryptionSlots.acquire(signal);
    } catch {
      // Only an abort ends the wait, and the same signal stops cat and gpg before a byte of the file moved.
      await Promise.all([joiner, gpg]);
      throw new HazardError(item.id, 'encrypt', 'aborted while waiting to encrypt; the plaintext stays in quarantine');
    }
    clock.lap('queuedMs');
    let hashed: { sha256: string | null; error: unknown };
    let joined: Awaited<typeof joiner>;
    let encrypted: Awaited<typeof gpg>;
    let before: Stats;
    try {
      before = await source.stat();
      joiner.stdin.end(Buffer.from(`${JSON.stringify(header)}\n`, 'utf8'));
      const hashing = hashExactly(source, item.size, signal).then(
        (sha256) => ({ sha256, error: null }),
        (error: unknown) => ({ sha256: null, error }),
      );
      encrypted = await gpg;
      // gpg is done with the CPU; the next archive may encrypt while this one checks and waits for the disk.
      release();
      [hashed, joined] = await Promise.all([hashing, joiner]);
    } finally {
      release();
    }
    clock.lap('encryptMs');

    if (encrypted.isCanceled || joined.isCanceled || signal.aborted) throw new HazardError(item.id, 'encrypt', 'aborted; the plaintext stays in quarantine');
    if (encrypted.failed && encrypted.exitCode === undefined) {
      throw new HazardError(item.id, 'encrypt', `cannot run ${this.gpgCommand}: ${firstLine(encrypted.shortMessage ?? encrypted.message ?? '')}`, null, { cause: encrypted });
    }
    if (encrypted.exitCode !== 0) {
      throw new HazardError(item.id, 'encrypt', `${this.gpgCommand} --encrypt exited with status ${encrypted.exitCode}: ${quoteStderr(encrypted.stderr)}`);
    }
    if (joined.exitCode !== 0) {
      const why = joined.exitCode === undefined ? firstLine(joined.shortMessage ?? joined.message ?? '') : `exited with status ${joined.exitCode}: ${quoteStderr(joined.stderr)}`;
      throw new HazardError(item.id, 'read', `${JOIN_COMMAND}, feeding gpg, ${why}`, null, { cause: joined });
    }
    if (hashed.error !== null) {
      const stage = (hashed.error as { stage?: unknown }).stage === 'verify' ? 'verify' : 'read';
      throw new HazardError(item.id, stage, errorText(hashed.error), null, { cause: hashed.error });
    }
    if (hashed.sha256 !== item.sha256) {
      throw new HazardError(item.id, 'verify', `the quarantine copy hashes to ${hashed.sha256}, intake recorded ${item.sha256}; not archived`);
    }
    // cat and this process read the file side by side: it must not have changed while they did.
    const after = await source.stat();
    if (after.size !== before.size || after.mtimeMs !== before.mtimeMs || after.ctimeMs !== before.ctimeMs) {
      throw new HazardError(item.id, 'verify', 'the quarantine copy changed while it was being encrypted; not archived');
    }
  }

  /** For an archive published before a crash: its sidecar, written now if the crash came first. */
  async ensureSidecar(item: ItemRecord, archiveName: string): Promise<string | null> {
    const sidecarName = `${archiveName.slice(0, -'.gpg'.length)}.json`;
    if ((await this.deps.hazardDirectory.list()).includes(sidecarName)) return sidecarName;
    return this.writeSidecar(item, archiveName);
  }

  private async writeSidecar(item: ItemRecord, archiveName: string): Promise<string | null> {
    const { zone, hazardDirectory, logger } = this.deps;
    const sidecar: HazardSidecar = {
      format: HAZARD_SIDECAR_FORMAT,
      id: item.id,
      archive: archiveName,
      signature: item.signature ?? null,
      size: item.size,
      sha256: item.sha256,
      quarantinedAt: item.quarantinedAt,
      archivedAt: this.now().toISOString(),
    };
    const temporary = archiveTemporaryName(item.id, 'json');
    try {
      await removeIfPresent(zone, hazardDirectory, temporary);
      const handle = await zone.createExclusive(hazardDirectory, temporary, HAZARD_FILE_MODE);
      try {
        await handle.chmod(HAZARD_FILE_MODE);
        await handle.writeFile(`${JSON.stringify(sidecar, null, 2)}\n`);
        await handle.sync();
      } finally {
        await handle.close();
      }
      return await publishUnderFreshName(zone, hazardDirectory, temporary, archiveName.slice(0, -'.gpg'.length), '.json');
    } catch (error) {
      await removeIfPresent(zone, hazardDirectory, temporary).catch(() => undefined);
      logger.error('hazard sidecar not written; the encrypted archive is complete', {
        id: item.id,
        archive: hazardDirectory.realEntry(archiveName),
        code: (error as NodeJS.ErrnoException).code,
        error: errorText(error),
      });
      return null;
    }
  }

  private warnCleanup(directory: VerifiedDirectory, error: unknown): void {
    this.deps.logger.warn('hazard archive: cleaning up after itself failed', {
      path: directory.realPath,
      code: (error as NodeJS.ErrnoException).code,
      error: errorText(error),
    });
  }
}

/**
 * Overwrite `name` with random bytes of the same length, fsync, unlink, fsync the directory. Anyone still
 * holding the file open reads random bytes afterwards. On copy-on-write or flash storage the old blocks may
 * survive underneath; that is the storage's business, the file system no longer has them.
 */
export async function secureRemove(zone: Zone, directory: VerifiedDirectory, name: string): Promise<void> {
  zone.assertWritable('overwrite', directory.realEntry(name));
  // O_NONBLOCK: a FIFO put in the way fails to open instead of hanging; it is then refused below.
  const handle = await fsp.open(directory.entry(name), fsc.O_WRONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) throw new Error(`${directory.realEntry(name)} is not a regular file; refusing to overwrite it`);
    const buffer = Buffer.allocUnsafe(Math.min(CHUNK_BYTES, Math.max(stats.size, 1)));
    let position = 0;
    while (position < stats.size) {
      const length = Math.min(buffer.length, stats.size - position);
      await fillRandom(buffer, length);
      let written = 0;
      while (written < length) {
        const { bytesWritten } = await handle.write(buffer, written, length - written, position + written);
        written += bytesWritten;
      }
      position += length;
    }
    await handle.sync();
  } finally {
    await handle.close();
  }
  await zone.unlinkIn(directory, name);
  await directory.sync();
}

/**
 * Refuses (HazardKeyError) a key file that cannot be used: missing, unreadable, not OpenPGP, holding secret
 * key material, or with no valid key able to encrypt. It is imported into a throw-away keyring under
 * `scratchDirectory` (default: the system temp directory) and a test message is encrypted to it.
 */
export async function validateHazardKey(
  keyPath: string,
  options: { gpgCommand?: string; scratchDirectory?: string; signal?: AbortSignal } = {},
): Promise<void> {
  const gpg = options.gpgCommand ?? DEFAULT_GPG_COMMAND;
  const signal = options.signal ?? AbortSignal.timeout(KEY_CHECK_TIMEOUT_MS);
  let stats;
  try {
    stats = await fsp.lstat(keyPath);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new HazardKeyError(keyPath, code === 'ENOENT' ? 'does not exist' : `cannot be read: ${errorText(error)}`);
  }
  if (stats.isSymbolicLink()) throw new HazardKeyError(keyPath, 'is a symbolic link; configure the real path');
  if (!stats.isFile()) throw new HazardKeyError(keyPath, 'is not a regular file');
  if (stats.size === 0) throw new HazardKeyError(keyPath, 'is empty; it must hold the OpenPGP public key of security staff');

  const home = await fsp.mkdtemp(path.join(options.scratchDirectory ?? os.tmpdir(), SCRATCH_PREFIX));
  try {
    const common = keyringOptions(home);
    const listing = await execa(gpg, [...common, '--with-colons', '--show-keys', keyPath], { reject: false, cancelSignal: signal, env: gpgEnv(home), stdin: 'ignore' });
    if (listing.failed && listing.exitCode === undefined) {
      throw new HazardKeyError(keyPath, `cannot run ${gpg}: ${firstLine(listing.shortMessage ?? listing.message ?? '')}`);
    }
    const records = String(listing.stdout ?? '').split('\n').map((line) => line.split(':'));
    if (records.some((fields) => fields[0] === 'sec' || fields[0] === 'ssb')) {
      throw new HazardKeyError(keyPath, 'holds secret key material; only the public key belongs on this host (gpg --armor --export)');
    }
    const keys = records.filter((fields) => fields[0] === 'pub');
    if (listing.exitCode !== 0 || keys.length === 0) {
      throw new HazardKeyError(keyPath, `is not an OpenPGP public key (${quoteStderr(listing.stderr)})`);
    }
    const usable = keys.filter((fields) => !['r', 'e', 'd', 'i'].includes(fields[1] ?? '') && (fields[11] ?? '').includes('E'));
    if (usable.length === 0) {
      throw new HazardKeyError(keyPath, 'has no key that can encrypt (every key is revoked, expired, or lacks an encryption subkey)');
    }

    const keyring = new ScratchKeyring(home, gpg, signal);
    const recipients = await keyring.importKeys(keyPath).catch((error: unknown) => {
      throw new HazardKeyError(keyPath, errorText(error));
    });
    const trial = await execa(gpg, [...common, '--encrypt', ...recipients.flatMap((fpr) => ['--recipient', fpr]), '--output', '-'], {
      input: 'shuttle hazard key check\n',
      encoding: 'buffer',
      reject: false,
      cancelSignal: signal,
      env: gpgEnv(home),
    });
    if (trial.exitCode !== 0 || trial.stdout.length === 0) {
      throw new HazardKeyError(keyPath, `a test encryption failed (${trial.exitCode === undefined ? firstLine(trial.shortMessage ?? trial.message ?? '') : quoteStderr(Buffer.from(trial.stderr).toString('utf8'))})`);
    }
  } finally {
    await fsp.rm(home, { recursive: true, force: true });
  }
}

/** At most `limit` holders at a time; waiters are served in the order they came. */
class Slots {
  private held = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(private readonly limit: number) {}

  /** Resolves with the function that gives the slot back (once; later calls do nothing). Rejects on abort. */
  async acquire(signal: AbortSignal): Promise<() => void> {
    signal.throwIfAborted();
    if (this.held < this.limit) {
      this.held++;
    } else {
      await new Promise<void>((resolve, reject) => {
        const grant = (): void => {
          signal.removeEventListener('abort', cancel);
          resolve();
        };
        const cancel = (): void => {
          const index = this.waiting.indexOf(grant);
          if (index !== -1) this.waiting.splice(index, 1);
          reject(signal.reason);
        };
        this.waiting.push(grant);
        signal.addEventListener('abort', cancel, { once: true });
      });
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      // A waiter takes the slot over as it is; only when nobody waits does the count go down.
      const next = this.waiting.shift();
      if (next === undefined) this.held--;
      else next();
    };
  }
}

/** Splits the time of one archive into stages: each lap adds the time since the previous lap to a stage. */
class StageClock {
  private readonly timings: HazardStageTimings = { keyMs: 0, queuedMs: 0, encryptMs: 0, syncMs: 0, publishMs: 0, removeMs: 0 };
  private last = performance.now();

  lap(stage: keyof HazardStageTimings): void {
    const now = performance.now();
    this.timings[stage] += now - this.last;
    this.last = now;
  }

  rounded(): HazardStageTimings {
    const rounded = { ...this.timings };
    for (const stage of Object.keys(rounded) as (keyof HazardStageTimings)[]) rounded[stage] = Math.round(rounded[stage]);
    return rounded;
  }
}

// ---- keyrings ----

/** A GNUPGHOME that exists for one archive. gpg must never start an agent for it (--no-autostart). */
class ScratchKeyring {
  constructor(
    readonly home: string,
    private readonly gpgCommand: string,
    private readonly signal: AbortSignal,
    private readonly removeHome: () => Promise<void> = () => fsp.rm(home, { recursive: true, force: true }),
  ) {}

  static async create(zone: Zone, directory: VerifiedDirectory, id: string, gpgCommand: string, signal: AbortSignal): Promise<ScratchKeyring> {
    const prefix = `${SCRATCH_PREFIX}${id}-`;
    zone.assertWritable('mkdir', directory.realEntry(prefix));
    // mkdtemp makes it 0700; reached through the verified directory, it cannot land elsewhere.
    const created = await fsp.mkdtemp(directory.entry(prefix));
    const name = path.basename(created);
    return new ScratchKeyring(directory.realEntry(name), gpgCommand, signal, () => removeScratch(zone, directory, name));
  }

  gpgOptions(): string[] {
    return keyringOptions(this.home);
  }

  env(): Record<string, string> {
    return gpgEnv(this.home);
  }

  /** Imports every public key in `keyPath`; resolves with their fingerprints. */
  async importKeys(keyPath: string): Promise<string[]> {
    const result = await execa(this.gpgCommand, [...this.gpgOptions(), '--status-fd', '1', '--import', keyPath], {
      reject: false,
      cancelSignal: this.signal,
      env: this.env(),
      stdin: 'ignore',
    });
    if (result.failed && result.exitCode === undefined) {
      throw new Error(`cannot run ${this.gpgCommand}: ${firstLine(result.shortMessage ?? result.message ?? '')}`);
    }
    const fingerprints = [...String(result.stdout ?? '').matchAll(/^\[GNUPG:\] IMPORT_OK \d+ ([0-9A-F]{40,64})$/gm)].map((match) => match[1] ?? '');
    const unique = [...new Set(fingerprints.filter((fpr) => fpr !== ''))];
    if (unique.length === 0) {
      throw new Error(`no OpenPGP public key could be imported from ${keyPath} (${this.gpgCommand} exited with status ${result.exitCode}: ${quoteStderr(result.stderr)})`);
    }
    return unique;
  }

  remove(): Promise<void> {
    return this.removeHome();
  }
}

/** The options every gpg run here uses, after --homedir; exported so the benchmark runs plain gpg the same way. */
export function keyringOptions(home: string): string[] {
  return [
    '--homedir', home,
    '--no-options',
    '--batch',
    '--no-tty',
    '--yes',
    '--quiet',
    '--no-autostart',
    '--no-permission-warning',
    '--trust-model', 'always',
    // Suspect files are mostly already compressed (archives, documents); zlib would cost far more time than it saves space.
    '--compress-algo', 'none',
  ];
}

function gpgEnv(home: string): Record<string, string> {
  return { GNUPGHOME: home, LC_ALL: 'C' };
}

async function removeScratch(zone: Zone, directory: VerifiedDirectory, name: string): Promise<void> {
  zone.assertWritable('remove', directory.realEntry(name));
  // rm does not follow symlinks inside the tree; the top entry is reached through the verified directory.
  await fsp.rm(directory.entry(name), { recursive: true, force: true });
}

// ---- names and payload ----

/** `.shuttle-<id>.gpg.tmp`: never a final name, and one per item, so a retry finds its own leftover. */
export function archiveTemporaryName(id: string, kind: 'gpg' | 'json'): string {
  return `.shuttle-${id}.${kind}.tmp`;
}

/** `<UTC time to the second>-<item id>`, e.g. 20260301T101502Z-m7r2k1x0-3fa9c0d1e2b4: sortable, and unique through the id. */
export function archiveBaseName(at: Date, id: string): string {
  const stamp = at.toISOString().replace(/\.\d{3}Z$/, 'Z').replace(/[-:]/g, '');
  return `${stamp}-${id}`;
}

/**
 * link(2) `temporary` to `<base><extension>`, or `<base>.N<extension>` if that is taken (link never
 * replaces), then drop the temporary name and fsync the directory. Resolves with the name used.
 */
async function publishUnderFreshName(zone: Zone, directory: VerifiedDirectory, temporary: string, base: string, extension: string): Promise<string> {
  for (let suffix = 0; suffix <= MAX_NAME_SUFFIX; suffix++) {
    const name = suffix === 0 ? `${base}${extension}` : `${base}.${suffix}${extension}`;
    try {
      await zone.link(directory, temporary, name);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') continue;
      throw error;
    }
    await zone.unlinkIn(directory, temporary);
    await directory.sync();
    return name;
  }
  throw new Error(`no free name for ${base}${extension} in ${directory.realPath}`);
}

/**
 * SHA-256 of exactly `size` bytes read by position, one reused chunk at a time. Rejects (stage 'verify')
 * when the file is shorter or longer.
 */
async function hashExactly(source: FileHandle, size: number, signal: AbortSignal): Promise<string> {
  const hash = createHash('sha256');
  const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
  let position = 0;
  for (;;) {
    signal.throwIfAborted();
    const { bytesRead } = await source.read(buffer, 0, buffer.length, position);
    if (bytesRead === 0) break;
    hash.update(buffer.subarray(0, bytesRead));
    position += bytesRead;
    if (position > size) throw verifyError(`the quarantine copy is longer than the ${size} bytes taken at intake`);
  }
  if (position < size) throw verifyError(`the quarantine copy ended after ${position} of ${size} bytes`);
  return hash.digest('hex');
}

function verifyError(message: string): Error {
  return Object.assign(new Error(message), { stage: 'verify' });
}

function hazardVerdict(report: ScanReport): HazardVerdict {
  const { verdict } = report;
  return {
    scanner: report.scanner,
    version: report.version,
    verdict: verdict.kind,
    signature: verdict.kind === 'suspect' ? verdict.signature : null,
    ...(verdict.kind === 'failed' ? { reason: verdict.reason } : {}),
    durationMs: Math.round(report.durationMs),
  };
}

// ---- small helpers ----

function fillRandom(buffer: Buffer, length: number): Promise<void> {
  return new Promise((resolve, reject) => randomFill(buffer, 0, length, (error) => (error ? reject(error) : resolve())));
}

async function removeIfPresent(zone: Zone, directory: VerifiedDirectory, name: string): Promise<void> {
  try {
    await zone.unlinkIn(directory, name);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}

/** After a failure the plaintext must still be owner-only; intake made it so, this only repairs drift. */
async function keepOwnerOnly(zone: Zone, plaintext: HazardPlaintext): Promise<void> {
  try {
    const stats = await fsp.lstat(plaintext.directory.entry(plaintext.name));
    if (stats.isFile() && (stats.mode & 0o077) !== 0) await zone.chmodIn(plaintext.directory, plaintext.name, 0o600);
  } catch {
    // Gone or unreadable: nothing to protect here, and the caller's error says what failed.
  }
}

async function lookUpUserName(uid: number): Promise<string | null> {
  const result = await execa('getent', ['passwd', String(uid)], { reject: false, timeout: NAME_LOOKUP_TIMEOUT_MS, stdin: 'ignore' });
  if (result.exitCode !== 0) return null;
  const name = String(result.stdout ?? '').split(':')[0];
  return name ? name : null;
}

/** execa hands a descriptor number straight to spawn(); its types only list the numbers 3 to 9. */
function descriptor(fd: number): 3 {
  return fd as 3;
}

function quoteStderr(stderr: unknown): string {
  const text = (typeof stderr === 'string' ? stderr : Buffer.isBuffer(stderr) ? stderr.toString('utf8') : '').trim();
  if (text === '') return 'no message';
  return JSON.stringify(text.length > STDERR_QUOTE_CHARS ? `…${text.slice(-STDERR_QUOTE_CHARS)}` : text);
}

function firstLine(text: string): string {
  return text.split('\n')[0] ?? text;
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
