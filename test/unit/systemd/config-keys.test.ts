// The config keys for running under systemd: runtime.status_socket and metrics.*, their defaults and
// what is refused.
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/config.js';
import { parseConfig } from '../../../src/config-load.js';

const FILE = '/etc/shuttle/shuttle.yaml';
const BASE = `paths:
  source_path: /srv/shuttle/in
  destination_path: /srv/shuttle/out
  quarantine_path: /srv/shuttle/quarantine
  hazard_archive_path: /srv/shuttle/hazard
  log_path: /var/log/shuttle
  hazard_encryption_key_path: /etc/shuttle/hazard-public.asc
  ledger_file_path: /etc/shuttle/ledger.yaml
scanners:
  clamd: { socket: /run/clamav/clamd.ctl }
`;

function refusal(extra: string): string {
  try {
    parseConfig(BASE + extra, FILE);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).message;
  }
  throw new Error('the config was accepted');
}

describe('runtime and metrics keys', () => {
  it('default to the unit\'s runtime directory and no textfile', () => {
    const config = parseConfig(BASE, FILE);
    expect(config.runtime).toEqual({ statusSocket: '/run/shuttle/status.sock' });
    expect(config.metrics).toEqual({ textfilePath: null, textfileIntervalMs: 15_000 });
  });

  it('take an absolute socket path, a *.prom file and an interval', () => {
    const config = parseConfig(
      `${BASE}runtime: { status_socket: /run/shuttle-b/status.sock }\nmetrics: { textfile_path: /var/lib/node-exporter/shuttle.prom, textfile_interval_seconds: 2.5 }\n`,
      FILE,
    );
    expect(config.runtime.statusSocket).toBe('/run/shuttle-b/status.sock');
    expect(config.metrics).toEqual({ textfilePath: '/var/lib/node-exporter/shuttle.prom', textfileIntervalMs: 2_500 });
  });

  it('refuses what cannot work, naming the key', () => {
    expect(refusal('runtime: { status_socket: status.sock }\n')).toBe(`${FILE}: runtime.status_socket: "status.sock" is relative; it must be an absolute path (starting with /)`);
    expect(refusal(`runtime: { status_socket: /run/${'x'.repeat(120)}.sock }\n`)).toMatch(/^.*: runtime\.status_socket: .* is longer than a unix socket address allows \(107 bytes\)$/);
    expect(refusal('runtime: { status_socket: /srv/shuttle/in/status.sock }\n')).toMatch(/runtime\.status_socket: .* is inside paths\.source_path/);
    expect(refusal('runtime: { socket: /run/x.sock }\n')).toMatch(/runtime\.socket: unknown key/);
    expect(refusal('metrics: { textfile_path: /var/lib/node-exporter/shuttle.txt }\n')).toMatch(/metrics\.textfile_path: .* must end in \.prom/);
    expect(refusal('metrics: { textfile_path: /srv/shuttle/out/shuttle.prom }\n')).toMatch(/metrics\.textfile_path: .* is inside paths\.destination_path/);
    expect(refusal('metrics: { textfile_interval_seconds: 0 }\n')).toMatch(/metrics\.textfile_interval_seconds: must be greater than 0/);
    expect(refusal('metrics: [textfile]\n')).toMatch(/metrics: expected a mapping/);
  });
});
