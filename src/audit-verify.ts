// `shuttle audit verify`: re-reads the whole audit trail in log_path and checks its hash chain.
// Exit status: 0 intact, 1 broken (each break is listed), 2 could not check.

import type { ShuttleConfig } from './config.js';
import { verifyAuditChain, type AuditVerification } from './audit.js';

export async function auditVerify(config: ShuttleConfig, write: (line: string) => void, options: { json?: boolean } = {}): Promise<number> {
  const directory = config.paths.logPath;
  let verification: AuditVerification;
  try {
    verification = await verifyAuditChain(directory);
  } catch (error) {
    const message = `cannot read the audit log in ${directory}: ${(error as Error).message}`;
    write(options.json ? JSON.stringify({ directory, ok: false, error: message }) : `audit: FAILED ${message}`);
    return 2;
  }
  if (options.json) {
    write(JSON.stringify({ directory, ...verification }));
  } else {
    for (const line of formatVerification(directory, verification)) write(line);
  }
  return verification.ok ? 0 : 1;
}

export function formatVerification(directory: string, verification: AuditVerification): string[] {
  const { records, files, problems, head, ok } = verification;
  const counted = `${records} record${records === 1 ? '' : 's'} in ${files.length} file${files.length === 1 ? '' : 's'}`;
  if (ok) {
    const tip = head === null ? '' : `; last record seq ${head.seq}, sha256 ${head.hash} (compare with the head in shuttle's log)`;
    return [`audit: ok ${directory}: ${counted}, chain intact${tip}`];
  }
  return [`audit: BROKEN ${directory}: ${counted}`, ...problems.map((problem) => `  ${problem}`)];
}
