// Writes the replay benchmark's spending traces (bench/traces/*.csv): one `seconds,spend_eur` row
// per spending event, three days each, from a seeded generator, so the files are reproducible:
//
//   node bench/traces/generate.mjs            # all of them, into bench/traces/
//   node bench/traces/generate.mjs steady     # one
//
// steady      0.002 EUR/s in events every ~10 s
// diurnal     the same mean, following the day: ten times more at the peak than at night
// bursty      0.001 EUR/s, with a few 10x spikes of 5-15 min a day
// step        0.001 EUR/s for a day, then 0.005 EUR/s
// flash       nearly idle, and twice a day a flash crowd that spends 12 EUR in 40 s
// noisy-idle  small random spends at random times, a few cents an hour, and rare larger ones
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { rng } from '../rng.mjs';

const DAYS = 3;
const END = DAYS * 86_400;
const here = dirname(fileURLToPath(import.meta.url));

/** Events every ~`every` s (jittered), each spending rate(t) × the gap, times a little noise. */
function byRate(seed, rate, every = 10, noise = 0.2) {
  const r = rng(seed);
  const rows = [];
  for (let t = every * r(); t < END; t += every * (0.5 + r())) {
    const eur = rate(t) * every * (1 - noise + 2 * noise * r());
    if (eur > 0) rows.push([t, eur]);
  }
  return rows;
}

const TRACES = {
  steady: () => byRate(1, () => 0.002),
  diurnal: () => byRate(2, (t) => 0.002 * (1 + 0.82 * Math.sin((2 * Math.PI * (t - 6 * 3600)) / 86_400))),
  bursty: () => {
    const r = rng(3);
    const spikes = [];
    for (let day = 0; day < DAYS; day++) for (let k = 0; k < 4; k++) spikes.push([day * 86_400 + r() * 86_400, 300 + r() * 600]);
    return byRate(4, (t) => (spikes.some(([s, len]) => t >= s && t < s + len) ? 0.01 : 0.001));
  },
  step: () => byRate(5, (t) => (t < 86_400 ? 0.001 : 0.005)),
  flash: () => {
    const r = rng(6);
    const rows = byRate(7, () => 0.0002, 60);
    for (let day = 0; day < DAYS; day++) {
      for (const hour of [10 + 4 * r(), 18 + 3 * r()]) {
        const start = day * 86_400 + hour * 3600;
        for (let i = 0; i < 40; i++) rows.push([start + i, 0.3]);
      }
    }
    return rows.sort((a, b) => a[0] - b[0]);
  },
  'noisy-idle': () => {
    const r = rng(8);
    const rows = [];
    for (let t = 0; t < END; t += 30 + 600 * r()) rows.push([t, r() < 0.03 ? 0.5 + r() : 0.01 * r()]);
    return rows;
  },
};

const wanted = process.argv.slice(2);
for (const [name, make] of Object.entries(TRACES)) {
  if (wanted.length > 0 && !wanted.includes(name)) continue;
  const rows = make();
  const text = `seconds,spend_eur\n${rows.map(([t, eur]) => `${t.toFixed(3)},${eur.toFixed(4)}`).join('\n')}\n`;
  writeFileSync(join(here, `${name}.csv`), text);
  const total = rows.reduce((s, [, e]) => s + e, 0);
  process.stdout.write(`${name}: ${rows.length} events, ${total.toFixed(2)} EUR over ${DAYS} days\n`);
}
