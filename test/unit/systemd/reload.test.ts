// What a SIGHUP reload may apply at once and what waits for a restart, named as the YAML names it.
import { describe, expect, it } from 'vitest';
import { ConfigError, type ShuttleConfig } from '../../../src/config.js';
import { parseConfig } from '../../../src/config-load.js';
import { describeChange, planReload, reloadConfig } from '../../../src/reload.js';

const FILE = '/etc/shuttle/shuttle.yaml';

function config(overrides: { paths?: Record<string, string>; clamd?: string; extra?: string } = {}): ShuttleConfig {
  const paths = {
    source_path: '/srv/shuttle/in',
    destination_path: '/srv/shuttle/out',
    quarantine_path: '/srv/shuttle/quarantine',
    hazard_archive_path: '/srv/shuttle/hazard',
    log_path: '/var/log/shuttle',
    hazard_encryption_key_path: '/etc/shuttle/hazard-public.asc',
    ledger_file_path: '/etc/shuttle/ledger.yaml',
    ...overrides.paths,
  };
  const text = [
    'paths:',
    ...Object.entries(paths).map(([key, value]) => `  ${key}: ${value}`),
    'scanners:',
    `  clamd: ${overrides.clamd ?? '{ socket: /run/clamav/clamd.ctl }'}`,
    overrides.extra ?? '',
  ].join('\n');
  return parseConfig(text, FILE);
}

describe('planReload', () => {
  it('finds nothing to do for the same config', () => {
    const plan = planReload(config(), config());
    expect(plan.changes).toEqual([]);
    expect(plan.sectionsToApply).toEqual([]);
  });

  it('applies pipeline limits, scanner settings, the log level and metrics live, in YAML terms', () => {
    const current = config();
    const next = config({
      clamd: '{ socket: /run/clamav/clamd.ctl, timeout_seconds: 60, max_file_size: 100M }',
      extra: [
        'pipeline: { scan_concurrency: 24, stability_window_seconds: 2.5 }',
        'logging: { level: debug }',
        'metrics: { textfile_path: /var/lib/prometheus/node-exporter/shuttle.prom }',
      ].join('\n'),
    });
    const plan = planReload(current, next);
    expect(plan.restartRequired).toEqual([]);
    expect(plan.sectionsToApply).toEqual(['scanners', 'pipeline', 'logging', 'metrics']);
    expect(plan.live.map(describeChange)).toEqual([
      'scanners.clamd.max_file_size: 26214400 -> 104857600',
      'scanners.clamd.timeout_seconds: 120 -> 60',
      'pipeline.stability_window_seconds: 5 -> 2.5',
      'pipeline.scan_concurrency: 16 -> 24',
      'logging.level: "info" -> "debug"',
      'metrics.textfile_path: (off) -> "/var/lib/prometheus/node-exporter/shuttle.prom"',
    ]);
    expect(plan.effective.pipeline).toBe(next.pipeline);
    expect(plan.effective.scanners).toBe(next.scanners);
    expect(plan.effective.logging.level).toBe('debug');
    expect(Object.isFrozen(plan.effective)).toBe(true);
  });

  it('keeps paths, the permission model, the ACL backend and the status socket until a restart', () => {
    const current = config();
    const next = config({
      paths: { source_path: '/srv/inbound' },
      extra: [
        'permissions_backend: setfacl',
        'permissions:',
        '  quarantine_path: { owner: root, group: shuttle_owners, mode: "2750" }',
        'runtime: { status_socket: /run/shuttle-b/status.sock }',
        'pipeline: { retry_max_seconds: 60 }',
      ].join('\n'),
    });
    const plan = planReload(current, next);
    expect(plan.restartRequired.map((change) => change.key)).toEqual(
      expect.arrayContaining([
        'paths.source_path',
        'permissions.quarantine_path.mode',
        'permissions.source_path',
        'permissions_backend',
        'runtime.status_socket',
      ]),
    );
    expect(plan.restartRequired.find((change) => change.key === 'permissions.quarantine_path.mode')).toMatchObject({ before: '2770', after: '2750' });
    expect(plan.live.map(describeChange)).toEqual(['pipeline.retry_max_seconds: 300 -> 60']);
    expect(plan.sectionsToApply).toEqual(['pipeline']);
    // The running daemon still works on what it set up at start.
    expect(plan.effective.paths).toBe(current.paths);
    expect(plan.effective.permissions).toBe(current.permissions);
    expect(plan.effective.permissionsBackend).toBe('auto');
    expect(plan.effective.runtime).toBe(current.runtime);
    expect(plan.effective.pipeline.retryMaxMs).toBe(60_000);
  });

  it('reports a switch from a clamd socket to TCP as the keys the admin changed', () => {
    const plan = planReload(config(), config({ clamd: '{ host: 127.0.0.1, port: 3310 }' }));
    expect(plan.live.map(describeChange)).toEqual([
      'scanners.clamd.socket: "/run/clamav/clamd.ctl" -> (not set)',
      'scanners.clamd.host: (not set) -> "127.0.0.1"',
      'scanners.clamd.port: (not set) -> 3310',
      'scanners.clamd.fdpass: true -> false',
    ]);
  });

  it('treats a section it does not know as needing a restart', () => {
    const current = config();
    const next = { ...config(), futureSection: { enabled: true } } as unknown as ShuttleConfig;
    const plan = planReload(current, next);
    expect(plan.restartRequired).toEqual([{ key: 'future_section', before: undefined, after: { enabled: true }, effect: 'restart' }]);
    expect((plan.effective as unknown as Record<string, unknown>).futureSection).toBeUndefined();
  });
});

describe('reloadConfig', () => {
  it('refuses a config that does not load, keeping the running one', async () => {
    const current = config();
    const outcome = await reloadConfig(current, async (file) => {
      throw new ConfigError(file, 'pipeline.scan_concurrency', 'expected a whole number, got 2.5');
    });
    expect(outcome.kind).toBe('refused');
    expect(outcome.kind === 'refused' && outcome.error.message).toBe(`${FILE}: pipeline.scan_concurrency: expected a whole number, got 2.5`);
  });

  it('re-reads the same file and plans the change', async () => {
    const current = config();
    const files: string[] = [];
    const outcome = await reloadConfig(current, async (file) => {
      files.push(file);
      return config({ extra: 'logging: { level: warn }' });
    });
    expect(files).toEqual([FILE]);
    expect(outcome.kind === 'changed' && outcome.plan.live.map(describeChange)).toEqual(['logging.level: "info" -> "warn"']);
    expect(await reloadConfig(current, async () => config())).toEqual({ kind: 'unchanged' });
  });

  it('lets errors other than a bad config through', async () => {
    await expect(reloadConfig(config(), async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
  });
});
