/**
 * Wall-clock steps under the built daemon (issue 7, defects 1 and 2), with libfaketime: the
 * daemon's clock is offset by what a file says (FAKETIME_TIMESTAMP_FILE, re-read on every call),
 * while the simulator runs unfaked in this process and counts what the daemon really does. With
 * FAKETIME_DONT_FAKE_MONOTONIC=1 only the wall clock moves, as `date -s` or a bad NTP server would
 * move it; performance.now() and the timers keep real time.
 *
 * Before the fix: stepped back 10 minutes, the daemon made no balance read for a minute and
 * /healthz stayed 200; stepped back a day, polling never came back; stepped forward 2 days, the
 * event loop was blocked 32 s writing 172,829 "missed execution" lines.
 */
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Simulator } from '../../src/simulator/simulator.js';
import { baseEnv, metricValue, tempDir, waitFor, type Child } from '../helpers/daemon.js';
import { daemonHarness } from '../helpers/harness.js';
import { requireLibfaketime } from './helpers/system.js';

// Throws (the file fails, it is not skipped) naming the Debian package `faketime` when the library is missing.
const LIBFAKETIME = requireLibfaketime();

const harness = daemonHarness();
const simulator = (balance: number) => harness.simulator({ balance });

/** The offset file libfaketime reads; replaced by rename so the daemon never reads half a write. */
function offsetFile(initial: string): { path: string; set(offset: string): void } {
  const dir = tempDir('faketime-');
  const path = join(dir, 'offset');
  const set = (offset: string) => {
    writeFileSync(join(dir, 'offset.new'), `${offset}\n`);
    renameSync(join(dir, 'offset.new'), path);
  };
  set(initial);
  return { path, set };
}

async function daemonUnderFaketime(s: Simulator, clock: { path: string }, opts: { fakeMonotonic?: boolean; env?: Record<string, string> } = {}): Promise<Child> {
  const env = baseEnv(s.url, {
    STATE_DIR: tempDir(),
    LD_PRELOAD: LIBFAKETIME,
    FAKETIME_TIMESTAMP_FILE: clock.path,
    FAKETIME_NO_CACHE: '1',
    ...(opts.fakeMonotonic ? {} : { FAKETIME_DONT_FAKE_MONOTONIC: '1' }),
    ...opts.env,
  });
  return harness.daemon(env);
}

const balanceReads = (s: Simulator) => s.requests().filter((r) => r.endpoint === 'balance').length;
const linesWith = (text: string, needle: string) => text.split('\n').filter((l) => l.includes(needle));
const steps = (url: string, direction: 'forward' | 'backward') => metricValue(url, `vonage_watchdog_clock_steps_total{direction="${direction}"}`);

