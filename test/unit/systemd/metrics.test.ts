// Prometheus text exposition: exact output for small registries, Shuttle's metric set, the per-day
// counts, and the textfile writer's atomic replace.
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Counter, Gauge, Histogram, MetricsRegistry, MetricsTextfile, ShuttleMetrics, writeTextfile } from '../../../src/metrics.js';

/** Every sample line of the exposition format: name, optional labels, a value. */
const SAMPLE_LINE = /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*",?)*\})? (-?[0-9.e+-]+|\+Inf|-Inf|NaN)$/;

function expectWellFormed(text: string): void {
  expect(text.endsWith('\n')).toBe(true);
  const declared = new Set<string>();
  for (const line of text.trimEnd().split('\n')) {
    const type = /^# TYPE (\S+) (counter|gauge|histogram)$/.exec(line);
    if (type) {
      expect(declared.has(type[1] as string), `${type[1]} declared twice`).toBe(false);
      declared.add(type[1] as string);
      continue;
    }
    if (line.startsWith('# HELP ')) continue;
    expect(line).toMatch(SAMPLE_LINE);
  }
}

describe('exposition format', () => {
  it('renders counters, gauges and histograms exactly', () => {
    const registry = new MetricsRegistry();
    const files = registry.register(new Counter('demo_files_total', 'Files.\nBy outcome \\ kind.', ['outcome'], [{ outcome: 'released' }]));
    const depth = registry.register(new Gauge('demo_queue_depth', 'Queue depth.', ['state']));
    const scan = registry.register(new Histogram('demo_scan_seconds', 'Scan time.', [1, 0.1, 10], ['scanner']));
    files.inc({ outcome: 'released' }, 2);
    files.inc({ outcome: 'failed' });
    depth.set({ state: 'say "hi"\\\n' }, 3);
    for (const seconds of [0.05, 0.1, 0.5, 20]) scan.observe({ scanner: 'clamd' }, seconds);

    const text = registry.render();
    expect(text).toBe(
      [
        '# HELP demo_files_total Files.\\nBy outcome \\\\ kind.',
        '# TYPE demo_files_total counter',
        'demo_files_total{outcome="released"} 2',
        'demo_files_total{outcome="failed"} 1',
        '# HELP demo_queue_depth Queue depth.',
        '# TYPE demo_queue_depth gauge',
        'demo_queue_depth{state="say \\"hi\\"\\\\\\n"} 3',
        '# HELP demo_scan_seconds Scan time.',
        '# TYPE demo_scan_seconds histogram',
        'demo_scan_seconds_bucket{scanner="clamd",le="0.1"} 2',
        'demo_scan_seconds_bucket{scanner="clamd",le="1"} 3',
        'demo_scan_seconds_bucket{scanner="clamd",le="10"} 3',
        'demo_scan_seconds_bucket{scanner="clamd",le="+Inf"} 4',
        'demo_scan_seconds_sum{scanner="clamd"} 20.65',
        'demo_scan_seconds_count{scanner="clamd"} 4',
        '',
      ].join('\n'),
    );
    expectWellFormed(text);
  });

  it('refuses wrong label sets, bad names and decreasing counters', () => {
    const counter = new Counter('demo_total', 'x', ['outcome']);
    expect(() => counter.inc({})).toThrow(/takes labels \{outcome\}/);
    expect(() => counter.inc({ outcome: 'a', extra: 'b' })).toThrow(/takes labels/);
    expect(() => counter.inc({ outcome: 'a' }, -1)).toThrow(/only goes up/);
    expect(() => new Counter('demo-total', 'x')).toThrow(/invalid metric name/);
    expect(() => new Histogram('demo_seconds', 'x', [1], ['le'])).toThrow(/invalid label name/);
    expect(() => new Histogram('demo_seconds', 'x', [])).toThrow(/buckets/);
    const registry = new MetricsRegistry();
    registry.register(new Gauge('demo_up', 'x'));
    expect(() => registry.register(new Gauge('demo_up', 'y'))).toThrow(/registered twice/);
  });
});

