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
import { fixed, modelSettings, ours, replay, vonageAlone } from './replay-model.mjs';

const num = (name, def, min, max) => {
  const v = process.env[name] === undefined ? def : Number(process.env[name]);
  if (!Number.isFinite(v) || v < min || v > max) throw new Error(`${name} must be a number from ${min} to ${max}`);
  return v;
};
const M = modelSettings({
  refillDelayS: num('REPLAY_REFILL_DELAY_S', 60, 0, 600),
  topupEur: num('REPLAY_TOPUP_EUR', 20, 0.01, 1e6),
  leadS: num('REPLAY_LEAD_S', 300, 0, 86_400),
  maxIntervalS: num('REPLAY_MAX_INTERVAL_S', 600, 1, 86_400),
});
const { threshold: THRESHOLD, start: START, topupEur: TOPUP_EUR, refillDelayS: REFILL_DELAY_S, leadS: LEAD_S, maxIntervalS: MAX_INTERVAL_S, maxPerDay: MAX_PER_DAY } = M;

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

const STRATEGIES = [
  ['Vonage auto-reload alone', vonageAlone],
  ['fixed 60 s, reactive', () => fixed(60, M)],
  ['fixed 10 s, reactive', () => fixed(10, M)],
  [`ours: adaptive (10 s to ${MAX_INTERVAL_S} s) + predictive (lead ${LEAD_S} s)`, () => ours(M)],
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
  const results = STRATEGIES.map(([label, make]) => [label, replay(rows, make(), M)]);
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
