/**
 * Runs the cycles on POLL_SCHEDULE. node-cron parses and matches the expression; the timing is ours
 * (src/cycle/schedule-plan.ts): node-cron's runner arms its timer for a wall-clock instant, so a clock
 * stepped back silenced it, and it walks every missed slot, so a clock stepped forward flooded the
 * log (issue 7). Here a short timer wakes the loop at the next slot or after one check period,
 * whichever is sooner; each wake compares wall-clock progress with monotonic progress, and after a
 * step the next slot is computed from the new wall time. Liveness is judged on the monotonic clock
 * alone, so no setting of the wall clock can make a silent scheduler look alive.
 *
 * The guard that keeps polls from overlapping is ours too: a slot that comes due while a cycle is
 * still running is skipped, never queued.
 */
import { setMaxListeners } from 'node:events';
import cron from 'node-cron';
import type { Logger } from '../observe/log.js';
import { longestGapMs, nextDue, planWake, sleepMs, slotsOf, type ClockReading, type StepDirection } from './schedule-plan.js';

export interface Scheduler {
  start(): void;
  /** Stops firing; waits up to `boundMs` for a running cycle (aborting its balance reads first). */
  stop(boundMs: number): Promise<boolean>;
  /** Runs a cycle now unless one is running; resolves when it ends. */
  tick(): Promise<'ran' | 'skipped_overlap'>;
  /** The slot the loop is armed for; null before start and after stop. */
  nextRun(): Date | null;
  /**
   * Liveness for /healthz, on the monotonic clock: fails when no cycle started within `boundMs`
   * (since start if none has), or when the running cycle has taken longer than the cycle bound.
   */
  health(boundMs: number): { ok: boolean; reason?: string };
  /** Longest gap between two consecutive runs of the schedule, for freshness bounds. */
  readonly intervalMs: number;
  readonly running: boolean;
  readonly stopped: boolean;
}

export interface SchedulerTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface SchedulerOptions {
  expression: string;
  run: (signal: AbortSignal) => Promise<void>;
  log: Logger;
  /** Told once per detected wall-clock step (the daemon counts them in vonage_watchdog_clock_steps_total). */
  onClockStep?: (direction: StepDirection, deltaMs: number) => void;
  /**
   * The longest a healthy cycle can take; /healthz fails while a cycle has run longer (stuck).
   * Unset: the bound health() is asked about.
   */
  cycleBoundMs?: number;
  /** Wall clock (default Date.now): what the schedule's slots are in. */
  wallNow?: () => number;
  /** Monotonic clock (default performance.now): liveness and step detection. */
  monoNow?: () => number;
  timers?: SchedulerTimers;
  /** Longest sleep between two looks at the clocks, hence the longest a step goes unseen (default 1 s). */
  checkPeriodMs?: number;
  /** Wall-clock drift between two wakes that counts as a step (default 1 s; NTP slewing stays far below). */
  stepToleranceMs?: number;
}

const DEFAULT_CHECK_PERIOD_MS = 1000;
const DEFAULT_STEP_TOLERANCE_MS = 1000;

const seconds = (ms: number) => Math.round(ms / 1000);
const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/**
 * The longest gap between two slots of a POLL_SCHEDULE expression: the interval the forecast's
 * time constants derive from. node-cron decides which seconds match, as for the scheduler itself.
 */
export function scheduleIntervalMs(expression: string, wallNow: number = Date.now()): number {
  const task = cron.createTask(expression, () => undefined, { name: 'interval-probe' });
  try {
    return longestGapMs(wallNow, slotsOf(cron.parse(expression), (d) => task.match(d)));
  } finally {
    void task.destroy();
  }
}

/**
 * The first slot of a POLL_SCHEDULE expression at or after a wall-clock time (to the second), or
 * null if it has none: where an adaptive account's planned poll lands on the schedule.
 */
export function slotFinder(expression: string): (wallMs: number) => number | null {
  // Created, never started: only its match() is used, as by the scheduler.
  const task = cron.createTask(expression, () => undefined, { name: 'slot-finder' });
  const slots = slotsOf(cron.parse(expression), (d) => task.match(d));
  return (wallMs) => nextDue(wallMs - 1000, slots);
}

