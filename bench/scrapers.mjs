// Scrapers for bench/fleet.mjs, in a process of their own as Prometheus would be: reading ten
// bodies of most of a megabyte costs CPU, and in the benchmark's process (which also plays
// Vonage) that cost would be counted as the daemon's latency.
//
//   node bench/scrapers.mjs <url> <scrapers> <seconds>
//
// Five scrapes one at a time first (what one scrape costs alone), then <scrapers> loops, each
// on its own keep-alive connection, fetching <url> back to back for <seconds>. Prints one JSON
// line: { alone, times (ms, sorted), failures }.
import { Agent, get } from 'node:http';

const [url, scrapersArg, secondsArg] = process.argv.slice(2);
const SCRAPERS = Number(scrapersArg);
const SECONDS = Number(secondsArg);
if (!url || !(SCRAPERS > 0) || !(SECONDS > 0)) throw new Error('usage: node bench/scrapers.mjs <url> <scrapers> <seconds>');

/** One GET on `agent`; resolves with the status once the whole body is read. */
const fetchOnce = (agent) =>
  new Promise((resolve, reject) => {
    const req = get(url, { agent }, (res) => {
      res.on('data', () => {});
      res.on('end', () => resolve(res.statusCode));
      res.on('error', reject);
    });
    req.setTimeout(30_000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });

const alone = [];
{
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    await fetchOnce(agent);
    alone.push(performance.now() - t0);
  }
  agent.destroy();
}
alone.sort((a, b) => a - b);

const times = [];
let failures = 0;
const until = performance.now() + SECONDS * 1000;
const loop = async () => {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  while (performance.now() < until) {
    const t0 = performance.now();
    try {
      if ((await fetchOnce(agent)) !== 200) failures++;
    } catch {
      failures++;
    }
    times.push(performance.now() - t0);
  }
  agent.destroy();
};
await Promise.all(Array.from({ length: SCRAPERS }, loop));
times.sort((a, b) => a - b);
process.stdout.write(`${JSON.stringify({ alone: alone[2], times, failures })}\n`);
