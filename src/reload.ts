// SIGHUP: read the config again and work out what may change while the daemon runs. Pipeline limits,
// scanner settings, the ledger gate, the log level, the metrics file, intake limits and the filename policy
// take effect at once; the paths,
// the permission model, the ACL backend and the status socket are bound to things the daemon set up at
// start (the zone, the journal, the enforcer's watches, the unit's ReadWritePaths) and wait for a
// restart. A config that does not load is refused as a whole and the running one stays in force.

import { isDeepStrictEqual } from 'node:util';

import { ConfigError, type ShuttleConfig } from './config.js';
import { loadConfig } from './config-load.js';

export type ChangeEffect = 'live' | 'restart';

/** Sections of ShuttleConfig the daemon re-applies on reload. Any other section waits for a restart. */
export type LiveSection = 'pipeline' | 'scanners' | 'ledger' | 'logging' | 'metrics' | 'limits' | 'filenames';
const LIVE_SECTIONS: readonly string[] = ['pipeline', 'scanners', 'ledger', 'logging', 'metrics', 'limits', 'filenames'] satisfies LiveSection[];

export interface ConfigChange {
  /** The key as the admin writes it in the YAML, e.g. "pipeline.scan_concurrency". */
  readonly key: string;
  /** Values as the YAML writes them (seconds, octal modes); undefined when absent on that side. */
  readonly before: unknown;
  readonly after: unknown;
  readonly effect: ChangeEffect;
}

export interface ReloadPlan {
  readonly changes: readonly ConfigChange[];
  readonly live: readonly ConfigChange[];
  /** Changes that are ignored until the daemon restarts; log them as warnings. */
  readonly restartRequired: readonly ConfigChange[];
  /** The live sections that differ and must be re-applied. */
  readonly sectionsToApply: readonly LiveSection[];
  /**
   * The config to run with from now on: the new live sections over the old restart-bound ones, so it
   * still describes what the daemon actually does.
   */
  readonly effective: ShuttleConfig;
}

/** Pure: what differs between the running config and a freshly loaded one, and what may be applied. */
export function planReload(current: ShuttleConfig, next: ShuttleConfig): ReloadPlan {
  const changes: ConfigChange[] = [];
  const sectionsToApply: LiveSection[] = [];
  const effective: Record<string, unknown> = { ...current };
  const sections = new Set([...Object.keys(current), ...Object.keys(next)]);
  sections.delete('file');
  for (const section of sections) {
    const before = (current as unknown as Record<string, unknown>)[section];
    const after = (next as unknown as Record<string, unknown>)[section];
    if (isDeepStrictEqual(before, after)) continue;
    const effect: ChangeEffect = LIVE_SECTIONS.includes(section) ? 'live' : 'restart';
    if (effect === 'live') {
      sectionsToApply.push(section as LiveSection);
      effective[section] = after;
    }
    collectChanges(before, after, [section], effect, changes);
  }
  return {
    changes,
    live: changes.filter((change) => change.effect === 'live'),
    restartRequired: changes.filter((change) => change.effect === 'restart'),
    sectionsToApply,
    effective: Object.freeze(effective) as unknown as ShuttleConfig,
  };
}

export type ReloadOutcome =
  /** The new config does not load: nothing changes. */
  | { readonly kind: 'refused'; readonly error: ConfigError }
  | { readonly kind: 'unchanged' }
  | { readonly kind: 'changed'; readonly plan: ReloadPlan };

/** Reads `current.file` again and plans the reload. Never throws for a bad config: that is 'refused'. */
export async function reloadConfig(current: ShuttleConfig, load: (file: string) => Promise<ShuttleConfig> = loadConfig): Promise<ReloadOutcome> {
  let next: ShuttleConfig;
  try {
    next = await load(current.file);
  } catch (error) {
    if (error instanceof ConfigError) return { kind: 'refused', error };
    throw error;
  }
  const plan = planReload(current, next);
  return plan.changes.length === 0 ? { kind: 'unchanged' } : { kind: 'changed', plan };
}

/** "pipeline.scan_concurrency: 4 -> 8", for log lines. */
export function describeChange(change: ConfigChange): string {
  const show = (value: unknown): string => (value === undefined ? '(not set)' : value === null ? '(off)' : JSON.stringify(value));
  return `${change.key}: ${show(change.before)} -> ${show(change.after)}`;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function collectChanges(before: unknown, after: unknown, segments: string[], effect: ChangeEffect, out: ConfigChange[]): void {
  if (isDeepStrictEqual(before, after)) return;
  if (isPlainObject(before) && isPlainObject(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])];
    for (const key of keys) collectChanges(before[key], after[key], [...segments, key], effect, out);
    return;
  }
  const yaml = yamlKey(segments);
  if (yaml === null) return;
  out.push({ key: yaml.key, before: yaml.value(before), after: yaml.value(after), effect });
}

/**
 * The YAML name of a resolved key, and how to show its values: milliseconds become the *_seconds keys
 * they were read from, modes become octal strings. null for keys that only restate another change.
 */
function yamlKey(segments: readonly string[]): { key: string; value: (v: unknown) => unknown } | null {
  const parts = [...segments];
  if (parts[0] === 'ledger') parts[0] = 'scanners';
  const last = parts[parts.length - 1] ?? '';
  // A socket↔TCP switch shows as socket/host/port changes; the kind adds nothing.
  if (parts.includes('endpoint') && last === 'kind') return null;
  const kept = parts.filter((part) => part !== 'endpoint');
  let value = (v: unknown): unknown => v;
  if (last.endsWith('Ms')) {
    kept[kept.length - 1] = `${last.slice(0, -2)}Seconds`;
    value = (v) => (typeof v === 'number' ? v / 1000 : v);
  } else if (parts[0] === 'permissions' && (last === 'mode' || last === 'fileMode')) {
    value = (v) => (typeof v === 'number' ? v.toString(8).padStart(4, '0') : v);
  }
  return { key: kept.map(snakeCase).join('.'), value };
}

function snakeCase(name: string): string {
  return name.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`);
}
