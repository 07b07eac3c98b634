import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { SubaccountEntry, SubaccountSettings } from '../src/accounts/types.js';
import { DAY_MS, SKIP_REASONS, type AttemptOutcome } from '../src/refill/topup-policy.js';
import {
  TRANSFER_SKIP_REASONS,
  decideTransfers,
  transferredInLastDay,
  transfersInLastDay,
  type TransferAttempt,
  type TransferDecision,
  type TransferPolicyInput,
} from '../src/refill/transfer-policy.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const T0 = Date.UTC(2026, 10, 27, 12, 0, 0);

const baseSettings: SubaccountSettings = { threshold: 10, transferAmount: 20, cooldownMs: 15 * MIN, maxPerDay: 3 };
const baseGroup: TransferPolicyInput['group'] = { refill: 'transfer', primaryReserve: 50, maxTransferredPerDay: 200, transfersEnabled: true, dryRun: false };

const sub = (apiKey: string, balance: number | null, extra: Partial<SubaccountEntry> = {}): SubaccountEntry => ({
  apiKey,
  name: apiKey,
  balance,
  creditLimit: null,
  usePrimaryBalance: balance === null,
  suspended: false,
  createdAt: '2026-01-01T00:00:00.000Z',
  ...extra,
});

let ids = 0;
const tr = (to: string, at: number, outcome: AttemptOutcome = 'success', amount = 20, mono?: number): TransferAttempt => ({
  id: `t${ids++}`,
  at,
  to,
  amount,
  outcome,
  ...(mono === undefined ? {} : { mono }),
});

interface Over {
  now?: number;
  monoNow?: number;
  primary?: Partial<TransferPolicyInput['primary']>;
  primaryToppingUp?: boolean;
  subaccounts?: SubaccountEntry[];
  settings?: Partial<SubaccountSettings>;
  perSub?: Record<string, Partial<SubaccountSettings>>;
  group?: Partial<TransferPolicyInput['group']>;
  writable?: boolean;
  transfers?: TransferAttempt[];
}

const input = (o: Over = {}): TransferPolicyInput => ({
  now: o.now ?? T0,
  ...(o.monoNow === undefined ? {} : { monoNow: o.monoNow }),
  primary: { balance: 500, at: T0, threshold: 20, ...o.primary },
  ...(o.primaryToppingUp === undefined ? {} : { primaryToppingUp: o.primaryToppingUp }),
  maxReadingAgeMs: 10_000,
  subaccounts: o.subaccounts ?? [sub('s1', 5)],
  settingsFor: (k) => ({ ...baseSettings, ...o.settings, ...o.perSub?.[k] }),
  group: { ...baseGroup, ...o.group },
  ledger: { writable: o.writable ?? true, ...(o.writable === false ? { problem: 'STATE_DIR is read-only' } : {}), transfers: o.transfers ?? [] },
});

const label = (d: TransferDecision): string => (d.action === 'none' ? `none:${d.why}` : d.action === 'skip' ? `skip:${d.reason}` : `transfer:${d.amount}`);
const labels = (o: Over): string[] => decideTransfers(input(o)).map(label);
const one = (o: Over): TransferDecision => {
  const out = decideTransfers(input(o));
  expect(out).toHaveLength(1);
  return out[0]!;
};

