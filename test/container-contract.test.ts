/**
 * The container's contract, proven without a container engine: only the files the image ships
 * (dist/, production node_modules, package.json), owned by root and read-only, run as an
 * unprivileged user (uid 1000, the image's `node`), configured by environment alone, with only
 * STATE_DIR writable; and the image's HEALTHCHECK script against it.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, cpSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type Simulator } from '../src/simulator/simulator.js';
import { API_KEY, CANARY_SECRET, TRX, expectNoSecret } from './helpers/account.js';
import { baseEnv, freePort, tempDir, waitFor } from './helpers/daemon.js';

const ROOT = resolve(__dirname, '..');
const isRoot = process.getuid?.() === 0;
// As root (CI), drop to the image's uid; otherwise the current user is already unprivileged.
const UID = isRoot ? 1000 : process.getuid!();
const GID = isRoot ? 1000 : process.getgid!();

let app: string;
let stateDir: string;
let sim: Simulator;

function listTree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      out.push(`${relative(dir, p)}:${e.isFile() ? statSync(p).size : 'd'}`);
      if (e.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out.sort();
}

beforeAll(async () => {
  // What the Dockerfile's runtime stage copies: dist/, production node_modules, package.json.
  app = join(tempDir('image-'), 'app');
  mkdirSync(app);
  cpSync(join(ROOT, 'dist'), join(app, 'dist'), { recursive: true });
  cpSync(join(ROOT, 'package.json'), join(app, 'package.json'));
  const prodDeps = execFileSync('npm', ['ls', '--omit=dev', '--all', '--parseable'], { cwd: ROOT, encoding: 'utf8' })
    .split('\n')
    .filter((p) => p.includes(`${ROOT}/node_modules/`));
  for (const p of prodDeps) cpSync(p, join(app, relative(ROOT, p)), { recursive: true });
  // Root-owned and read-only for everyone, as in the image.
  execFileSync('chmod', ['-R', 'a-w,a+rX', app]);
  chmodSync(resolve(app, '..'), 0o755);
  stateDir = join(tempDir('data-'), 'data');
  mkdirSync(stateDir, { mode: 0o700 });
  if (isRoot) chownSync(stateDir, UID, GID);
  chmodSync(resolve(stateDir, '..'), 0o755);
  sim = await startSimulator({ apiKey: API_KEY, apiSecret: CANARY_SECRET, trx: TRX, balance: 5, topUpAmount: 20 });
}, 120_000);

afterAll(async () => {
  await sim?.close();
});

describe('container contract, without a container', () => {
  it('runs from read-only production files as an unprivileged user, writing only STATE_DIR; the healthcheck follows it', async () => {
    const before = listTree(app);
    const port = String(await freePort());
    const env = { ...baseEnv(sim.url, { STATE_DIR: stateDir, METRICS_PORT: port, LOG_LEVEL: 'info', NODE_ENV: 'production' }), HOME: '/nonexistent' };
    let out = '';
    const proc = spawn(process.execPath, ['dist/main.js'], { cwd: app, env, uid: UID, gid: GID, stdio: ['ignore', 'pipe', 'pipe'] });
    proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));

    await waitFor(() => sim.appliedTopUps().length === 1, 15_000, () => out);
    const health = (p: string) => spawnSync(process.execPath, ['dist/healthcheck.js'], { cwd: app, env: { PATH: process.env.PATH ?? '', METRICS_PORT: p }, uid: UID, gid: GID, timeout: 10_000 });
    expect(health(port).status).toBe(0);

    proc.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(health(port).status).toBe(1);

    expect(listTree(app)).toEqual(before);
    const written = readdirSync(stateDir);
    expect(written.some((f) => f.endsWith('.jsonl'))).toBe(true);
    for (const f of written) expect(statSync(join(stateDir, f)).uid).toBe(UID);
    expect(out).toMatch(/"msg":"top-up succeeded"/);
    expectNoSecret(out, 'daemon output');
  }, 60_000);
});
