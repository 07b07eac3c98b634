/**
 * `npm run demo` as a new user meets it: the built demo (dist/demo.js) with the simulator and the
 * real daemon, stopped by DEMO_SECONDS. Its output must not open with a warning about its own
 * settings, and the simulator's own count must show the one top-up the README promises.
 */
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { freePort } from './helpers/daemon.js';

const DEMO = resolve(__dirname, '../dist/demo.js');
const DEMO_FLEET = resolve(__dirname, '../dist/demo-fleet.js');

interface LogLine {
  level: number;
  msg: string;
  attemptId?: string;
  subaccount?: string;
  reason?: string;
}

async function runDemo(script: string, seconds: number) {
  const env = {
    PATH: process.env.PATH ?? '',
    DEMO_SECONDS: String(seconds),
    LOG_FORMAT: 'json',
    SIM_PORT: String(await freePort()),
    METRICS_PORT: String(await freePort()),
  };
  const child = spawn(process.execPath, [script], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  const logs = out
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as LogLine);
  return { code, out, logs };
}

describe('npm run demo', () => {
  it('shows one top-up, with no warning before it', async () => {
    // The balance crosses the threshold 10 s in and the next 2-second poll sees it; 16 s
    // leaves room on a busy machine.
    const { code, out, logs } = await runDemo(DEMO, 16);
    expect(code, out).toBe(0);
    expect(logs.length, out).toBeGreaterThan(0);
    // The first line that belongs to a top-up attempt; everything before it is start-up and polls.
    const firstTopUp = logs.findIndex((l) => l.attemptId !== undefined);
    expect(firstTopUp, `no top-up within 16 s\n${out}`).toBeGreaterThan(0);
    const warnings = logs.slice(0, firstTopUp).filter((l) => l.level >= 40);
    expect(warnings.map((l) => l.msg)).toEqual([]);

    const summary = /demo over: the simulator applied (\d+) top-ups?\./.exec(out);
    expect(summary?.[1], out).toBe('1');
  }, 60_000);

  it('demo:fleet shows balance transfers to the subaccounts that drain fastest, the primary topped up by card, and never a refill of the shared or the suspended one', async () => {
    // Marketing crosses its threshold 10 s in, the primary follows at once (the transfer took it
    // below its own), Transactional at 25 s: 34 s covers them with room on a busy machine.
    const { code, out, logs } = await runDemo(DEMO_FLEET, 34);
    expect(code, out).toBe(0);
    const firstRefill = logs.findIndex((l) => l.attemptId !== undefined);
    expect(firstRefill, out).toBeGreaterThan(0);
    // Before it, no warning but the suspended subaccount's skip: nothing about the demo's own settings.
    const warnings = logs.slice(0, firstRefill).filter((l) => l.level >= 40 && !(l.subaccount === 'a1f0c005' && l.reason === 'suspended'));
    expect(warnings.map((l) => l.msg), out).toEqual([]);
    const summary = /demo over: the simulator applied (\d+) balance transfers? \(([^)]*)\) and (\d+) card top-ups? of the primary\./.exec(out);
    expect(summary, out).not.toBeNull();
    expect(Number(summary![1])).toBeGreaterThanOrEqual(2);
    expect(summary![2]).toContain('Marketing blasts');
    expect(summary![2]).toContain('Transactional');
    expect(summary![2]).not.toMatch(/Reports|Old campaign/);
    expect(summary![3]).toBe('1');
  }, 60_000);
});
