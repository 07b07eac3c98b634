import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DAY_MS, attemptsInLastDay, attributeRise, decide, type Attempt, type AttemptOutcome, type LedgerView, type PolicySettings, type Reading } from '../src/refill/topup-policy.js';

const MIN = 60_000;
const T0 = Date.UTC(2026, 10, 27, 12, 0, 0);
const settings: PolicySettings = { threshold: 10, cooldownMs: 15 * MIN, maxPerDay: 3, topupEnabled: true, dryRun: false, maxReadingAgeMs: 10_000 };
const ledger = (attempts: Attempt[] = [], writable = true): LedgerView => ({ writable, attempts, ...(writable ? {} : { problem: 'read-only' }) });
const attempt = (at: number, outcome: AttemptOutcome = 'success'): Attempt => ({ id: `a${at}`, at, outcome, balanceBefore: 5 });
const reading = (value: number, at = T0, autoReload = true): Reading => ({ value, autoReload, at });

describe('decide: table', () => {
  const cases: { name: string; reading?: Reading; settings?: Partial<PolicySettings>; ledger?: LedgerView; now?: number; monoNow?: number; want: string }[] = [
    { name: 'failed poll', reading: undefined, want: 'none:no_reading' },
    { name: 'above threshold', reading: reading(10.01), want: 'none:above_threshold' },
    { name: 'exactly at threshold is not below', reading: reading(10), want: 'none:above_threshold' },
    { name: 'below threshold, nothing in the way', reading: reading(9.99), want: 'topup' },
    { name: 'zero balance', reading: reading(0), want: 'topup' },
    { name: 'negative balance', reading: reading(-3), want: 'topup' },
    { name: 'kill switch', reading: reading(1), settings: { topupEnabled: false }, want: 'skip:disabled' },
    { name: 'auto-reload off', reading: reading(1, T0, false), want: 'skip:auto_reload_disabled' },
    { name: 'dry run', reading: reading(1), settings: { dryRun: true }, want: 'skip:dry_run' },
    { name: 'ledger unwritable', reading: reading(1), ledger: ledger([], false), want: 'skip:ledger_unavailable' },
    { name: 'stale reading', reading: reading(1, T0 - 11_000), want: 'skip:stale_reading' },
    { name: 'reading from the future', reading: reading(1, T0 + 1), want: 'skip:stale_reading' },
    { name: 'reading older than the last attempt', reading: reading(1, T0 - 1000), ledger: ledger([attempt(T0 - 500)]), settings: { cooldownMs: 1 }, want: 'skip:stale_reading' },
    { name: 'within cooldown after success', reading: reading(1), ledger: ledger([attempt(T0 - 14 * MIN)]), want: 'skip:cooldown' },
    { name: 'within cooldown after failure', reading: reading(1), ledger: ledger([attempt(T0 - 14 * MIN, 'failed')]), want: 'skip:cooldown' },
    { name: 'within cooldown after unknown', reading: reading(1), ledger: ledger([attempt(T0 - 14 * MIN, 'unknown')]), want: 'skip:cooldown' },
    { name: 'within cooldown after interrupted', reading: reading(1), ledger: ledger([attempt(T0 - 1 * MIN, 'pending')]), want: 'skip:cooldown' },
    { name: 'not_sent does not count', reading: reading(1), ledger: ledger([attempt(T0 - 1 * MIN, 'not_sent')]), want: 'topup' },
    { name: 'cooldown over', reading: reading(1), ledger: ledger([attempt(T0 - 15 * MIN)]), want: 'topup' },
    // The README promises the cooldown holds when the clock goes back; the label says so (issue 7, 12).
    { name: 'clock went backwards past the last attempt', reading: reading(1), ledger: ledger([attempt(T0 + 60 * MIN)]), want: 'skip:cooldown' },
    { name: 'monotonic age: a fresh reading stays fresh across a wall-clock step', reading: { ...reading(1, T0 + 10 * MIN), mono: 5_000 }, monoNow: 5_200, want: 'topup' },
    { name: 'monotonic age: an old reading is stale even if the wall clock says otherwise', reading: { ...reading(1), mono: 5_000 }, monoNow: 16_000, want: 'skip:stale_reading' },
    { name: 'daily cap reached', reading: reading(1), ledger: ledger([attempt(T0 - 3 * 60 * MIN), attempt(T0 - 2 * 60 * MIN), attempt(T0 - 60 * MIN)]), want: 'skip:daily_cap' },
    { name: 'cap counts failures', reading: reading(1), ledger: ledger([attempt(T0 - 3 * 60 * MIN, 'failed'), attempt(T0 - 2 * 60 * MIN, 'unknown'), attempt(T0 - 60 * MIN, 'failed')]), want: 'skip:daily_cap' },
    { name: 'cap is rolling: oldest left the window', reading: reading(1), ledger: ledger([attempt(T0 - DAY_MS), attempt(T0 - 2 * 60 * MIN), attempt(T0 - 60 * MIN)]), want: 'topup' },
    { name: 'disabled wins over everything', reading: reading(1, T0, false), settings: { topupEnabled: false, dryRun: true }, ledger: ledger([], false), want: 'skip:disabled' },
    { name: 'dry run still reports the cooldown', reading: reading(1), settings: { dryRun: true }, ledger: ledger([attempt(T0 - MIN)]), want: 'skip:cooldown' },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const d = decide(c.reading, { ...settings, ...c.settings }, c.ledger ?? ledger(), c.now ?? T0, c.monoNow);
      const got = d.action === 'none' ? `none:${d.why}` : d.action === 'skip' ? `skip:${d.reason}` : 'topup';
      expect(got).toBe(c.want);
    });
  }

  it('tells when the cooldown ends', () => {
    const d = decide(reading(1), settings, ledger([attempt(T0 - 5 * MIN)]), T0);
    expect(d).toMatchObject({ action: 'skip', reason: 'cooldown', retryAt: T0 + 10 * MIN });
  });
});

