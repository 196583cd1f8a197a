// HazardArchiver with the real gpg and a key pair made for the test: what security staff decrypt is exactly
// the quarantined bytes and their story; names never collide; every way encryption can fail leaves the
// plaintext as it was; secure removal leaves nothing readable behind.

import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { constants as fsc, createReadStream, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import winston from 'winston';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { HazardArchiver, HazardError, secureRemove, type HazardHeader, type HazardSidecar } from '../../../src/hazard.js';
import { quarantineDataName, type ItemRecord } from '../../../src/item.js';
import { Zone, type VerifiedDirectory } from '../../../src/zone.js';
import { waitFor } from '../../helpers/daemon.js';
import { generateKeyPair, splitHazardPayload, type TestKeyPair } from '../../helpers/gpg.js';

const execFileAsync = promisify(execFile);
const logger = winston.createLogger({ silent: true });
const never = () => new AbortController().signal;
const MiB = 1024 * 1024;

let keys: TestKeyPair;
let root: string;
let quarantinePath: string;
let hazardPath: string;
let zone: Zone;
let quarantine: VerifiedDirectory;
let hazard: VerifiedDirectory;
let counter = 0;

beforeAll(async () => {
  keys = await generateKeyPair();
});

afterAll(async () => {
  await keys?.remove();
});

beforeEach(async () => {
  root = await fsp.realpath(await fsp.mkdtemp(path.join(os.tmpdir(), 'shuttle-hazard-')));
  quarantinePath = path.join(root, 'quarantine');
  hazardPath = path.join(root, 'hazard');
  await fsp.mkdir(quarantinePath, { mode: 0o700 });
  await fsp.mkdir(hazardPath, { mode: 0o770 });
  zone = new Zone([quarantinePath, hazardPath]);
  quarantine = await zone.openDirectory(quarantinePath);
  hazard = await zone.openDirectory(hazardPath);
});

afterEach(async () => {
  quarantine.close();
  hazard.close();
  await execFileAsync('umount', [hazardPath]).catch(() => undefined);
  await fsp.rm(root, { recursive: true, force: true });
});

function archiver(overrides: Partial<ConstructorParameters<typeof HazardArchiver>[0]> = {}): HazardArchiver {
  return new HazardArchiver({ zone, hazardDirectory: hazard, keyPath: keys.publicKeyPath, logger, ...overrides });
}

/** A suspect item whose quarantine copy holds `content`, as intake and the scanners would leave it. */
async function suspectItem(content: Buffer, relativePath = 'reports/report.doc'): Promise<ItemRecord> {
  const id = `${(Date.now() + counter++).toString(36)}-${randomBytes(6).toString('hex')}`;
  await fsp.writeFile(path.join(quarantinePath, quarantineDataName(id)), content, { mode: 0o600 });
  return {
    id,
    relativePath,
    size: content.length,
    sha256: sha256(content),
    uploaderUid: 0,
    source: { dev: 1, ino: 2, size: content.length, mtimeNs: '3' },
    quarantinedAt: '2026-03-01T10:15:00.000Z',
    state: 'suspect',
    signature: 'Eicar-Test-Signature (clamd)',
    reports: [
      { scanner: 'clamd', version: 'ClamAV 1.0.7/27000/Sun Mar  1 09:00:00 2026', verdict: { kind: 'suspect', signature: 'Eicar-Test-Signature' }, durationMs: 12.4 },
      { scanner: 'mdatp', version: '101.24.1', verdict: { kind: 'clean' }, durationMs: 301 },
    ],
  };
}

function plaintextOf(item: ItemRecord) {
  return { directory: quarantine, name: quarantineDataName(item.id) };
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

async function listing(directory: string): Promise<string[]> {
  return (await fsp.readdir(directory)).sort();
}

/** Asserts the quarantine copy is exactly as it was: same inode, same bytes, owner-only. */
async function expectPlaintextUntouched(item: ItemRecord, content: Buffer, ino: number): Promise<void> {
  const file = path.join(quarantinePath, quarantineDataName(item.id));
  const stats = await fsp.lstat(file);
  expect(stats.ino).toBe(ino);
  expect(stats.mode & 0o777).toBe(0o600);
  // Buffer.equals: a deep toEqual over megabytes takes minutes.
  expect((await fsp.readFile(file)).equals(content)).toBe(true);
  expect(await listing(quarantinePath)).toEqual([quarantineDataName(item.id)]);
}

describe('HazardArchiver', () => {
  it('encrypts the exact bytes with their metadata, writes a triage sidecar, and removes the plaintext', async () => {
    const content = Buffer.concat([randomBytes(3 * MiB + 17), Buffer.from('\n\nend\n')]);
    const item = await suspectItem(content);
    const result = await archiver({ userName: async (uid) => (uid === 0 ? 'root' : null) }).archive(item, plaintextOf(item), never());

    expect(result.archiveName).toMatch(new RegExp(`^\\d{8}T\\d{6}Z-${item.id}\\.gpg$`));
    expect(result.sidecarName).toBe(result.archiveName.replace(/\.gpg$/, '.json'));
    expect(await listing(hazardPath)).toEqual([result.archiveName, result.sidecarName].sort());
    expect(await listing(quarantinePath)).toEqual([]);

    const { header, payload } = splitHazardPayload(await keys.decrypt(path.join(hazardPath, result.archiveName)));
    expect(payload.equals(content)).toBe(true);
    const expected: Partial<HazardHeader> = {
      format: 'shuttle-hazard/1',
      id: item.id,
      relativePath: 'reports/report.doc',
      size: content.length,
      sha256: item.sha256,
      uploader: { uid: 0, name: 'root' },
      quarantinedAt: item.quarantinedAt,
      signature: 'Eicar-Test-Signature (clamd)',
      payloadBytes: content.length,
      verdicts: [
        { scanner: 'clamd', version: 'ClamAV 1.0.7/27000/Sun Mar  1 09:00:00 2026', verdict: 'suspect', signature: 'Eicar-Test-Signature', durationMs: 12 },
        { scanner: 'mdatp', version: '101.24.1', verdict: 'clean', signature: null, durationMs: 301 },
      ],
    };
    expect(header).toMatchObject(expected);
    expect(Date.parse(String(header.archivedAt))).not.toBeNaN();

    const sidecar = JSON.parse(await fsp.readFile(path.join(hazardPath, result.sidecarName ?? ''), 'utf8')) as HazardSidecar;
    expect(sidecar).toMatchObject({ format: 'shuttle-hazard-sidecar/1', id: item.id, archive: result.archiveName, signature: item.signature, size: content.length, sha256: item.sha256 });
    // Triage data only: where the file came from and who sent it stay encrypted.
    expect(JSON.stringify(sidecar)).not.toContain('report.doc');
    expect(sidecar).not.toHaveProperty('uploader');

    for (const name of [result.archiveName, result.sidecarName ?? '']) {
      expect((await fsp.stat(path.join(hazardPath, name))).mode & 0o777).toBe(0o660);
    }
    expect((await fsp.readFile(path.join(hazardPath, result.archiveName))).includes(content.subarray(0, 64))).toBe(false);
  });

  it('gives two suspect report.doc from different folders, archived in the same second, two archives', async () => {
    const fixed = new Date('2026-03-01T10:15:02.000Z');
    const first = await suspectItem(Buffer.from('first report'), 'alice/report.doc');
    const second = await suspectItem(Buffer.from('second report'), 'bob/report.doc');
    const hazardArchiver = archiver({ now: () => fixed });
    const [a, b] = await Promise.all([hazardArchiver.archive(first, plaintextOf(first), never()), hazardArchiver.archive(second, plaintextOf(second), never())]);

    expect(a.archiveName).not.toBe(b.archiveName);
    expect(a.archiveName.startsWith('20260301T101502Z-')).toBe(true);
    expect(b.archiveName.startsWith('20260301T101502Z-')).toBe(true);
    const decryptedA = splitHazardPayload(await keys.decrypt(path.join(hazardPath, a.archiveName)));
    const decryptedB = splitHazardPayload(await keys.decrypt(path.join(hazardPath, b.archiveName)));
    expect([decryptedA.header.relativePath, decryptedA.payload.toString()]).toEqual(['alice/report.doc', 'first report']);
    expect([decryptedB.header.relativePath, decryptedB.payload.toString()]).toEqual(['bob/report.doc', 'second report']);
    expect(await listing(hazardPath)).toHaveLength(4);
  });

  it('never replaces an existing name: a taken archive name gets a suffix', async () => {
    const fixed = new Date('2026-03-01T10:15:02.000Z');
    const item = await suspectItem(Buffer.from('suspect bytes'));
    const taken = `20260301T101502Z-${item.id}.gpg`;
    await fsp.writeFile(path.join(hazardPath, taken), 'not ours');
    const result = await archiver({ now: () => fixed }).archive(item, plaintextOf(item), never());
    expect(result.archiveName).toBe(`20260301T101502Z-${item.id}.1.gpg`);
    expect(await fsp.readFile(path.join(hazardPath, taken), 'utf8')).toBe('not ours');
    expect(splitHazardPayload(await keys.decrypt(path.join(hazardPath, result.archiveName))).payload.toString()).toBe('suspect bytes');
  });

  it('archives a file whose name is 250 characters long, keeping the name inside the archive', async () => {
    const longName = `${'x'.repeat(246)}.doc`;
    const item = await suspectItem(Buffer.from('long-named suspect'), `deep/${longName}`);
    const result = await archiver().archive(item, plaintextOf(item), never());
    expect(result.archiveName.length).toBeLessThan(80);
    const { header, payload } = splitHazardPayload(await keys.decrypt(path.join(hazardPath, result.archiveName)));
    expect(header.relativePath).toBe(`deep/${longName}`);
    expect(payload.toString()).toBe('long-named suspect');
  });

  it('refuses an item that is not suspect', async () => {
    const item = { ...(await suspectItem(Buffer.from('clean'))), state: 'clean' as const };
    await expect(archiver().archive(item, plaintextOf(item), never())).rejects.toBeInstanceOf(HazardError);
    expect(await listing(hazardPath)).toEqual([]);
  });

  describe('when encryption fails, the plaintext stays untouched and nothing is published', () => {
    async function expectFailure(make: () => Promise<{ hazardArchiver: HazardArchiver; item: ItemRecord; content: Buffer }>, stage: string, message: RegExp) {
      const { hazardArchiver, item, content } = await make();
      const ino = (await fsp.lstat(path.join(quarantinePath, quarantineDataName(item.id)))).ino;
      const error = await hazardArchiver.archive(item, plaintextOf(item), never()).then(
        () => null,
        (caught: unknown) => caught,
      );
      expect(error).toBeInstanceOf(HazardError);
      expect((error as HazardError).stage).toBe(stage);
      expect((error as HazardError).archived).toBe(false);
      expect((error as Error).message).toMatch(message);
      await expectPlaintextUntouched(item, content, ino);
      expect(await listing(hazardPath)).toEqual([]);
    }

    it('with a key file that is not a key', async () => {
      await expectFailure(async () => {
        const keyPath = path.join(root, 'garbage.asc');
        await fsp.writeFile(keyPath, 'this is not an OpenPGP key\n');
        const content = randomBytes(4096);
        return { hazardArchiver: archiver({ keyPath }), item: await suspectItem(content), content };
      }, 'key', /no OpenPGP public key could be imported/);
    });

    it('with a missing key file', async () => {
      await expectFailure(async () => {
        const content = randomBytes(4096);
        return { hazardArchiver: archiver({ keyPath: path.join(root, 'missing.asc') }), item: await suspectItem(content), content };
      }, 'key', /missing\.asc/);
    });

    it('with gpg missing', async () => {
      await expectFailure(async () => {
        const content = randomBytes(4096);
        return { hazardArchiver: archiver({ gpgCommand: '/nonexistent/gpg' }), item: await suspectItem(content), content };
      }, 'key', /cannot run \/nonexistent\/gpg/);
    });

    it('with gpg exiting non-zero half-way through the stream', async () => {
      await expectFailure(async () => {
        // Imports as the real gpg does, then dies after reading part of what it was to encrypt.
        const fakeGpg = path.join(root, 'failing-gpg');
        await fsp.writeFile(
          fakeGpg,
          `#!/bin/sh\ncase " $* " in\n  *" --encrypt "*) head -c 65536 >/dev/null; echo "gpg: write error: simulated" >&2; exit 2 ;;\nesac\nexec gpg "$@"\n`,
          { mode: 0o755 },
        );
        const content = randomBytes(8 * MiB);
        return { hazardArchiver: archiver({ gpgCommand: fakeGpg }), item: await suspectItem(content), content };
      }, 'encrypt', /exited with status 2: "gpg: write error: simulated"/);
    });

    it('with a quarantine copy that is not the file taken at intake', async () => {
      await expectFailure(async () => {
        const content = randomBytes(64 * 1024);
        const item = await suspectItem(content);
        const altered = Buffer.from(content);
        altered[100] = (altered[100] ?? 0) ^ 0xff;
        await fsp.writeFile(path.join(quarantinePath, quarantineDataName(item.id)), altered);
        return { hazardArchiver: archiver(), item, content: altered };
      }, 'verify', /hashes to/);
    });

    it('with a full disk', async (context) => {
      try {
        await execFileAsync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0770', 'tmpfs', hazardPath]);
      } catch (error) {
        context.skip(`cannot mount a 1 MiB tmpfs to fill: ${(error as Error).message}`);
      }
      hazard.close();
      hazard = await zone.openDirectory(hazardPath);
      await expectFailure(async () => {
        const content = randomBytes(3 * MiB);
        return { hazardArchiver: archiver(), item: await suspectItem(content), content };
      }, 'encrypt', /exited with status/);
    });

    it('when aborted', async () => {
      const content = randomBytes(64 * MiB);
      const item = await suspectItem(content);
      const ino = (await fsp.lstat(path.join(quarantinePath, quarantineDataName(item.id)))).ino;
      const controller = new AbortController();
      const archiving = archiver().archive(item, plaintextOf(item), controller.signal);
      setTimeout(() => controller.abort(), 30);
      await expect(archiving).rejects.toThrow(/aborted/);
      await expectPlaintextUntouched(item, content, ino);
      expect(await listing(hazardPath)).toEqual([]);
    });
  });

  it('removes keyrings and temporary names an interrupted archive left behind', async () => {
    await fsp.mkdir(path.join(quarantinePath, '.shuttle-gnupg-abc-XYZ123'), { mode: 0o700 });
    await fsp.writeFile(path.join(quarantinePath, '.shuttle-gnupg-abc-XYZ123', 'pubring.kbx'), 'x');
    await fsp.writeFile(path.join(hazardPath, '.shuttle-m7r2k1x0-3fa9c0d1e2b4.gpg.tmp'), 'partial');
    await fsp.writeFile(path.join(hazardPath, '20260301T101502Z-m7r2k1x0-3fa9c0d1e2b4.gpg'), 'complete');
    await fsp.writeFile(path.join(quarantinePath, 'm7r2k1x0-3fa9c0d1e2b4.data'), 'plaintext');
    await archiver().removeLeftovers(quarantine);
    expect(await listing(quarantinePath)).toEqual(['m7r2k1x0-3fa9c0d1e2b4.data']);
    expect(await listing(hazardPath)).toEqual(['20260301T101502Z-m7r2k1x0-3fa9c0d1e2b4.gpg']);
  });
});

describe('HazardArchiver with several suspects at once', () => {
  /**
   * A gpg that takes its whole input first (so it counts only once its bytes flow, which is what an
   * encryption slot grants), notes how many encryptions are running, holds on for `holdSeconds`, then
   * encrypts with the real gpg.
   */
  async function countingGpg(holdSeconds: number): Promise<{ command: string; marks: string; seen: () => Promise<number[]> }> {
    const marks = path.join(root, 'marks');
    await fsp.mkdir(marks);
    const command = path.join(root, 'counting-gpg');
    await fsp.writeFile(
      command,
      [
        '#!/bin/sh',
        'case " $* " in',
        '  *" --encrypt "*)',
        `    input=$(mktemp "${marks}/input.XXXXXX")`,
        '    cat > "$input"',
        `    touch "${marks}/running.$$"`,
        `    ls "${marks}" | grep -c '^running\.' >> "${marks}/seen"`,
        `    sleep ${holdSeconds}`,
        '    gpg "$@" < "$input"; status=$?',
        `    rm -f "${marks}/running.$$" "$input"`,
        '    exit $status ;;',
        'esac',
        'exec gpg "$@"',
        '',
      ].join('\n'),
      { mode: 0o755 },
    );
    const seen = async () =>
      (await fsp.readFile(path.join(marks, 'seen'), 'utf8').catch(() => ''))
        .split('\n')
        .filter((line) => line !== '')
        .map(Number);
    return { command, marks, seen };
  }

  function capturingLogger(): { logger: winston.Logger; entries: Record<string, unknown>[] } {
    const entries: Record<string, unknown>[] = [];
    const capture = new winston.transports.Stream({
      stream: new Writable({
        write(chunk: Buffer, _encoding, done) {
          for (const line of chunk.toString('utf8').split('\n')) if (line.trim() !== '') entries.push(JSON.parse(line) as Record<string, unknown>);
          done();
        },
      }),
    });
    return { logger: winston.createLogger({ format: winston.format.json(), transports: [capture] }), entries };
  }

  it('with encryptionConcurrency 1, encrypts one suspect at a time while the others prepare and finish, each into its own archive', async () => {
    const gpg = await countingGpg(0.5);
    const { logger: capturing, entries } = capturingLogger();
    const hazardArchiver = archiver({ gpgCommand: gpg.command, encryptionConcurrency: 1, logger: capturing });
    const contents = [randomBytes(2 * MiB), randomBytes(MiB + 3), randomBytes(4096)];
    const items = await Promise.all(contents.map((content, index) => suspectItem(content, `batch/${index}.bin`)));

    const results = await Promise.all(items.map((item) => hazardArchiver.archive(item, plaintextOf(item), never())));

    expect(await gpg.seen()).toEqual([1, 1, 1]);
    expect(await listing(quarantinePath)).toEqual([]);
    for (const [index, result] of results.entries()) {
      const { header, payload } = splitHazardPayload(await keys.decrypt(path.join(hazardPath, result.archiveName)));
      expect(header.relativePath).toBe(`batch/${index}.bin`);
      expect(payload.equals(contents[index] ?? Buffer.alloc(0))).toBe(true);
    }
    // Each archive logs where its time went; the ones that waited for their turn say so.
    const stages = entries.map((entry) => entry.stagesMs as Record<string, number> | undefined).filter((value) => value !== undefined);
    expect(stages).toHaveLength(3);
    for (const timing of stages) {
      expect(Object.keys(timing).sort()).toEqual(['encryptMs', 'keyMs', 'publishMs', 'queuedMs', 'removeMs', 'syncMs']);
      expect(timing.encryptMs).toBeGreaterThanOrEqual(500);
    }
    expect(Math.max(...stages.map((timing) => timing.queuedMs ?? 0))).toBeGreaterThanOrEqual(900);
  });

  it('with encryptionConcurrency 2, runs two encryptions side by side and never a third', async () => {
    const gpg = await countingGpg(1);
    const hazardArchiver = archiver({ gpgCommand: gpg.command, encryptionConcurrency: 2 });
    const items = await Promise.all([0, 1, 2, 3].map((index) => suspectItem(randomBytes(64 * 1024), `pair/${index}.bin`)));
    await Promise.all(items.map((item) => hazardArchiver.archive(item, plaintextOf(item), never())));
    const seen = await gpg.seen();
    expect(seen).toHaveLength(4);
    expect(Math.max(...seen)).toBe(2);
  });

  it('an archive aborted while waiting for its turn keeps its plaintext and does not hold up the others', async () => {
    const gpg = await countingGpg(1);
    const hazardArchiver = archiver({ gpgCommand: gpg.command, encryptionConcurrency: 1 });
    const first = await suspectItem(randomBytes(MiB), 'turns/first.bin');
    const waitingContent = randomBytes(MiB);
    const waiting = await suspectItem(waitingContent, 'turns/waiting.bin');
    const last = await suspectItem(randomBytes(MiB), 'turns/last.bin');
    const waitingIno = (await fsp.lstat(path.join(quarantinePath, quarantineDataName(waiting.id)))).ino;

    const firstDone = hazardArchiver.archive(first, plaintextOf(first), never());
    await waitFor(async () => (await fsp.readdir(gpg.marks)).some((name) => name.startsWith('running.')));
    const controller = new AbortController();
    const waitingDone = hazardArchiver.archive(waiting, plaintextOf(waiting), controller.signal).then(
      () => null,
      (caught: unknown) => caught,
    );
    // Its temporary archive exists once its key is imported: from then on it only waits for its turn.
    await waitFor(async () => (await listing(hazardPath)).includes(`.shuttle-${waiting.id}.gpg.tmp`));
    controller.abort();
    const error = await waitingDone;
    expect(error).toBeInstanceOf(HazardError);
    expect((error as HazardError).stage).toBe('encrypt');
    expect((error as HazardError).archived).toBe(false);
    expect((error as Error).message).toMatch(/aborted while waiting/);

    const lastDone = hazardArchiver.archive(last, plaintextOf(last), never());
    const [firstResult, lastResult] = await Promise.all([firstDone, lastDone]);
    expect(await gpg.seen()).toEqual([1, 1]);
    await expectPlaintextUntouched(waiting, waitingContent, waitingIno);
    expect(await listing(hazardPath)).toEqual(
      [firstResult.archiveName, firstResult.sidecarName ?? '', lastResult.archiveName, lastResult.sidecarName ?? ''].sort(),
    );
  });

  it('refuses an encryptionConcurrency that is not a positive integer', () => {
    expect(() => archiver({ encryptionConcurrency: 0 })).toThrow(RangeError);
    expect(() => archiver({ encryptionConcurrency: 1.5 })).toThrow(RangeError);
  });
});

describe('secureRemove', () => {
  it('leaves no plaintext file, and a descriptor kept open reads random bytes, not the original', async () => {
    const content = Buffer.alloc(3 * MiB + 5, 'SECRET-PLAINTEXT ');
    const name = 'kept-open.data';
    await fsp.writeFile(path.join(quarantinePath, name), content, { mode: 0o600 });
    const spy = await fsp.open(path.join(quarantinePath, name), fsc.O_RDONLY);
    try {
      await secureRemove(zone, quarantine, name);
      expect(await listing(quarantinePath)).toEqual([]);
      const stats = await spy.stat();
      expect(stats.nlink).toBe(0);
      expect(stats.size).toBe(content.length);
      const after = Buffer.alloc(content.length);
      await spy.read(after, 0, after.length, 0);
      expect(after.equals(content)).toBe(false);
      expect(after.includes(Buffer.from('SECRET-PLAINTEXT'))).toBe(false);
      // Random, not zeros or a constant: about one byte in 256 matches the original at the same offset.
      let same = 0;
      for (let index = 0; index < after.length; index++) if (after[index] === content[index]) same++;
      expect(same / after.length).toBeLessThan(0.01);
      expect(new Set(after.subarray(0, 4096)).size).toBeGreaterThan(200);
    } finally {
      await spy.close();
    }
  });

  it('refuses to write outside the zone', async () => {
    const outside = await fsp.realpath(await fsp.mkdtemp(path.join(os.tmpdir(), 'shuttle-outside-')));
    try {
      await fsp.writeFile(path.join(outside, 'x'), 'keep');
      const directory = await new Zone([outside]).openDirectory(outside);
      try {
        await expect(secureRemove(zone, directory, 'x')).rejects.toMatchObject({ code: 'EZONE' });
      } finally {
        directory.close();
      }
      expect(await fsp.readFile(path.join(outside, 'x'), 'utf8')).toBe('keep');
    } finally {
      await fsp.rm(outside, { recursive: true, force: true });
    }
  });
});

describe('HazardArchiver streaming', () => {
  it('archives 1 GiB with flat memory', async () => {
    const size = 1024 * MiB;
    const block = randomBytes(MiB);
    const item = await suspectItem(Buffer.alloc(0), 'big/disk.img');
    const file = path.join(quarantinePath, quarantineDataName(item.id));
    const hash = createHash('sha256');
    const handle = await fsp.open(file, 'w', 0o600);
    for (let offset = 0; offset < size; offset += MiB) {
      block.writeUInt32BE(offset / MiB, 0);
      await handle.write(block, 0, MiB, offset);
      hash.update(block);
    }
    await handle.close();
    const big: ItemRecord = { ...item, size, sha256: hash.digest('hex') };

    globalThis.gc?.();
    const baseline = process.memoryUsage().rss;
    let peak = baseline;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 10);
    let result;
    try {
      result = await archiver().archive(big, plaintextOf(big), never());
    } finally {
      clearInterval(sampler);
    }
    peak = Math.max(peak, process.memoryUsage().rss);
    expect(peak - baseline).toBeLessThan(100 * MiB);

    const decrypted = path.join(root, 'decrypted');
    await keys.decryptToFile(path.join(hazardPath, result.archiveName), decrypted);
    const { headerBytes, header } = await readHeader(decrypted);
    expect(header).toMatchObject({ relativePath: 'big/disk.img', size, payloadBytes: size, sha256: big.sha256 });
    const payloadHash = createHash('sha256');
    for await (const chunk of createReadStream(decrypted, { start: headerBytes })) payloadHash.update(chunk as Buffer);
    expect(payloadHash.digest('hex')).toBe(big.sha256);
  }, 300_000);
});

async function readHeader(file: string): Promise<{ headerBytes: number; header: Record<string, unknown> }> {
  const handle = await fsp.open(file, 'r');
  try {
    const buffer = Buffer.alloc(64 * 1024);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    const newline = buffer.subarray(0, bytesRead).indexOf(0x0a);
    return { headerBytes: newline + 1, header: JSON.parse(buffer.subarray(0, newline).toString('utf8')) as Record<string, unknown> };
  } finally {
    await handle.close();
  }
}
