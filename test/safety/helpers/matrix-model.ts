/**
 * The reference model for test/safety/model.test.ts: the test's own, independent statement of
 * which top-up attempts are allowed, and the invariants every run must keep. It imports nothing
 * from src/refill/topup-policy.ts on purpose: it is written from the rules (README / ARCHITECTURE / research
 * S1–S4, S6, S7), not from the code under test.
 */
import type { FailureReason } from '../../../src/vonage/errors.js';

export const DAY = 24 * 60 * 60 * 1000;
export const THRESHOLD = 10;

export type BalanceResult =
  | { kind: 'ok'; value: number; autoReload: boolean; ageMs: number }
  | { kind: 'fail'; reason: FailureReason; retryAfter: number | null };
/** How a top-up request ends. `refused`: the connection was refused, provably never sent. */
export type TopUpKind = 'success' | 'failed' | 'unknown' | 'refused' | 'throws';

export interface Settings {
  cooldownMs: number;
  maxPerDay: number;
  topupEnabled: boolean;
  dryRun: boolean;
}

/** One top-up request that left the daemon (as seen by the client it was sent through). */
export interface Call {
  wallAt: number;
  trueAt: number;
  kind: TopUpKind | 'hang';
}

const TRANSIENT = new Set<FailureReason>(['timeout', 'connection_refused', 'network', 'server_error', 'rate_limited']);
const BALANCE_TRIES = 3;
const MAX_RETRY_DELAY_MS = 10_000;

/** The reading a cycle ends up with from a scripted sequence of answers (call i gets script[min(i, n-1)]). */
export function readingOf(script: readonly BalanceResult[], wallNow: number): { value: number; autoReload: boolean; at: number } | undefined {
  for (let i = 0; i < BALANCE_TRIES; i++) {
    const r = script[Math.min(i, script.length - 1)]!;
    if (r.kind === 'ok') return { value: r.value, autoReload: r.autoReload, at: wallNow - r.ageMs };
    // Reads are retried only on transient failures, within the tries, and only if Retry-After fits the cycle.
    if (!TRANSIENT.has(r.reason)) return undefined;
    if (r.retryAfter !== null && r.retryAfter * 1000 > MAX_RETRY_DELAY_MS) return undefined;
  }
  return undefined;
}

export const counts = (c: Call) => c.kind !== 'refused';

export class Model {
  /** Every attempt that counts (all but provably-not-sent), in the order they were made. */
  readonly counted: Call[] = [];
  /**
   * Which process incarnation made each counted attempt. An attempt made since the last
   * (re)start is judged on true elapsed time too (the daemon knows its monotonic time), so a
   * forward wall-clock jump cannot end its cooldown or empty the cap; older ones on the wall clock.
   */
  private readonly epochOf = new Map<Call, number>();
  private epoch = 0;
  /** The ledger could not be read at the last (re)open. */
  broken = false;
  /** A corrupt record is in the file (read before the next decision, and at every open). */
  corruptOnDisk = false;

  constructor(
    readonly s: Settings,
    readonly maxReadingAgeMs: number,
  ) {}

  /** Each cycle first re-opens an unwritable ledger. */
  startCycle(): void {
    if (this.broken && !this.corruptOnDisk) this.broken = false;
  }

  reopened(): void {
    this.broken = this.corruptOnDisk;
    this.epoch += 1;
  }

  private since(c: Call, wallNow: number, trueNow: number | undefined): number {
    const wall = wallNow - c.wallAt;
    return trueNow !== undefined && this.epochOf.get(c) === this.epoch ? Math.min(wall, trueNow - c.trueAt) : wall;
  }

