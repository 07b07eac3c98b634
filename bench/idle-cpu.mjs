// CPU an idle daemon burns at the default schedule (one poll a minute), side by side with the
// floor, over the same wall time: (a) a bare Node process that imports the same libraries and
// waits; (b) the daemon as it was, prom-client's event-loop monitor at its default 10 ms; (c) the
// daemon as shipped. CPU is user + system time of the whole process (every thread) from
// /proc/<pid>/stat. Counting starts SETTLE_SECONDS (default 30) after the last start: loading,
// the first poll and V8's clean-up GCs in the first half-minute of any Node process are one-offs,
// not idle CPU. IDLE_SECONDS (or the first argument) sets the window, default 60.
//
// (b) is the built daemon itself, unchanged: a preload (NODE_OPTIONS=--import, a data: URL, so no
// setting exists for it in the daemon) wraps prom-client's collectDefaultMetrics to put the
// monitor back at 10 ms before dist/main.js imports it.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { EVENT_LOOP_MONITORING_PRECISION_MS } from '../dist/observe/metrics.js';
import { MAIN, sleep, startDaemon, startSimulator } from './common.mjs';

const IDLE_S = Number(process.argv[2] ?? process.env.IDLE_SECONDS ?? 60);
if (!(IDLE_S > 0)) throw new Error(`IDLE_SECONDS must be a positive number of seconds, not ${process.argv[2] ?? process.env.IDLE_SECONDS}`);
const SETTLE_S = Number(process.env.SETTLE_SECONDS ?? 30);
const TODAY_PRECISION_MS = 10; // prom-client's default
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLK_TCK = 100; // USER_HZ: what /proc/<pid>/stat counts in on Linux, whatever the kernel's HZ

// Fields 14 and 15 (utime, stime), counted after the parenthesised command name.
const cpuSeconds = (pid) => {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
};

const children = new Set();
const track = (proc) => {
  children.add(proc);
  proc.once('exit', () => children.delete(proc));
  return proc;
};
const killAll = (signal) => {
  for (const p of children) p.kill(signal);
};
process.on('exit', () => killAll('SIGKILL'));
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    killAll('SIGKILL');
    process.exit(130);
  });
}

// (a) The floor: the daemon's libraries loaded, one timer that never fires keeping it alive.
const FLOOR_SRC = `
import 'axios'; import 'dotenv'; import 'node-cron'; import 'pino'; import 'prom-client'; import 'zod';
setInterval(() => {}, 2 ** 31 - 1);
`;
const startFloor = () => track(spawn(process.execPath, ['--input-type=module', '-e', FLOOR_SRC], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] }));

// (b) The preload: prom-client's index assigns its exports, so the ESM import in
// dist/observe/metrics.js picks up the wrapped function. It says so, or the child stops.
const PRELOAD_SRC = `
import { createRequire } from 'node:module';
const promClient = createRequire(${JSON.stringify(MAIN)})('prom-client');
const original = promClient.collectDefaultMetrics;
let applied = false;
promClient.collectDefaultMetrics = (config) => { applied = true; return original({ ...config, eventLoopMonitoringPrecision: ${TODAY_PRECISION_MS} }); };
setTimeout(() => { if (!applied) { process.stderr.write('idle-cpu: the ${TODAY_PRECISION_MS} ms event-loop monitor was not applied\\n'); process.exit(70); } }, 2000).unref();
`;
const PRELOAD = `--import=data:text/javascript,${encodeURIComponent(PRELOAD_SRC)}`;

const sim = await startSimulator({ apiKey: 'demo-key', apiSecret: 'demo-secret', balance: 50 });
const scrapePolls = async (d) => {
  const text = await (await fetch(`${d.url}/metrics`)).text();
  return Number(/^vonage_balance_polls_total\{[^}]*\} (\S+)$/m.exec(text)[1]);
};

const rows = [];
try {
  // One after the other, each tracked at once: a start that fails leaves nothing running.
  const floor = startFloor();
  const today = await startDaemon(sim.url, { NODE_OPTIONS: PRELOAD });
  track(today.proc);
  const shipped = await startDaemon(sim.url);
  track(shipped.proc);
  const subjects = [
    { name: 'bare Node + the same libraries (floor)', monitor: 'none', proc: floor },
    { name: 'daemon, today', monitor: `${TODAY_PRECISION_MS} ms (prom-client default)`, proc: today.proc, daemon: today },
    { name: 'daemon, as shipped', monitor: `${EVENT_LOOP_MONITORING_PRECISION_MS} ms`, proc: shipped.proc, daemon: shipped },
  ];
  await sleep(SETTLE_S * 1000);
  for (const s of subjects) if (s.daemon) s.pollsBefore = await scrapePolls(s.daemon);
  for (const s of subjects) s.cpuBefore = cpuSeconds(s.proc.pid);
  const t0 = performance.now();
  await sleep(IDLE_S * 1000);
  for (const s of subjects) {
    if (!children.has(s.proc)) throw new Error(`${s.name} exited during the run`);
    s.cpu = cpuSeconds(s.proc.pid) - s.cpuBefore;
  }
  const wallS = (performance.now() - t0) / 1000;
  for (const s of subjects) if (s.daemon) s.polls = (await scrapePolls(s.daemon)) - s.pollsBefore;
  const perHour = (s) => (s.cpu / wallS) * 3600;
  const floorH = perHour(subjects[0]);
  for (const s of subjects) rows.push({ ...s, perHour: perHour(s), aboveFloor: perHour(s) - floorH });
  const [, t, sh] = rows;

  console.log(`idle CPU over the same ${wallS.toFixed(1)} s wall time, from ${SETTLE_S} s after start-up, default POLL_SCHEDULE (one poll a minute); user + system of the whole process from /proc/<pid>/stat (10 ms resolution):\n`);
  console.log('| process | event-loop monitor | polls in the window | CPU s in the window | CPU s per hour | above the floor, s per hour |');
  console.log('|---|---|---|---|---|---|');
  for (const r of rows) console.log(`| ${r.name} | ${r.monitor} | ${r.polls ?? '–'} | ${r.cpu.toFixed(2)} | ${r.perHour.toFixed(1)} | ${r === rows[0] ? '–' : r.aboveFloor.toFixed(1)} |`);
  console.log(`\nshipped / today: ${(sh.perHour / t.perHour).toFixed(2)} of the CPU (${(sh.aboveFloor / t.aboveFloor).toFixed(2)} of what is above the floor)`);
} finally {
  killAll('SIGTERM');
  await sim.close();
}
