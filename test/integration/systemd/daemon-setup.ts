// A daemon configuration for the tests that check how `shuttle run` talks to systemd and to admins
// (sd_notify, the status socket, SIGHUP): the usual test directories and private clamd, a real hazard
// key, the model's accounts, a status socket of its own, and no ledger gate (scanner-test has its own tests).

import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { ensureModelAccounts } from '../../helpers/accounts.js';
import { startClamd, type ClamdHarness } from '../../helpers/clamd.js';
import { makeDirectories, statusSocketPath, writeConfig, type ShuttleDirectories } from '../../helpers/daemon.js';
import { generateKeyPair, type TestKeyPair } from '../../helpers/gpg.js';

export interface DaemonSetup {
  readonly directories: ShuttleDirectories;
  readonly configFile: string;
  readonly statusSocket: string;
  readonly clamd: ClamdHarness;
  remove(): Promise<void>;
}

export async function prepareDaemon(): Promise<DaemonSetup> {
  ensureModelAccounts();
  const clamd = await startClamd();
  let key: TestKeyPair | null = null;
  try {
    key = await generateKeyPair();
    const directories = await makeDirectories();
    await fsp.copyFile(key.publicKeyPath, path.join(directories.etc, 'hazard-public.asc'));
    const configFile = await writeConfig(directories, { clamdSocket: clamd.socketPath, permissions: null });
    const statusSocket = statusSocketPath(directories);
    const keyPair = key;
    return {
      directories,
      configFile,
      statusSocket,
      clamd,
      remove: async () => {
        await clamd.stop();
        await keyPair.remove();
        await fsp.rm(directories.root, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await clamd.stop();
    await key?.remove();
    throw error;
  }
}