/**
 * Simulates the daemon's use of the policy: at each step a reading arrives (or the poll fails),
 * the clock moves (sometimes backwards), and every `topup` decision appends an attempt with a
 * random outcome. The invariants are checked over the attempts the policy let through.
 */
describe('decide: properties', () => {
  const step = fc.record({
    advanceMs: fc.oneof(fc.integer({ min: 0, max: 20 * MIN }), fc.integer({ min: -30 * MIN, max: 0 }), fc.integer({ min: 0, max: DAY_MS })),
    value: fc.option(fc.double({ min: -5, max: 30, noNaN: true }), { nil: undefined }),
    autoReload: fc.boolean(),
    readingAgeMs: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 60_000 })),
    outcome: fc.constantFrom<AttemptOutcome>('success', 'failed', 'unknown', 'not_sent', 'pending'),
  });
  const config = fc.record({
    cooldownMs: fc.integer({ min: 1000, max: 2 * 60 * MIN }),
    maxPerDay: fc.integer({ min: 1, max: 10 }),
  });

  it('never two counted attempts within the cooldown, never more than the cap in 24 h, never on a failed or stale reading', () => {
    fc.assert(
      fc.property(config, fc.array(step, { minLength: 1, maxLength: 200 }), (cfg, steps) => {
        const s = { ...settings, ...cfg };
        const attempts: Attempt[] = [];
        let now = T0;
        for (const st of steps) {
          now += st.advanceMs;
          const r = st.value === undefined ? undefined : reading(st.value, now - st.readingAgeMs, st.autoReload);
          const d = decide(r, s, ledger(attempts), now);
          if (d.action !== 'topup') continue;
          // The preconditions of a top-up, restated independently.
          expect(r).toBeDefined();
          expect(r!.value).toBeLessThan(s.threshold);
          expect(r!.autoReload).toBe(true);
          expect(now - r!.at).toBeLessThanOrEqual(s.maxReadingAgeMs);
          expect(now - r!.at).toBeGreaterThanOrEqual(0);
          for (const a of attempts) {
            if (a.outcome === 'not_sent') continue;
            expect(Math.abs(now - a.at)).toBeGreaterThanOrEqual(s.cooldownMs);
            expect(a.at).toBeLessThan(now);
          }
          expect(attemptsInLastDay(attempts, now).length).toBeLessThan(s.maxPerDay);
          attempts.push({ id: String(attempts.length), at: now, outcome: st.outcome, balanceBefore: r!.value });
        }
        // Over wall-clock order too: any 24 h window holds at most the cap of counted attempts.
        const counted = attempts.filter((a) => a.outcome !== 'not_sent').map((a) => a.at).sort((x, y) => x - y);
        for (let i = 0; i < counted.length; i++) {
          const inWindow = counted.filter((t) => t >= counted[i]! && t < counted[i]! + DAY_MS).length;
          expect(inWindow).toBeLessThanOrEqual(s.maxPerDay);
        }
      }),
      { numRuns: 500, seed: 20261127 },
    );
  });

  it('dry run, kill switch and auto-reload off never top up', () => {
    fc.assert(
      fc.property(fc.double({ min: -100, max: 100, noNaN: true }), fc.constantFrom('dry', 'off', 'noreload'), (value, mode) => {
        const s = { ...settings, dryRun: mode === 'dry', topupEnabled: mode !== 'off' };
        expect(decide(reading(value, T0, mode !== 'noreload'), s, ledger(), T0).action).not.toBe('topup');
      }),
      { numRuns: 300, seed: 7 },
    );
  });
});

