// Both install paths an admin can take. `shuttle install --prefix DIR` into a scratch root (as DESTDIR
// would): the program, the wrapper, the unit, the sysusers/tmpfiles files and the config example land
// where Debian expects them, the program runs from there, and an existing config is never replaced.
// And `npm pack`: the tarball installs with npm into a scratch prefix (building the addon) and runs.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { INSTALL_LAYOUT } from '../../../src/install.js';
import { SHUTTLE_BIN } from '../../helpers/daemon.js';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const scratch: string[] = [];

async function scratchDirectory(prefix: string): Promise<string> {
  const directory = await fsp.mkdtemp(path.join(os.tmpdir(), prefix));
  scratch.push(directory);
  return directory;
}

function node(args: string[], options: { cwd?: string } = {}): { status: number | null; output: string } {
  const result = spawnSync(process.execPath, args, { encoding: 'utf8', cwd: options.cwd ?? REPO });
  return { status: result.status, output: result.stdout + result.stderr };
}

/** A config whose status socket nobody serves, to run an admin command against. */
async function configWithoutDaemon(directory: string): Promise<string> {
  const text = (await fsp.readFile(path.join(REPO, 'config/shuttle.yaml'), 'utf8')) + `runtime:\n  status_socket: ${path.join(directory, 'absent.sock')}\n`;
  const file = path.join(directory, 'shuttle.yaml');
  await fsp.writeFile(file, text);
  return file;
}

afterAll(async () => {
  for (const directory of scratch) await fsp.rm(directory, { recursive: true, force: true });
});