describe('decideTransfers: one subaccount, each rule', () => {
  const cases: (Over & { name: string; want: string })[] = [
    // Threshold
    { name: 'above threshold', subaccounts: [sub('s1', 10.01)], want: 'none:above_threshold' },
    { name: 'exactly at threshold is not below', subaccounts: [sub('s1', 10)], want: 'none:above_threshold' },
    { name: 'below threshold, nothing in the way', subaccounts: [sub('s1', 9.99)], want: 'transfer:20' },
    { name: 'zero balance', subaccounts: [sub('s1', 0)], want: 'transfer:20' },
    { name: 'negative balance (credit limit)', subaccounts: [sub('s1', -3)], want: 'transfer:20' },
    { name: 'the amount is the subaccount’s own', subaccounts: [sub('s1', 1)], settings: { transferAmount: 12.5 }, want: 'transfer:12.5' },
    // Shared balance and suspended
    { name: 'shared balance (null) is never refilled', subaccounts: [sub('s1', null)], want: 'none:not_refilled' },
    { name: 'use_primary_account_balance with a number is shared too', subaccounts: [sub('s1', 0, { usePrimaryBalance: true })], want: 'none:not_refilled' },
    { name: 'shared and suspended: still not refilled, not "suspended"', subaccounts: [sub('s1', null, { suspended: true })], want: 'none:not_refilled' },
    { name: 'suspended below threshold', subaccounts: [sub('s1', 1, { suspended: true })], want: 'skip:suspended' },
    { name: 'suspended above threshold is just above', subaccounts: [sub('s1', 50, { suspended: true })], want: 'none:above_threshold' },
    // Switches
    { name: 'refill none', group: { refill: 'none' }, want: 'skip:disabled' },
    { name: 'refill none above threshold says nothing', group: { refill: 'none' }, subaccounts: [sub('s1', 50)], want: 'none:above_threshold' },
    { name: 'transfers disabled', group: { transfersEnabled: false }, want: 'skip:disabled' },
    { name: 'dry run', group: { dryRun: true }, want: 'skip:dry_run' },
    { name: 'ledger unwritable', writable: false, want: 'skip:ledger_unavailable' },
    { name: 'disabled wins over dry run, stale and ledger', group: { transfersEnabled: false, dryRun: true }, writable: false, primary: { at: T0 - HOUR }, want: 'skip:disabled' },
    { name: 'dry run still reports the cooldown', group: { dryRun: true }, transfers: [tr('s1', T0 - MIN)], want: 'skip:cooldown' },
    { name: 'dry run still reports the reserve', group: { dryRun: true }, primary: { balance: 60 }, want: 'skip:primary_reserve' },
    // Defensive settings
    { name: 'zero amount', settings: { transferAmount: 0 }, want: 'skip:disabled' },
    { name: 'negative amount', settings: { transferAmount: -20 }, want: 'skip:disabled' },
    { name: 'NaN amount', settings: { transferAmount: Number.NaN }, want: 'skip:disabled' },
    { name: 'infinite amount', settings: { transferAmount: Number.POSITIVE_INFINITY }, want: 'skip:disabled' },
    { name: 'NaN cooldown', settings: { cooldownMs: Number.NaN }, want: 'skip:disabled' },
    { name: 'negative daily count', settings: { maxPerDay: -1 }, want: 'skip:disabled' },
    // Freshness of the primary's reading (the list answer)
    { name: 'reading 10 s old is fresh', primary: { at: T0 - 10_000 }, want: 'transfer:20' },
    { name: 'reading 10.001 s old is stale', primary: { at: T0 - 10_001 }, want: 'skip:stale_reading' },
    { name: 'reading 10 s in the future is fresh', primary: { at: T0 + 10_000 }, want: 'transfer:20' },
    { name: 'reading further in the future is stale', primary: { at: T0 + 10_001 }, want: 'skip:stale_reading' },
    { name: 'NaN reading time is stale', primary: { at: Number.NaN }, want: 'skip:stale_reading' },
    { name: 'mono age: fresh across a wall step forward', primary: { at: T0 - 2 * HOUR, mono: 5_000 }, monoNow: 6_000, want: 'transfer:20' },
    { name: 'mono age: old though the wall says fresh', primary: { at: T0, mono: 5_000 }, monoNow: 16_000, want: 'skip:stale_reading' },
    { name: 'mono of the reading without monoNow: the wall decides', primary: { at: T0 - 11_000, mono: 5_000 }, want: 'skip:stale_reading' },
    { name: 'reading taken before the last transfer to it (cooldown over)', settings: { cooldownMs: 0 }, primary: { at: T0 - 1000 }, transfers: [tr('s1', T0 - 500)], want: 'skip:stale_reading' },
    { name: 'reading at the same ms as the last transfer', settings: { cooldownMs: 0 }, transfers: [tr('s1', T0)], want: 'skip:stale_reading' },
    { name: 'reading before a transfer on the mono clock though the wall says after', settings: { cooldownMs: 0 }, monoNow: 10_000, primary: { at: T0 - 100, mono: 9_900 }, transfers: [tr('s1', T0 - 200, 'success', 20, 9_950)], want: 'skip:stale_reading' },
    // Primary
    { name: 'primary below its own threshold', primary: { balance: 19.99, threshold: 20 }, group: { primaryReserve: 0 }, want: 'skip:primary_reserve' },
    { name: 'primary exactly at its own threshold', primary: { balance: 70, threshold: 70 }, want: 'transfer:20' },
    { name: 'primary threshold NaN fails closed', primary: { threshold: Number.NaN }, want: 'skip:primary_reserve' },
    { name: 'primary topping up', primaryToppingUp: true, want: 'skip:primary_reserve' },
    { name: 'primary not topping up', primaryToppingUp: false, want: 'transfer:20' },
    { name: 'reserve: exactly at the reserve afterwards', primary: { balance: 70 }, want: 'transfer:20' },
    { name: 'reserve: a cent short', primary: { balance: 69.99 }, want: 'skip:primary_reserve' },
    { name: 'reserve NaN fails closed', group: { primaryReserve: Number.NaN }, want: 'skip:primary_reserve' },
    { name: 'primary balance NaN fails closed', primary: { balance: Number.NaN }, want: 'skip:primary_reserve' },
    {
      name: 'a transfer the reading cannot show yet is taken off the primary',
      primary: { balance: 100, at: T0 - 1000 },
      transfers: [tr('other', T0 - 500, 'success', 40)],
      want: 'skip:primary_reserve',
    },
    { name: 'a failed transfer after the reading moved nothing', primary: { balance: 100, at: T0 - 1000 }, transfers: [tr('other', T0 - 500, 'failed', 40)], want: 'transfer:20' },
    { name: 'an older transfer is in the reading already', primary: { balance: 100 }, transfers: [tr('other', T0 - HOUR, 'success', 40)], want: 'transfer:20' },
    // Cooldown
    { name: 'within cooldown after success', transfers: [tr('s1', T0 - 14 * MIN)], want: 'skip:cooldown' },
    { name: 'within cooldown after failure', transfers: [tr('s1', T0 - 14 * MIN, 'failed')], want: 'skip:cooldown' },
    { name: 'within cooldown after unknown', transfers: [tr('s1', T0 - 14 * MIN, 'unknown')], want: 'skip:cooldown' },
    { name: 'within cooldown after pending', transfers: [tr('s1', T0 - MIN, 'pending')], want: 'skip:cooldown' },
    { name: 'not_sent does not count', transfers: [tr('s1', T0 - MIN, 'not_sent')], want: 'transfer:20' },
    { name: 'cooldown over', transfers: [tr('s1', T0 - 15 * MIN)], want: 'transfer:20' },
    { name: 'another subaccount’s transfer does not cool this one', transfers: [tr('s2', T0 - MIN)], want: 'transfer:20' },
    { name: 'a ledger time that is not a number counts as just now', transfers: [tr('s1', Number.NaN, 'failed')], want: 'skip:cooldown' },
    { name: 'per-subaccount cooldown override', perSub: { s1: { cooldownMs: 2 * HOUR } }, transfers: [tr('s1', T0 - HOUR)], want: 'skip:cooldown' },
    // Per-subaccount daily count
    { name: 'daily cap reached', transfers: [tr('s1', T0 - 3 * HOUR), tr('s1', T0 - 2 * HOUR), tr('s1', T0 - HOUR)], want: 'skip:daily_cap' },
    { name: 'daily cap counts failed and unknown', transfers: [tr('s1', T0 - 3 * HOUR, 'failed'), tr('s1', T0 - 2 * HOUR, 'unknown'), tr('s1', T0 - HOUR, 'failed')], want: 'skip:daily_cap' },
    { name: 'daily cap ignores not_sent', transfers: [tr('s1', T0 - 3 * HOUR, 'not_sent'), tr('s1', T0 - 2 * HOUR), tr('s1', T0 - HOUR)], want: 'transfer:20' },
    { name: 'daily cap is rolling', transfers: [tr('s1', T0 - DAY_MS), tr('s1', T0 - 2 * HOUR), tr('s1', T0 - HOUR)], want: 'transfer:20' },
    { name: 'maxPerDay 0 never transfers', settings: { maxPerDay: 0 }, want: 'skip:daily_cap' },
    { name: 'daily cap is per subaccount', transfers: [tr('s2', T0 - 3 * HOUR), tr('s2', T0 - 2 * HOUR), tr('s2', T0 - HOUR)], want: 'transfer:20' },
    // The primary's EUR cap
    { name: 'EUR cap: exactly reached by this transfer', transfers: [tr('s2', T0 - HOUR, 'success', 180)], want: 'transfer:20' },
    { name: 'EUR cap: a cent over', transfers: [tr('s2', T0 - HOUR, 'success', 180.01)], want: 'skip:transfer_cap' },
    { name: 'EUR cap counts pending', transfers: [tr('s2', T0 - HOUR, 'pending', 190)], want: 'skip:transfer_cap' },
    { name: 'EUR cap counts unknown', transfers: [tr('s2', T0 - HOUR, 'unknown', 190)], want: 'skip:transfer_cap' },
    { name: 'EUR cap leaves out failed (no money moved)', transfers: [tr('s2', T0 - HOUR, 'failed', 190)], want: 'transfer:20' },
    { name: 'EUR cap leaves out not_sent', transfers: [tr('s2', T0 - HOUR, 'not_sent', 190)], want: 'transfer:20' },
    { name: 'EUR cap is rolling', transfers: [tr('s2', T0 - DAY_MS, 'success', 190)], want: 'transfer:20' },
    { name: 'EUR cap: a ledger amount that is not a number closes it', transfers: [tr('s2', T0 - HOUR, 'success', Number.NaN)], want: 'skip:transfer_cap' },
    { name: 'EUR cap: an amount larger than the cap never goes', settings: { transferAmount: 201 }, primary: { balance: 1000 }, want: 'skip:transfer_cap' },
    { name: 'EUR cap NaN fails closed', group: { maxTransferredPerDay: Number.NaN }, want: 'skip:transfer_cap' },
    { name: 'reserve is checked before the cap', primary: { balance: 60 }, transfers: [tr('s2', T0 - HOUR, 'success', 200)], want: 'skip:primary_reserve' },
  ];
  for (const c of cases) {
    it(c.name, () => {
      expect(label(one(c))).toBe(c.want);
    });
  }

  it('says why in the detail', () => {
    expect(one({ writable: false })).toMatchObject({ detail: 'STATE_DIR is read-only' });
    expect(one({ primaryToppingUp: true })).toMatchObject({ detail: expect.stringContaining('primary tops up first') });
    expect(one({ primary: { balance: 10, threshold: 20 }, group: { primaryReserve: 0 } })).toMatchObject({ detail: expect.stringContaining('primary tops up first') });
    expect(one({ settings: { transferAmount: 0 } })).toMatchObject({ detail: expect.stringContaining('transfer amount') });
    expect(one({ group: { dryRun: true } })).toMatchObject({ detail: expect.stringContaining('would transfer 20 EUR') });
  });

  it('tells when the cooldown and the daily cap end', () => {
    expect(one({ transfers: [tr('s1', T0 - 5 * MIN)] })).toMatchObject({ reason: 'cooldown', retryAt: T0 + 10 * MIN });
    expect(one({ transfers: [tr('s1', T0 - 3 * HOUR), tr('s1', T0 - 2 * HOUR), tr('s1', T0 - HOUR)] })).toMatchObject({ reason: 'daily_cap', retryAt: T0 - 3 * HOUR + DAY_MS });
    expect(one({ settings: { maxPerDay: 0 } })).not.toHaveProperty('retryAt');
  });

  it('tells when the EUR cap has room again, and not when it never will', () => {
    const transfers = [tr('a', T0 - 5 * HOUR, 'success', 50), tr('b', T0 - 4 * HOUR, 'unknown', 100), tr('c', T0 - 3 * HOUR, 'failed', 100), tr('d', T0 - 2 * HOUR, 'pending', 40)];
    // 190 in the window; 20 more needs 10 to leave: the oldest (50, at −5 h) is enough.
    expect(one({ transfers })).toMatchObject({ reason: 'transfer_cap', retryAt: T0 - 5 * HOUR + DAY_MS });
    // 61 more needs 51 to leave: the first two must go, so the second's time.
    expect(one({ transfers, settings: { transferAmount: 61 } })).toMatchObject({ reason: 'transfer_cap', retryAt: T0 - 4 * HOUR + DAY_MS });
    expect(one({ transfers, settings: { transferAmount: 201 }, primary: { balance: 1000 } })).not.toHaveProperty('retryAt');
  });
});