describe('wall-clock steps under libfaketime (built daemon)', () => {
  it('regression (issue 7 #1): stepped back 10 minutes, polling goes on, a dip gets its top-up, /healthz stays 200 because cycles run', async () => {
    const s = await simulator(50);
    const clock = offsetFile('+0');
    const d = await daemonUnderFaketime(s, clock);
    await waitFor(() => balanceReads(s) >= 3, 10_000, d.output);

    clock.set('-10m');
    const before = balanceReads(s);
    await waitFor(() => balanceReads(s) >= before + 5, 15_000, d.output);

    s.setBalance(5);
    await waitFor(() => s.appliedTopUps().length === 1, 15_000, d.output);
    expect((await fetch(`${d.url}/healthz`)).status).toBe(200);
    expect(await steps(d.url, 'backward')).toBe(1);
    expect(await steps(d.url, 'forward')).toBe(0);
    expect(linesWith(d.output(), 'wall clock stepped')).toHaveLength(1);
  });

  it('regression (issue 7 #1): stepped back a day, then put right: polling goes on throughout', async () => {
    const s = await simulator(50);
    const clock = offsetFile('+0');
    const d = await daemonUnderFaketime(s, clock);
    await waitFor(() => balanceReads(s) >= 3, 10_000, d.output);

    clock.set('-1d');
    const stepped = balanceReads(s);
    await waitFor(() => balanceReads(s) >= stepped + 4, 15_000, d.output);

    clock.set('+0');
    const putRight = balanceReads(s);
    await waitFor(() => balanceReads(s) >= putRight + 4, 15_000, d.output);

    expect((await fetch(`${d.url}/healthz`)).status).toBe(200);
    expect(await steps(d.url, 'backward')).toBe(1);
    expect(await steps(d.url, 'forward')).toBe(1);
  });

  it('regression (issue 7 #2): stepped forward 2 days: /healthz answers promptly, one line, a couple of cycles, not 172,800', async () => {
    const s = await simulator(50);
    const clock = offsetFile('+0');
    const d = await daemonUnderFaketime(s, clock);
    await waitFor(() => balanceReads(s) >= 3, 10_000, d.output);

    const outputBefore = d.output().length;
    clock.set('+2d');
    const stepAt = Date.now(); // the simulator's (unfaked) clock, which stamps the requests
    const readsBefore = balanceReads(s);
    // Probe /healthz until polling has visibly gone on: each answer's delay bounds how long the
    // event loop was blocked (the old scheduler blocked it for 32 s).
    let slowestMs = 0;
    const statuses: (number | undefined)[] = [];
    await waitFor(
      async () => {
        const t = performance.now();
        const r = await fetch(`${d.url}/healthz`, { signal: AbortSignal.timeout(10_000) }).catch(() => undefined);
        slowestMs = Math.max(slowestMs, performance.now() - t);
        statuses.push(r?.status);
        return balanceReads(s) >= readsBefore + 3;
      },
      30_000,
      d.output,
    );
    expect(slowestMs).toBeLessThan(2000);
    expect(statuses.every((st) => st === 200)).toBe(true);

    const after = d.output().slice(outputBefore);
    expect(linesWith(after, 'missed').length).toBeLessThanOrEqual(2);
    expect(after.length).toBeLessThan(100_000);
    // Every-second polling plus the one cycle for all the skipped slots: a couple in the first two seconds.
    const early = s.requests().filter((r) => r.endpoint === 'balance' && r.at >= stepAt && r.at < stepAt + 2000).length;
    expect(early).toBeLessThanOrEqual(4);
    expect(await steps(d.url, 'forward')).toBe(1);
  });

  it('a cycle stuck past its bound turns /healthz 503 (monotonic clock faked too: ten minutes pass for the daemon at once)', async () => {
    // Every balance request hangs; HTTP_TIMEOUT=120s makes each try last two minutes, so the cycle
    // is in flight when the daemon's clocks (both of them) jump 10 minutes, past the cycle bound
    // of 4 × 120 s + 20 s from daemon.ts: a cycle that has run that long is stuck.
    const s = await simulator(50);
    s.setFault({ kind: 'hang', endpoint: 'balance' });
    const clock = offsetFile('+0');
    const d = await daemonUnderFaketime(s, clock, { fakeMonotonic: true, env: { HTTP_TIMEOUT: '120s' } });
    await waitFor(() => s.requests().some((r) => r.endpoint === 'balance' && r.status === null), 10_000, d.output);
    expect((await fetch(`${d.url}/healthz`)).status).toBe(200);

    clock.set('+10m');
    let last: { status: number; body: { ok: boolean; reason?: string } } | undefined;
    await waitFor(
      async () => {
        // The jump also expires the kept-alive probe connection, which the server then resets: ask again.
        const r = await fetch(`${d.url}/healthz`, { signal: AbortSignal.timeout(5000) }).catch(() => undefined);
        if (!r) return false;
        last = { status: r.status, body: (await r.json()) as { ok: boolean; reason?: string } };
        return r.status === 503;
      },
      10_000,
      () => `${JSON.stringify(last)}\n${d.output()}`,
    );
    expect(last!.body.reason).toMatch(/^a cycle has been running for \d+s, longer than its bound of \d+s$/);
  });
});

describe('a forward step never ends a cooldown or empties the cap early (review of issue 7)', () => {
  for (const step of ['+2h', '+1d']) {
    it(`stepped ${step} right after a top-up: no second top-up while the real hour of cooldown lasts`, async () => {
      const s = await simulator(5);
      // The applied top-up stays hidden from the balance: a second one would be a duplicate charge.
      s.setFault({ kind: 'lag', lagPolls: 1_000_000 });
      const clock = offsetFile('+0');
      const d = await daemonUnderFaketime(s, clock, { env: { TOPUP_COOLDOWN: '1h', TOPUP_MAX_PER_DAY: '1' } });
      await waitFor(() => s.appliedTopUps().length === 1, 15_000, d.output);
      clock.set(step);
      await waitFor(async () => ((await steps(d.url, 'forward')) ?? 0) >= 1, 10_000, d.output);
      const before = balanceReads(s);
      await waitFor(() => balanceReads(s) >= before + 6, 15_000, d.output);
      expect(s.appliedTopUps()).toHaveLength(1);
      const skipped = (reason: string) => metricValue(d.url, `vonage_topups_skipped_total{account="e2e",reason="${reason}"}`);
      expect((await skipped('cooldown')) ?? 0).toBeGreaterThanOrEqual(5);
    });
  }
});
