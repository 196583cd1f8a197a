// Finding and loading the addon, and what a missing build looks like.
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { afterAll, describe, expect, it } from 'vitest';

import { loadNative, nativeAddonCandidates, tryLoadNative } from '../../src/native.js';

const repositoryRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const scratch: string[] = [];

afterAll(() => {
  for (const path of scratch) rmSync(path, { recursive: true, force: true });
});

describe('loadNative', () => {
  it('loads the Release build from the package root, once', () => {
    expect(nativeAddonCandidates()[0]).toBe(join(repositoryRoot, 'native', 'build', 'Release', 'shuttle_native.node'));
    const addon = loadNative();
    expect(loadNative()).toBe(addon);
    expect(tryLoadNative()).toBe(addon);
    expect(Object.isFrozen(addon)).toBe(true);
    expect(Object.keys(addon).sort()).toEqual(
      [
        'clamdScanDescriptor',
        'clamdScanDescriptors',
        'deleteDefaultAcl',
        'deleteDefaultAclSync',
        'getAcl',
        'getAclSync',
        'getLease',
        'hasExtendedAcl',
        'hasExtendedAclSync',
        'lockExclusive',
        'sdNotify',
        'setAcl',
        'setAclSync',
        'setLease',
        'syncDescriptors',
        'createFiles',
        'closeDescriptors',
        'changeNames',
      ].sort(),
    );
  });

  it('says which paths it tried and how to build the addon when it is missing', async () => {
    // A copy of the package without a native build: same module files, same dependencies.
    const root = mkdtempSync(join(tmpdir(), 'shuttle-unbuilt-'));
    scratch.push(root);
    writeFileSync(join(root, 'package.json'), '{"name":"shuttle-unbuilt","type":"module"}');
    symlinkSync(join(repositoryRoot, 'node_modules'), join(root, 'node_modules'));
    mkdirSync(join(root, 'src'));
    for (const file of ['native.ts', 'acl-text.ts']) copyFileSync(join(repositoryRoot, 'src', file), join(root, 'src', file));

    const unbuilt = (await import(pathToFileURL(join(root, 'src', 'native.ts')).href)) as typeof import('../../src/native.js');
    expect(unbuilt.tryLoadNative()).toBeNull();
    let message = '';
    try {
      unbuilt.loadNative();
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toContain(`${join(root, 'native', 'build', 'Release', 'shuttle_native.node')}: not found`);
    expect(message).toContain(`${join(root, 'native', 'build', 'Debug', 'shuttle_native.node')}: not found`);
    expect(message).toContain('npm run build:native');
    expect(message).toContain('g++ and libacl1-dev');
  });
});