describe('decideTransfers: clock steps', () => {
  it('backward step: a transfer stamped in the future holds the cooldown until its own time plus the cooldown', () => {
    const d = one({ transfers: [tr('s1', T0 + HOUR)] });
    expect(d).toMatchObject({ action: 'skip', reason: 'cooldown', retryAt: T0 + HOUR + 15 * MIN, detail: expect.stringContaining('went back') });
  });
  it('backward step: future-stamped transfers count for the daily count and the EUR cap', () => {
    const ahead = [tr('s1', T0 + 2 * DAY_MS), tr('s1', T0 + 3 * DAY_MS), tr('s1', T0 + 4 * DAY_MS, 'failed')];
    // Even with no cooldown configured, a transfer "in the future" holds until its own time.
    expect(one({ settings: { cooldownMs: 0 }, transfers: ahead })).toMatchObject({ reason: 'cooldown', retryAt: T0 + 4 * DAY_MS });
    expect(transfersInLastDay(ahead, 's1', T0)).toBe(3);
    expect(label(one({ transfers: [tr('s2', T0 + 2 * DAY_MS, 'success', 190)] }))).toBe('skip:transfer_cap');
    expect(transferredInLastDay([tr('s2', T0 + 2 * DAY_MS, 'success', 190)], T0)).toBe(190);
  });
  it('forward step: the wall says 2 h since the last transfer, the monotonic clock 1 min: the cooldown holds', () => {
    const d = one({ now: T0 + 2 * HOUR, monoNow: 100_000 + MIN, primary: { at: T0 + 2 * HOUR, mono: 100_000 + MIN }, transfers: [tr('s1', T0, 'success', 20, 100_000)] });
    expect(d).toMatchObject({ action: 'skip', reason: 'cooldown', retryAt: T0 + 2 * HOUR + 14 * MIN });
  });
  it('forward step: the wall says 25 h, the monotonic clock 1 h: the transfers still count for both caps', () => {
    const transfers = [1, 2, 3].map((i) => tr('s1', T0 - i * MIN, 'success', 60, 1_000_000 - i * MIN));
    const now = T0 + 25 * HOUR;
    const monoNow = 1_000_000 + HOUR;
    expect(label(one({ now, monoNow, primary: { at: now, mono: monoNow }, transfers }))).toBe('skip:daily_cap');
    expect(transferredInLastDay(transfers, now, monoNow)).toBe(180);
    expect(transferredInLastDay(transfers, now)).toBe(0);
    expect(transfersInLastDay(transfers, 's1', now, monoNow)).toBe(3);
  });
  it('a transfer from an earlier process (no monotonic time) is measured on the wall clock', () => {
    expect(label(one({ monoNow: 5, primary: { mono: 5 }, transfers: [tr('s1', T0 - 16 * MIN)] }))).toBe('transfer:20');
    expect(label(one({ monoNow: 5, primary: { mono: 5 }, transfers: [tr('s1', T0 - 14 * MIN)] }))).toBe('skip:cooldown');
  });
  it('the monotonic clock saying more than the wall does not end a cooldown either', () => {
    // After a host suspend the wall moved on while mono stood still; the lesser still wins.
    expect(label(one({ monoNow: 100 * HOUR, transfers: [tr('s1', T0 - MIN, 'success', 20, 0)] }))).toBe('skip:cooldown');
  });
});

