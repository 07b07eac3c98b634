/**
 * node-cron drives the cycles. The library's own overlap handling had bugs that blocked all later
 * runs (node-cron #498, fixed only in 4.6), so the guard that keeps polls from overlapping is ours:
 * a tick that fires while a cycle is still running is skipped, never queued.
 */
import cron, { type ScheduledTask } from 'node-cron';
import type { Logger } from './log.js';

export interface Scheduler {
  start(): void;
  /** Stops firing; waits up to `boundMs` for a running cycle (aborting its balance reads first). */
  stop(boundMs: number): Promise<boolean>;
  /** Runs a cycle now unless one is running; resolves when it ends. */
  tick(): Promise<'ran' | 'skipped_overlap'>;
  nextRun(): Date | null;
  /** Liveness for /healthz: whether a cycle started within `boundMs`. */
  health(boundMs: number): { ok: boolean; reason?: string };
  /** Longest gap between two consecutive runs of the schedule, for freshness bounds. */
  readonly intervalMs: number;
  /** When the schedule last fired (ms), or when the scheduler started. */
  readonly lastTickAt: number | undefined;
  readonly running: boolean;
  readonly stopped: boolean;
}

export function createScheduler(options: {
  expression: string;
  run: (signal: AbortSignal) => Promise<void>;
  log: Logger;
  now?: () => number;
}): Scheduler {
  const now = options.now ?? Date.now;
  const log = options.log.child({ module: 'scheduler' });
  let inFlight: Promise<void> | undefined;
  // Aborted once at stop and never renewed: a tick after stop reads nothing and sends nothing.
  const controller = new AbortController();
  let lastTickAt: number | undefined;
  let stopped = false;

  const tick = async (): Promise<'ran' | 'skipped_overlap'> => {
    lastTickAt = now();
    if (inFlight) {
      log.debug('previous cycle still running; tick skipped');
      return 'skipped_overlap';
    }
    inFlight = options
      .run(controller.signal)
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

  const task: ScheduledTask = cron.createTask(options.expression, () => tick(), {
    name: 'balance-poll',
    logger: {
      info: (m) => log.debug(String(m)),
      warn: (m) => log.warn(String(m)),
      error: (m) => log.error(String(m)),
      debug: (m) => log.debug(String(m)),
    },
  });

  const runs = task.getNextRuns(6).map((d) => d.getTime());
  let intervalMs = 60_000;
  if (runs.length >= 2) intervalMs = Math.max(...runs.slice(1).map((t, i) => t - runs[i]!));

  return {
    start() {
      lastTickAt = now();
      void task.start();
    },
    async stop(boundMs) {
      stopped = true;
      await task.stop();
      await task.destroy();
      controller.abort();
      if (!inFlight) return true;
      let timer: NodeJS.Timeout | undefined;
      const finished = await Promise.race([
        inFlight.then(() => true),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(false), boundMs);
        }),
      ]);
      clearTimeout(timer);
      return finished;
    },
    tick,
    health(boundMs) {
      if (stopped) return { ok: false, reason: 'shutting down' };
      const since = now() - (lastTickAt ?? now());
      return since <= boundMs ? { ok: true } : { ok: false, reason: `scheduler has not fired for ${Math.round(since / 1000)}s` };
    },
    nextRun: () => (stopped ? null : task.getNextRun()),
    intervalMs,
    get lastTickAt() {
      return lastTickAt;
    },
    get running() {
      return inFlight !== undefined;
    },
    get stopped() {
      return stopped;
    },
  };
}
