/**
 * scripts/integration-preflight.mjs, the gate of `npm run test:integration`, as a user without
 * the system programs meets it: PATH holds nothing but node. It must fail (never skip), name each
 * missing program with its Debian package, and give one apt-get line for all of them.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, symlinkSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PROGRAMS, findLibfaketime } from '../scripts/integration-preflight.mjs';
import { tempDir } from './helpers/daemon.js';
import { MissingRequirementError, requireProgram } from './integration/helpers/system.js';

const SCRIPT = resolve(__dirname, '../scripts/integration-preflight.mjs');

describe('integration preflight', () => {
  it('fails on a machine with Node alone, naming every missing program and the one apt-get line', () => {
    const bin = join(tempDir('preflight-'), 'bin');
    mkdirSync(bin);
    symlinkSync(process.execPath, join(bin, 'node'));
    const r = spawnSync(join(bin, 'node'), [SCRIPT], { env: { PATH: bin }, encoding: 'utf8', timeout: 30_000 });
    const text = `${r.stdout}${r.stderr}`;
    expect(r.status, text).toBe(1);

    const packages: string[] = [];
    for (const p of PROGRAMS) {
      expect(text).toContain(`${p.name}: not found on PATH (Debian package: ${p.debianPackage})`);
      packages.push(p.debianPackage);
    }
    // libfaketime is looked for at fixed paths, not on PATH: it is missing only if it really is.
    if (findLibfaketime() === undefined) {
      expect(text).toMatch(/libfaketime: not found at \S+libfaketime\.so\.1 \(Debian package: faketime\)/);
      packages.push('faketime');
    } else {
      expect(text).not.toContain('libfaketime:');
    }
    if (process.getuid?.() !== 0) expect(text).toMatch(/root: running as uid \d+, .*mount a tiny tmpfs and create UTS and PID namespaces/);

    const install = text.split('\n').filter((l) => l.includes('apt-get install'));
    expect(install).toHaveLength(1);
    for (const pkg of new Set(packages)) expect(install[0]).toContain(` ${pkg}`);
  });

  it('gives a test file run on its own the same message (test/integration/helpers/system.ts)', () => {
    expect(requireProgram('node', 'nodejs')).toMatch(/\/node$/);
    let thrown: unknown;
    try {
      requireProgram('vrw-no-such-program', 'vrw-package');
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(MissingRequirementError);
    const message = (thrown as Error).message;
    expect(message).toContain('vrw-no-such-program: not found on PATH (Debian package: vrw-package)');
    expect(message).toMatch(/apt-get install -y --no-install-recommends vrw-package$/m);
  });
});
