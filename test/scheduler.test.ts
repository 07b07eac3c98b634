/**
 * The scheduler and its pure planning (src/cycle/schedule-plan.ts): when the next slot is due, and what a
 * wall-clock step does to it. Issue 7, defects 1 and 2: a clock stepped back stopped all polling
 * while /healthz stayed 200, and a clock stepped forward 2 days blocked the loop for 32 s writing
 * one line per missed slot. The scheduler runs here on a virtual clock pair (wall and monotonic)
 * and virtual timers, so days pass in milliseconds and a wall-clock step is one assignment; node-cron
 * (parser and matcher) is the real library throughout.
 */
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import fc from 'fast-check';
import cron from 'node-cron';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createLogger } from '../src/observe/log.js';
import { detectStep, longestGapMs, nextDue, planWake, slotsOf, type ClockReading, type Slots } from '../src/cycle/schedule-plan.js';
import { createScheduler, type SchedulerTimers } from '../src/cycle/scheduler.js';

const SEC = 1000;
const MIN = 60 * SEC;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const WAKE = { checkPeriodMs: SEC, stepToleranceMs: SEC };

/** Slots from node-cron's own parser and matcher; the task is never started, and is destroyed after each test. */
const made: { destroy(): void }[] = [];
function slotsFor(expression: string): Slots {
  const task = cron.createTask(expression, () => undefined);
  made.push(task);
  return slotsOf(cron.parse(expression), (d) => task.match(d));
}
afterEach(() => {
  for (const t of made.splice(0)) t.destroy();
  vi.useRealTimers();
});

/** node-cron's own next runs from `base`: its walker reads `new Date()`, so only Date is faked, for this call. */
function nodeCronNextRuns(expression: string, base: number, count: number): number[] {
  const task = cron.createTask(expression, () => undefined);
  try {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(base);
    return task.getNextRuns(count).map((d) => d.getTime());
  } finally {
    vi.useRealTimers();
    task.destroy();
  }
}

const local = (y: number, mo: number, d: number, h = 0, mi = 0, s = 0, ms = 0) => new Date(y, mo - 1, d, h, mi, s, ms).getTime();

describe('nextDue: table (local time, away from DST changes)', () => {
  // 2030-01-19 is a Saturday.
  const cases: [string, number, number][] = [
    ['* * * * * *', local(2030, 1, 15, 10, 20, 30, 400), local(2030, 1, 15, 10, 20, 31)],
    ['*/10 * * * * *', local(2030, 1, 15, 10, 20, 30), local(2030, 1, 15, 10, 20, 40)],
    ['*/10 * * * * *', local(2030, 1, 15, 10, 20, 39, 999), local(2030, 1, 15, 10, 20, 40)],
    ['* * * * *', local(2030, 1, 15, 10, 20, 30), local(2030, 1, 15, 10, 21)],
    ['*/5 * * * *', local(2030, 1, 15, 23, 58), local(2030, 1, 16, 0, 0)],
    ['0 9 * * mon-fri', local(2030, 1, 19, 10), local(2030, 1, 21, 9)],
    ['0 9 * * 1-5', local(2030, 1, 18, 9), local(2030, 1, 21, 9)],
    ['0 0 * * 7', local(2030, 1, 19, 12), local(2030, 1, 20)],
    ['0 0 1 1 *', local(2030, 1, 15), local(2031, 1, 1)],
    ['0 0 29 2 *', local(2030, 3, 1), local(2032, 2, 29)],
    ['30 15 10 L * *', local(2030, 2, 3), local(2030, 2, 28, 10, 15, 30)],
    ['0 0 12 * * 5L', local(2030, 1, 1), local(2030, 1, 25, 12)],
    ['0 0 * * 1#2', local(2030, 1, 1), local(2030, 1, 14)],
    ['0 0 * jul,aug *', local(2030, 1, 1), local(2030, 7, 1)],
  ];
  for (const [expr, after, want] of cases) {
    it(`${expr} after ${new Date(after).toString().slice(0, 24)}`, () => {
      expect(new Date(nextDue(after, slotsFor(expr))!).toString()).toBe(new Date(want).toString());
      expect(nodeCronNextRuns(expr, after, 1)).toEqual([want]);
    });
  }

  it('a yearly slot costs one match call per excluded day, not one per second', () => {
    const s = slotsFor('0 0 1 1 *');
    let calls = 0;
    const counted: Slots = { ...s, matches: (d) => (calls++, s.matches(d)) };
    expect(nextDue(local(2030, 1, 2), counted)).toBe(local(2031, 1, 1));
    expect(calls).toBeLessThanOrEqual(366);
  });

  it('longestGapMs: the schedule\'s widest gap', () => {
    expect(longestGapMs(local(2030, 1, 15, 10), slotsFor('*/10 * * * * *'))).toBe(10 * SEC);
    expect(longestGapMs(local(2030, 1, 15, 10), slotsFor('* * * * *'))).toBe(MIN);
    expect(longestGapMs(local(2030, 1, 15, 10), slotsFor('0,10 * * * *'))).toBe(50 * MIN);
  });
});

