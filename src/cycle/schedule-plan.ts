/**
 * When the next poll is due and whether the wall clock stepped: pure functions of the times they
 * are handed. node-cron still says which seconds an expression matches (its parser and matcher are
 * public API); when to wake is decided here. node-cron's own runner arms its timer for a wall-clock
 * instant and walks every missed slot one by one, so a clock stepped back stopped all polling and a
 * clock stepped forward two days blocked the process for 32 s writing one warning per slot (issue 7).
 */

/** The expression as this module needs it; built by the scheduler from node-cron's parse and match. */
export interface Slots {
  /** Allowed values of the time-of-day fields, ascending. */
  readonly seconds: readonly number[];
  readonly minutes: readonly number[];
  readonly hours: readonly number[];
  /** Whether the expression matches this instant (to the second), in the process's time zone. */
  matches(date: Date): boolean;
}

export function slotsOf(fields: { second: readonly number[]; minute: readonly number[]; hour: readonly number[] }, matches: (date: Date) => boolean): Slots {
  const asc = (v: readonly number[]) => [...new Set(v)].sort((a, b) => a - b);
  return { seconds: asc(fields.second), minutes: asc(fields.minute), hours: asc(fields.hour), matches };
}

// node-cron gives up after the same horizon; an expression that matches nothing within a century
// is treated as matching nothing at all.
const MAX_DAYS = 366 * 100;

const readsBack = (t: Date, y: number, mo: number, d: number, h: number, mi: number, s: number) =>
  t.getFullYear() === y && t.getMonth() === mo && t.getDate() === d && t.getHours() === h && t.getMinutes() === mi && t.getSeconds() === s;

/**
 * The first instant after the second that holds `afterWallMs` at which the expression matches
 * (the same answer as node-cron's own next-run computation), or null if there is none.
 *
 * Day by day, only the candidate times of day are tried. A candidate whose local time reads back
 * exactly has hour, minute and second in their sets, so if it does not match, the day itself
 * (month, day of month, weekday) is excluded and the rest of the day is skipped: one match call per
 * excluded day, so a yearly expression costs a few hundred calls, not 31 million.
 */
export function nextDue(afterWallMs: number, slots: Slots): number | null {
  const base = Math.floor(afterWallMs / 1000) * 1000;
  const b = new Date(base);
  const [by, bmo, bd, bh, bmi, bs] = [b.getFullYear(), b.getMonth(), b.getDate(), b.getHours(), b.getMinutes(), b.getSeconds()];
  for (let i = 0; i < MAX_DAYS; i++) {
    // Noon, not midnight: in a zone whose DST change happens at midnight, midnight may not exist.
    const day = new Date(by, bmo, bd + i, 12);
    const [y, mo, d] = [day.getFullYear(), day.getMonth(), day.getDate()];
    const first = i === 0;
    day: for (const h of slots.hours) {
      if (first && h < bh) continue;
      for (const mi of slots.minutes) {
        if (first && h === bh && mi < bmi) continue;
        for (const s of slots.seconds) {
          if (first && h === bh && mi === bmi && s <= bs) continue;
          const t = new Date(y, mo, d, h, mi, s);
          const ok = slots.matches(t);
          if (ok && t.getTime() > base) return t.getTime();
          if (!ok && readsBack(t, y, mo, d, h, mi, s)) break day;
        }
      }
    }
  }
  return null;
}

/** Longest gap between consecutive slots among the next `count` after `fromWallMs` (60 s if unknown). */
export function longestGapMs(fromWallMs: number, slots: Slots, count = 6): number {
  const runs: number[] = [];
  let t: number | null = fromWallMs;
  while (runs.length < count && (t = nextDue(t, slots)) !== null) runs.push(t);
  if (runs.length < 2) return 60_000;
  return Math.max(...runs.slice(1).map((r, i) => r - runs[i]!));
}

export type StepDirection = 'forward' | 'backward';

/** Both clocks read at one instant: the wall clock (Date.now) and a monotonic one (performance.now). */
export interface ClockReading {
  wallMs: number;
  monoMs: number;
}

export interface ClockStep {
  direction: StepDirection;
  /** Wall-clock progress minus monotonic progress; negative for a backward step. */
  deltaMs: number;
}

/**
 * A step is the wall clock moving more (or less) than real time did between two readings. NTP
 * slews by at most 0.5 ms a second, and both clocks advance alike while the process is blocked,
 * so between wakes a second or so apart only a set of the clock (or a host suspend, which stops
 * the monotonic clock) gets past the tolerance.
 */
export function detectStep(prev: ClockReading, now: ClockReading, toleranceMs: number): ClockStep | undefined {
  const deltaMs = now.wallMs - prev.wallMs - (now.monoMs - prev.monoMs);
  if (Math.abs(deltaMs) <= toleranceMs) return undefined;
  return { direction: deltaMs > 0 ? 'forward' : 'backward', deltaMs };
}

export interface WakePlan {
  step?: ClockStep;
  /** A slot has come due: start one cycle (the overlap guard may still skip it; it is never queued). */
  run: boolean;
  /** Set when more than one slot passed since the last wake: the first of them. They all collapse into this one cycle. */
  missedFromMs?: number;
  /** The next slot, computed from the current wall time; null if the expression matches nothing. */
  dueMs: number | null;
  /** How long to sleep: until the next slot, but never longer than the check period, so a step is seen within one. */
  sleepMs: number;
}

export interface WakeOptions {
  checkPeriodMs: number;
  stepToleranceMs: number;
}

/**
 * What to do on waking, given the clocks at the last wake, the slot then armed, and the clocks now.
 * After a step the slot is recomputed from the current wall time, whatever the old one was: stepped
 * back, the old slot may be a day away; stepped forward, every slot in between has passed and only
 * one cycle runs for all of them.
 */
export function planWake(prev: ClockReading, dueMs: number | null, now: ClockReading, slots: Slots, options: WakeOptions): WakePlan {
  const step = detectStep(prev, now, options.stepToleranceMs);
  const run = dueMs !== null && now.wallMs >= dueMs;
  let missedFromMs: number | undefined;
  if (run) {
    const after = nextDue(dueMs, slots);
    if (after !== null && after <= now.wallMs) missedFromMs = dueMs;
  }
  const next = run || step ? nextDue(now.wallMs, slots) : dueMs;
  return { ...(step ? { step } : {}), run, ...(missedFromMs !== undefined ? { missedFromMs } : {}), dueMs: next, sleepMs: sleepMs(next, now.wallMs, options.checkPeriodMs) };
}

/** Until the slot, but never longer than the check period, so a step is seen within one. */
export function sleepMs(dueMs: number | null, wallMs: number, checkPeriodMs: number): number {
  return dueMs === null ? checkPeriodMs : Math.min(Math.max(dueMs - wallMs, 0), checkPeriodMs);
}
