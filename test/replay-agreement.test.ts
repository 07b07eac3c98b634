/**
 * The replay benchmark's model and the built daemon agree. The same compressed trace (seconds
 * for minutes: a 1 s POLL_SCHEDULE, a 6 s POLL_MAX_INTERVAL, a 4 s lead time) drains the
 * simulator in real time under the built daemon (dist/main.js, POLL_ADAPTIVE, TOPUP_LEAD_TIME),
 * and the model's balance in virtual time (bench/replay-model.mjs, with the simulator's terms:
 * top-ups land at once, no auto-reload of Vonage's own). Both must keep the balance off zero,
 * send the same number of top-ups (one apart at most: a read lands a tick either side of a
 * crossing) and read the balance about as often, less often than every tick.
 */
import { describe, expect, it } from 'vitest';
// @ts-expect-error: plain JavaScript, no types
import { modelSettings, ours, replay } from '../bench/replay-model.mjs';
import { daemonHarness } from './helpers/harness.js';
import { baseEnv, tempDir } from './helpers/daemon.js';

const { simulator, daemon } = daemonHarness();

// Idle, then 1.5 EUR/s for 20 s (30 EUR, more than the 20 EUR margin), then idle again.
const IDLE_S = 10;
const DRAIN_S = 20;
const RATE = 1.5;
const TOTAL_S = 45;

describe('replay model against the daemon', () => {
  it('a compressed trace: same refills, reads within a third of each other, no zero balance in either', async () => {
    const s = await simulator({ balance: 30, topUpAmount: 20 });
    const d = await daemon(
      baseEnv(s.url, {
        STATE_DIR: tempDir(),
        TOPUP_COOLDOWN: '8s',
        TOPUP_MAX_PER_DAY: '100',
        TOPUP_LEAD_TIME: '4s',
        POLL_ADAPTIVE: 'true',
        POLL_MAX_INTERVAL: '6s',
        LOG_LEVEL: 'warn',
      }),
    );
    // The trace starts at the daemon's first read.
    const reads = () => s.requests().filter((r) => r.endpoint === 'balance');
    while (reads().length === 0) await new Promise((r) => setTimeout(r, 20));
    const t0 = reads()[0]!.at;
    const at = (sec: number) => new Promise((r) => setTimeout(r, Math.max(0, t0 + sec * 1000 - Date.now())));
    let lowest = Number.POSITIVE_INFINITY;
    const sampler = setInterval(() => (lowest = Math.min(lowest, s.balance())), 50);
    try {
      await at(IDLE_S);
      s.setDrainPerSecond(RATE);
      await at(IDLE_S + DRAIN_S);
      s.setDrainPerSecond(0);
      await at(TOTAL_S);
    } finally {
      clearInterval(sampler);
    }
    const daemonReads = reads().filter((r) => r.at - t0 < TOTAL_S * 1000).length;
    const daemonTopUps = s.appliedTopUps().filter((t) => t.at - t0 < TOTAL_S * 1000).length;

    // The same trace for the model: the simulator drains continuously, the model by 0.1 s steps.
    const rows: [number, number][] = [];
    for (let t = IDLE_S + 0.1; t <= IDLE_S + DRAIN_S + 1e-9; t += 0.1) rows.push([Math.round(t * 10) / 10, RATE / 10]);
    const m = modelSettings({ start: 30, topupEur: 20, refillDelayS: 0, cooldownMs: 8000, maxPerDay: 100, tickS: 1, maxIntervalS: 6, leadS: 4, vonageReload: false, endS: TOTAL_S });
    const model = replay(rows, ours(m), m) as { zero: number; calls: number; topups: number };
    const modelReads = model.calls - model.topups;

    const figures = `daemon: ${daemonReads} reads, ${daemonTopUps} top-ups, lowest ${lowest.toFixed(2)} EUR; model: ${modelReads} reads, ${model.topups} top-ups, ${model.zero} s at zero`;
    console.log(figures);
    expect(lowest, figures).toBeGreaterThan(0);
    expect(model.zero, figures).toBe(0);
    expect(model.topups, figures).toBeGreaterThanOrEqual(1);
    expect(Math.abs(daemonTopUps - model.topups), figures).toBeLessThanOrEqual(1);
    expect(Math.abs(daemonReads - modelReads), figures).toBeLessThanOrEqual(Math.max(3, Math.round(modelReads / 3)));
    // Adaptive in both: fewer reads than ticks, though on a trace this short most ticks are the
    // fast ones (history, the surprise, the refill's confirmation).
    expect(daemonReads, figures).toBeLessThan(TOTAL_S - 2);
    expect(modelReads, figures).toBeLessThan(TOTAL_S - 2);
    expect(d.output()).not.toMatch(/"level":(50|60)/);
  }, 90_000);
});
