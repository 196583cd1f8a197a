// An Intake over real directories, with the real journal and writer check, for tests that drive intake
// directly instead of through the daemon.

import winston from 'winston';
import { Intake, type IntakeGate } from '../../src/intake.js';
import { Journal } from '../../src/journal.js';
import { loadNative } from '../../src/native.js';
import { detectWriterCheckMode, WriterChecker } from '../../src/writer-check.js';
import { Zone, type VerifiedDirectory } from '../../src/zone.js';

export interface IntakeHarness {
  readonly intake: Intake;
  readonly journal: Journal;
  /** Closes the journal and the quarantine directory. */
  close(): Promise<void>;
}

export async function openIntake(source: string, quarantine: string, limits?: IntakeGate): Promise<IntakeHarness> {
  const logger = winston.createLogger({ silent: true });
  const zone = new Zone([source, quarantine]);
  const quarantineDirectory: VerifiedDirectory = await zone.openDirectory(quarantine);
  const journal = await Journal.open(zone, quarantineDirectory, logger);
  const addon = loadNative();
  const intake = new Intake({
    zone,
    sourceRoot: source,
    quarantine: quarantineDirectory,
    journal,
    writerChecker: new WriterChecker(addon, detectWriterCheckMode(addon), 1000, () => Date.now()),
    logger,
    now: () => new Date(),
    ...(limits === undefined ? {} : { limits }),
  });
  return {
    intake,
    journal,
    async close() {
      await journal.close();
      quarantineDirectory.close();
    },
  };
}