/** Random valid node-cron expressions: 5 and 6 fields, steps, ranges, lists, names, L/W/# tokens. */
const n = (min: number, max: number) => fc.integer({ min, max });
const range = (min: number, max: number) => fc.tuple(n(min, max), n(min, max)).map(([a, b]) => `${Math.min(a, b)}-${Math.max(a, b)}`);
const timeField = (min: number, max: number) =>
  fc.oneof(
    { weight: 3, arbitrary: fc.constant('*') },
    n(1, Math.min(30, max)).map((k) => `*/${k}`),
    n(min, max).map(String),
    range(min, max),
    fc.tuple(range(min, max), n(1, 9)).map(([r, k]) => `${r}/${k}`),
    fc.uniqueArray(n(min, max), { minLength: 2, maxLength: 4 }).map((v) => v.join(',')),
  );
const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];
const expression = fc
  .record({
    seconds: fc.option(timeField(0, 59), { nil: undefined }),
    minute: timeField(0, 59),
    hour: timeField(0, 23),
    dom: fc.oneof({ weight: 4, arbitrary: fc.constant('*') }, n(1, 28).map(String), range(1, 31), fc.constantFrom('L', 'LW', '15W', 'L-2', '1,15')),
    month: fc.oneof({ weight: 4, arbitrary: fc.constant('*') }, fc.constantFrom(...MONTHS), fc.constantFrom('jan-mar', 'jun,dec', '*/3', '2-11')),
    dow: fc.oneof({ weight: 4, arbitrary: fc.constant('*') }, fc.constantFrom(...DAYS), fc.constantFrom('mon-fri', 'sat,sun', '0', '7', '1-5/2', '5L', '1#2')),
  })
  .map((f) => [f.seconds, f.minute, f.hour, f.dom, f.month, f.dow].filter((x) => x !== undefined).join(' '))
  .filter((e) => cron.validate(e));
const instant = fc.integer({ min: Date.UTC(2001, 0, 1), max: Date.UTC(2099, 0, 1) });

/** Near a change of UTC offset, node-cron and Date disagree on which of a repeated hour to take (see the DST test). */
const nearOffsetChange = (ms: number) => [-2 * HOUR, 2 * HOUR].some((d) => new Date(ms + d).getTimezoneOffset() !== new Date(ms).getTimezoneOffset());

