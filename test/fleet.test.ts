/**
 * The fleet's scheduling on its own: the concurrency bound, a hanging account that delays no
 * other, jitter outside the slots, and reloads that swap units only between cycles. The units
 * are stand-ins with the Watchdog's runCycle shape; the money path is tested with the real ones
 * (subaccount-group.test.ts).
 */
import { describe, expect, it } from 'vitest';
import type { AccountConfig } from '../src/config/config.js';
import { Fleet, semaphore, type Unit } from '../src/cycle/fleet.js';
import type { CycleResult, Watchdog } from '../src/cycle/watchdog.js';

function unit(name: string, run: () => Promise<void>): Unit {
  const watchdog = { runCycle: async (): Promise<CycleResult> => (await run(), { ok: true, decision: { action: 'none', why: 'above_threshold' } }) } as unknown as Watchdog;
  return { account: { name } as AccountConfig, watchdog, ledger: {} as Unit['ledger'] };
}

const tick = () => new Promise<void>((r) => setImmediate(r));

describe('Fleet', () => {
  it('runs at most POLL_CONCURRENCY accounts at once, and every one of them', async () => {
    let running = 0;
    let peak = 0;
    const done: string[] = [];
    const units = Array.from({ length: 40 }, (_, i) =>
      unit(`a${i}`, async () => {
        running += 1;
        peak = Math.max(peak, running);
        await tick();
        running -= 1;
        done.push(`a${i}`);
      }),
    );
    const results = await new Fleet(units, { concurrency: 8, jitterMs: 0, sleep: async () => {} }).runCycle();
    expect(peak).toBe(8);
    expect(results.map((r) => r.account)).toEqual(units.map((u) => u.account.name));
    expect(done).toHaveLength(40);
  });

  it('an account that hangs holds one slot; the others all finish meanwhile', async () => {
    let release!: () => void;
    const hung = new Promise<void>((r) => (release = r));
    const done: string[] = [];
    const units = [unit('hung', () => hung), ...Array.from({ length: 20 }, (_, i) => unit(`a${i}`, async () => void done.push(`a${i}`)))];
    const cycle = new Fleet(units, { concurrency: 2, jitterMs: 0, sleep: async () => {} }).runCycle();
    for (let i = 0; i < 50 && done.length < 20; i++) await tick();
    expect(done).toHaveLength(20);
    release();
    expect(await cycle).toHaveLength(21);
  });

  it('jitter is waited out before a slot is taken, so it does not stretch the cycle', async () => {
    const order: string[] = [];
    const sleeps: number[] = [];
    const units = ['a', 'b', 'c'].map((n) => unit(n, async () => void order.push(n)));
    let r = 0;
    const randoms = [0.9, 0.1, 0.5];
    await new Fleet(units, {
      concurrency: 1,
      jitterMs: 100,
      random: () => randoms[r++]!,
      sleep: async (ms) => {
        sleeps.push(ms);
        await new Promise((res) => setTimeout(res, ms));
      },
    }).runCycle();
    expect(sleeps).toEqual([90, 10, 50]);
    // The shortest delay goes first, though the slot is one: delays ran side by side.
    expect(order).toEqual(['b', 'c', 'a']);
  });

  it('one account alone is not delayed by jitter', async () => {
    const sleeps: number[] = [];
    await new Fleet([unit('a', async () => {})], { concurrency: 8, jitterMs: 250, sleep: async (ms) => void sleeps.push(ms) }).runCycle();
    expect(sleeps).toEqual([]);
  });

  it('a reload swaps the units only once the cycle in flight has finished', async () => {
    let release!: () => void;
    const slow = new Promise<void>((r) => (release = r));
    const fleet = new Fleet([unit('old', () => slow)], { concurrency: 8, jitterMs: 0, sleep: async () => {} });
    const cycle = fleet.runCycle();
    let swapped = false;
    const replaced = fleet.replace([unit('new', async () => {})]).then(() => (swapped = true));
    await tick();
    expect(swapped).toBe(false);
    expect(fleet.units.map((u) => u.account.name)).toEqual(['old']);
    release();
    await cycle;
    await replaced;
    expect(fleet.units.map((u) => u.account.name)).toEqual(['new']);
  });

  it('semaphore: holders never exceed the limit, and a double release frees one slot only', async () => {
    const take = semaphore(2);
    const a = await take();
    const b = await take();
    let third = false;
    const c = take().then((r) => ((third = true), r));
    await tick();
    expect(third).toBe(false);
    a();
    a();
    const rc = await c;
    let fourth = false;
    void take().then(() => (fourth = true));
    await tick();
    expect(fourth).toBe(false);
    b();
    await tick();
    expect(fourth).toBe(true);
    rc();
  });
});