export function createScheduler(options: SchedulerOptions): Scheduler {
  const wallNow = options.wallNow ?? Date.now;
  const monoNow = options.monoNow ?? (() => performance.now());
  const timers: SchedulerTimers = options.timers ?? {
    setTimeout: (fn, ms) => setTimeout(fn, ms),
    clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
  };
  const wake = { checkPeriodMs: options.checkPeriodMs ?? DEFAULT_CHECK_PERIOD_MS, stepToleranceMs: options.stepToleranceMs ?? DEFAULT_STEP_TOLERANCE_MS };
  const log = options.log.child({ module: 'scheduler' });

  // Created, never started: node-cron's runner is what this module replaces. Its match() is the
  // authority on which seconds the expression covers (names, steps, L, W, #), so no cron dialect is
  // re-implemented here.
  const task = cron.createTask(options.expression, () => undefined, { name: 'balance-poll' });
  const slots = slotsOf(cron.parse(options.expression), (d) => task.match(d));
  const intervalMs = longestGapMs(wallNow(), slots);

  let inFlight: Promise<void> | undefined;
  // Aborted once at stop and never renewed: a tick after stop reads nothing and sends nothing.
  const controller = new AbortController();
  // Every account of a cycle listens on it (its jitter sleep, its requests) and stops listening
  // when done: 200 accounts are 200 listeners at once, not a leak, and Node's warning at 11
  // ("possible EventTarget memory leak") would tell operators otherwise at every start.
  setMaxListeners(0, controller.signal);
  const createdMono = monoNow();
  let startedMono: number | undefined;
  let lastCycleStartMono: number | undefined;
  let started = false;
  let stopped = false;
  let timer: unknown;
  let clock: ClockReading | undefined;
  let dueMs: number | null = null;
  let reportedNoSlot = false;

  const read = (): ClockReading => ({ wallMs: wallNow(), monoMs: monoNow() });

  const tick = async (): Promise<'ran' | 'skipped_overlap'> => {
    if (inFlight) {
      log.debug('previous cycle still running; tick skipped');
      return 'skipped_overlap';
    }
    lastCycleStartMono = monoNow();
    let cycle: Promise<void>;
    try {
      cycle = options.run(controller.signal);
    } catch (err) {
      cycle = Promise.reject(err);
    }
    inFlight = cycle
      .catch((err: unknown) => {
        // run() handles its own failures; anything reaching here is a bug, not a reason to die.
        log.error({ problem: err instanceof Error ? err.message : String(err) }, 'cycle crashed');
      })
      .finally(() => {
        inFlight = undefined;
      });
    await inFlight;
    return 'ran';
  };

  const arm = (ms: number) => {
    timer = timers.setTimeout(onWake, ms);
  };

  function onWake(): void {
    timer = undefined;
    if (stopped || clock === undefined) return;
    const now = read();
    const plan = planWake(clock, dueMs, now, slots, wake);
    clock = now;
    dueMs = plan.dueMs;
    // Re-armed before anything that could throw (a log write), so the loop outlives it.
    arm(plan.sleepMs);
    if (plan.step) {
      const { direction, deltaMs } = plan.step;
      const collapsed = plan.missedFromMs !== undefined ? '; the missed poll slots collapse into one cycle' : '';
      log.warn(
        { direction, stepMs: Math.round(deltaMs), nextPoll: iso(dueMs) },
        `wall clock stepped ${direction} by ${seconds(Math.abs(deltaMs))}s against the monotonic clock; schedule re-armed from the new time${collapsed}`,
      );
      try {
        options.onClockStep?.(direction, deltaMs);
      } catch (err) {
        log.error({ problem: err instanceof Error ? err.message : String(err) }, 'clock-step hook failed');
      }
    } else if (plan.missedFromMs !== undefined) {
      log.warn(
        { firstMissed: iso(plan.missedFromMs), lateByMs: Math.round(now.wallMs - plan.missedFromMs) },
        'poll slots missed (the process or its host stalled); they collapse into one cycle',
      );
    }
    if (plan.run) void tick();
    reportIfNoSlot();
  }

  function reportIfNoSlot(): void {
    if (dueMs !== null || reportedNoSlot) return;
    reportedNoSlot = true;
    log.error({ schedule: options.expression }, 'the schedule matches no time within a century; no poll will run');
  }

  return {
    start() {
      if (started || stopped) return;
      started = true;
      clock = read();
      startedMono = clock.monoMs;
      dueMs = nextDue(clock.wallMs, slots);
      reportIfNoSlot();
      arm(sleepMs(dueMs, clock.wallMs, wake.checkPeriodMs));
    },
    async stop(boundMs) {
      stopped = true;
      if (timer !== undefined) timers.clearTimeout(timer);
      timer = undefined;
      task.destroy();
      controller.abort();
      if (!inFlight) return true;
      let bound: unknown;
      const finished = await Promise.race([
        inFlight.then(() => true),
        new Promise<boolean>((resolve) => {
          bound = timers.setTimeout(() => resolve(false), boundMs);
        }),
      ]);
      timers.clearTimeout(bound);
      return finished;
    },
    tick,
    health(boundMs) {
      if (stopped) return { ok: false, reason: 'shutting down' };
      const now = monoNow();
      const cycleBound = options.cycleBoundMs ?? boundMs;
      if (inFlight && lastCycleStartMono !== undefined && now - lastCycleStartMono > cycleBound) {
        return { ok: false, reason: `a cycle has been running for ${seconds(now - lastCycleStartMono)}s, longer than its bound of ${seconds(cycleBound)}s` };
      }
      const since = now - (lastCycleStartMono ?? startedMono ?? createdMono);
      if (since > boundMs) return { ok: false, reason: `no cycle has started for ${seconds(since)}s (bound ${seconds(boundMs)}s)` };
      return { ok: true };
    },
    nextRun: () => (started && !stopped && dueMs !== null ? new Date(dueMs) : null),
    intervalMs,
    get running() {
      return inFlight !== undefined;
    },
    get stopped() {
      return stopped;
    },
  };
}
