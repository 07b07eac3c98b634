/**
 * POLL_ADAPTIVE end to end in one process: the daemon's own parts (buildParts: real clients, real
 * file ledgers, real metrics, the real Fleet) against the simulator over loopback HTTP, with both
 * clocks driven so that hours pass in a second. Each `tick` is what the scheduler does at a
 * POLL_SCHEDULE slot: one Fleet cycle. Every request counted is a real one.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import type { SubaccountsConfig } from '../src/accounts/types.js';
import { loadConfig, type AccountConfig, type Config } from '../src/config/config.js';
import { buildParts, readiness, settleLedgers, type Parts } from '../src/daemon.js';
import { topupBlocked } from '../src/refill/topup-policy.js';
import { isDue } from '../src/forecast/due-time.js';
import { transfersBlocked, type TransferPolicyInput } from '../src/refill/transfer-policy.js';
import { startSimulator, type Simulator, type SimSubaccountInit } from '../src/simulator/simulator.js';
import { account as baseAccount } from './helpers/account.js';

const MIN = 60_000;
const dirs: string[] = [];
const sims: Simulator[] = [];
const partsList: Parts[] = [];
afterEach(async () => {
  for (const p of partsList.splice(0)) p.closeLedgers();
  for (const s of sims.splice(0)) await s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

interface World {
  sim: Simulator;
  parts: Parts;
  /** mono, when set, is the monotonic clock apart from the wall clock (a suspension); else both are now. */
  clock: { now: number; mono?: number };
  /** Wall-clock minutes (from the start) of every balance read. */
  reads: () => number[];
  lists: () => number[];
  tick(): Promise<void>;
  metric(series: string): Promise<number | undefined>;
  status(): Record<string, unknown>[];
}

const START = Date.UTC(2026, 11, 3, 12);

async function world(opts: { account?: Partial<AccountConfig>; balance?: number; topUpAmount?: number; subs?: SimSubaccountInit[]; group?: Partial<SubaccountsConfig> } = {}): Promise<World> {
  const clock: { now: number; mono?: number } = { now: START };
  const sim = await startSimulator({ apiKey: 'canary-key', apiSecret: 'CANARY-s3cr3t/+=%&x9', trx: '8ef2447e69604f642ae59363aa5f781b', balance: opts.balance ?? 100, topUpAmount: opts.topUpAmount ?? 20, subaccounts: opts.subs ?? [], now: () => clock.now });
  sims.push(sim);
  const stateDir = mkdtempSync(join(tmpdir(), 'adaptive-'));
  dirs.push(stateDir);
  const acct: AccountConfig = { ...baseAccount(sim.url, { name: 'main', threshold: 10, cooldownMs: 15 * MIN, maxPerDay: 50, pollAdaptive: true, pollMaxIntervalMs: 10 * MIN }), ...opts.account };
  if (opts.subs) {
    acct.subaccounts = {
      watch: 'all',
      refill: 'transfer',
      settings: { threshold: 10, transferAmount: 20, cooldownMs: 15 * MIN, maxPerDay: 5 },
      overrides: {},
      primaryReserve: 100,
      maxTransferredPerDay: 200,
      transfersEnabled: true,
      dryRun: false,
      ...opts.group,
    };
  }
  const config = { accounts: [acct], pollSchedule: '* * * * *', httpTimeoutMs: 2000, stateDir, metrics: { host: '127.0.0.1', port: 0, authToken: undefined }, log: { level: 'warn', format: 'json' }, warnings: [], pollConcurrency: 8, accountsFile: undefined, ledger: { kind: 'file', schema: 'vonage_reload_watchdog', leaseMs: 15_000 }, instanceId: 'test' } as Config;
  const sink = new Writable({ write: (_c, _e, cb) => cb() });
  const parts = buildParts(config, { logDestination: sink, now: () => clock.now, monoNow: () => clock.mono ?? clock.now, sleep: async () => {} });
  partsList.push(parts);
  await settleLedgers(parts);
  const minutesOf = (endpoint: string) => () => sim.requests().filter((r) => r.endpoint === endpoint).map((r) => (r.at - START) / MIN);
  return {
    sim,
    parts,
    clock,
    reads: minutesOf('balance'),
    lists: minutesOf('list_subaccounts'),
    async tick() {
      await parts.fleet.runCycle();
      clock.now += MIN;
      if (clock.mono !== undefined) clock.mono += MIN;
    },
    async metric(series) {
      const text = await parts.metrics.registry.metrics();
      const line = text.split('\n').find((l) => l.startsWith(`${series} `));
      if (line === undefined) return undefined;
      const v = line.slice(series.length + 1);
      return v === '+Inf' ? Number.POSITIVE_INFINITY : v === '-Inf' ? Number.NEGATIVE_INFINITY : Number(v);
    },
    status: () => parts.fleet.units.flatMap((u) => [u.watchdog.status() as unknown as Record<string, unknown>, ...(u.group?.group.status().subaccounts ?? []).map((s) => s as unknown as Record<string, unknown>)]),
  };
}

