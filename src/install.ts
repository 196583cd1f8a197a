// `shuttle install [--prefix DIR]`: puts this built checkout (or npm-installed package) where Debian
// expects a system service, under DIR (default /), the way `make install DESTDIR=` would:
//
//   usr/lib/shuttle/                      the program: package.json, bin/, dist/src/, the native addon,
//                                         the production node_modules, config/ and systemd/ as examples
//   usr/bin/shuttle                       a wrapper that runs it with this node
//   usr/lib/systemd/system/shuttle.service
//   usr/lib/sysusers.d/shuttle.conf       accounts and groups (systemd-sysusers)
//   usr/lib/tmpfiles.d/shuttle.conf       managed directories, modes and ACLs (systemd-tmpfiles --create)
//   etc/shuttle/shuttle.yaml              the annotated config, only when there is none: never overwritten
//
// Nothing is started and no account is created: the last lines printed say what to run next.

import { constants as fsc, existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { SYSUSERS_FILE_NAME, TMPFILES_FILE_NAME } from './systemd-files.js';

export const INSTALL_LAYOUT = {
  program: 'usr/lib/shuttle',
  wrapper: 'usr/bin/shuttle',
  unit: 'usr/lib/systemd/system/shuttle.service',
  sysusers: 'usr/lib/sysusers.d/shuttle.conf',
  tmpfiles: 'usr/lib/tmpfiles.d/shuttle.conf',
  config: 'etc/shuttle/shuttle.yaml',
} as const;

/** The node the shipped unit starts (ExecStart=). */
export const UNIT_NODE = '/usr/bin/node';
const ADDON = 'native/build/Release/shuttle_native.node';

export interface InstallOptions {
  /** The root to install under, as DESTDIR: paths inside the installed files never include it. */
  readonly prefix: string;
  /** The package to install from; the one this module belongs to by default. */
  readonly sourceRoot?: string;
  /** The node the wrapper runs; this process's by default. */
  readonly nodePath?: string;
  readonly write?: (line: string) => void;
}

/** A reason the install cannot go ahead (nothing was changed, or what was changed is named). */
export class InstallError extends Error {}

export async function install(options: InstallOptions): Promise<void> {
  const prefix = path.resolve(options.prefix);
  const source = options.sourceRoot ?? packageRoot();
  const nodePath = options.nodePath ?? process.execPath;
  const write = options.write ?? ((line: string) => process.stdout.write(`${line}\n`));
  const target = (relative: string): string => path.join(prefix, relative);

  for (const required of ['package.json', 'bin/shuttle.js', 'bin/package.json', 'dist/src/cli.js', ADDON, 'config/shuttle.yaml', 'systemd/shuttle.service']) {
    if (!existsSync(path.join(source, required))) {
      throw new InstallError(
        `${path.join(source, required)} is missing; install from a built checkout (npm ci, npm run build:native) or an npm-installed package`,
      );
    }
  }

  await installProgram(source, target(INSTALL_LAYOUT.program));
  write(`installed ${target(INSTALL_LAYOUT.program)}/`);

  const programDir = `/${INSTALL_LAYOUT.program}`;
  const wrapper = [
    '#!/bin/sh',
    `# Runs Shuttle from ${programDir}; written by \`shuttle install\`.`,
    `exec ${shellQuote(nodePath)} ${programDir}/bin/shuttle.js "$@"`,
    '',
  ].join('\n');
  await writeFileReplacing(target(INSTALL_LAYOUT.wrapper), wrapper, 0o755);
  write(`installed ${target(INSTALL_LAYOUT.wrapper)}`);

  const copies: [string, string][] = [
    ['systemd/shuttle.service', INSTALL_LAYOUT.unit],
    [`systemd/${SYSUSERS_FILE_NAME}`, INSTALL_LAYOUT.sysusers],
    [`systemd/${TMPFILES_FILE_NAME}`, INSTALL_LAYOUT.tmpfiles],
  ];
  for (const [from, to] of copies) {
    await writeFileReplacing(target(to), await fsp.readFile(path.join(source, from)), 0o644);
    write(`installed ${target(to)}`);
  }

  const config = target(INSTALL_LAYOUT.config);
  await fsp.mkdir(path.dirname(config), { recursive: true, mode: 0o755 });
  try {
    // wx: never replace the admin's config, even one that appears meanwhile.
    await fsp.writeFile(config, await fsp.readFile(path.join(source, 'config/shuttle.yaml')), { flag: 'wx', mode: 0o644 });
    await fsp.chmod(config, 0o644);
    write(`installed ${config} (edit it, then: shuttle check-config --config /${INSTALL_LAYOUT.config})`);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    write(`kept ${config} (exists; the new example is ${programDir}/config/shuttle.yaml)`);
  }

  if (nodePath !== UNIT_NODE) {
    write(
      `note: the unit starts ${UNIT_NODE}, but this node is ${nodePath}; override ExecStart= in a drop-in ` +
        '(systemctl edit shuttle) or link the node there',
    );
  }
  write('next: systemd-sysusers shuttle.conf && systemd-tmpfiles --create shuttle.conf && systemctl daemon-reload');
  write('      then put the hazard key in place, run shuttle scanner-test, and systemctl enable --now shuttle');
}

/** `shuttle install`; exit status 0, or 2 when the install could not be done. */
export async function installCommand(prefix: string, write?: (line: string) => void): Promise<number> {
  try {
    await install({ prefix, ...(write === undefined ? {} : { write }) });
    return 0;
  } catch (error) {
    const message = error instanceof InstallError ? error.message : `${(error as Error).message}`;
    process.stderr.write(`shuttle install: ${message}\n`);
    return 2;
  }
}

/** The package root: the nearest directory at or above this module that holds package.json. */
function packageRoot(): string {
  const start = path.dirname(fileURLToPath(import.meta.url));
  for (let directory = start; ; directory = path.dirname(directory)) {
    if (existsSync(path.join(directory, 'package.json'))) return directory;
    if (path.dirname(directory) === directory) throw new InstallError(`no package.json above ${start}`);
  }
}

/**
 * Builds the new program tree beside the old one and swaps it in with renames, so a running daemon
 * never sees a half-copied tree under the final name.
 */
async function installProgram(source: string, destination: string): Promise<void> {
  const staging = `${destination}.new`;
  const previous = `${destination}.old`;
  await fsp.rm(staging, { recursive: true, force: true });
  await fsp.mkdir(staging, { recursive: true, mode: 0o755 });
  for (const entry of ['package.json', 'README.md', 'bin', 'dist/src', 'config', 'systemd']) {
    if (existsSync(path.join(source, entry))) await copyTree(path.join(source, entry), path.join(staging, entry));
  }
  await copyTree(path.join(source, ADDON), path.join(staging, ADDON));
  const modules = await productionModules(source);
  for (const modulePath of modules.paths) {
    await copyTree(path.join(source, modulePath), path.join(staging, modulePath), { withoutNestedModules: modules.listedOneByOne });
  }
  await fsp.rm(previous, { recursive: true, force: true });
  if (existsSync(destination)) await fsp.rename(destination, previous);
  await fsp.rename(staging, destination);
  await fsp.rm(previous, { recursive: true, force: true });
}

/**
 * The node_modules directories the program needs at run time: the lock file's packages that are not
 * development-only. An installed package (no lock file) has no development dependencies: all of it.
 */
async function productionModules(source: string): Promise<{ paths: string[]; listedOneByOne: boolean }> {
  for (const lockFile of ['node_modules/.package-lock.json', 'package-lock.json']) {
    let text: string;
    try {
      text = await fsp.readFile(path.join(source, lockFile), 'utf8');
    } catch {
      continue;
    }
    const packages = (JSON.parse(text) as { packages?: Record<string, { dev?: boolean; link?: boolean }> }).packages ?? {};
    const paths = Object.entries(packages)
      .filter(([key, info]) => key.startsWith('node_modules/') && info.dev !== true && info.link !== true)
      .map(([key]) => key)
      .filter((key) => existsSync(path.join(source, key)));
    return { paths, listedOneByOne: true };
  }
  return { paths: existsSync(path.join(source, 'node_modules')) ? ['node_modules'] : [], listedOneByOne: false };
}

/**
 * Copies files, directories and symbolic links (as links); regular files keep their execute bits. A
 * package's nested node_modules is left out when the lock file lists what it needs from there itself.
 */
async function copyTree(from: string, to: string, options: { withoutNestedModules?: boolean } = {}): Promise<void> {
  const stats = await fsp.lstat(from);
  if (stats.isSymbolicLink()) {
    await fsp.mkdir(path.dirname(to), { recursive: true, mode: 0o755 });
    await fsp.rm(to, { force: true });
    await fsp.symlink(await fsp.readlink(from), to);
  } else if (stats.isDirectory()) {
    await fsp.mkdir(to, { recursive: true, mode: 0o755 });
    await fsp.chmod(to, 0o755);
    for (const name of await fsp.readdir(from)) {
      if (options.withoutNestedModules === true && name === 'node_modules') continue;
      await copyTree(path.join(from, name), path.join(to, name), options);
    }
  } else if (stats.isFile()) {
    await fsp.mkdir(path.dirname(to), { recursive: true, mode: 0o755 });
    await fsp.copyFile(from, to, fsc.COPYFILE_FICLONE);
    await fsp.chmod(to, stats.mode & 0o111 ? 0o755 : 0o644);
  }
}

/** Writes under a temporary name and renames, so the file is never seen half-written. */
async function writeFileReplacing(file: string, content: string | Buffer, mode: number): Promise<void> {
  await fsp.mkdir(path.dirname(file), { recursive: true, mode: 0o755 });
  const temporary = `${file}.shuttle-install.tmp`;
  await fsp.writeFile(temporary, content, { mode });
  await fsp.chmod(temporary, mode);
  await fsp.rename(temporary, file);
}

function shellQuote(text: string): string {
  return /^[A-Za-z0-9_./-]+$/.test(text) ? text : `'${text.replace(/'/g, `'\\''`)}'`;
}