describe('decideTransfers: several subaccounts', () => {
  it('one decision per subaccount, in the input order', () => {
    const subs = [sub('z', 50), sub('a', null), sub('m', 1), sub('b', 2, { suspended: true })];
    const out = decideTransfers(input({ subaccounts: subs }));
    expect(out.map((d) => d.to)).toEqual(['z', 'a', 'm', 'b']);
    expect(out.map(label)).toEqual(['none:above_threshold', 'none:not_refilled', 'transfer:20', 'skip:suspended']);
    expect(decideTransfers(input({ subaccounts: [] }))).toEqual([]);
  });

  it('the reserve is shared: the emptiest are funded, the rest wait, whatever the input order', () => {
    // 500 − 50 reserve = 450 room: two transfers of 200.
    const o = { settings: { transferAmount: 200 }, group: { maxTransferredPerDay: 1000 } };
    const subs = [sub('c', 8), sub('a', 2), sub('b', 5)];
    expect(labels({ ...o, subaccounts: subs })).toEqual(['skip:primary_reserve', 'transfer:200', 'transfer:200']);
    expect(labels({ ...o, subaccounts: [...subs].reverse() })).toEqual(['transfer:200', 'transfer:200', 'skip:primary_reserve']);
    const waiting = decideTransfers(input({ ...o, subaccounts: subs }))[0]!;
    expect(waiting).toMatchObject({ detail: expect.stringContaining('400 EUR planned for emptier subaccounts') });
  });

  it('the EUR cap is shared: counted past transfers plus those planned in the call', () => {
    const subs = [sub('a', 1), sub('b', 2), sub('c', 3)];
    expect(labels({ subaccounts: subs, group: { maxTransferredPerDay: 40 } })).toEqual(['transfer:20', 'transfer:20', 'skip:transfer_cap']);
    expect(labels({ subaccounts: subs, group: { maxTransferredPerDay: 40 }, transfers: [tr('x', T0 - HOUR, 'unknown', 20)] })).toEqual(['transfer:20', 'skip:transfer_cap', 'skip:transfer_cap']);
    expect(labels({ subaccounts: subs, group: { maxTransferredPerDay: 40 }, transfers: [tr('x', T0 - HOUR, 'failed', 20)] })).toEqual(['transfer:20', 'transfer:20', 'skip:transfer_cap']);
  });

  it('emptiest means the lowest fraction of the threshold left, not the largest shortfall', () => {
    // big: 1 of 100 (1 %), 99 short; small: 0 of 5 (0 %), 5 short. Room for one.
    const o = { primary: { balance: 70 }, perSub: { big: { threshold: 100 }, small: { threshold: 5 } } };
    expect(labels({ ...o, subaccounts: [sub('big', 1), sub('small', 0)] })).toEqual(['skip:primary_reserve', 'transfer:20']);
    // A negative balance is below 0 %.
    expect(labels({ ...o, subaccounts: [sub('big', -1), sub('small', 0)] })).toEqual(['transfer:20', 'skip:primary_reserve']);
  });

  it('ties: the same fraction goes to the larger shortfall, then to the api key', () => {
    const o = { primary: { balance: 70 } };
    // 50 % each: 5 of 10 (5 short) and 10 of 20 (10 short).
    expect(labels({ ...o, perSub: { p: { threshold: 20 } }, subaccounts: [sub('q', 5), sub('p', 10)] })).toEqual(['skip:primary_reserve', 'transfer:20']);
    // Everything equal: the api key, in code-unit order ('B' < 'a').
    expect(labels({ ...o, subaccounts: [sub('a', 5), sub('b', 5), sub('B', 5)] })).toEqual(['skip:primary_reserve', 'skip:primary_reserve', 'transfer:20']);
  });

  it('a threshold of 0 or less can only be missed in debt: such a subaccount comes first', () => {
    const o = { primary: { balance: 70 }, perSub: { zero: { threshold: 0 } } };
    expect(labels({ ...o, subaccounts: [sub('empty', 0), sub('zero', -0.5)] })).toEqual(['skip:primary_reserve', 'transfer:20']);
  });

  it('first fit: a larger, emptier transfer that does not fit does not hold back a smaller one that does', () => {
    const o = { primary: { balance: 100 }, perSub: { empty: { transferAmount: 60 }, low: { transferAmount: 30 } } };
    expect(labels({ ...o, subaccounts: [sub('low', 5), sub('empty', 0)] })).toEqual(['transfer:30', 'skip:primary_reserve']);
    // With room for the emptier one, it goes first and the other waits.
    expect(labels({ ...o, primary: { balance: 110 }, subaccounts: [sub('low', 5), sub('empty', 0)] })).toEqual(['skip:primary_reserve', 'transfer:60']);
  });

  it('only subaccounts that may be funded take from the budget', () => {
    const subs = [sub('cool', 0), sub('ok', 5)];
    expect(labels({ primary: { balance: 70 }, subaccounts: subs, transfers: [tr('cool', T0 - MIN, 'failed')] })).toEqual(['skip:cooldown', 'transfer:20']);
  });

  it('a dry run takes its share of the budget, so it reports what a live run would do', () => {
    const subs = [sub('a', 1), sub('b', 2)];
    expect(labels({ primary: { balance: 70 }, group: { dryRun: true }, subaccounts: subs })).toEqual(['skip:dry_run', 'skip:primary_reserve']);
  });

  it('the same subaccount listed twice gets one transfer', () => {
    const out = decideTransfers(input({ subaccounts: [sub('a', 1), sub('a', 1)] }));
    expect(out.map(label)).toEqual(['transfer:20', 'skip:cooldown']);
  });

  it('a predictive transfer waits while a subaccount below its threshold waits for its own (cooldown), so it never takes the budget that one will need', () => {
    const o = { subaccounts: [sub('low', 2), sub('soon', 25)], transfers: [tr('low', T0 - 5 * 60_000)], group: { maxTransferredPerDay: 40 } };
    const [low, soon] = decideTransfers({ ...input(o), forecastDue: new Set(['soon']) });
    expect(low).toMatchObject({ action: 'skip', reason: 'cooldown' });
    expect(soon).toMatchObject({ action: 'none', why: 'forecast_held', reason: 'primary_reserve', detail: expect.stringContaining('held for subaccount low') });
    // With nobody below waiting, the same forecast gets its transfer, marked as such.
    expect(decideTransfers({ ...input({ subaccounts: [sub('soon', 25)] }), forecastDue: new Set(['soon']) })[0]).toMatchObject({ action: 'transfer', trigger: 'forecast' });
  });

  it('the primary’s own needs stop every transfer', () => {
    const subs = [sub('a', 1), sub('b', 2)];
    expect(labels({ primaryToppingUp: true, subaccounts: subs })).toEqual(['skip:primary_reserve', 'skip:primary_reserve']);
  });
});