const gaps = (xs: number[]) => xs.slice(1).map((x, i) => x - xs[i]!);

describe('POLL_ADAPTIVE', () => {
  it('an idle account: every tick until the forecast has history, then slower (at most doubling, after a quiet window), never beyond POLL_MAX_INTERVAL; the next-poll metric is when the next read happens', async () => {
    const w = await world();
    const promised: number[] = [];
    for (let i = 0; i < 180; i++) {
      const before = w.reads().length;
      await w.tick();
      if (w.reads().length > before) promised.push(((await w.metric('vonage_balance_next_poll_timestamp_seconds{account="main"}'))! * 1000 - START) / MIN);
    }
    const reads = w.reads();
    const g = gaps(reads);
    // Three spending intervals (four reads) before the forecast knows anything: the reactive fallback.
    expect(g.slice(0, 3)).toEqual([1, 1, 1]);
    expect(Math.max(...g)).toBe(10);
    for (let i = 1; i < g.length; i++) {
      expect(g[i]!, `gap ${i}`).toBeGreaterThanOrEqual(g[i - 1]!);
      expect(g[i]!, `gap ${i}`).toBeLessThanOrEqual(2 * g[i - 1]!);
    }
    // Every promise kept: each read happened at the minute the metric named after the read before.
    expect(reads.slice(1)).toEqual(promised.slice(0, reads.length - 1));
    // 180 ticks; fixed polling would have read 180 times.
    expect(reads.length).toBeLessThan(40);
    const [s] = w.status();
    expect(s).toMatchObject({ nextPollReason: 'not_draining', pollIntervalSeconds: 600 });
    // POLL_MAX_INTERVAL plus one tick: a plan lands on the first tick after it.
    expect(await w.metric('vonage_balance_poll_max_interval_seconds{account="main"}')).toBe(660);
    expect(await w.metric('vonage_balance_runway_seconds{account="main"}')).toBe(Number.POSITIVE_INFINITY);
  });

  it('speeds up at once when spending starts, polls at every tick below the threshold and right after a top-up, and the balance never reaches zero', async () => {
    const w = await world({ topUpAmount: 60 });
    for (let i = 0; i < 90; i++) await w.tick();
    const idleReads = w.reads().length;
    expect(gaps(w.reads()).at(-1)).toBe(10);
    // 1.5 EUR a minute: the 90 EUR margin lasts an hour.
    w.sim.setDrainPerSecond(0.025);
    const startAt = w.reads().at(-1)!;
    let lowest = Number.POSITIVE_INFINITY;
    for (let i = 0; i < 240; i++) {
      await w.tick();
      lowest = Math.min(lowest, w.sim.balance());
    }
    expect(lowest).toBeGreaterThan(0);
    const draining = w.reads().filter((m) => m > startAt);
    // The first read that saw the spending surprised the forecast: the very next tick reads again.
    expect(gaps(draining).slice(0, 2)).toEqual([1, 1]);
    const topUps = w.sim.appliedTopUps().map((t) => (t.at - START) / MIN);
    expect(topUps.length).toBeGreaterThan(0);
    for (const t of topUps) {
      // A top-up is sent in a cycle right after its read; the next tick reads again to confirm the rise.
      expect(w.reads(), `read after the top-up at ${t}`).toContain(t + 1);
    }
    // Below the threshold (or within a few reads of it) every tick is read; in all, far fewer reads than ticks.
    expect(w.reads().length - idleReads).toBeLessThan(240);
    expect(await w.metric('vonage_refill_triggers_total{account="main",trigger="threshold"}')).toBe(topUps.length);
  });

  it('a failed poll is retried at the next tick, whatever the interval was', async () => {
    const w = await world();
    for (let i = 0; i < 60; i++) await w.tick();
    expect(gaps(w.reads()).at(-1)).toBeGreaterThanOrEqual(8);
    // Every try of the next read fails (three tries per cycle).
    w.sim.setFault({ kind: 'server_error', endpoint: 'balance', count: 3 });
    const before = w.reads().length;
    while (w.reads().length === before) await w.tick();
    const failedAt = w.reads().at(-1)!;
    expect(w.status()[0]).toMatchObject({ nextPollReason: 'poll_failed', pollIntervalSeconds: 60 });
    await w.tick();
    expect(w.reads().at(-1)).toBe(failedAt + 1);
  });

  it('a host suspended for 45 minutes (the monotonic clock stops, the wall clock does not) is read at the first tick after it resumes', async () => {
    const w = await world();
    for (let i = 0; i < 90; i++) await w.tick();
    expect(gaps(w.reads()).at(-1)).toBe(10);
    const count = w.reads().length;
    while (w.reads().length === count) await w.tick();
    const last = w.reads().at(-1)!;
    // Suspended right after that read, with the next one 10 minutes away: 45 minutes pass on the
    // wall clock, none on the monotonic one. By the monotonic clock alone it would wait 9 more.
    w.clock.mono = w.clock.now;
    w.clock.now += 45 * MIN;
    await w.tick();
    expect(w.reads().at(-1)).toBe(last + 1 + 45);
  });

  it('without POLL_ADAPTIVE every tick reads, as before, and the next poll is the next tick', async () => {
    const w = await world({ account: { pollAdaptive: false } });
    for (let i = 0; i < 30; i++) await w.tick();
    expect(w.reads()).toEqual(Array.from({ length: 30 }, (_, i) => i));
    expect(await w.metric('vonage_balance_next_poll_timestamp_seconds{account="main"}')).toBe((START + 30 * MIN) / 1000);
    expect(await w.metric('vonage_balance_poll_max_interval_seconds{account="main"}')).toBe(60);
    expect(w.status()[0]).toMatchObject({ nextPollReason: 'schedule', pollIntervalSeconds: 60 });
  });

  it('subaccounts: the list is read when its most urgent subaccount is due, the primary with it; each subaccount has its own forecast', async () => {
    const w = await world({ balance: 1000, subs: [{ apiKey: 'idle01', name: 'Idle', balance: 60 }, { apiKey: 'busy01', name: 'Busy', balance: 100 }] });
    for (let i = 0; i < 40; i++) {
      await w.tick();
      // busy01 spends 1.5 EUR a minute, whether or not anyone looks: 90 EUR of margin, an hour.
      w.sim.drainSubaccount('busy01', 1.5);
    }
    const lists = w.lists();
    expect(lists.length).toBeLessThan(30);
    // The primary's balance is read with every list: its top-up is decided before any transfer.
    expect(w.reads()).toEqual(lists);
    expect(Math.max(...gaps(lists))).toBeLessThanOrEqual(10);
    const busy = w.status().find((s) => s.account === 'busy01')!;
    const idle = w.status().find((s) => s.account === 'idle01')!;
    expect((busy.forecast as { runwaySeconds: number }).runwaySeconds).toBeGreaterThan(0);
    expect((idle.forecast as { runwaySeconds: number | null }).runwaySeconds).toBeNull();
    expect(await w.metric('vonage_balance_runway_seconds{account="idle01"}')).toBe(Number.POSITIVE_INFINITY);
    const rate = await w.metric('vonage_balance_burn_rate_euros_per_second{account="busy01"}');
    expect(rate).toBeGreaterThan(1.5 / 60 / 2);
    expect(rate).toBeLessThan((1.5 / 60) * 3);
    expect(busy.nextPoll).toBe(idle.nextPoll);
    // 20 minutes of runway left: busy01's quarter of it (5 minutes) sets the list's next read.
    expect(String(idle.nextPollReason)).toMatch(/^subaccount busy01: (runway|slowing_down)$/);
    expect(busy.nextPollReason).toMatch(/^(runway|slowing_down)$/);
    expect(await w.metric('vonage_balance_next_poll_timestamp_seconds{account="idle01"}')).toBe(Date.parse(String(idle.nextPoll)) / 1000);
  });

  it('subaccounts with a leadTime: the transfer goes before the threshold is crossed, counted as a forecast trigger, never as a skip', async () => {
    const w = await world({ balance: 1000, subs: [{ apiKey: 'lead01', balance: 60 }], group: { settings: { threshold: 10, transferAmount: 20, cooldownMs: 15 * MIN, maxPerDay: 5, leadTimeMs: 20 * MIN } } });
    let lowestBeforeFirst = Number.POSITIVE_INFINITY;
    for (let i = 0; i < 60; i++) {
      w.sim.drainSubaccount('lead01', 1);
      await w.tick();
      if (w.sim.appliedTransfers().length === 0) lowestBeforeFirst = Math.min(lowestBeforeFirst, w.sim.subaccount('lead01')!.balance!);
    }
    const transfers = w.sim.appliedTransfers();
    expect(transfers.length).toBeGreaterThan(0);
    // 1 EUR a minute against a 20-minute lead: the first transfer went with about 20 EUR left above the threshold.
    expect(lowestBeforeFirst).toBeGreaterThan(10);
    expect(await w.metric('vonage_refill_triggers_total{account="lead01",trigger="forecast"}')).toBeGreaterThanOrEqual(1);
    const text = await w.parts.metrics.registry.metrics();
    expect(text).not.toMatch(/vonage_topups_skipped_total\{account="lead01"[^}]*\} [1-9]/);
  });

  it('a primary with TOPUP_LEAD_TIME does not read its own transfers as spending: no card top-up because it refilled a subaccount', async () => {
    const w = await world({ balance: 1000, account: { threshold: 50, leadTimeMs: 60 * MIN }, subs: [{ apiKey: 'sub01', balance: 30 }] });
    for (let i = 0; i < 240; i++) {
      w.sim.drainSubaccount('sub01', 1);
      await w.tick();
    }
    // The group's maxPerDay (5) bounds the transfers; the card is never charged for them.
    expect(w.sim.appliedTransfers().length).toBe(5);
    expect(w.sim.appliedTopUps()).toEqual([]);
  });

  it('a long leadTime does not pile transfers up: on a constant burn at most one more transfer than reactive', async () => {
    const run = async (leadTimeMs: number) => {
      const w = await world({ balance: 5000, subs: [{ apiKey: 'sub01', balance: 30 }], group: { maxTransferredPerDay: 5000, settings: { threshold: 10, transferAmount: 20, cooldownMs: 15 * MIN, maxPerDay: 100, leadTimeMs } } });
      for (let i = 0; i < 600; i++) {
        w.sim.drainSubaccount('sub01', 1);
        await w.tick();
      }
      return { transfers: w.sim.appliedTransfers().length, balance: w.sim.subaccount('sub01')!.balance! };
    };
    const reactive = await run(0);
    const predictive = await run(120 * MIN);
    expect(predictive.transfers, JSON.stringify({ reactive, predictive })).toBeLessThanOrEqual(reactive.transfers + 1);
    expect(predictive.transfers).toBeGreaterThanOrEqual(reactive.transfers);
  });

  it('subaccounts: one that starts spending after a long idle spell is seen, read at every tick near its threshold and refilled before it is empty', async () => {
    const w = await world({ balance: 1000, subs: [{ apiKey: 'idle01', balance: 60 }, { apiKey: 'burst01', balance: 60 }] });
    for (let i = 0; i < 60; i++) await w.tick();
    expect(gaps(w.lists()).at(-1)).toBe(10);
    let lowest = Number.POSITIVE_INFINITY;
    // 1.5 EUR a minute; a 20 EUR transfer per 15-minute cooldown keeps up, if it is not late.
    for (let i = 0; i < 60; i++) {
      w.sim.drainSubaccount('burst01', 1.5);
      await w.tick();
      lowest = Math.min(lowest, w.sim.subaccount('burst01')!.balance!);
    }
    expect(lowest).toBeGreaterThan(0);
    expect(w.sim.appliedTransfers().filter((t) => t.to === 'burst01').length).toBeGreaterThan(0);
  });
});

