/**
 * Every configured account, each cycle. An account is one unit: its own balance and card top-up
 * (Watchdog) and, for a primary, its subaccounts (SubaccountGroup) right after, so the primary's
 * top-up goes before any transfer. Units run concurrently under a bound (POLL_CONCURRENCY) and
 * each starts after a small random delay, so 200 accounts never send 200 requests in one instant;
 * a unit that hangs holds one slot for no longer than its own timeouts, and the others go on.
 */
import type { AccountConfig } from '../config/config.js';
import type { Ledger } from '../ledger/ledger.js';
import type { GroupObserver } from '../observe/subaccount-events.js';
import type { GroupResult, SubaccountGroup } from './subaccount-group.js';
import type { CycleResult, Watchdog } from './watchdog.js';

export interface Unit {
  account: AccountConfig;
  watchdog: Watchdog;
  ledger: Ledger;
  group?: { group: SubaccountGroup; ledger: Ledger; observer: GroupObserver };
}

export interface UnitResult {
  account: string;
  primary: CycleResult;
  group?: GroupResult;
}

export interface FleetOptions {
  concurrency: number;
  /** Each unit waits a random 0..jitterMs before its first request (only when there are several). */
  jitterMs: number;
  random?: () => number;
  sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
}

/** Runs `work` over `items`, at most `limit` at a time, results in input order. */
export async function runBounded<T, R>(items: readonly T[], limit: number, work: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await work(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return results;
}

export class Fleet {
  private current: readonly Unit[];
  private running: Promise<unknown> | undefined;

  constructor(units: readonly Unit[], private readonly options: FleetOptions) {
    this.current = units;
  }

  get units(): readonly Unit[] {
    return this.current;
  }

  async runCycle(signal?: AbortSignal): Promise<UnitResult[]> {
    const units = this.current;
    const random = this.options.random ?? Math.random;
    const run = runBounded(units, this.options.concurrency, async (unit) => {
      if (units.length > 1 && this.options.jitterMs > 0) {
        try {
          await this.options.sleep(random() * this.options.jitterMs, signal);
        } catch {
          // Aborted: the cycle below sees the signal and reads nothing.
        }
      }
      const primary = await unit.watchdog.runCycle(signal);
      const result: UnitResult = { account: unit.account.name, primary };
      if (unit.group && !signal?.aborted) result.group = await unit.group.group.runCycle({ belowThreshold: primary.belowThreshold === true }, signal);
      return result;
    });
    this.running = run;
    try {
      return await run;
    } finally {
      if (this.running === run) this.running = undefined;
    }
  }

  /**
   * Swaps the units (a reload) between cycles, never during one: a cycle in flight keeps the
   * ledgers it decided on until its last outcome is written. Resolves once swapped.
   */
  async replace(units: readonly Unit[]): Promise<void> {
    while (this.running) await this.running.catch(() => undefined);
    this.current = units;
  }

  /** Resolves when no cycle is running (for shutdown). */
  async idle(): Promise<void> {
    while (this.running) await this.running.catch(() => undefined);
  }
}