describe('attributeRise: the amount a refill added, learnt from the balance', () => {
  const at = T0;
  const a = (id: string, outcome: AttemptOutcome, balanceBefore = 5, when = at): Attempt => ({ id, at: when, outcome, balanceBefore });
  const floors = (m: Record<string, number>) => (x: Attempt) => m[x.id] ?? x.balanceBefore;

  it('measures the rise from the lowest balance seen since the attempt, not from the balance before it', () => {
    // 5 before the attempt, drained to 3 while the top-up was on its way, then 23: it added 20.
    expect(attributeRise([a('s', 'success')], reading(23, at + 1000), floors({ s: 3 }))).toEqual([{ attempt: a('s', 'success'), amount: 20 }]);
  });
  it('says nothing while the balance has not risen', () => {
    expect(attributeRise([a('s', 'success')], reading(4, at + 1000), floors({ s: 4 }))).toEqual([]);
    expect(attributeRise([a('s', 'success')], reading(5.004, at + 1000), floors({}))).toEqual([]);
  });
  it('gives one rise to one attempt, the oldest waiting, so nothing is counted twice', () => {
    const out = attributeRise([a('new', 'success', 5, at + 10), a('old', 'success', 5, at)], reading(25, at + 1000), floors({}));
    expect(out).toEqual([{ attempt: a('old', 'success'), amount: 20 }]);
  });
  it('gives a rise to a success before an older attempt of unknown outcome, which stays unresolved', () => {
    // A lost answer (nothing applied) then a success: the one rise is the success's, and the
    // unknown one must not be "confirmed" by it (that would silence its alert).
    const out = attributeRise([a('u', 'unknown', 5, at), a('s', 'success', 5, at + 10)], reading(25, at + 1000), floors({}));
    expect(out).toEqual([{ attempt: a('s', 'success', 5, at + 10), amount: 20 }]);
  });
  it('gives a rise to the oldest unknown outcome when no success waits', () => {
    const out = attributeRise([a('u2', 'unknown', 5, at + 10), a('u1', 'unknown', 5, at)], reading(25, at + 1000), floors({}));
    expect(out).toEqual([{ attempt: a('u1', 'unknown'), amount: 20 }]);
  });
  it('ignores failed and not-sent attempts, readings older than the attempt, confirmed ones, and day-old ones', () => {
    expect(attributeRise([a('f', 'failed'), a('n', 'not_sent')], reading(25, at + 1000), floors({}))).toEqual([]);
    expect(attributeRise([a('s', 'success')], reading(25, at - 1), floors({}))).toEqual([]);
    expect(attributeRise([{ ...a('s', 'success'), confirmedAt: at + 1 }], reading(25, at + 1000), floors({}))).toEqual([]);
    expect(attributeRise([a('s', 'success')], reading(25, at + DAY_MS + 1), floors({}))).toEqual([]);
  });
  it('never attributes a rise to a torn attempt that does not know its balance', () => {
    expect(attributeRise([a('t', 'unknown', Number.NaN)], reading(25, at + 1000), floors({}))).toEqual([]);
  });
});