  /** Whether one sequential cycle must send a top-up. */
  mustTopUp(script: readonly BalanceResult[], wallNow: number, trueNow?: number): boolean {
    const r = readingOf(script, wallNow);
    if (!r) return false; // never on a failed reading
    if (!(r.value < THRESHOLD)) return false;
    if (!this.s.topupEnabled || this.s.dryRun || !r.autoReload) return false;
    const age = wallNow - r.at;
    if (age < 0 || age > this.maxReadingAgeMs) return false; // never on a stale reading
    if (this.broken) return false; // never without a durable record first
    const last = this.counted.reduce<number | undefined>((m, c) => (m === undefined || c.wallAt > m ? c.wallAt : m), undefined);
    if (last !== undefined && r.at <= last) return false; // the reading must postdate the last attempt
    // Cooldown and rolling 24 h: on the wall clock, and on true time for this incarnation's attempts;
    // attempts stamped in the future count too.
    if (this.counted.some((c) => this.since(c, wallNow, trueNow) < this.s.cooldownMs)) return false;
    if (this.counted.filter((c) => this.since(c, wallNow, trueNow) < DAY).length >= this.s.maxPerDay) return false;
    return true;
  }

  /** Whether any reading in the script could justify a top-up at all (for concurrent cycles). */
  mayTopUp(script: readonly BalanceResult[]): boolean {
    if (!this.s.topupEnabled || this.s.dryRun || this.broken) return false;
    return script.some((r) => r.kind === 'ok' && r.value < THRESHOLD && r.autoReload && r.ageMs >= 0 && r.ageMs <= this.maxReadingAgeMs);
  }

  record(call: Call): void {
    if (!counts(call)) return;
    this.counted.push(call);
    this.epochOf.set(call, this.epoch);
  }

  /**
   * The invariant the monotonic clock adds: attempts of one incarnation are a cooldown apart in
   * true time, and never more than the cap in 24 h of true time, whatever the wall clock did.
   */
  sameIncarnationViolation(): string | undefined {
    const byEpoch = new Map<number, Call[]>();
    for (const c of this.counted) {
      const e = this.epochOf.get(c)!;
      byEpoch.set(e, [...(byEpoch.get(e) ?? []), c]);
    }
    for (const calls of byEpoch.values()) {
      const sorted = [...calls].sort((a, b) => a.trueAt - b.trueAt);
      for (let i = 1; i < sorted.length; i++) {
        const gap = sorted[i]!.trueAt - sorted[i - 1]!.trueAt;
        if (gap < this.s.cooldownMs) return `one incarnation sent two attempts ${gap} ms apart in true time (cooldown ${this.s.cooldownMs} ms)`;
      }
      for (const c of sorted) {
        const n = sorted.filter((x) => x.trueAt > c.trueAt - DAY && x.trueAt <= c.trueAt).length;
        if (n > this.s.maxPerDay) return `one incarnation sent ${n} attempts in 24 h of true time (cap ${this.s.maxPerDay})`;
      }
    }
    return undefined;
  }

  countInLastDay(wallNow: number, trueNow?: number): number {
    return this.counted.filter((c) => this.since(c, wallNow, trueNow) < DAY).length;
  }
}

/**
 * The safety invariants over every request that left, in the order they left:
 *  - two counted attempts are never closer than the cooldown,
 *  - never more than the cap in any rolling 24 h,
 * on the timestamps the daemon stamped (wall clock), and on the true simulated time when the wall
 * clock never jumped forward (a forward jump is indistinguishable from time passing).
 */
export function violation(calls: readonly Call[], s: Settings, trueTimeComparable: boolean): string | undefined {
  const counted = calls.filter(counts);
  const clocks: ['wallAt' | 'trueAt', string][] = trueTimeComparable ? [['wallAt', 'timestamps'], ['trueAt', 'true time']] : [['wallAt', 'timestamps']];
  for (const [key, label] of clocks) {
    for (let i = 1; i < counted.length; i++) {
      const gap = counted[i]![key] - counted[i - 1]![key];
      if (gap < s.cooldownMs) return `${label}: attempts ${i - 1} and ${i} are ${gap} ms apart (cooldown ${s.cooldownMs} ms)`;
    }
    for (const c of counted) {
      const n = counted.filter((x) => x[key] > c[key] - DAY && x[key] <= c[key]).length;
      if (n > s.maxPerDay) return `${label}: ${n} attempts in the 24 h ending ${c[key]} (cap ${s.maxPerDay})`;
    }
  }
  if (calls.length > 0 && (!s.topupEnabled || s.dryRun)) return `a top-up was sent with TOPUP_ENABLED=${s.topupEnabled} DRY_RUN=${s.dryRun}`;
  return undefined;
}
