// Intake asks the limits before it copies, with the size it saw. A writer that adds bytes after that look
// and closes the file before the copy (so the writer check finds nobody) must not slip a file past
// limits.max_file_size or the daily byte quota: the size copied is always the size the limits agreed to.

import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { IntakeGate } from '../../../src/intake.js';
import type { IntakeAdmission, IntakeTicket } from '../../../src/limits/intake-limits.js';
import { openIntake } from '../../helpers/intake.js';

const LIMIT = 1024;

let root: string;

beforeEach(async () => {
  root = await fsp.realpath(await fsp.mkdtemp(path.join(os.tmpdir(), 'shuttle-admission-')));
});

afterEach(async () => {
  await fsp.rm(root, { recursive: true, force: true });
});

describe('intake admission', () => {
  it('asks the limits again when the file grew between the look and the open', async () => {
    const source = path.join(root, 'in');
    const quarantine = path.join(root, 'quarantine');
    await fsp.mkdir(source);
    await fsp.mkdir(quarantine);
    const file = path.join(source, 'growing.bin');
    await fsp.writeFile(file, 'ten bytes.');

    const asked: number[] = [];
    let returned = 0;
    const gate: IntakeGate = {
      async admit({ size }): Promise<IntakeAdmission> {
        asked.push(size);
        // The first answer is given for the small file; the writer then finishes and closes.
        if (asked.length === 1) await fsp.appendFile(file, Buffer.alloc(4096, 1));
        if (size > LIMIT) return { kind: 'reject', limit: 'max_file_size', reason: `larger than limits.max_file_size (${size} > ${LIMIT} bytes)` };
        return { kind: 'take', ticket: { size } as unknown as IntakeTicket };
      },
      notTaken() {
        returned++;
      },
    };

    const { intake, journal, close } = await openIntake(source, quarantine, gate);
    try {
      const first = await intake.take('growing.bin', new AbortController().signal);
      expect(first).toMatchObject({ kind: 'deferred', retryInMs: 0 });
      expect(returned).toBe(1);
      expect((await fsp.readdir(quarantine)).filter((name) => name.endsWith('.data'))).toEqual([]);
      expect((await fsp.stat(file)).size).toBe(10 + 4096);

      const second = await intake.take('growing.bin', new AbortController().signal);
      expect(second).toMatchObject({ kind: 'refused', reason: expect.stringContaining('limits.max_file_size') });
      expect(asked).toEqual([10, 10 + 4096]);
      expect(journal.items().size).toBe(0);
      expect((await fsp.stat(file)).size).toBe(10 + 4096);
    } finally {
      await close();
    }
  });
});
