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
import { isDue } from '../forecast/due-time.js';

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
  /** POLL_SCHEDULE's tick and the monotonic clock: an adaptive unit runs only at a tick it is due at. */
  tickMs?: number;
  monoNow?: () => number;
  /** The wall clock: a plan is due by either clock (the monotonic one stops while the host sleeps). */
  now?: () => number;
  /** Whether this replica runs the unit at all (LEDGER=postgres: it leads it, or the ledger is down). */
  runs?: (unit: Unit) => boolean;
}

/** At most `limit` holders at once; waiters are served in arrival order. */
export function semaphore(limit: number): () => Promise<() => void> {
  let free = Math.max(1, limit);
  const waiting: (() => void)[] = [];
  const release = () => {
    const next = waiting.shift();
    if (next) next();
    else free += 1;
  };
  return () =>
    new Promise((resolve) => {
      const grant = () => resolve(once(release));
      if (free > 0) {
        free -= 1;
        grant();
      } else waiting.push(grant);
    });
}

function once(f: () => void): () => void {
  let done = false;
  return () => {
    if (!done) {
      done = true;
      f();
    }
  };
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

  /**
   * One tick: every unit that is due (all of them unless POLL_ADAPTIVE spaces some out). A
   * primary with subaccounts runs whole when either its own balance or its list is due: its
   * card top-up must be decided on a fresh reading before any transfer.
   */
  async runCycle(signal?: AbortSignal): Promise<UnitResult[]> {
    const tick = (this.options.monoNow ?? (() => performance.now()))();
    const tickMs = this.options.tickMs ?? 0;
    const wall = (this.options.now ?? Date.now)();
    const runs = this.options.runs ?? (() => true);
    const units = this.current.filter((u) => runs(u)).filter((u) => !u.watchdog.adaptive || isDue(u.watchdog.nextPoll, tick, tickMs, wall) || (u.group !== undefined && isDue(u.group.group.nextPoll, tick, tickMs, wall)));
    const random = this.options.random ?? Math.random;
    // Jitter first, then a slot: a unit waiting out its random delay holds no slot, so the delay
    // spreads the requests without stretching the cycle (200 accounts: 0.3 s, not 3.4 s).
    const slots = semaphore(this.options.concurrency);
    const run = Promise.all(
      units.map(async (unit): Promise<UnitResult> => {
        if (units.length > 1 && this.options.jitterMs > 0) {
          try {
            await this.options.sleep(random() * this.options.jitterMs, signal);
          } catch {
            // Aborted: the cycle below sees the signal and reads nothing.
          }
        }
        const release = await slots();
        try {
          const primary = await unit.watchdog.runCycle(signal, tick);
          const result: UnitResult = { account: unit.account.name, primary };
          if (unit.group && !signal?.aborted) {
            result.group = await unit.group.group.runCycle({ belowThreshold: primary.belowThreshold === true }, signal, tick);
            // The unit runs whole when either half is due: each half's next read is the earlier plan.
            const own = unit.watchdog.nextPoll;
            unit.watchdog.adoptEarlier(unit.group.group.nextPoll);
            unit.group.group.adoptEarlier(own);
          }
          return result;
        } finally {
          release();
        }
      }),
    );
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