describe('reasons and helpers', () => {
  it('TRANSFER_SKIP_REASONS reuses the top-up names and adds three', () => {
    for (const r of ['cooldown', 'daily_cap', 'disabled', 'dry_run', 'ledger_unavailable', 'stale_reading'] as const) {
      expect(SKIP_REASONS).toContain(r);
      expect(TRANSFER_SKIP_REASONS).toContain(r);
    }
    expect(TRANSFER_SKIP_REASONS.filter((r) => !(SKIP_REASONS as readonly string[]).includes(r)).sort()).toEqual(['primary_reserve', 'suspended', 'transfer_cap']);
    expect(new Set(TRANSFER_SKIP_REASONS).size).toBe(TRANSFER_SKIP_REASONS.length);
  });

  it('transferredInLastDay: success, pending and unknown in the rolling 24 h', () => {
    const ts = [
      tr('a', T0 - HOUR, 'success', 10),
      tr('b', T0 - HOUR, 'pending', 20),
      tr('c', T0 - HOUR, 'unknown', 40),
      tr('d', T0 - HOUR, 'failed', 80),
      tr('e', T0 - HOUR, 'not_sent', 160),
      tr('f', T0 - DAY_MS, 'success', 320),
      tr('g', T0 - DAY_MS + 1, 'success', 640),
      tr('h', T0 - HOUR, 'success', -5),
    ];
    expect(transferredInLastDay(ts, T0)).toBe(710);
    expect(transferredInLastDay([], T0)).toBe(0);
  });

  it('transfersInLastDay: counted transfers to one subaccount', () => {
    const ts = [tr('a', T0 - HOUR, 'failed'), tr('a', T0 - HOUR, 'not_sent'), tr('a', T0 - DAY_MS), tr('a', T0 + HOUR, 'pending'), tr('b', T0 - HOUR)];
    expect(transfersInLastDay(ts, 'a', T0)).toBe(2);
    expect(transfersInLastDay(ts, 'b', T0)).toBe(1);
    expect(transfersInLastDay(ts, 'c', T0)).toBe(0);
  });
});

/**
 * Random inputs: many subaccounts (keys from a small set, so ledgers and duplicates meet them),
 * random settings (some not numbers), random ledgers with both clocks stepped either way.
 * Every invariant is restated here independently of the implementation.
 */