describe('refill blocked (vonage_refill_blocked, VonageRunwayShort)', () => {
  const settings = { threshold: 10, cooldownMs: 15 * MIN, maxPerDay: 2, topupEnabled: true, dryRun: false, maxReadingAgeMs: 5000 };
  const reading = { value: 50, autoReload: true, at: START, mono: START };
  const open = { writable: true, attempts: [] };
  const attempt = (minutesAgo: number) => ({ id: `a${minutesAgo}`, at: START - minutesAgo * MIN, outcome: 'success' as const, balanceBefore: 5 });

  it.each([
    ['nothing in the way', settings, reading, open, undefined],
    ['switched off', { ...settings, topupEnabled: false }, reading, open, 'disabled'],
    ['dry run', { ...settings, dryRun: true }, reading, open, 'dry_run'],
    ['auto-reload off', settings, { ...reading, autoReload: false }, open, 'auto_reload_disabled'],
    ['ledger unwritable', settings, reading, { writable: false, attempts: [] }, 'ledger_unavailable'],
    ['daily cap reached, though within the cooldown', settings, reading, { writable: true, attempts: [attempt(100), attempt(5)] }, 'daily_cap'],
    ['within the cooldown only: not blocked (it ends by itself)', settings, reading, { writable: true, attempts: [attempt(5)] }, undefined],
  ] as const)('top-up: %s', (_name, s, r, ledger, expected) => {
    expect(topupBlocked(r, s, ledger, START, START)).toBe(expected);
  });

  const input = (over: Partial<TransferPolicyInput> = {}): TransferPolicyInput => ({
    now: START,
    primary: { balance: 500, at: START, threshold: 50 },
    maxReadingAgeMs: 5000,
    subaccounts: [
      { apiKey: 's1', name: 's1', balance: 40, usePrimaryBalance: false, suspended: false },
      { apiKey: 'shared', name: 'shared', balance: null, usePrimaryBalance: true, suspended: false },
    ].map((s) => ({ ...s, creditLimit: 0, createdAt: '2026-01-01T00:00:00Z' })) as unknown as TransferPolicyInput['subaccounts'],
    settingsFor: () => ({ threshold: 10, transferAmount: 20, cooldownMs: 15 * MIN, maxPerDay: 2 }),
    group: { refill: 'transfer', primaryReserve: 100, maxTransferredPerDay: 200, transfersEnabled: true, dryRun: false },
    ledger: { writable: true, transfers: [] },
    ...over,
  });

  it.each([
    ['nothing in the way', input(), undefined],
    ['refill none', input({ group: { refill: 'none', primaryReserve: 100, maxTransferredPerDay: 200, transfersEnabled: true, dryRun: false } }), 'disabled'],
    ['dry run', input({ group: { refill: 'transfer', primaryReserve: 100, maxTransferredPerDay: 200, transfersEnabled: true, dryRun: true } }), 'dry_run'],
    ['the primary cannot give the amount above its reserve', input({ primary: { balance: 110, at: START, threshold: 50 } }), 'primary_reserve'],
    ['the EUR cap for 24 h reached', input({ ledger: { writable: true, transfers: [{ id: 'x', at: START - 60 * MIN, to: 'other', amount: 190, outcome: 'success' }] } }), 'transfer_cap'],
    ['its daily count reached', input({ ledger: { writable: true, transfers: [0, 1].map((i) => ({ id: `t${i}`, at: START - (100 + i) * MIN, to: 's1', amount: 20, outcome: 'success' as const })) } }), 'daily_cap'],
  ] as const)('transfer: %s', (_name, i, expected) => {
    const blocked = transfersBlocked(i);
    expect(blocked.get('s1')).toBe(expected);
    // A subaccount that spends its primary's balance is never refilled, so never "blocked".
    expect(blocked.has('shared')).toBe(false);
  });
});