describe('ShuttleMetrics', () => {
  it('counts files and bytes by outcome, scan time by scanner, queue depth by state', () => {
    const metrics = new ShuttleMetrics({ version: '1.2.3', now: () => new Date(2026, 2, 1, 10, 0, 0) });
    metrics.fileOutcome('quarantined', 5000);
    metrics.fileOutcome('released', 5000);
    metrics.fileOutcome('hazarded', 68);
    metrics.scanFinished('clamd', 0.02, 'clean');
    metrics.scanFinished('clamd', 200, 'error');
    metrics.setQueueDepth({ source: 2, quarantined: 1 });
    metrics.setDegraded('stability-window', true);
    const text = metrics.render();
    expectWellFormed(text);
    expect(text).toContain('shuttle_build_info{version="1.2.3"} 1');
    expect(text).toContain(`shuttle_start_time_seconds ${Math.floor(new Date(2026, 2, 1, 10).getTime() / 1000)}`);
    expect(text).toContain('shuttle_files_total{outcome="released"} 1');
    expect(text).toContain('shuttle_files_total{outcome="rejected"} 0');
    expect(text).toContain('shuttle_bytes_total{outcome="quarantined"} 5000');
    expect(text).toContain('shuttle_file_size_bytes_bucket{le="16384"} 1');
    expect(text).toContain('shuttle_scan_duration_seconds_bucket{scanner="clamd",verdict="clean",le="0.05"} 1');
    expect(text).toContain('shuttle_scan_duration_seconds_bucket{scanner="clamd",verdict="error",le="+Inf"} 1');
    expect(text).toContain('shuttle_scan_duration_seconds_bucket{scanner="clamd",verdict="error",le="120"} 0');
    expect(text).toContain('shuttle_scanner_up{scanner="clamd"} 0');
    expect(text).toContain('shuttle_queue_depth{state="source"} 2');
    expect(text).toContain('shuttle_degraded{mode="stability-window"} 1');
    expect(metrics.totals().released).toEqual({ files: 1, bytes: 5000 });
  });

  it('keeps per-day counts that start again at local midnight', () => {
    let now = new Date(2026, 2, 1, 23, 59, 0);
    const metrics = new ShuttleMetrics({ version: '0', now: () => now });
    metrics.fileOutcome('released', 1);
    metrics.fileOutcome('rejected');
    metrics.fileOutcome('quarantined', 1);
    expect(metrics.today()).toEqual({ date: '2026-03-01', released: 1, hazarded: 0, rejected: 1, failed: 0 });
    now = new Date(2026, 2, 2, 0, 0, 1);
    expect(metrics.today()).toEqual({ date: '2026-03-02', released: 0, hazarded: 0, rejected: 0, failed: 0 });
    metrics.fileOutcome('failed');
    expect(metrics.today().failed).toBe(1);
    expect(metrics.totals().released.files).toBe(1);
  });
});

describe('textfile', () => {
  let directory: string;

  beforeEach(async () => {
    directory = await fsp.mkdtemp(path.join(os.tmpdir(), 'shuttle-metrics-'));
  });

  afterEach(async () => {
    await fsp.rm(directory, { recursive: true, force: true });
  });

  it('replaces the file by rename, world-readable, leaving no temporary file', async () => {
    const file = path.join(directory, 'shuttle.prom');
    await fsp.writeFile(file, 'old\n');
    const before = (await fsp.stat(file)).ino;
    const previousUmask = process.umask(0o077);
    try {
      await writeTextfile(file, 'shuttle_up 1\n');
    } finally {
      process.umask(previousUmask);
    }
    expect(await fsp.readFile(file, 'utf8')).toBe('shuttle_up 1\n');
    const stats = await fsp.stat(file);
    expect(stats.ino).not.toBe(before);
    expect(stats.mode & 0o777).toBe(0o644);
    expect(await fsp.readdir(directory)).toEqual(['shuttle.prom']);
  });

  it('writes on start, on each interval and on stop; reports a failing directory once', async () => {
    const file = path.join(directory, 'shuttle.prom');
    let renders = 0;
    let tick: () => void = () => undefined;
    const textfile = new MetricsTextfile({
      file,
      intervalMs: 1000,
      render: () => `shuttle_renders ${++renders}\n`,
      timers: { setInterval: (callback) => ((tick = callback), 1), clearInterval: () => (tick = () => undefined) },
    });
    textfile.start();
    await textfile.writeNow();
    tick();
    await textfile.stop();
    expect(await fsp.readFile(file, 'utf8')).toBe('shuttle_renders 4\n');

    const errors: string[] = [];
    const missing = new MetricsTextfile({
      file: path.join(directory, 'absent', 'shuttle.prom'),
      intervalMs: 1000,
      render: () => 'x 1\n',
      onError: (error) => errors.push(error.code ?? ''),
      timers: { setInterval: () => 1, clearInterval: () => undefined },
    });
    await missing.writeNow();
    await missing.writeNow();
    expect(errors).toEqual(['ENOENT']);
  });
});