describe('decideTransfers: properties', () => {
  const KEYS = ['k0', 'k1', 'k2', 'k3', 'k4', 'k5'];
  const outcome = fc.constantFrom<AttemptOutcome>('success', 'failed', 'unknown', 'not_sent', 'pending');
  // EUR in cents, spread evenly, or any double (fast-check's bias then finds the edges).
  const money = (max: number, min = 0) =>
    fc.oneof({ weight: 3, arbitrary: fc.noBias(fc.integer({ min: min * 100, max: max * 100 })).map((c) => c / 100) }, { weight: 1, arbitrary: fc.double({ min, max, noNaN: true }) });
  const amountArb = fc.oneof({ weight: 15, arbitrary: money(120, 0.01) }, { weight: 1, arbitrary: fc.constantFrom(0, -1, Number.NaN, Number.POSITIVE_INFINITY) });
  const settingsArb = fc.record({
    threshold: fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 5, max: 60 }) }, { weight: 1, arbitrary: fc.constantFrom(0, -5, 0.01) }, { weight: 1, arbitrary: money(60) }),
    transferAmount: amountArb,
    cooldownMs: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 3 * HOUR })),
    maxPerDay: fc.integer({ min: 0, max: 5 }),
  });
  const entryArb = fc.record({
    apiKey: fc.constantFrom(...KEYS),
    balance: fc.oneof({ weight: 1, arbitrary: fc.constant(null) }, { weight: 4, arbitrary: fc.double({ min: -20, max: 20, noNaN: true }) }, { weight: 2, arbitrary: fc.double({ min: -20, max: 80, noNaN: true }) }),
    usePrimaryBalance: fc.oneof({ weight: 8, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
    suspended: fc.oneof({ weight: 9, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
  });
  const transferArb = fc.record({
    to: fc.constantFrom(...KEYS),
    ago: fc.oneof(fc.integer({ min: -2 * HOUR, max: 3 * HOUR }), fc.integer({ min: -DAY_MS, max: 2 * DAY_MS })),
    monoAgo: fc.option(fc.integer({ min: -HOUR, max: 2 * DAY_MS }), { nil: undefined }),
    amount: money(60),
    outcome,
  });
  const anyInputArb = fc.record({
    monoNow: fc.option(fc.constant(10 * DAY_MS), { nil: undefined }),
    primaryBalance: fc.oneof(money(800), fc.double({ min: -50, max: 800, noNaN: true })),
    primaryAgo: fc.oneof(fc.constant(0), fc.integer({ min: -10_000, max: 10_000 }), fc.integer({ min: -15_000, max: 15_000 })),
    primaryMonoAgo: fc.option(fc.oneof(fc.integer({ min: -10_000, max: 10_000 }), fc.integer({ min: -15_000, max: 15_000 })), { nil: undefined }),
    primaryThreshold: money(100),
    primaryToppingUp: fc.oneof({ weight: 9, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
    entries: fc.array(entryArb, { maxLength: 8 }),
    settings: fc.dictionary(fc.constantFrom(...KEYS), settingsArb),
    defaults: settingsArb,
    refill: fc.oneof({ weight: 9, arbitrary: fc.constant<'transfer' | 'none'>('transfer') }, { weight: 1, arbitrary: fc.constant<'transfer' | 'none'>('none') }),
    primaryReserve: money(300),
    maxTransferredPerDay: fc.oneof(money(300), fc.constant(0)),
    transfersEnabled: fc.oneof({ weight: 9, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
    dryRun: fc.oneof({ weight: 9, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
    writable: fc.oneof({ weight: 9, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
    transfers: fc.array(transferArb, { maxLength: 10 }),
  });
  type Raw = typeof anyInputArb extends fc.Arbitrary<infer R> ? R : never;
  /**
   * Half the inputs are "open": switches on, a fresh reading, a rich primary and a short ledger,
   * so that many transfers are decided and the shared budget is what stops them.
   */
  const inputArb: fc.Arbitrary<Raw> = fc.oneof(
    anyInputArb,
    fc
      .tuple(anyInputArb, money(1500, 100), fc.integer({ min: -10_000, max: 10_000 }), fc.array(transferArb, { maxLength: 4 }), money(600, 20))
      .map(([r, primaryBalance, primaryAgo, transfers, maxTransferredPerDay]) => ({
        ...r,
        primaryBalance,
        primaryAgo,
        primaryMonoAgo: r.primaryMonoAgo === undefined ? undefined : primaryAgo,
        primaryThreshold: Math.min(r.primaryThreshold, 50),
        primaryToppingUp: false,
        refill: 'transfer' as const,
        transfersEnabled: true,
        dryRun: false,
        writable: true,
        transfers,
        maxTransferredPerDay,
      })),
  );

  const build = (r: Raw): TransferPolicyInput => {
    const now = T0;
    const monoNow = r.monoNow;
    return {
      now,
      ...(monoNow === undefined ? {} : { monoNow }),
      primary: {
        balance: r.primaryBalance,
        at: now - r.primaryAgo,
        threshold: r.primaryThreshold,
        ...(r.primaryMonoAgo === undefined || monoNow === undefined ? {} : { mono: monoNow - r.primaryMonoAgo }),
      },
      primaryToppingUp: r.primaryToppingUp,
      maxReadingAgeMs: 10_000,
      subaccounts: r.entries.map((e) => sub(e.apiKey, e.balance, { usePrimaryBalance: e.balance === null || e.usePrimaryBalance, suspended: e.suspended })),
      settingsFor: (k) => r.settings[k] ?? r.defaults,
      group: { refill: r.refill, primaryReserve: r.primaryReserve, maxTransferredPerDay: r.maxTransferredPerDay, transfersEnabled: r.transfersEnabled, dryRun: r.dryRun },
      ledger: {
        writable: r.writable,
        transfers: r.transfers.map((t, i) => ({
          id: `t${i}`,
          at: now - t.ago,
          to: t.to,
          amount: t.amount,
          outcome: t.outcome,
          ...(t.monoAgo === undefined || monoNow === undefined ? {} : { mono: monoNow - t.monoAgo }),
        })),
      },
    };
  };

  /** Time since a transfer, restated: the lesser clock, when both are known. */
  const ago = (t: TransferAttempt, inp: TransferPolicyInput): number => {
    const wall = inp.now - t.at;
    return t.mono !== undefined && inp.monoNow !== undefined ? Math.min(wall, inp.monoNow - t.mono) : wall;
  };
  const EPS = 1e-9;

  it('a forecast (leadTime) only adds transfers, to subaccounts strictly above their threshold, after every reactive one; it never turns a decision into a skip (4,000 random inputs)', () => {
    let predicted = 0;
    fc.assert(
      fc.property(inputArb, fc.subarray(KEYS), (r, dueKeys) => {
        const inp = build(r);
        const due = new Set(dueKeys);
        const reactive = decideTransfers(inp);
        const out = decideTransfers({ ...inp, forecastDue: due });
        out.forEach((d, i) => {
          const e = inp.subaccounts[i]!;
          const s = inp.settingsFor(e.apiKey);
          const predictive = e.balance !== null && !e.usePrimaryBalance && e.balance > s.threshold && due.has(e.apiKey);
          if (!predictive) {
            expect(d).toEqual(reactive[i]);
            return;
          }
          // Reactively it was above the threshold; now a forecast transfer or a hold, never a skip.
          expect(reactive[i]).toEqual({ to: e.apiKey, action: 'none', why: 'above_threshold' });
          expect(d.action).not.toBe('skip');
          if (d.action === 'transfer') {
            predicted++;
            expect(d.trigger).toBe('forecast');
          } else expect(d).toMatchObject({ action: 'none', why: 'forecast_held' });
        });
        const total = out.reduce((sum, d) => sum + (d.action === 'transfer' ? d.amount : 0), 0);
        if (total > 0) expect(inp.primary.balance - total).toBeGreaterThanOrEqual(inp.group.primaryReserve - EPS);
      }),
      { numRuns: 4000, seed: 909 },
    );
    expect(predicted).toBeGreaterThan(10);
  });

  it('keeps every limit, whatever the input (3,000 random inputs)', () => {
    let withTransfers = 0;
    let multi = 0;
    let shared = 0;
    fc.assert(
      fc.property(inputArb, (r) => {
        const inp = build(r);
        const out = decideTransfers(inp);

        // One decision per subaccount, in order.
        expect(out).toHaveLength(inp.subaccounts.length);
        out.forEach((d, i) => expect(d.to).toBe(inp.subaccounts[i]!.apiKey));
        for (const d of out) if (d.action === 'skip') expect(TRANSFER_SKIP_REASONS).toContain(d.reason);

        const sent = out.flatMap((d, i) => (d.action === 'transfer' ? [{ d, e: inp.subaccounts[i]! }] : []));
        if (sent.length === 0) return;
        withTransfers++;
        if (sent.length > 1) multi++;
        if (out.some((d) => d.action === 'skip' && (d.reason === 'primary_reserve' || d.reason === 'transfer_cap'))) shared++;

        // Nothing in the way of any transfer at all.
        expect(inp.ledger.writable).toBe(true);
        expect(inp.group.dryRun).toBe(false);
        expect(inp.group.transfersEnabled).toBe(true);
        expect(inp.group.refill).toBe('transfer');
        expect(inp.primaryToppingUp).toBe(false);
        expect(inp.primary.balance).toBeGreaterThanOrEqual(inp.primary.threshold);
        const age = inp.primary.mono !== undefined && inp.monoNow !== undefined ? inp.monoNow - inp.primary.mono : inp.now - inp.primary.at;
        expect(Math.abs(age)).toBeLessThanOrEqual(inp.maxReadingAgeMs);

        // The reserve and the EUR cap, over everything decided in this call.
        const total = sent.reduce((s, x) => s + (x.d.action === 'transfer' ? x.d.amount : 0), 0);
        expect(inp.primary.balance - total).toBeGreaterThanOrEqual(inp.group.primaryReserve - EPS);
        const pastEur = inp.ledger.transfers
          .filter((t) => (t.outcome === 'success' || t.outcome === 'pending' || t.outcome === 'unknown') && ago(t, inp) < DAY_MS)
          .reduce((s, t) => s + t.amount, 0);
        expect(pastEur + total).toBeLessThanOrEqual(inp.group.maxTransferredPerDay + EPS);

        // One transfer per subaccount per call.
        expect(new Set(sent.map((x) => x.e.apiKey)).size).toBe(sent.length);

        for (const { d, e } of sent) {
          if (d.action !== 'transfer') continue;
          const s = inp.settingsFor(e.apiKey);
          expect(e.balance).not.toBeNull();
          expect(e.usePrimaryBalance).toBe(false);
          expect(e.suspended).toBe(false);
          expect(e.balance!).toBeLessThan(s.threshold);
          expect(d.amount).toBe(s.transferAmount);
          expect(Number.isFinite(d.amount) && d.amount > 0).toBe(true);
          const mine = inp.ledger.transfers.filter((t) => t.to === e.apiKey && t.outcome !== 'not_sent');
          for (const t of mine) {
            // Outside the cooldown on both clocks; never after a transfer stamped in the future.
            expect(ago(t, inp)).toBeGreaterThanOrEqual(s.cooldownMs);
            expect(t.at).toBeLessThan(inp.now);
            expect(t.at).toBeLessThan(inp.primary.at);
          }
          expect(mine.filter((t) => ago(t, inp) < DAY_MS).length).toBeLessThan(s.maxPerDay);
        }
      }),
      { numRuns: 3000, seed: 20261127 },
    );
    // The generator must exercise the interesting cases, not only the skips: inputs with
    // transfers, with several, and with some funded while the shared budget stopped others.
    expect(withTransfers).toBeGreaterThan(600);
    expect(multi).toBeGreaterThan(250);
    expect(shared).toBeGreaterThan(80);
  });

  it('the decisions do not depend on the order of the subaccounts (2,000 random inputs)', () => {
    fc.assert(
      fc.property(inputArb, fc.integer({ min: 0, max: 1_000_000 }), (r, seed) => {
        const inp = build(r);
        // Distinct api keys only: with duplicates, which copy is "the second" depends on the order.
        const seen = new Set<string>();
        const subs = inp.subaccounts.filter((e) => (seen.has(e.apiKey) ? false : (seen.add(e.apiKey), true)));
        const shuffled = [...subs];
        for (let i = shuffled.length - 1, x = seed; i > 0; i--, x = (x * 1103515245 + 12345) % 2 ** 31) {
          const j = x % (i + 1);
          [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
        }
        const byKey = (ds: TransferDecision[]) => Object.fromEntries(ds.map((d) => [d.to, d]));
        expect(byKey(decideTransfers({ ...inp, subaccounts: shuffled }))).toEqual(byKey(decideTransfers({ ...inp, subaccounts: subs })));
      }),
      { numRuns: 2000, seed: 7 },
    );
  });

  it('no transfer when the ledger is unwritable, the reading stale, in a dry run or disabled (2,000 random inputs)', () => {
    const spoil = fc.constantFrom('unwritable', 'stale', 'stale_mono', 'dry', 'off', 'none', 'topping_up');
    fc.assert(
      fc.property(inputArb, spoil, (r, how) => {
        const inp = build({ ...r, writable: true, dryRun: false, transfersEnabled: true, refill: 'transfer', primaryToppingUp: false });
        const spoilt: TransferPolicyInput =
          how === 'unwritable'
            ? { ...inp, ledger: { ...inp.ledger, writable: false } }
            : how === 'stale'
              ? { ...inp, monoNow: undefined, primary: { ...inp.primary, at: inp.now - 10_001 } }
              : how === 'stale_mono'
                ? { ...inp, monoNow: 1_000_000, primary: { ...inp.primary, at: inp.now, mono: 1_000_000 - 10_001 } }
                : how === 'dry'
                  ? { ...inp, group: { ...inp.group, dryRun: true } }
                  : how === 'off'
                    ? { ...inp, group: { ...inp.group, transfersEnabled: false } }
                    : how === 'none'
                      ? { ...inp, group: { ...inp.group, refill: 'none' } }
                      : { ...inp, primaryToppingUp: true };
        const out = decideTransfers(spoilt);
        expect(out.filter((d) => d.action === 'transfer')).toEqual([]);
        expect(out).toHaveLength(inp.subaccounts.length);
      }),
      { numRuns: 2000, seed: 11 },
    );
  });

  /**
   * The daemon's use over time: every cycle a fresh list answer, the clocks move (the wall
   * sometimes backwards, the monotonic clock never), every transfer decided is recorded with a
   * random outcome and, unless it failed or was not sent, takes the money from the primary.
   */
  it('over many cycles: the primary never goes below its reserve, no 24 h window exceeds the caps (300 runs)', () => {
    const step = fc.record({
      advanceMs: fc.oneof(fc.integer({ min: 0, max: 20 * MIN }), fc.integer({ min: 0, max: 6 * HOUR })),
      wallStepMs: fc.oneof({ weight: 6, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: -2 * HOUR, max: 2 * HOUR }) }),
      balances: fc.array(fc.integer({ min: -500, max: 3000 }).map((c) => c / 100), { minLength: 4, maxLength: 4 }),
      outcomes: fc.array(outcome, { minLength: 4, maxLength: 4 }),
      topup: fc.integer({ min: 0, max: 10 }).map((x) => (x === 0 ? 200 : 0)),
    });
    const cfg = fc.record({
      cooldownMs: fc.integer({ min: 0, max: 2 * HOUR }),
      maxPerDay: fc.integer({ min: 1, max: 6 }),
      amount: fc.integer({ min: 1, max: 60 }),
      reserve: fc.integer({ min: 0, max: 200 }),
      cap: fc.integer({ min: 0, max: 300 }),
    });
    fc.assert(
      fc.property(cfg, fc.array(step, { minLength: 1, maxLength: 80 }), (c, steps) => {
        const keys = ['s0', 's1', 's2', 's3'];
        const settings: SubaccountSettings = { threshold: 10, transferAmount: c.amount, cooldownMs: c.cooldownMs, maxPerDay: c.maxPerDay };
        const ledger: TransferAttempt[] = [];
        let primary = 400;
        let wall = T0;
        let mono = 0;
        for (const st of steps) {
          wall += st.advanceMs + st.wallStepMs;
          mono += st.advanceMs;
          primary += st.topup;
          const out = decideTransfers({
            now: wall,
            monoNow: mono,
            primary: { balance: primary, at: wall, mono, threshold: 0 },
            maxReadingAgeMs: 10_000,
            subaccounts: keys.map((k, i) => sub(k, st.balances[i]!)),
            settingsFor: () => settings,
            group: { refill: 'transfer', primaryReserve: c.reserve, maxTransferredPerDay: c.cap, transfersEnabled: true, dryRun: false },
            ledger: { writable: true, transfers: ledger },
          });
          out.forEach((d, i) => {
            if (d.action !== 'transfer') return;
            const o = st.outcomes[i]!;
            // The attempt is written a moment after the reading, as the daemon does.
            ledger.push({ id: String(ledger.length), at: wall + 1, mono: mono + 1, to: d.to, amount: d.amount, outcome: o });
            if (o !== 'failed' && o !== 'not_sent') primary -= d.amount;
          });
          expect(primary).toBeGreaterThanOrEqual(c.reserve - EPS);
          wall += 2;
          mono += 2;
        }
        // On the monotonic clock (the true order), every 24 h window keeps both caps.
        const moved = ledger.filter((t) => t.outcome !== 'failed' && t.outcome !== 'not_sent');
        for (const start of ledger.map((t) => t.mono!)) {
          const win = (t: TransferAttempt) => t.mono! >= start && t.mono! < start + DAY_MS;
          expect(moved.filter(win).reduce((s, t) => s + t.amount, 0)).toBeLessThanOrEqual(c.cap);
          for (const k of keys) expect(ledger.filter((t) => t.to === k && t.outcome !== 'not_sent' && win(t)).length).toBeLessThanOrEqual(c.maxPerDay);
        }
        for (const k of keys) {
          const times = ledger.filter((t) => t.to === k && t.outcome !== 'not_sent').map((t) => t.mono!);
          for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!).toBeGreaterThanOrEqual(c.cooldownMs);
        }
      }),
      { numRuns: 300, seed: 42 },
    );
  });
});
