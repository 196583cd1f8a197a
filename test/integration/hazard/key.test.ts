// validateHazardKey and the check-config finding built on it, with the real gpg: a bad or missing key is
// refused before the daemon could ever need it.

import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runEnvironmentChecks, systemProbes } from '../../../src/check-config.js';
import { parseConfig } from '../../../src/config-load.js';
import { HazardKeyError, validateHazardKey } from '../../../src/hazard.js';
import { generateKeyPair, type TestKeyPair } from '../../helpers/gpg.js';

let keys: TestKeyPair;
let signingOnly: TestKeyPair;
let root: string;

beforeAll(async () => {
  [keys, signingOnly] = await Promise.all([generateKeyPair(), generateKeyPair({ encrypt: false })]);
  root = await fsp.realpath(await fsp.mkdtemp(path.join(os.tmpdir(), 'shuttle-hazard-key-')));
});

afterAll(async () => {
  await Promise.all([keys?.remove(), signingOnly?.remove()]);
  await fsp.rm(root, { recursive: true, force: true });
});

async function refusal(keyPath: string, options: Parameters<typeof validateHazardKey>[1] = {}): Promise<string> {
  const error = await validateHazardKey(keyPath, options).then(
    () => null,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(HazardKeyError);
  return (error as HazardKeyError).problem;
}

describe('validateHazardKey', () => {
  it('accepts a public key that can encrypt, and leaves no keyring behind', async () => {
    const scratch = await fsp.mkdtemp(path.join(root, 'scratch-'));
    await validateHazardKey(keys.publicKeyPath, { scratchDirectory: scratch });
    expect(await fsp.readdir(scratch)).toEqual([]);
  });

  it('refuses a missing, empty, or non-key file', async () => {
    expect(await refusal(path.join(root, 'missing.asc'))).toBe('does not exist');
    await fsp.writeFile(path.join(root, 'empty.asc'), '');
    expect(await refusal(path.join(root, 'empty.asc'))).toMatch(/is empty/);
    await fsp.writeFile(path.join(root, 'garbage.asc'), '-----BEGIN PGP PUBLIC KEY BLOCK-----\n');
    expect(await refusal(path.join(root, 'garbage.asc'))).toMatch(/is not an OpenPGP public key/);
  });

  it('refuses secret key material', async () => {
    expect(await refusal(keys.secretKeyPath)).toMatch(/secret key material/);
  });

  it('refuses a key that cannot encrypt', async () => {
    expect(await refusal(signingOnly.publicKeyPath)).toMatch(/no key that can encrypt/);
  });

  it('refuses a symbolic link', async () => {
    await fsp.symlink(keys.publicKeyPath, path.join(root, 'link.asc'));
    expect(await refusal(path.join(root, 'link.asc'))).toMatch(/symbolic link/);
  });

  it('says so when gpg cannot be run', async () => {
    expect(await refusal(keys.publicKeyPath, { gpgCommand: '/nonexistent/gpg' })).toMatch(/cannot run \/nonexistent\/gpg/);
  });
});

describe('check-config', () => {
  function configWithKey(keyPath: string) {
    return parseConfig(
      `paths:
  source_path: ${root}/in
  destination_path: ${root}/out
  quarantine_path: ${root}/quarantine
  hazard_archive_path: ${root}/hazard
  log_path: ${root}/log
  hazard_encryption_key_path: ${keyPath}
  ledger_file_path: ${root}/ledger.yaml
scanners:
  clamd: { socket: ${root}/clamd.sock }
`,
      path.join(root, 'shuttle.yaml'),
    );
  }

  async function keyFinding(keyPath: string) {
    const findings = await runEnvironmentChecks(configWithKey(keyPath), systemProbes);
    return findings.find((finding) => finding.name === 'paths.hazard_encryption_key_path');
  }

  it('passes a usable key and fails one that cannot encrypt, naming the problem', async () => {
    expect(await keyFinding(keys.publicKeyPath)).toEqual({
      name: 'paths.hazard_encryption_key_path',
      status: 'ok',
      detail: `${keys.publicKeyPath} (an OpenPGP public key that can encrypt)`,
    });
    expect(await keyFinding(signingOnly.publicKeyPath)).toMatchObject({ status: 'failed', detail: expect.stringMatching(/no key that can encrypt/) });
  });
});
