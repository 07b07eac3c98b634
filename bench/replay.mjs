// The replay benchmark: the daemon's own decision (decide / decideWithForecast), forecast
// (estimateBurn) and due-time (nextDue) code from dist/, run against spending traces in virtual
// time (no sleeping: three days replay in about a second), with a model of Vonage:
//
// - the balance drains by the trace (one `seconds,spend_eur` row per spending event); a spend the
//   balance cannot cover empties it (the time at zero is what users fear);
// - a top-up asked for arrives REPLAY_REFILL_DELAY_S later (default 60, 0-600) and adds
//   REPLAY_TOPUP_EUR (20);
// - Vonage's own auto-reload checks every 5-10 minutes (uniformly at random, seeded) and reloads
//   the same amount when the balance is below its own threshold: our threshold when it is the only
//   refill ("auto-reload alone"), half of it beside the watchdog (the README's advice: a backstop).
//
// Strategies, one row each: auto-reload alone; fixed 60 s polling, reactive; fixed 10 s polling,
// reactive; ours: adaptive polling (fastest 10 s, POLL_MAX_INTERVAL REPLAY_MAX_INTERVAL_S = 600)
// and predictive refill (TOPUP_LEAD_TIME REPLAY_LEAD_S = 300). Every watchdog row uses the same
// threshold (10 EUR), cooldown (10 min) and daily cap (100); an API call is a balance read or a
// top-up. Columns: seconds below the threshold, seconds at zero, API calls, refills (the
// watchdog's top-ups plus Vonage's reloads), EUR refilled.
//
//   npm run bench:replay                       # every trace in bench/traces/
//   npm run bench:replay -- path/to/trace.csv  # your own account's history as well
import { readdirSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { decide, decideWithForecast } from '../dist/refill/topup-policy.js';
import { ForecastTracker } from '../dist/forecast/tracker.js';
import { rng } from './rng.mjs';

const num = (name, def, min, max) => {
  const v = process.env[name] === undefined ? def : Number(process.env[name]);
  if (!Number.isFinite(v) || v < min || v > max) throw new Error(`${name} must be a number from ${min} to ${max}`);
  return v;
};
const REFILL_DELAY_S = num('REPLAY_REFILL_DELAY_S', 60, 0, 600);
const TOPUP_EUR = num('REPLAY_TOPUP_EUR', 20, 0.01, 1e6);
const LEAD_S = num('REPLAY_LEAD_S', 300, 0, 86_400);
const MAX_INTERVAL_S = num('REPLAY_MAX_INTERVAL_S', 600, 1, 86_400);
const THRESHOLD = 10;
const START = 30;
const COOLDOWN_MS = 600_000;
const MAX_PER_DAY = 100;
const CENT = 0.005;

const here = dirname(fileURLToPath(import.meta.url));

/** seconds,spend_eur rows, sorted; a header line is allowed; anything else is refused with its line number. */
function readTrace(path) {
  const rows = [];
  readFileSync(path, 'utf8').split(/\r?\n/).forEach((line, i) => {
    const t = line.trim();
    if (t === '' || (i === 0 && /[a-z]/i.test(t))) return;
    const [a, b, extra] = t.split(',');
    const sec = Number(a);
    const eur = Number(b);
    if (extra !== undefined || !Number.isFinite(sec) || !Number.isFinite(eur) || sec < 0 || eur < 0) throw new Error(`${path}:${i + 1}: expected "seconds,spend_eur" with two numbers >= 0, got ${JSON.stringify(t.slice(0, 80))}`);
    rows.push([sec, eur]);
  });
  rows.sort((x, y) => x[0] - y[0]);
  return rows;
}

/**
 * One strategy over one trace. Time advances from event to event (spends, polls, arrivals, Vonage's
 * checks); the balance is constant in between, so the time below the threshold and at zero is exact.
 */
function replay(rows, strategy) {
  const end = rows.length > 0 ? rows[rows.length - 1][0] + 60 : 0;
  const random = rng(42);
  let balance = START;
  let t = 0;
  let below = 0;
  let zero = 0;
  let calls = 0;
  let topups = 0;
  let reloads = 0;
  let refilledEur = 0;
  const arrivals = []; // seconds at which a top-up lands
  let nextVonageCheck = 300 + 300 * random();
  const reloadBelow = strategy.kind === 'vonage' ? THRESHOLD : THRESHOLD / 2;
  let nextPoll = strategy.kind === 'vonage' ? Number.POSITIVE_INFINITY : 0;
  const attempts = [];
  let i = 0;
  const advance = (to) => {
    const dt = to - t;
    if (dt > 0) {
      if (balance < THRESHOLD) below += dt;
      if (balance <= CENT) zero += dt;
      t = to;
    }
  };
  while (t < end) {
    const nextSpend = i < rows.length ? rows[i][0] : Number.POSITIVE_INFINITY;
    const nextArrival = arrivals.length > 0 ? arrivals[0] : Number.POSITIVE_INFINITY;
    const at = Math.min(nextSpend, nextArrival, nextVonageCheck, nextPoll, end);
    advance(at);
    if (at === nextArrival) {
      arrivals.shift();
      balance += TOPUP_EUR;
      refilledEur += TOPUP_EUR;
    } else if (at === nextSpend) {
      balance = Math.max(0, balance - rows[i][1]);
      i++;
    } else if (at === nextVonageCheck) {
      if (balance < reloadBelow) {
        balance += TOPUP_EUR;
        refilledEur += TOPUP_EUR;
        reloads++;
      }
      nextVonageCheck = at + 300 + 300 * random();
    } else if (at === nextPoll) {
      calls++;
      const now = Math.round(at * 1000);
      const reading = { value: balance, autoReload: true, at: now, mono: now };
      const d = strategy.decide(reading, { attempts, now });
      if (d.action === 'topup') {
        calls++;
        topups++;
        attempts.push({ id: `a${attempts.length}`, at: now, mono: now, outcome: 'success', balanceBefore: balance });
        arrivals.push(at + REFILL_DELAY_S);
        arrivals.sort((a, b) => a - b);
      }
      nextPoll = at + strategy.nextIntervalS(reading, d, { attempts, now, arrivals });
    }
  }
  return { below, zero, calls, refills: topups + reloads, topups, refilledEur };
}

const policy = { threshold: THRESHOLD, cooldownMs: COOLDOWN_MS, maxPerDay: MAX_PER_DAY, topupEnabled: true, dryRun: false, maxReadingAgeMs: 60_000 };
const view = (attempts) => ({ writable: true, attempts: attempts.filter((a) => a.at > attempts.at(-1)?.at - 86_400_000 - 1) });

const fixed = (periodS) => ({
  kind: 'fixed',
  decide: (reading, { attempts, now }) => decide(reading, policy, view(attempts), now, now),
  nextIntervalS: () => periodS,
});

function ours() {
  const scale = { pollIntervalMs: 10_000, maxIntervalMs: MAX_INTERVAL_S * 1000, leadTimeMs: LEAD_S * 1000 };
  const tracker = new ForecastTracker(scale, THRESHOLD);
  return {
    kind: 'ours',
    decide(reading, { attempts, now }) {
      tracker.observe({ at: now, balance: reading.value });
      return decideWithForecast(reading, policy, view(attempts), now, now, { runwayMs: tracker.runwaySeconds(reading.value) * 1000, leadTimeMs: scale.leadTimeMs });
    },
    nextIntervalS(reading, d, { attempts, now, arrivals }) {
      // A top-up asked for and not yet arrived: the next reading must confirm it soon.
      const awaitingRise = d.action === 'topup' || (attempts.length > 0 && arrivals.length > 0);
      return tracker.due(now, reading.value, awaitingRise).intervalMs / 1000;
    },
  };
}

const STRATEGIES = [
  ['Vonage auto-reload alone', () => ({ kind: 'vonage' })],
  ['fixed 60 s, reactive', () => fixed(60)],
  ['fixed 10 s, reactive', () => fixed(10)],
  [`ours: adaptive (10 s to ${MAX_INTERVAL_S} s) + predictive (lead ${LEAD_S} s)`, ours],
];

const files = [
  ...readdirSync(join(here, 'traces'))
    .filter((f) => f.endsWith('.csv'))
    .sort()
    .map((f) => join(here, 'traces', f)),
  ...process.argv.slice(2),
];

const fmt = (n) => Math.round(n).toLocaleString('en');
console.log(`replay: threshold ${THRESHOLD} EUR, start ${START} EUR, top-up ${TOPUP_EUR} EUR arriving after ${REFILL_DELAY_S} s, cooldown 10 min, at most ${MAX_PER_DAY} a day; Vonage's auto-reload checks every 5-10 min\n`);
// Every file is read (and a bad one refused, naming its line) before anything is replayed.
let traces;
try {
  traces = files.map((file) => [file, readTrace(file)]);
} catch (err) {
  process.stderr.write(`bench:replay: ${err.message}\n`);
  process.exit(2);
}
const goals = [];
for (const [file, rows] of traces) {
  const spent = rows.reduce((s, r) => s + r[1], 0);
  const days = rows.length > 0 ? rows[rows.length - 1][0] / 86_400 : 0;
  const t0 = performance.now();
  const results = STRATEGIES.map(([label, make]) => [label, replay(rows, make())]);
  const ms = performance.now() - t0;
  console.log(`### ${basename(file)}: ${rows.length.toLocaleString('en')} spending events, ${spent.toFixed(2)} EUR over ${days.toFixed(1)} days (replayed in ${ms.toFixed(0)} ms)\n`);
  console.log('| strategy | s below threshold | s at zero | API calls | refills (ours + Vonage\'s) | EUR refilled |');
  console.log('|---|---|---|---|---|---|');
  for (const [label, r] of results) console.log(`| ${label} | ${fmt(r.below)} | ${fmt(r.zero)} | ${fmt(r.calls)} | ${r.refills} (${r.topups} + ${r.refills - r.topups}) | ${fmt(r.refilledEur)} |`);
  console.log('');
  const f10 = results[2][1];
  const o = results[3][1];
  goals.push({
    trace: basename(file),
    zero: o.zero,
    belowOk: o.below <= f10.below,
    below: [o.below, f10.below],
    callsShare: f10.calls > 0 ? o.calls / f10.calls : 0,
    extraRefills: o.topups - f10.topups,
  });
}
console.log('goals for "ours" (against fixed 10 s reactive):\n');
console.log('| trace | s at zero (goal 0) | s below threshold, ours / fixed 10 s (goal <=) | API calls, share of fixed 10 s (goal <= 25 %) | refills beyond fixed 10 s (goal <= 1) |');
console.log('|---|---|---|---|---|');
for (const g of goals) {
  const yes = (ok) => (ok ? 'yes' : '**no**');
  console.log(`| ${g.trace} | ${fmt(g.zero)} ${yes(g.zero === 0)} | ${fmt(g.below[0])} / ${fmt(g.below[1])} ${yes(g.belowOk)} | ${(100 * g.callsShare).toFixed(1)} % ${yes(g.callsShare <= 0.25)} | ${g.extraRefills} ${yes(g.extraRefills <= 1)} |`);
}