describe('isDue', () => {
  it('a plan for the fastest poll is due at the next tick however close it comes (uneven schedules: `0,10 * * * * *`); a longer plan within half a tick', () => {
    const tick = 50_000; // the schedule's longest gap
    expect(isDue({ at: 1_050_000, intervalMs: tick, reason: 'below_threshold' }, 1_010_000, tick)).toBe(true);
    expect(isDue({ at: 1_600_000, intervalMs: 600_000, reason: 'runway' }, 1_010_000, tick)).toBe(false);
    expect(isDue({ at: 1_600_000, intervalMs: 600_000, reason: 'runway' }, 1_575_001, tick)).toBe(true);
    expect(isDue(undefined, 0, tick)).toBe(true);
  });
});

describe('readiness and configuration with adaptive intervals', () => {
  it('a reading as old as POLL_MAX_INTERVAL is fresh for an adaptive account; beyond twice that plus a cycle it is stale', () => {
    const w = (ageMin: number, maxIntervalMs?: number) => ({ name: 'a', lastSuccessMono: 100 * MIN - ageMin * MIN, lastPollOk: true, ...(maxIntervalMs === undefined ? {} : { maxIntervalMs }) });
    const staleAfter = 2 * MIN + 60_000;
    expect(readiness([w(9, 10 * MIN)], 100 * MIN, staleAfter, 60_000)).toEqual({ ok: true });
    expect(readiness([w(22, 10 * MIN)], 100 * MIN, staleAfter, 60_000).ok).toBe(false);
    // Not adaptive (the schedule's own interval): 9 minutes is stale.
    expect(readiness([w(9, MIN)], 100 * MIN, staleAfter, 60_000).ok).toBe(false);
  });

  it('warns when POLL_MAX_INTERVAL is shorter than the schedule can honour, and reads both settings', () => {
    const env = { VONAGE_API_KEY: 'abcd1234', VONAGE_API_SECRET: 'CANARY-s3cr3t/+=%&x9', VONAGE_TOPUP_TRX: '8ef2447e69604f642ae59363aa5f781b', TOPUP_THRESHOLD: '10' };
    const c = loadConfig({ ...env, POLL_ADAPTIVE: 'true', POLL_MAX_INTERVAL: '30s', POLL_SCHEDULE: '* * * * *' }, () => '');
    expect(c.accounts[0]).toMatchObject({ pollAdaptive: true, pollMaxIntervalMs: 30_000 });
    expect(c.warnings.join('\n')).toMatch(/POLL_MAX_INTERVAL is 30s, shorter than POLL_SCHEDULE's interval \(1m\)/);
    expect(loadConfig({ ...env, POLL_ADAPTIVE: 'true', POLL_MAX_INTERVAL: '1s', POLL_SCHEDULE: '* * * * * *' }, () => '').warnings.join('\n')).not.toMatch(/POLL_MAX_INTERVAL/);
  });
});
