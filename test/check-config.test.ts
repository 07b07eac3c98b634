/**
 * `--check-config` through the built binary: it must refuse what the daemon could not use (a
 * STATE_DIR it cannot write, a secret in a published setting), show every effective setting, and
 * point at misspelt variables, all without ever printing a secret.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { helpText } from '../src/config/cli.js';
import { CANARY_SECRET, TRX, expectNoSecret } from './helpers/account.js';
import { MAIN, baseEnv, run, tempDir } from './helpers/daemon.js';

const EXIT_CONFIG = 78;
// The probe must fail fast; the bound is only there so that a hang fails the test instead of
// stalling the suite (Node's recursive mkdir spins forever on /proc/nonexistent).
const HANG_MS = 15_000;

const scratch: string[] = [];
const dir = () => {
  const d = tempDir('check-config-');
  scratch.push(d);
  return d;
};

beforeAll(() => {
  expect(existsSync(MAIN), 'dist/main.js is missing: run `npm run build`').toBe(true);
});
afterAll(() => {
  for (const d of scratch) rmSync(d, { recursive: true, force: true });
});

async function checkConfig(extra: Record<string, string>, without: string[] = []): Promise<{ code: number | null; out: string }> {
  const env: Record<string, string> = baseEnv('http://127.0.0.1:9', extra);
  for (const name of without) delete env[name];
  const child = run(['--check-config'], env, dir());
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<'hung'>((r) => (timer = setTimeout(() => r('hung'), HANG_MS)));
  const result = await Promise.race([child.exited, hung]);
  clearTimeout(timer);
  if (result === 'hung') {
    child.proc.kill('SIGKILL');
    await child.exited;
    throw new Error(`--check-config did not exit within ${HANG_MS} ms; output so far:\n${child.output()}`);
  }
  const out = child.output();
  expectNoSecret(out, '--check-config output');
  expect(out).not.toContain(TRX);
  return { code: result.code, out };
}

describe('--check-config tests STATE_DIR the way the ledger will use it', () => {
  it.each([
    ['a file where a directory is expected', () => '/etc/passwd', /STATE_DIR: "\/etc\/passwd" exists and is not a directory \(EEXIST\)/],
    ['a directory nobody can write, not even root', () => '/sys', /STATE_DIR: cannot create a file in "\/sys" \((EACCES|EROFS|EPERM)\)/],
    ['a directory that cannot be created (/proc refuses it with ENOENT)', () => '/proc/nonexistent', /STATE_DIR: cannot create the directory "\/proc\/nonexistent" \(ENOENT\)/],
    ['a directory below a regular file', () => {
      const d = dir();
      writeFileSync(join(d, 'a-file'), 'x');
      return join(d, 'a-file', 'state');
    }, /STATE_DIR: cannot create the directory ".*\/a-file\/state" \(ENOTDIR\)/],
    ['a directory below a dangling symlink', () => {
      const d = dir();
      symlinkSync(join(d, 'gone'), join(d, 'link'));
      return join(d, 'link', 'state');
    }, /STATE_DIR: cannot create the directory ".*\/link" \(ENOENT\)/],
  ])('refuses %s: exit 78, naming STATE_DIR and the errno code', async (_label, path, problem) => {
    const { code, out } = await checkConfig({ STATE_DIR: path() });
    expect(code).toBe(EXIT_CONFIG);
    expect(out).toMatch(/^vonage-reload-watchdog: invalid configuration:\n/);
    expect(out).toMatch(problem);
    expect(out).not.toContain('configuration is valid');
  });

  it('accepts a writable directory and leaves nothing behind; existing files are untouched', async () => {
    const state = dir();
    writeFileSync(join(state, 'topups-e2e.jsonl'), '{"v":1}\n');
    const { code, out } = await checkConfig({ STATE_DIR: state });
    expect(code).toBe(0);
    expect(out).toMatch(/^configuration is valid; effective settings:\n/);
    expect(readdirSync(state)).toEqual(['topups-e2e.jsonl']);
    expect(readFileSync(join(state, 'topups-e2e.jsonl'), 'utf8')).toBe('{"v":1}\n');
  });

  it('creates a missing STATE_DIR, parents included, as the daemon would, and leaves it empty', async () => {
    const state = join(dir(), 'new', 'deeper', 'state');
    const { code } = await checkConfig({ STATE_DIR: state });
    expect(code).toBe(0);
    expect(readdirSync(state)).toEqual([]);
  });

  it('a relative STATE_DIR is taken from the working directory, like the default ./data', async () => {
    const cwd = dir();
    const child = run(['--check-config'], baseEnv('http://127.0.0.1:9', {}), cwd);
    expect((await child.exited).code).toBe(0);
    expect(readdirSync(join(cwd, 'data'))).toEqual([]);
  });
});

describe('--check-config shows every effective setting', () => {
  it('lists VONAGE_ALLOW_CUSTOM_BASE_URL with its value', async () => {
    const on = await checkConfig({ STATE_DIR: dir(), VONAGE_ALLOW_CUSTOM_BASE_URL: 'yes' });
    expect(on.code).toBe(0);
    expect(on.out).toMatch(/^ {2}VONAGE_ALLOW_CUSTOM_BASE_URL +true$/m);
    const off = await checkConfig({ STATE_DIR: dir(), VONAGE_BASE_URL: 'https://rest.nexmo.com', VONAGE_ALLOW_CUSTOM_BASE_URL: '0' });
    expect(off.code).toBe(0);
    expect(off.out).toMatch(/^ {2}VONAGE_ALLOW_CUSTOM_BASE_URL +false$/m);
  });
});

describe('--check-config points at misspelt variables, never at their values', () => {
  const VALUE = 'CANARY-misspelt-value';

  it('warns about TOPUP_THRESHHOLD when TOPUP_THRESHOLD is also set', async () => {
    const { code, out } = await checkConfig({ STATE_DIR: dir(), TOPUP_THRESHHOLD: VALUE, DRYRUN: VALUE, HTTP_PROXY: VALUE, NO_PROXY: VALUE, LOG: VALUE });
    expect(code).toBe(0);
    expect(out).toContain('warning: TOPUP_THRESHHOLD is not a variable this program reads, so it is ignored: did you mean TOPUP_THRESHOLD?\n');
    expect(out).toContain('warning: DRYRUN is not a variable this program reads, so it is ignored: did you mean DRY_RUN?\n');
    expect(out.match(/^warning:/gm)).toHaveLength(2);
    expect(out).not.toContain(VALUE);
  });

  it('names the misspelling in the "required" problem when the real name is missing', async () => {
    const { code, out } = await checkConfig({ STATE_DIR: dir(), TOPUP_THRESHHOLD: VALUE }, ['TOPUP_THRESHOLD']);
    expect(code).toBe(EXIT_CONFIG);
    expect(out).toContain('  TOPUP_THRESHOLD: required (EUR; top up when the balance is below it); TOPUP_THRESHHOLD is set: did you mean TOPUP_THRESHOLD?\n');
    expect(out).not.toContain(VALUE);
  });
});

describe('defect 10: a secret in a published setting is refused, never printed', () => {
  it.each([
    ['METRICS_HOST', { METRICS_HOST: CANARY_SECRET.replace(/[/+=%&]/g, '') }],
    ['METRICS_HOST', { METRICS_HOST: 'CANARY-s3cr3t' }],
    ['VONAGE_BASE_URL', { VONAGE_BASE_URL: `http://127.0.0.1:9/${CANARY_SECRET}` }],
    ['VONAGE_BASE_URL', { VONAGE_BASE_URL: `http://127.0.0.1:9/x/${encodeURIComponent(CANARY_SECRET)}` }],
    ['POLL_SCHEDULE', { VONAGE_API_SECRET: '*/7 * * * * *', POLL_SCHEDULE: '*/7 * * * * *' }],
  ])('%s', async (variable, extra) => {
    const state = dir();
    const { code, out } = await checkConfig({ STATE_DIR: state, ...extra });
    expect(code).toBe(EXIT_CONFIG);
    expect(out).toMatch(new RegExp(`^  ${variable}: contains a secret \\(pasted into the wrong variable\\?\\)`, 'm'));
    for (const value of Object.values(extra)) expect(out).not.toContain(value);
    expect(out).not.toContain('CANARY');
  });

  it('and not in the STATE_DIR path either (already refused before; kept with the others)', async () => {
    const parent = dir();
    mkdirSync(join(parent, 'x'));
    const { code, out } = await checkConfig({ STATE_DIR: join(parent, 'x', CANARY_SECRET.slice(0, 12)) });
    expect(code).toBe(EXIT_CONFIG);
    expect(out).toMatch(/^ {2}STATE_DIR: contains a secret/m);
  });
});

describe('--help and the README document the same exit codes', () => {
  it('0, 1, 2 (below the threshold, nothing sent), 64 and 78', () => {
    const help = helpText().split('\nExit codes:\n')[1]!.split('\n\n')[0]!;
    const readme = readFileSync(join(__dirname, '..', 'README.md'), 'utf8').split('\n## Command line\n')[1]!.split('\n## ')[0]!;
    expect([...help.matchAll(/^ {2}(\d+) /gm)].map((m) => m[1])).toEqual(['0', '1', '2', '64', '78']);
    expect([...readme.matchAll(/^\| (\d+) \|/gm)].map((m) => m[1])).toEqual(['0', '1', '2', '64', '78']);
    for (const text of [help, readme]) expect(text).toMatch(/2 .*below its threshold and no (top-up|refill) was sent/s);
  });
});
