// A throw-away OpenPGP key pair for tests, made in its own GNUPGHOME under the system temp directory:
// the public key is exported to a file (what the daemon is configured with), the private key stays in the
// test keyring and decrypts archives, as security staff would elsewhere.

import { execFile, execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);
const GPG = process.env.SHUTTLE_TEST_GPG ?? 'gpg';
const GPGCONF = process.env.SHUTTLE_TEST_GPGCONF ?? 'gpgconf';
const MAX_OUTPUT = 2 * 1024 * 1024 * 1024;

export interface TestKeyPair {
  readonly home: string;
  readonly fingerprint: string;
  /** Armored public key, as hazard_encryption_key_path holds it. */
  readonly publicKeyPath: string;
  /** Armored secret key, for tests that must refuse one. */
  readonly secretKeyPath: string;
  /** Decrypts an archive into memory. */
  decrypt(archivePath: string): Promise<Buffer>;
  /** Decrypts an archive into a file, for payloads too large to hold in memory. */
  decryptToFile(archivePath: string, outputPath: string): Promise<void>;
  /** Stops the agent gpg started for decryption and removes the keyring. */
  remove(): Promise<void>;
}

const homes = new Set<string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const home of homes) {
      // A gpg-agent outlives its test process otherwise, each holding an inotify instance: enough of them
      // and the daemons under test can no longer watch anything.
      try {
        execFileSync(GPGCONF, ['--homedir', home, '--kill', 'all'], { stdio: 'ignore', timeout: 5_000 });
      } catch {
        // No agent was started for this keyring.
      }
      rmSync(home, { recursive: true, force: true });
    }
  });
}

/** `encrypt: false` makes a signing-only key: valid OpenPGP, useless for the hazard archive. */
export async function generateKeyPair(options: { encrypt?: boolean; name?: string } = {}): Promise<TestKeyPair> {
  installExitHook();
  const home = await mkdtemp(path.join(os.tmpdir(), 'shuttle-gpg-'));
  homes.add(home);
  const gpg = (args: string[], extra: { maxBuffer?: number } = {}) =>
    execFileAsync(GPG, ['--homedir', home, '--batch', '--no-tty', '--pinentry-mode', 'loopback', '--passphrase', '', ...args], {
      maxBuffer: extra.maxBuffer ?? 16 * 1024 * 1024,
      encoding: 'buffer',
      env: { ...process.env, GNUPGHOME: home, LC_ALL: 'C' },
    });

  const name = options.name ?? 'Shuttle Test Security Staff';
  const parameters = [
    '%no-protection',
    'Key-Type: eddsa',
    'Key-Curve: ed25519',
    'Key-Usage: sign',
    ...(options.encrypt === false ? [] : ['Subkey-Type: ecdh', 'Subkey-Curve: cv25519', 'Subkey-Usage: encrypt']),
    `Name-Real: ${name}`,
    'Name-Email: security@shuttle.test',
    'Expire-Date: 0',
    '%commit',
  ].join('\n');
  const parameterFile = path.join(home, 'key-parameters');
  await writeFile(parameterFile, `${parameters}\n`);
  await gpg(['--gen-key', parameterFile]);

  const listing = (await gpg(['--with-colons', '--list-secret-keys'])).stdout.toString('utf8');
  const fingerprint = /^fpr:+([0-9A-F]{40,64}):/m.exec(listing)?.[1];
  if (!fingerprint) throw new Error(`no fingerprint in the generated keyring:\n${listing}`);

  const publicKeyPath = path.join(home, 'hazard-public.asc');
  const secretKeyPath = path.join(home, 'hazard-secret.asc');
  await writeFile(publicKeyPath, (await gpg(['--armor', '--export', fingerprint])).stdout);
  await writeFile(secretKeyPath, (await gpg(['--armor', '--export-secret-keys', fingerprint])).stdout);
  // No agent is left running between uses: test processes are not always given the chance to run their exit
  // hooks, and every idle agent holds an inotify instance that the daemons under test need.
  const stopAgent = (): Promise<unknown> => execFileAsync(GPGCONF, ['--homedir', home, '--kill', 'all']).catch(() => undefined);
  await stopAgent();

  return {
    home,
    fingerprint,
    publicKeyPath,
    secretKeyPath,
    async decrypt(archivePath) {
      try {
        return (await gpg(['--quiet', '--decrypt', archivePath], { maxBuffer: MAX_OUTPUT })).stdout;
      } finally {
        await stopAgent();
      }
    },
    async decryptToFile(archivePath, outputPath) {
      try {
        await gpg(['--quiet', '--yes', '--output', outputPath, '--decrypt', archivePath]);
      } finally {
        await stopAgent();
      }
    },
    async remove() {
      await execFileAsync(GPGCONF, ['--homedir', home, '--kill', 'all']).catch(() => undefined);
      await rm(home, { recursive: true, force: true });
      homes.delete(home);
    },
  };
}

/** Splits a decrypted hazard payload at its first newline: the JSON header, then the file's bytes. */
export function splitHazardPayload(decrypted: Buffer): { header: Record<string, unknown>; payload: Buffer } {
  const newline = decrypted.indexOf(0x0a);
  if (newline === -1) throw new Error('no header line in the decrypted payload');
  const header = JSON.parse(decrypted.subarray(0, newline).toString('utf8')) as Record<string, unknown>;
  return { header, payload: decrypted.subarray(newline + 1) };
}