describe('nextDue: properties', () => {
  it('agrees with node-cron\'s own next runs for random expressions and instants', () => {
    fc.assert(
      fc.property(expression, instant, (expr, base) => {
        let want: number[] | undefined;
        try {
          want = nodeCronNextRuns(expr, base, 3);
        } catch {
          // matches nothing within node-cron's century
        }
        fc.pre(want !== undefined && !want.some(nearOffsetChange));
        const s = slotsFor(expr);
        const got: number[] = [];
        let t = base;
        for (let i = 0; i < 3; i++) got.push((t = nextDue(t, s)!));
        expect(got.map((x) => new Date(x).toISOString())).toEqual(want!.map((x) => new Date(x).toISOString()));
      }),
      { numRuns: 300 },
    );
  });

  it('is strictly after the given second, on a matching second, and whole seconds', () => {
    fc.assert(
      fc.property(expression, instant, (expr, base) => {
        const s = slotsFor(expr);
        const due = nextDue(base, s);
        fc.pre(due !== null);
        expect(due! % 1000).toBe(0);
        expect(due!).toBeGreaterThan(Math.floor(base / 1000) * 1000);
        expect(s.matches(new Date(due!))).toBe(true);
      }),
      // An expression that never matches (e.g. a last Friday on the 1st) costs a century of days.
      { numRuns: 60 },
    );
  });

  // A zone with DST, in a child process: node-cron caches its time-zone formatter, so the zone cannot change under it here.
  it('over DST changes (Europe/Berlin): each local time at most once', () => {
    const script = `
      import cron from 'node-cron';
      import { nextDue, slotsOf } from ${JSON.stringify(resolve(__dirname, '../dist/cycle/schedule-plan.js'))};
      const run = (expr, from, count) => {
        const t = cron.createTask(expr, () => {}); const s = slotsOf(cron.parse(expr), (d) => t.match(d));
        const out = []; let x = from; for (let i = 0; i < count; i++) out.push(new Date(x = nextDue(x, s)).toISOString());
        return out;
      };
      console.log(JSON.stringify({
        fallBack: run('0 2 * * *', Date.parse('2024-10-26T12:00:00Z'), 2),
        springForward: run('30 2 * * *', Date.parse('2024-03-30T12:00:00Z'), 2),
        hourly: run('0 * * * *', Date.parse('2024-10-26T22:30:00Z'), 4),
      }));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, TZ: 'Europe/Berlin' }, cwd: resolve(__dirname, '..'), encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({
      // 02:00 happens twice that night (CEST, then CET): it runs once, at the first (node-cron takes the second).
      fallBack: ['2024-10-27T00:00:00.000Z', '2024-10-28T01:00:00.000Z'],
      // 02:30 does not exist that night: no slot then, as with node-cron (which matches local times only).
      springForward: ['2024-04-01T00:30:00.000Z', '2024-04-02T00:30:00.000Z'],
      // Hourly through the repeated hour: 01:00 and 02:00 CEST, then 03:00 CET (02:00 CET is the same local time again).
      hourly: ['2024-10-26T23:00:00.000Z', '2024-10-27T00:00:00.000Z', '2024-10-27T02:00:00.000Z', '2024-10-27T03:00:00.000Z'],
    });
  });
});

describe('detectStep and planWake: table', () => {
  const T = local(2030, 1, 15, 10, 0, 0);
  const at = (wallMs: number, monoMs: number): ClockReading => ({ wallMs, monoMs });
  const everySecond = () => slotsFor('* * * * * *');

  it('NTP slewing (500 ppm) and a blocked loop are not steps; a set of the clock is', () => {
    expect(detectStep(at(T, 0), at(T + 1000.5, 1000), 1000)).toBeUndefined();
    expect(detectStep(at(T, 0), at(T + 30_000, 30_000), 1000)).toBeUndefined();
    expect(detectStep(at(T, 0), at(T + 1000 + 999, 1000), 1000)).toBeUndefined();
    expect(detectStep(at(T, 0), at(T + 1000 + 1001, 1000), 1000)).toEqual({ direction: 'forward', deltaMs: 1001 });
    expect(detectStep(at(T, 0), at(T + 1000 - 10 * MIN, 1000), 1000)).toEqual({ direction: 'backward', deltaMs: -10 * MIN });
  });

  it('slot not reached: sleep until it, at most one check period', () => {
    const s = slotsFor('*/10 * * * * *');
    expect(planWake(at(T, 0), T + 10 * SEC, at(T + 500, 500), s, WAKE)).toEqual({ run: false, dueMs: T + 10 * SEC, sleepMs: SEC });
    expect(planWake(at(T, 0), T + 10 * SEC, at(T + 9700, 9700), s, WAKE)).toEqual({ run: false, dueMs: T + 10 * SEC, sleepMs: 300 });
  });

  it('slot reached: one cycle, next slot from now', () => {
    expect(planWake(at(T, 0), T + SEC, at(T + SEC + 3, SEC + 3), everySecond(), WAKE)).toEqual({ run: true, dueMs: T + 2 * SEC, sleepMs: SEC - 3 });
  });

  it('stepped back 10 minutes: no cycle now, re-armed for the first slot after the new time', () => {
    const w = planWake(at(T, 0), T + SEC, at(T + SEC - 10 * MIN, SEC), everySecond(), WAKE);
    expect(w).toEqual({ step: { direction: 'backward', deltaMs: -10 * MIN }, run: false, dueMs: T + 2 * SEC - 10 * MIN, sleepMs: SEC });
  });

  it('stepped back a day: the same, not a day\'s sleep', () => {
    const w = planWake(at(T, 0), T + MIN, at(T + SEC - DAY, SEC), slotsFor('* * * * *'), WAKE);
    expect(w).toMatchObject({ step: { direction: 'backward' }, run: false, dueMs: T + MIN - DAY, sleepMs: SEC });
  });

  it('stepped forward 2 days: one cycle for every missed slot, and a handful of match calls', () => {
    const s = everySecond();
    let calls = 0;
    const counted: Slots = { ...s, matches: (d) => (calls++, s.matches(d)) };
    const w = planWake(at(T, 0), T + SEC, at(T + SEC + 2 * DAY, SEC), counted, WAKE);
    expect(w).toEqual({ step: { direction: 'forward', deltaMs: 2 * DAY }, run: true, missedFromMs: T + SEC, dueMs: T + 2 * SEC + 2 * DAY, sleepMs: SEC });
    expect(calls).toBeLessThan(10);
  });

  it('the process stalled 5 s (both clocks moved): no step, the missed slots collapse into one cycle', () => {
    expect(planWake(at(T, 0), T + SEC, at(T + 5 * SEC, 5 * SEC), everySecond(), WAKE)).toEqual({ run: true, missedFromMs: T + SEC, dueMs: T + 6 * SEC, sleepMs: SEC });
  });
});

/**
 * Virtual time: `advance` lets real time pass (both clocks move, due timers fire in order, and
 * the cycles they start get to run); `stepWall` sets the wall clock and nothing else, like
 * `date -s` or a libfaketime offset.
 */
class VirtualTime {
  wall: number;
  mono = 5_000;
  private seq = 0;
  private readonly pending = new Map<number, { at: number; fn: () => void }>();
  readonly timers: SchedulerTimers = {
    setTimeout: (fn, ms) => {
      this.pending.set(++this.seq, { at: this.mono + Math.max(0, ms), fn });
      return this.seq;
    },
    clearTimeout: (h) => void this.pending.delete(h as number),
  };
  readonly wallNow = () => this.wall;
  readonly monoNow = () => this.mono;
  constructor(wall: number) {
    this.wall = wall;
  }
  async advance(ms: number): Promise<void> {
    const end = this.mono + ms;
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.pending) if (e[1].at <= end && (next === undefined || e[1].at < next[1].at)) next = e;
      if (!next) break;
      this.move(next[1].at - this.mono);
      this.pending.delete(next[0]);
      next[1].fn();
      await settle();
    }
    this.move(end - this.mono);
    await settle();
  }
  /** Lets real time pass up to the earliest armed timer, and fires it. */
  async fireNext(): Promise<void> {
    let first: number | undefined;
    for (const e of this.pending.values()) if (first === undefined || e.at < first) first = e.at;
    if (first === undefined) throw new Error('no timer armed');
    await this.advance(first - this.mono);
  }
  stepWall(ms: number): void {
    this.wall += ms;
  }
  private move(ms: number): void {
    this.mono += ms;
    this.wall += ms;
  }
}
/** Lets every promise chain the fired timers started run to its end (a macrotask turn, not a wait for time). */
const settle = () => new Promise<void>((r) => setImmediate(r));

interface Line {
  level: number;
  msg: string;
  [k: string]: unknown;
}
function harness(opts: { expression: string; start?: number; run?: (signal: AbortSignal) => Promise<void>; cycleBoundMs?: number; onClockStep?: (d: 'forward' | 'backward', ms: number) => void }) {
  const vt = new VirtualTime(opts.start ?? local(2030, 1, 15, 10, 0, 0, 250));
  const lines: Line[] = [];
  const log = createLogger({ level: 'debug', format: 'json' }, { write: (l: string) => void lines.push(JSON.parse(l) as Line) });
  const cycles: number[] = [];
  const steps: [string, number][] = [];
  const scheduler = createScheduler({
    expression: opts.expression,
    log,
    run: opts.run ?? (async () => void cycles.push(vt.wall)),
    wallNow: vt.wallNow,
    monoNow: vt.monoNow,
    timers: vt.timers,
    onClockStep: opts.onClockStep ?? ((d, ms) => void steps.push([d, ms])),
    ...(opts.cycleBoundMs !== undefined ? { cycleBoundMs: opts.cycleBoundMs } : {}),
  });
  const warns = () => lines.filter((l) => l.level >= 40);
  return { vt, lines, warns, cycles, steps, scheduler };
}

describe('scheduler on virtual time', () => {
  it('one cycle per slot, at the slot', async () => {
    const h = harness({ expression: '*/10 * * * * *' });
    h.scheduler.start();
    await h.vt.advance(60 * SEC);
    expect(h.cycles.map((t) => new Date(t).getSeconds())).toEqual([10, 20, 30, 40, 50, 0]);
    expect(h.cycles.every((t) => t % 1000 === 0)).toBe(true);
    expect(h.warns()).toEqual([]);
    await h.scheduler.stop(SEC);
  });

  it('polls never overlap: a slot that finds a cycle running is skipped, not queued', async () => {
    let release: (() => void) | undefined;
    const starts: number[] = [];
    const h = harness({ expression: '*/10 * * * * *', run: () => (starts.push(h.vt.wall), new Promise<void>((r) => (release = r))) });
    h.scheduler.start();
    await h.vt.advance(10 * SEC); // the :10 slot starts a cycle that takes 25 s
    expect(starts).toHaveLength(1);
    expect(await h.scheduler.tick()).toBe('skipped_overlap');
    await h.vt.advance(25 * SEC); // :20 and :30 are skipped
    expect(starts).toHaveLength(1);
    release!();
    await h.vt.advance(4 * SEC); // done at :35; nothing replays the skipped slots
    expect(starts).toHaveLength(1);
    await h.vt.advance(SEC); // :40
    expect(starts).toHaveLength(2);
    expect(h.lines.filter((l) => l.msg.includes('still running')).length).toBe(3); // the direct tick, :20 and :30
    release!();
    await h.scheduler.stop(SEC);
  });

  it('regression (issue 7 #1): stepped back 10 minutes, then a day, then put right: polling goes on every second', async () => {
    const h = harness({ expression: '* * * * * *' });
    h.scheduler.start();
    await h.vt.advance(5 * SEC);
    expect(h.cycles).toHaveLength(5);
    h.vt.stepWall(-10 * MIN);
    await h.vt.advance(5 * SEC);
    expect(h.cycles.length).toBeGreaterThanOrEqual(9);
    h.vt.stepWall(-DAY);
    await h.vt.advance(5 * SEC);
    expect(h.cycles.length).toBeGreaterThanOrEqual(13);
    h.vt.stepWall(DAY + 10 * MIN);
    await h.vt.advance(5 * SEC);
    expect(h.cycles.length).toBeGreaterThanOrEqual(18);
    expect(h.steps.map(([d]) => d)).toEqual(['backward', 'backward', 'forward']);
    expect(h.warns().map((l) => l.msg)).toEqual([
      expect.stringMatching(/^wall clock stepped backward by 600s/),
      expect.stringMatching(/^wall clock stepped backward by 86400s/),
      expect.stringMatching(/^wall clock stepped forward by 87000s .*collapse into one cycle$/),
    ]);
    expect(h.scheduler.health(3 * SEC)).toEqual({ ok: true });
    await h.scheduler.stop(SEC);
  });

  it('regression (issue 7 #2): stepped forward 2 days: one cycle, one line, then the schedule goes on', async () => {
    const h = harness({ expression: '* * * * * *' });
    h.scheduler.start();
    await h.vt.advance(3 * SEC + 500);
    const before = h.cycles.length;
    h.vt.stepWall(2 * DAY);
    await h.vt.advance(SEC);
    expect(h.cycles.length - before).toBe(1);
    expect(h.warns()).toHaveLength(1);
    expect(h.lines.filter((l) => JSON.stringify(l).includes('missed'))).toHaveLength(1);
    expect(h.steps).toEqual([['forward', 2 * DAY]]);
    await h.vt.advance(3 * SEC);
    expect(h.cycles.length - before).toBe(4);
    expect(h.scheduler.nextRun()!.getTime()).toBe(Math.floor(h.vt.wall / 1000) * 1000 + SEC);
    await h.scheduler.stop(SEC);
  });

  it('a failing clock-step hook is logged and the loop goes on', async () => {
    const h = harness({
      expression: '* * * * * *',
      onClockStep: () => {
        throw new Error('registry gone');
      },
    });
    h.scheduler.start();
    h.vt.stepWall(-HOUR);
    await h.vt.advance(4 * SEC);
    expect(h.cycles.length).toBeGreaterThanOrEqual(3);
    expect(h.lines.some((l) => l.msg === 'clock-step hook failed')).toBe(true);
    await h.scheduler.stop(SEC);
  });
});

describe('scheduler on virtual time: properties', () => {
  const schedule = fc.constantFrom('* * * * * *', '*/10 * * * * *', '* * * * *', '*/5 * * * *', '0 * * * *');
  const startAt = fc.integer({ min: Date.UTC(2020, 0, 1), max: Date.UTC(2040, 0, 1) });

  it('a backward step of any size is seen within one check period and re-arms from the new wall time', async () => {
    await fc.assert(
      fc.asyncProperty(schedule, startAt, fc.integer({ min: 1001, max: 400 * DAY }), fc.integer({ min: 0, max: 2 * MIN }), async (expr, start, back, runFor) => {
        const h = harness({ expression: expr, start });
        const s = slotsFor(expr);
        h.scheduler.start();
        await h.vt.advance(runFor);
        h.vt.stepWall(-back);
        await h.vt.advance(SEC);
        expect(h.steps.map(([d]) => d)).toEqual(['backward']);
        // Armed for the first slot after a wake within the last check period, not for the old time.
        const due = h.scheduler.nextRun()!.getTime();
        expect(due).toBeGreaterThanOrEqual(nextDue(h.vt.wall - SEC, s)!);
        expect(due).toBeLessThanOrEqual(nextDue(h.vt.wall, s)!);
        // And the slot is kept: a cycle starts at it.
        const n0 = h.cycles.length;
        await h.vt.advance(due - h.vt.wall + 1);
        expect(h.cycles.length).toBe(n0 + 1);
        expect(h.cycles.at(-1)).toBe(due);
        await h.scheduler.stop(SEC);
      }),
      { numRuns: 60 },
    );
  });

  it('a forward step of any size yields exactly one cycle for all the slots it skipped, and one line', async () => {
    await fc.assert(
      fc.asyncProperty(schedule, startAt, fc.integer({ min: 1001, max: 400 * DAY }), fc.integer({ min: 0, max: 2 * MIN }), async (expr, start, ahead, runFor) => {
        const h = harness({ expression: expr, start });
        h.scheduler.start();
        await h.vt.advance(runFor);
        const n0 = h.cycles.length;
        const warns0 = h.warns().length;
        const due = h.scheduler.nextRun()!.getTime();
        h.vt.stepWall(ahead);
        await h.vt.fireNext(); // the first look at the clocks after the step
        expect(h.steps.map(([d]) => d)).toEqual(['forward']);
        expect(h.cycles.length - n0).toBe(due <= h.vt.wall ? 1 : 0);
        expect(h.warns().length - warns0).toBe(1);
        expect(h.scheduler.nextRun()!.getTime()).toBe(nextDue(h.vt.wall, slotsFor(expr)));
        await h.scheduler.stop(SEC);
      }),
      { numRuns: 60 },
    );
  });

  it('NTP slewing (up to 500 ppm either way) is never a step, and every slot runs', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('* * * * * *', '*/10 * * * * *'), fc.integer({ min: -500, max: 500 }), async (expr, ppm) => {
        const h = harness({ expression: expr });
        const s = slotsFor(expr);
        h.scheduler.start();
        const startWall = h.vt.wall;
        for (let i = 0; i < 120; i++) {
          await h.vt.advance(500);
          h.vt.stepWall((500 * ppm) / 1e6);
        }
        expect(h.steps).toEqual([]);
        let want = 0;
        for (let t = nextDue(startWall, s); t !== null && t <= h.vt.wall; t = nextDue(t, s)) want++;
        expect(Math.abs(h.cycles.length - want)).toBeLessThanOrEqual(1);
        await h.scheduler.stop(SEC);
      }),
      { numRuns: 20 },
    );
  });
});

describe('scheduler health, on the monotonic clock', () => {
  it('regression (issue 7 #1): 503 once no cycle started within the bound, however the wall clock was set', async () => {
    // A yearly schedule: no cycle is due, so liveness must fail once the bound passes.
    const h = harness({ expression: '0 0 1 1 *' });
    h.scheduler.start();
    await h.vt.advance(9 * SEC);
    expect(h.scheduler.health(10 * SEC)).toEqual({ ok: true });
    h.vt.stepWall(-DAY); // wall time since the start is now negative: the old check passed forever
    await h.vt.advance(2 * SEC);
    expect(h.scheduler.health(10 * SEC)).toEqual({ ok: false, reason: 'no cycle has started for 11s (bound 10s)' });
    h.vt.stepWall(+2 * DAY);
    expect(h.scheduler.health(10 * SEC).ok).toBe(false);
    await h.scheduler.stop(SEC);
  });

  it('a cycle that started resets the bound, whatever the slot', async () => {
    const h = harness({ expression: '0 0 1 1 *' });
    h.scheduler.start();
    await h.vt.advance(9 * SEC);
    expect(await h.scheduler.tick()).toBe('ran');
    await h.vt.advance(9 * SEC);
    expect(h.scheduler.health(10 * SEC)).toEqual({ ok: true });
    await h.scheduler.stop(SEC);
  });

  it('503 while a cycle has run longer than its bound (stuck), although slots keep coming', async () => {
    const h = harness({ expression: '* * * * * *', cycleBoundMs: 5 * SEC, run: () => new Promise<void>(() => undefined) });
    h.scheduler.start();
    await h.vt.advance(5 * SEC);
    expect(h.scheduler.running).toBe(true);
    expect(h.scheduler.health(60 * SEC)).toEqual({ ok: true });
    await h.vt.advance(2 * SEC);
    expect(h.scheduler.health(60 * SEC)).toEqual({ ok: false, reason: 'a cycle has been running for 6s, longer than its bound of 5s' });
    const stopped = h.scheduler.stop(3 * SEC);
    await h.vt.advance(3 * SEC);
    expect(await stopped).toBe(false);
  });

  it('without a cycle bound, a cycle running past the health bound is named as the reason', async () => {
    const h = harness({ expression: '* * * * * *', run: () => new Promise<void>(() => undefined) });
    h.scheduler.start();
    await h.vt.advance(12 * SEC);
    expect(h.scheduler.health(10 * SEC)).toEqual({ ok: false, reason: 'a cycle has been running for 11s, longer than its bound of 10s' });
  });

  it('before start it counts from creation; after stop it says shutting down', async () => {
    const h = harness({ expression: '* * * * * *' });
    expect(h.scheduler.nextRun()).toBeNull();
    await h.vt.advance(11 * SEC);
    expect(h.scheduler.health(10 * SEC).ok).toBe(false);
    expect(h.cycles).toEqual([]); // not started: nothing fires
    h.scheduler.start();
    await h.vt.advance(SEC);
    expect(h.scheduler.health(10 * SEC)).toEqual({ ok: true });
    await h.scheduler.stop(SEC);
    expect(h.scheduler.health(10 * SEC)).toEqual({ ok: false, reason: 'shutting down' });
    expect(h.scheduler.nextRun()).toBeNull();
  });
});

describe('scheduler stop', () => {
  it('aborts the running cycle\'s signal and waits for it within the bound; nothing fires after', async () => {
    let seen: AbortSignal | undefined;
    let release: (() => void) | undefined;
    const starts: number[] = [];
    const h = harness({ expression: '* * * * * *', run: (signal) => ((seen = signal), starts.push(1), new Promise<void>((r) => (release = r))) });
    h.scheduler.start();
    await h.vt.advance(SEC);
    const stopping = h.scheduler.stop(5 * SEC);
    expect(seen!.aborted).toBe(true);
    await h.vt.advance(SEC);
    release!();
    expect(await stopping).toBe(true);
    await h.vt.advance(10 * SEC);
    expect(starts).toHaveLength(1);
    expect(h.scheduler.stopped).toBe(true);
  });

  it('gives up after the bound when the cycle does not end', async () => {
    const h = harness({ expression: '* * * * * *', run: () => new Promise<void>(() => undefined) });
    h.scheduler.start();
    await h.vt.advance(SEC);
    let result: boolean | undefined;
    void h.scheduler.stop(2 * SEC).then((r) => (result = r));
    await h.vt.advance(SEC);
    expect(result).toBeUndefined();
    await h.vt.advance(SEC);
    expect(result).toBe(false);
  });

  it('a crashing cycle is logged and does not stop the schedule', async () => {
    let calls = 0;
    const h = harness({
      expression: '* * * * * *',
      run: async () => {
        calls++;
        throw new Error('boom');
      },
    });
    h.scheduler.start();
    await h.vt.advance(3 * SEC);
    expect(calls).toBe(3);
    expect(h.lines.filter((l) => l.msg === 'cycle crashed')).toHaveLength(3);
    await h.scheduler.stop(SEC);
  });
});