describe('shuttle install --prefix', () => {
  it('puts each part where Debian expects it, and the installed program runs', async () => {
    const prefix = await scratchDirectory('shuttle-install-');
    const installed = node([SHUTTLE_BIN, 'install', '--prefix', prefix]);
    expect(installed.status, installed.output).toBe(0);
    const at = (relative: string): string => path.join(prefix, relative);

    for (const [shipped, target] of [
      ['systemd/shuttle.service', INSTALL_LAYOUT.unit],
      ['systemd/shuttle.sysusers.conf', INSTALL_LAYOUT.sysusers],
      ['systemd/shuttle.tmpfiles.conf', INSTALL_LAYOUT.tmpfiles],
      ['config/shuttle.yaml', INSTALL_LAYOUT.config],
    ] as const) {
      expect(await fsp.readFile(at(target), 'utf8'), target).toBe(await fsp.readFile(path.join(REPO, shipped), 'utf8'));
      expect((await fsp.stat(at(target))).mode & 0o777, target).toBe(0o644);
    }
    expect(installed.output).toContain('next: systemd-sysusers');

    const wrapper = await fsp.readFile(at(INSTALL_LAYOUT.wrapper), 'utf8');
    expect(wrapper).toMatch(/^#!\/bin\/sh\n/);
    expect(wrapper).toContain(`exec ${process.execPath} /usr/lib/shuttle/bin/shuttle.js "$@"`);
    expect((await fsp.stat(at(INSTALL_LAYOUT.wrapper))).mode & 0o777).toBe(0o755);

    const program = at(INSTALL_LAYOUT.program);
    for (const part of ['bin/shuttle.js', 'bin/package.json', 'dist/src/cli.js', 'native/build/Release/shuttle_native.node', 'node_modules/yaml/package.json', 'node_modules/winston/package.json']) {
      expect(existsSync(path.join(program, part)), part).toBe(true);
    }
    // Development tools stay behind.
    for (const part of ['node_modules/typescript', 'node_modules/vitest', 'test', 'src', 'dist/bench']) {
      expect(existsSync(path.join(program, part)), part).toBe(false);
    }
    expect(await fsp.readdir(path.dirname(program))).toEqual(expect.not.arrayContaining(['shuttle.new', 'shuttle.old']));

    // The installed tree on its own: the CLI, the config loader, the addon.
    const help = node([path.join(program, 'bin/shuttle.js'), '--help']);
    expect(help.status, help.output).toBe(0);
    expect(help.output).toContain('Usage: shuttle');
    const status = node([path.join(program, 'bin/shuttle.js'), 'status', '--config', await configWithoutDaemon(prefix)]);
    expect(status.status, status.output).toBe(2);
    expect(status.output).toContain('the daemon is not running');
    const addon = node(['--input-type=module', '-e', `const m = await import(${JSON.stringify(path.join(program, 'dist/src/native.js'))}); m.loadNative(); console.log('addon loaded')`]);
    expect(addon.output).toContain('addon loaded');
  });

  it('never replaces an existing config, and can be run again over itself', async () => {
    const prefix = await scratchDirectory('shuttle-reinstall-');
    expect(node([SHUTTLE_BIN, 'install', '--prefix', prefix]).status).toBe(0);
    const config = path.join(prefix, INSTALL_LAYOUT.config);
    await fsp.writeFile(config, '# the admin\'s own\n');
    const again = node([SHUTTLE_BIN, 'install', '--prefix', prefix]);
    expect(again.status, again.output).toBe(0);
    expect(again.output).toContain(`kept ${config}`);
    expect(await fsp.readFile(config, 'utf8')).toBe('# the admin\'s own\n');
    expect(existsSync(path.join(prefix, INSTALL_LAYOUT.program, 'bin/shuttle.js'))).toBe(true);
  });

  it('refuses --config and needs no config', () => {
    const refused = node([SHUTTLE_BIN, 'install', '--config', '/etc/shuttle/shuttle.yaml']);
    expect(refused.status).toBe(2);
    expect(refused.output).toContain('install: --config is not an option of this command');
  });
});

describe('npm pack', () => {
  it('makes a package that installs with npm and runs', async () => {
    const directory = await scratchDirectory('shuttle-pack-');
    // dist/ is fresh from the test run's global setup, so the pack needs no build of its own.
    const packed = execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', directory], { cwd: REPO, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const [{ filename, files }] = JSON.parse(packed) as [{ filename: string; files: { path: string }[] }];
    const contents = files.map((file) => file.path);
    for (const part of ['bin/shuttle.js', 'bin/package.json', 'dist/src/cli.js', 'dist/src/notify.js', 'native/binding.gyp', 'native/src/notify.cc', 'config/shuttle.yaml', 'systemd/shuttle.service', 'systemd/shuttle.sysusers.conf', 'systemd/shuttle.tmpfiles.conf']) {
      expect(contents, part).toContain(part);
    }
    expect(contents.some((file) => file.startsWith('test/') || file.startsWith('src/'))).toBe(false);

    const prefix = path.join(directory, 'prefix');
    // node-gyp uses the running node's own headers when they are installed (as scripts/setup.sh does),
    // instead of downloading them.
    const nodePrefix = path.resolve(process.execPath, '..', '..');
    const headers = existsSync(path.join(nodePrefix, 'include/node/common.gypi')) && process.env.npm_config_nodedir === undefined ? { npm_config_nodedir: nodePrefix } : {};
    const install = spawnSync('npm', ['install', '--global', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', path.join(directory, filename)], {
      encoding: 'utf8',
      cwd: directory,
      env: { ...process.env, ...headers },
    });
    expect(install.status, install.stdout + install.stderr).toBe(0);

    const shuttle = path.join(prefix, 'bin', 'shuttle');
    const help = spawnSync(shuttle, ['--help'], { encoding: 'utf8' });
    expect(help.status, help.stdout + help.stderr).toBe(0);
    expect(help.stdout).toContain('Usage: shuttle');
    const packageRoot = path.join(prefix, 'lib', 'node_modules', 'shuttle');
    expect(existsSync(path.join(packageRoot, 'native/build/Release/shuttle_native.node')), `the install script did not build the addon:\n${install.stdout}${install.stderr}`).toBe(true);

    // The npm-installed package can install itself the Debian way too.
    const root = path.join(directory, 'root');
    const selfInstall = spawnSync(shuttle, ['install', '--prefix', root], { encoding: 'utf8' });
    expect(selfInstall.status, selfInstall.stdout + selfInstall.stderr).toBe(0);
    const again = node([path.join(root, INSTALL_LAYOUT.program, 'bin/shuttle.js'), '--help']);
    expect(again.status, again.output).toBe(0);
  }, 300_000);
});
