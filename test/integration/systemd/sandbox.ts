// Runs the daemon the way systemd/shuttle.service would, without a running systemd: as shuttle_runner
// with only the unit's capabilities (setpriv), and behind the unit's system call filter. The filter is
// the unit's SystemCallFilter= expanded by `systemd-analyze syscall-filter`, compiled into a small
// seccomp launcher that sets no_new_privs (NoNewPrivileges=yes), installs the filter (blocked calls fail
// with EPERM, as SystemCallErrorNumber=EPERM says; other architectures and x32 are refused, as
// SystemCallArchitectures=native does) and execs the program.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export const UNIT_FILE = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../../systemd/shuttle.service');

/** Values of `key=` lines in the unit, each split into words. */
export function unitWords(key: string): string[] {
  return readFileSync(UNIT_FILE, 'utf8')
    .split('\n')
    .filter((line) => line.startsWith(`${key}=`))
    .flatMap((line) => line.slice(key.length + 1).trim().split(/\s+/))
    .filter((word) => word !== '');
}

/** The capabilities of the unit's AmbientCapabilities=, as setpriv names them ("chown", "lease"). */
export function unitCapabilities(): string[] {
  return unitWords('AmbientCapabilities').map((name) => name.replace(/^CAP_/, '').toLowerCase());
}

/** The system calls a SystemCallFilter= allow list permits, sets expanded recursively. */
export async function allowedSystemCalls(filters: readonly string[]): Promise<string[]> {
  if (filters.some((filter) => filter.startsWith('~'))) throw new Error('deny-list filters are not emulated; the unit uses an allow list');
  const names = new Set<string>();
  const seen = new Set<string>();
  const expand = async (entry: string): Promise<void> => {
    if (!entry.startsWith('@')) {
      names.add(entry);
      return;
    }
    if (seen.has(entry)) return;
    seen.add(entry);
    const { stdout } = await execFileAsync('systemd-analyze', ['syscall-filter', '--no-pager', entry]);
    for (const raw of stdout.split('\n')) {
      const line = raw.trim();
      if (line === '' || line.startsWith('#') || line === entry) continue;
      await expand(line);
    }
  };
  for (const filter of filters) await expand(filter);
  return [...names].sort();
}

function launcherSource(systemCalls: readonly string[]): string {
  const table = systemCalls.map((name) => `#ifdef __NR_${name}\n  __NR_${name},\n#endif`).join('\n');
  return `#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#if defined(__x86_64__)
#define NATIVE_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define NATIVE_ARCH AUDIT_ARCH_AARCH64
#else
#error "no test launcher for this architecture"
#endif

static const unsigned int allowed[] = {
${table}
};

int main(int argc, char *argv[]) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s PROGRAM [ARGUMENT...]\\n", argv[0]);
    return 2;
  }
  size_t count = sizeof allowed / sizeof allowed[0];
  struct sock_filter *filter = calloc(8 + 2 * count, sizeof *filter);
  if (filter == NULL) return 1;
  size_t at = 0;
  filter[at++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
  filter[at++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NATIVE_ARCH, 1, 0);
  filter[at++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM);
  filter[at++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
#ifdef __X32_SYSCALL_BIT
  filter[at++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, __X32_SYSCALL_BIT, 0, 1);
  filter[at++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM);
#endif
  for (size_t i = 0; i < count; i++) {
    filter[at++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, allowed[i], 0, 1);
    filter[at++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  }
  filter[at++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM);
  struct sock_fprog program = { .len = (unsigned short)at, .filter = filter };
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) { perror("PR_SET_NO_NEW_PRIVS"); return 1; }
  if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) != 0) { perror("PR_SET_SECCOMP"); return 1; }
  execv(argv[1], argv + 1);
  perror(argv[1]);
  return 127;
}
`;
}

/** Compiles the launcher for the unit's filter into `directory`; returns its path. */
export async function buildSeccompLauncher(directory: string): Promise<string> {
  const systemCalls = await allowedSystemCalls(unitWords('SystemCallFilter'));
  const source = path.join(directory, 'unit-seccomp.c');
  const binary = path.join(directory, 'unit-seccomp');
  await writeFile(source, launcherSource(systemCalls));
  await execFileAsync(process.env.CC ?? 'cc', ['-O1', '-Wall', '-o', binary, source]);
  return binary;
}

export interface RestrictedProcess {
  readonly child: ChildProcess;
  output(): string;
  readonly exited: Promise<number | string>;
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<void>;
}

const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

/**
 * `command` as `user` with the unit's primary group, the user's supplementary groups, and only the
 * unit's capabilities (inheritable, ambient, bounding set), behind the seccomp launcher when given.
 */
export function spawnAsService(
  options: { user: string; group: string; launcher: string | null; env?: Record<string, string> },
  command: readonly string[],
): RestrictedProcess {
  const capabilities = unitCapabilities().map((name) => `+${name}`).join(',');
  const setprivArgs = [
    `--reuid=${options.user}`,
    `--regid=${options.group}`,
    '--init-groups',
    `--inh-caps=-all,${capabilities}`,
    `--ambient-caps=${capabilities}`,
    `--bounding-set=-all,${capabilities}`,
    '--',
    ...(options.launcher === null ? [] : [options.launcher]),
    ...command,
  ];
  const child = spawn('setpriv', setprivArgs, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8', NOTIFY_SOCKET: '', ...options.env },
  });
  children.add(child);
  let text = '';
  const listeners = new Set<() => void>();
  const collect = (chunk: Buffer): void => {
    text += chunk.toString();
    listeners.forEach((listener) => listener());
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const exited = new Promise<number | string>((resolve) => {
    child.on('exit', (code, signal) => {
      children.delete(child);
      resolve(code ?? signal ?? 'unknown');
      listeners.forEach((listener) => listener());
    });
  });
  return {
    child,
    output: () => text,
    exited,
    waitForOutput: (pattern, timeoutMs = 30_000) =>
      new Promise<void>((resolve, reject) => {
        const check = (): void => {
          if (pattern.test(text)) {
            cleanup();
            resolve();
          } else if (child.exitCode !== null || child.signalCode !== null) {
            cleanup();
            reject(new Error(`exited before printing ${pattern}:\n${text}`));
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`timed out waiting for ${pattern}:\n${text}`));
        }, timeoutMs);
        const cleanup = (): void => {
          clearTimeout(timer);
          listeners.delete(check);
        };
        listeners.add(check);
        check();
      }),
  };
}

/** Bits of a /proc/PID/status capability mask ("CapEff") as capability numbers. */
export function capabilityNumbers(pid: number, field: 'CapEff' | 'CapPrm' | 'CapInh' | 'CapAmb' | 'CapBnd'): number[] {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${field}:`));
  const mask = BigInt(`0x${(line ?? '').split(/\s+/)[1] ?? '0'}`);
  const numbers: number[] = [];
  for (let bit = 0; bit < 64; bit++) if ((mask >> BigInt(bit)) & 1n) numbers.push(bit);
  return numbers;
}

export function procStatusField(pid: number, field: string): string {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${field}:`));
  return (line ?? '').slice(field.length + 1).trim();
}
