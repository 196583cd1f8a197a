// systemd/shuttle.service through systemd's own offline analyzers (no running systemd needed):
// `systemd-analyze verify` must pass without a warning, and `systemd-analyze security --offline=true`
// must rate it 2.5 or better. Plus the settings the daemon cannot live with must stay out.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const UNIT = fileURLToPath(new URL('../../../systemd/shuttle.service', import.meta.url));
const MAX_EXPOSURE = 2.5;
const ANALYZE = process.env.SHUTTLE_TEST_SYSTEMD_ANALYZE ?? 'systemd-analyze';

function analyze(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(ANALYZE, args, { encoding: 'utf8', env: { ...process.env, SYSTEMD_COLORS: '0', SYSTEMD_PAGER: '' } });
  if (result.error) {
    throw new Error(`${ANALYZE} cannot run (${result.error.message}); install Debian's systemd package for its offline analyzers`);
  }
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

function unitSettings(key: string): string[] {
  return readFileSync(UNIT, 'utf8')
    .split('\n')
    .filter((line) => line.startsWith(`${key}=`))
    .map((line) => line.slice(key.length + 1).trim());
}

describe('systemd/shuttle.service', () => {
  it('passes systemd-analyze verify without warnings', () => {
    const result = analyze(['verify', '--man=no', UNIT]);
    expect(result.stderr + result.stdout).toBe('');
    expect(result.status).toBe(0);
  });

  it(`is rated ${MAX_EXPOSURE} or better by systemd-analyze security --offline=true`, () => {
    const result = analyze(['security', '--offline=true', '--no-pager', UNIT]);
    const match = /Overall exposure level for \S+: (\d+(?:\.\d+)?)/.exec(result.stdout);
    expect(match, `no exposure level in:\n${result.stdout}\n${result.stderr}`).not.toBeNull();
    const exposure = Number(match?.[1]);
    expect(exposure, `exposure ${exposure}; the findings:\n${result.stdout}`).toBeLessThanOrEqual(MAX_EXPOSURE);
  });

  it('leaves out what forbids setgid directories or breaks V8, and restricts capabilities to the four it needs', () => {
    for (const forbidden of ['RestrictSUIDSGID', 'DynamicUser', 'MemoryDenyWriteExecute', 'PrivateUsers']) {
      expect(unitSettings(forbidden), forbidden).toEqual([]);
    }
    const capabilities = ['CAP_CHOWN', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_LEASE'];
    expect(unitSettings('AmbientCapabilities')).toEqual([capabilities.join(' ')]);
    expect(unitSettings('CapabilityBoundingSet')).toEqual([capabilities.join(' ')]);
    const text = readFileSync(UNIT, 'utf8');
    for (const capability of capabilities) expect(text, `a comment justifying ${capability}`).toMatch(new RegExp(`^# ${capability}: \\S`, 'm'));
    expect(unitSettings('Type')).toEqual(['notify']);
    expect(unitSettings('NotifyAccess')).toEqual(['main']);
    expect(unitSettings('UMask')).toEqual(['0007']);
    expect(unitSettings('NoNewPrivileges')).toEqual(['yes']);
    expect(unitSettings('ProtectSystem')).toEqual(['strict']);
    expect(unitSettings('RuntimeDirectory')).toEqual(['shuttle']);
    expect(unitSettings('SystemCallFilter')).toEqual(['@system-service @pkey']);
    expect(path.basename(UNIT)).toBe('shuttle.service');
  });
});
