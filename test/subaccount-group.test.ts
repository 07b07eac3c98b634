/**
 * A primary and its subaccounts, end to end in one process: the daemon's own parts (buildParts:
 * real clients, real file ledgers in a temp STATE_DIR, real metrics) against the simulator over
 * loopback HTTP. Time is driven (now) so cooldowns can pass; every request is real.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import type { SubaccountsConfig } from '../src/accounts/types.js';
import type { AccountConfig, Config } from '../src/config/config.js';
import { ABSENT_AFTER_MS } from '../src/cycle/subaccount-group.js';
import { buildParts, onceExitCode, readiness, replaceAccounts, settleLedgers, watchedOf, type Parts } from '../src/daemon.js';
import { startSimulator, type Simulator, type SimSubaccountInit } from '../src/simulator/simulator.js';
import { account as baseAccount, expectNoSecret } from './helpers/account.js';

const MIN = 60_000;
const dirs: string[] = [];
const sims: Simulator[] = [];
const partsList: Parts[] = [];
afterEach(async () => {
  for (const p of partsList.splice(0)) p.closeLedgers();
  for (const s of sims.splice(0)) await s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function group(over: Partial<SubaccountsConfig> = {}): SubaccountsConfig {
  return {
    watch: 'all',
    refill: 'transfer',
    settings: { threshold: 10, transferAmount: 20, cooldownMs: 15 * MIN, maxPerDay: 5 },
    overrides: {},
    primaryReserve: 100,
    maxTransferredPerDay: 200,
    transfersEnabled: true,
    dryRun: false,
    ...over,
  };
}

function primaryAccount(sim: Simulator, over: Partial<AccountConfig> = {}, sub: Partial<SubaccountsConfig> = {}): AccountConfig {
  return { ...baseAccount(sim.url, { name: 'eu-prod', threshold: 50 }), subaccountsBaseUrl: sim.url, subaccounts: group(sub), ...over };
}

function configOf(accounts: AccountConfig[], stateDir: string): Config {
  return {
    accounts,
    pollSchedule: '* * * * *',
    httpTimeoutMs: 2000,
    stateDir,
    metrics: { host: '127.0.0.1', port: 0, authToken: undefined },
    log: { level: 'debug', format: 'json' },
    warnings: [],
    pollConcurrency: 8,
    accountsFile: undefined,
    ledger: { kind: 'file', schema: 'vonage_reload_watchdog', leaseMs: 15_000 },
    instanceId: 'test',
  } as Config;
}

interface World {
  sim: Simulator;
  parts: Parts;
  clock: { now: number; mono?: number };
  logs: string[];
  stateDir: string;
  restart(accounts?: AccountConfig[]): Promise<void>;
  cycle(): ReturnType<Parts['fleet']['runCycle']>;
  calls(endpoint: string): number;
}

async function world(subs: SimSubaccountInit[], opts: { primaryBalance?: number; account?: Partial<AccountConfig>; group?: Partial<SubaccountsConfig>; vonageClockOffsetMs?: number } = {}): Promise<World> {
  // mono, when set, is the monotonic clock apart from the wall clock (a clock step); else both are now.
  const clock: { now: number; mono?: number } = { now: Date.UTC(2026, 11, 2, 12) };
  const sim = await startSimulator({ apiKey: 'canary-key', apiSecret: 'CANARY-s3cr3t/+=%&x9', trx: '8ef2447e69604f642ae59363aa5f781b', balance: opts.primaryBalance ?? 500, topUpAmount: 100, subaccounts: subs, now: () => clock.now + (opts.vonageClockOffsetMs ?? 0) });
  sims.push(sim);
  const stateDir = mkdtempSync(join(tmpdir(), 'subgroup-'));
  dirs.push(stateDir);
  const logs: string[] = [];
  const sink = new Writable({ write(chunk, _e, cb) { logs.push(...String(chunk).split('\n').filter(Boolean)); cb(); } });
  let accounts = [primaryAccount(sim, opts.account, opts.group)];
  const w: World = {
    sim,
    clock,
    logs,
    stateDir,
    parts: undefined as unknown as Parts,
    async restart(next) {
      if (next) accounts = next;
      if (w.parts) {
        w.parts.closeLedgers();
        partsList.splice(partsList.indexOf(w.parts), 1);
      }
      w.parts = buildParts(configOf(accounts, stateDir), { logDestination: sink, now: () => clock.now, monoNow: () => clock.mono ?? clock.now, sleep: async () => {} });
      partsList.push(w.parts);
      await settleLedgers(w.parts);
    },
    cycle: () => w.parts.fleet.runCycle(),
    calls: (endpoint) => sim.requests().filter((r) => r.endpoint === endpoint).length,
  };
  await w.restart();
  return w;
}

const subs = (n: number, balance = 50): SimSubaccountInit[] => Array.from({ length: n }, (_, i) => ({ apiKey: `sub${String(i).padStart(4, '0')}`, name: `Sub ${i}`, balance }));

describe('subaccount group: one primary, its subaccounts, balance transfers', () => {
  it('reads 50 subaccounts with one list call per cycle, and refills each one below its threshold once', async () => {
    const w = await world([...subs(48), { apiKey: 'low1', name: 'Low one', balance: 3 }, { apiKey: 'low2', balance: 5 }]);
    const [r] = await w.cycle();
    expect(w.calls('list_subaccounts')).toBe(1);
    expect(w.calls('balance')).toBe(1);
    expect(r!.group!.transfers.map((t) => [t.to, t.outcome])).toEqual([['low1', 'success'], ['low2', 'success']]);
    expect(w.sim.appliedTransfers().map((t) => [t.to, t.amount])).toEqual([['low1', 20], ['low2', 20]]);
    expect(w.sim.subaccount('low1')!.balance).toBe(23);
    // The reference Vonage stores is the ledger's attempt id.
    const ledgerIds = w.parts.fleet.units[0]!.group!.ledger.view().attempts.map((a) => a.id);
    expect(w.sim.appliedTransfers().map((t) => t.reference)).toEqual(ledgerIds);

    // Drained again within the cooldown: reported, not refilled.
    w.sim.setSubaccountBalance('low1', 2);
    w.clock.now += 5 * MIN;
    const [again] = await w.cycle();
    expect(w.calls('list_subaccounts')).toBe(2);
    expect(again!.group!.transfers).toEqual([]);
    expect(w.sim.appliedTransfers()).toHaveLength(2);
    const metrics = await w.parts.metrics.registry.metrics();
    expect(metrics).toContain('vonage_topups_skipped_total{account="low1",reason="cooldown"} 1');
    expect(metrics).toContain('vonage_balance_transfers_total{account="low1"} 1');
    expect(metrics).toContain('vonage_balance_transferred_euros_total{account="low1"} 20');
    expect(metrics).toContain('vonage_refilled_euros_total{account="low1",action="transfer"} 20');
    expect(metrics).toContain('vonage_subaccounts_watched{account="eu-prod"} 50');
    expect(metrics).toContain('vonage_account_info{account="low1",name="Low one",primary="eu-prod"} 1');
    expect(metrics).toContain('vonage_balance_euros{account="low1"} 2');

    // After the cooldown it is refilled again.
    w.clock.now += 11 * MIN;
    await w.cycle();
    expect(w.sim.appliedTransfers().map((t) => t.to)).toEqual(['low1', 'low2', 'low1']);
  });

  it('never takes the primary below its reserve, and funds the emptiest first', async () => {
    const w = await world([{ apiKey: 'a', balance: 8 }, { apiKey: 'b', balance: 1 }, { apiKey: 'c', balance: 5 }], { primaryBalance: 145, group: { primaryReserve: 100 } });
    await w.cycle();
    // 145 − 2 × 20 = 105 ≥ 100; a third would leave 85.
    expect(w.sim.appliedTransfers().map((t) => t.to)).toEqual(['b', 'c']);
    expect(await w.parts.metrics.registry.metrics()).toContain('vonage_topups_skipped_total{account="a",reason="primary_reserve"} 1');
    expect(w.sim.balance()).toBeGreaterThanOrEqual(100);
  });

  it('holds the primary\'s EUR cap over all its subaccounts in 24 h', async () => {
    const w = await world([{ apiKey: 'a', balance: 1 }, { apiKey: 'b', balance: 2 }, { apiKey: 'c', balance: 3 }], { primaryBalance: 1000, group: { maxTransferredPerDay: 50 } });
    await w.cycle();
    expect(w.sim.appliedTransfers().map((t) => t.to)).toEqual(['a', 'b']);
    expect(await w.parts.metrics.registry.metrics()).toContain('vonage_topups_skipped_total{account="c",reason="transfer_cap"} 1');
    // Drained again, after their cooldowns: the cap still holds for the rest of the day.
    w.sim.setSubaccountBalance('a', 0);
    w.clock.now += 60 * MIN;
    await w.cycle();
    expect(w.sim.appliedTransfers()).toHaveLength(2);
  });

  it('never refills a subaccount that spends the primary\'s balance or is suspended; a watched key Vonage does not return is reported', async () => {
    const w = await world([{ apiKey: 'shared', balance: null }, { apiKey: 'susp', balance: 0, suspended: true }, { apiKey: 'ok', balance: 50 }], { group: { watch: ['shared', 'susp', 'ok', 'gone1'] } });
    const [r] = await w.cycle();
    expect(w.sim.appliedTransfers()).toEqual([]);
    expect(r!.group!.belowWithoutRefill).toBe(1);
    const m = await w.parts.metrics.registry.metrics();
    expect(m).toContain('vonage_topups_skipped_total{account="susp",reason="suspended"} 1');
    expect(m).not.toMatch(/vonage_balance_euros\{account="shared"\}/);
    const status = w.parts.fleet.units[0]!.group!.group.status();
    expect(status.missing).toEqual(['gone1']);
    expect(w.logs.some((l) => l.includes('gone1') && l.includes('never refilled'))).toBe(true);
  });

  it('one malformed list entry fails only that subaccount: the others are read and refilled, its series stay, with a failed poll', async () => {
    const w = await world([{ apiKey: 'low1', balance: 1 }, { apiKey: 'odd', balance: 1 }, { apiKey: 'low2', balance: 2 }]);
    await w.cycle();
    expect(w.sim.appliedTransfers().map((t) => t.to).sort()).toEqual(['low1', 'low2', 'odd']);
    w.sim.setSubaccountBalance('low1', 1);
    w.sim.setSubaccountBalance('odd', 1);
    w.sim.patchSubaccountEntry('odd', { balance: 'NaN' });
    w.clock.now += 16 * MIN;
    await w.cycle();
    // low1 is below its threshold again after the cooldown: refilled; odd cannot be read: not.
    expect(w.sim.appliedTransfers().filter((t) => t.to === 'low1')).toHaveLength(2);
    expect(w.sim.appliedTransfers().filter((t) => t.to === 'odd')).toHaveLength(1);
    const m = await w.parts.metrics.registry.metrics();
    expect(m).toContain('vonage_balance_poll_success{account="odd"} 0');
    expect(m).toContain('vonage_balance_poll_failures_total{account="odd",reason="bad_response"} 1');
    expect(m).toContain('vonage_balance_poll_success{account="low2"} 1');
    expect(m).toMatch(/vonage_account_info\{account="odd",name="[^"]*",primary="eu-prod"\} 1/);
    const status = w.parts.fleet.units[0]!.group!.group.status();
    expect(status.unreadable).toEqual([{ apiKey: 'odd', problem: expect.stringMatching(/balance is not a finite number/) as unknown as string }]);
    expect(status.missing).toEqual([]);
    expect(w.logs.filter((l) => l.includes('could not be read'))).toHaveLength(1);
    // Read again once the entry is sound: refilled as usual.
    w.sim.patchSubaccountEntry('odd', undefined);
    await w.cycle();
    expect(w.sim.appliedTransfers().filter((t) => t.to === 'odd')).toHaveLength(2);
  });

  it('an entry whose api key cannot be read may be any watched subaccount: none is reported missing or loses its series', async () => {
    const w = await world([{ apiKey: 'a1', balance: 50 }, { apiKey: 'b2', balance: 50 }], { group: { watch: ['a1', 'b2'] } });
    await w.cycle();
    w.sim.patchSubaccountEntry('b2', { api_key: 'has space' });
    await w.cycle();
    const status = w.parts.fleet.units[0]!.group!.group.status();
    expect(status.missing).toEqual([]);
    // b2 by key (it may be the entry that cannot be read), and the entry itself by position.
    expect(status.unreadable).toEqual([{ apiKey: 'b2', problem: expect.stringMatching(/could not be read/) as unknown as string }, { index: 1, problem: expect.stringMatching(/api_key/) as unknown as string }]);
    const m = await w.parts.metrics.registry.metrics();
    expect(m).toContain('vonage_balance_poll_success{account="b2"} 0');
    expect(m).toContain('vonage_balance_poll_success{account="a1"} 1');
  });

  it('a list entry with the primary\'s own key, for a primary whose account label is that key: its series are untouched, no subaccount is made of it', async () => {
    const w = await world([{ apiKey: 'a', balance: 50 }, { apiKey: 'b', balance: 50 }], { account: { name: 'canary-key' } });
    await w.cycle();
    const own = async () => (await w.parts.metrics.registry.metrics()).split('\n').filter((l) => l.includes('{account="canary-key"') && !/duration|balance_euros|last_success|polls_total|subaccounts_watched/.test(l));
    const before = await own();
    w.sim.patchSubaccountEntry('b', { api_key: 'canary-key' });
    await w.cycle();
    expect(await own()).toEqual(before);
    expect(w.parts.fleet.units[0]!.group!.group.status().unreadable).toEqual([{ index: 1, problem: expect.stringMatching(/primary's own/) as unknown as string }]);
    w.sim.patchSubaccountEntry('b', undefined);
    await w.cycle();
    expect(await own()).toEqual(before);
    expect(await own()).toContain('vonage_topup_threshold_euros{account="canary-key"} 50');
  });

  it('a subaccount that is also an account of the fleet (same API key) or shares an account\'s name is not watched through its primary: never a transfer, one error line, shown in /status', async () => {
    const w = await world([{ apiKey: 'twin', balance: 1 }, { apiKey: 'us-ops', balance: 1 }, { apiKey: 'plain', balance: 1 }]);
    const sim = w.sim;
    await w.restart([primaryAccount(sim), { ...baseAccount(sim.url, { name: 'twin-own', threshold: 5 }), apiKey: 'twin' }, { ...baseAccount(sim.url, { name: 'us-ops', threshold: 5 }), apiKey: 'other-key' }]);
    await w.cycle();
    expect(sim.appliedTransfers().map((t) => t.to)).toEqual(['plain']);
    const status = w.parts.fleet.units[0]!.group!.group.status();
    expect(status.elsewhere).toEqual([{ apiKey: 'twin', account: 'twin-own', by: 'apiKey' }, { apiKey: 'us-ops', account: 'us-ops', by: 'name' }]);
    expect(status.subaccounts.map((s) => s.account)).toEqual(['plain']);
    await w.cycle();
    expect(w.logs.filter((l) => l.includes('not watched through its primary'))).toHaveLength(2);
    const m = await w.parts.metrics.registry.metrics();
    expect(m).not.toContain('vonage_account_info{account="twin",');
    expect(m).toContain('vonage_account_info{account="us-ops",name="us-ops",primary=""} 1');
  });

  it('tops the primary up by card first when it is below its own threshold; transfers wait', async () => {
    const w = await world([{ apiKey: 'a', balance: 1 }], { primaryBalance: 40 });
    const [r] = await w.cycle();
    expect(r!.primary.topUp?.outcome).toBe('success');
    expect(w.sim.appliedTopUps()).toHaveLength(1);
    expect(w.sim.appliedTransfers()).toEqual([]);
    expect(await w.parts.metrics.registry.metrics()).toContain('vonage_topups_skipped_total{account="a",reason="primary_reserve"} 1');
    // Next cycle the primary holds 140: the transfer goes.
    w.clock.now += 2 * MIN;
    await w.cycle();
    expect(w.sim.appliedTransfers().map((t) => t.to)).toEqual(['a']);
  });

  it('a lost answer is never retried blindly: the history, asked by reference, settles it at the next cycle', async () => {
    const w = await world([{ apiKey: 'a', balance: 1 }]);
    w.sim.setFault({ kind: 'lost_answer', endpoint: 'transfer', count: 1, lostMode: 'reset' });
    const [r] = await w.cycle();
    expect(r!.group!.transfers).toEqual([{ to: 'a', outcome: 'unknown' }]);
    expect(w.sim.appliedTransfers()).toHaveLength(1);
    // Spent again at once: the unknown transfer counts, so nothing is sent on top.
    w.sim.setSubaccountBalance('a', 0);
    w.clock.now += MIN;
    await w.cycle();
    expect(w.calls('list_transfers')).toBe(1);
    expect(w.sim.appliedTransfers()).toHaveLength(1);
    const a = w.parts.fleet.units[0]!.group!.ledger.view().attempts[0]!;
    expect([a.outcome, a.reason, a.amount]).toEqual(['success', 'found_in_history', 20]);
    expect(await w.parts.metrics.registry.metrics()).toContain('vonage_balance_transferred_euros_total{account="a"} 20');
    // Settled: no more history calls.
    w.clock.now += MIN;
    await w.cycle();
    expect(w.calls('list_transfers')).toBe(1);
  });

  it('a lost answer and then a restart: settled from the history at start-up, never sent twice', async () => {
    const w = await world([{ apiKey: 'a', balance: 1 }]);
    w.sim.setFault({ kind: 'lost_answer', endpoint: 'transfer', count: 1, lostMode: 'hang' });
    await w.cycle();
    await w.restart();
    w.sim.setSubaccountBalance('a', 0);
    w.clock.now += 20 * MIN; // past the cooldown, so only the ledger stands between us and a second transfer
    await w.cycle();
    // The first is found applied; its cooldown is over, so exactly one new transfer goes.
    expect(w.sim.appliedTransfers()).toHaveLength(2);
    const outcomes = w.parts.fleet.units[0]!.group!.ledger.view().attempts.map((x) => x.outcome);
    expect(outcomes).toEqual(['success', 'success']);
    // Within the cooldown it would have been none: restart and replay at once.
    await w.restart();
    w.sim.setSubaccountBalance('a', 0);
    await w.cycle();
    expect(w.sim.appliedTransfers()).toHaveLength(2);
  });

  it('a transfer of unknown outcome that the history does not hold after five minutes did not happen, and still counts', async () => {
    const w = await world([{ apiKey: 'a', balance: 1 }]);
    // The answer is lost and nothing was applied: a reset before Vonage did anything.
    w.sim.setFault({ kind: 'truncated', endpoint: 'transfer', count: 1 });
    const [r] = await w.cycle();
    expect(r!.group!.transfers[0]!.outcome).toBe('unknown');
    expect(w.sim.appliedTransfers()).toEqual([]);
    w.clock.now += ABSENT_AFTER_MS / 2;
    await w.cycle();
    expect(w.parts.fleet.units[0]!.group!.ledger.view().attempts[0]!.outcome).toBe('unknown');
    w.clock.now += ABSENT_AFTER_MS;
    await w.cycle();
    const a = w.parts.fleet.units[0]!.group!.ledger.view().attempts[0]!;
    expect([a.outcome, a.reason]).toEqual(['failed', 'not_in_history']);
    expect(w.sim.appliedTransfers()).toEqual([]); // still within its cooldown (15 min)
    expect(await w.parts.metrics.registry.metrics()).toContain('vonage_balance_transfer_failures_total{account="a",reason="not_in_history"} 1');
  });

  for (const offsetMin of [-30, 30]) {
    it(`a lost answer is found in the history even when Vonage's clock is ${Math.abs(offsetMin)} min ${offsetMin < 0 ? 'behind' : 'ahead of'} ours, and never declared absent`, async () => {
      const w = await world([{ apiKey: 'a', balance: 1 }], { vonageClockOffsetMs: offsetMin * MIN, group: { maxTransferredPerDay: 20, settings: { threshold: 10, transferAmount: 20, cooldownMs: MIN, maxPerDay: 5 } } });
      w.sim.setFault({ kind: 'lost_answer', endpoint: 'transfer', count: 1, lostMode: 'reset' });
      await w.cycle();
      w.clock.now += 10 * MIN;
      w.sim.setSubaccountBalance('a', 0);
      await w.cycle();
      const a = w.parts.fleet.units[0]!.group!.ledger.view().attempts[0]!;
      expect([a.outcome, a.reason]).toEqual(['success', 'found_in_history']);
      // The EUR cap (20) is spent by that one transfer: nothing more today.
      w.clock.now += 10 * MIN;
      await w.cycle();
      expect(w.sim.appliedTransfers()).toHaveLength(1);
    });
  }

  it('a primary not provisioned for subaccounts: the list fails (unprovisioned), nothing is sent, the primary itself is still watched', async () => {
    const w = await world([{ apiKey: 'a', balance: 1 }]);
    w.sim.setSubaccountsProvisioned(false);
    const results = await w.cycle();
    expect(results[0]!.group!.ok).toBe(false);
    expect(results[0]!.primary.ok).toBe(true);
    expect(w.sim.appliedTransfers()).toEqual([]);
    expect(onceExitCode(results)).toBe(1);
    expect(w.logs.some((l) => l.includes('"reason":"unprovisioned"'))).toBe(true);
    const probe = readiness(watchedOf(w.parts.fleet.units), w.clock.now, 10 * MIN);
    expect(probe.ok).toBe(true);
    expect(probe.failing).toEqual(['eu-prod (subaccounts): no successful balance poll yet']);
  });

  it('insufficient funds at Vonage is a refusal (failed, counted), never retried', async () => {
    const w = await world([{ apiKey: 'a', balance: 1 }], { primaryBalance: 130, group: { primaryReserve: 0 } });
    // The primary's own balance drains between the list and the transfer.
    w.sim.setFault({ kind: 'bad_request', endpoint: 'transfer', count: 1 });
    const [r] = await w.cycle();
    expect(r!.group!.transfers).toEqual([{ to: 'a', outcome: 'failed' }]);
    w.clock.now += MIN;
    await w.cycle();
    expect(w.sim.requests().filter((x) => x.endpoint === 'transfer')).toHaveLength(1);
  });

  it('a reload that rebuilds an account keeps its monotonic stamps: a forward clock step right after it does not end the cooldown', async () => {
    const w = await world([{ apiKey: 'a', balance: 1 }], { primaryBalance: 40 });
    w.clock.mono = 1_000_000;
    await w.cycle();
    expect(w.sim.appliedTopUps()).toHaveLength(1);
    const transfersBefore = w.sim.appliedTransfers().length;
    // A changed threshold rebuilds the account's parts (its ledgers reopened).
    const changed = primaryAccount(w.sim, { threshold: 60 });
    expect(await replaceAccounts(w.parts, [changed])).toMatchObject({ changed: ['eu-prod'] });
    w.sim.setBalance(10);
    w.sim.setSubaccountBalance('a', 1);
    // The wall clock jumps 20 minutes (past the 15-minute cooldowns); only 1 s really passed.
    w.clock.now += 20 * MIN;
    w.clock.mono += 1000;
    await w.cycle();
    expect(w.sim.appliedTopUps()).toHaveLength(1);
    expect(w.sim.appliedTransfers()).toHaveLength(transfersBefore);
    const m = await w.parts.metrics.registry.metrics();
    expect(m).toContain('vonage_topups_skipped_total{account="eu-prod",reason="cooldown"} 1');
  });

  it('a reload adds and removes accounts: series of the new ones exist at 0, those of the removed ones are deleted, ledgers stay', async () => {
    const w = await world([{ apiKey: 'a', balance: 1 }]);
    await w.cycle();
    const other = { ...baseAccount(w.sim.url, { name: 'us-marketing', apiKey: 'canary-key' }), subaccountsBaseUrl: w.sim.url } as AccountConfig;
    const diff = await replaceAccounts(w.parts, [other]);
    expect(diff).toEqual({ added: ['us-marketing'], removed: ['eu-prod'], changed: [] });
    const m = await w.parts.metrics.registry.metrics();
    expect(m).toContain('vonage_balance_polls_total{account="us-marketing"} 0');
    expect(m).not.toContain('account="eu-prod"');
    expect(m).not.toContain('account="a"');
    await w.cycle();
    expect(w.parts.fleet.units.map((u) => u.account.name)).toEqual(['us-marketing']);
    for (const l of w.logs) expectNoSecret(l, 'log line');
  });
});
