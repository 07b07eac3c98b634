// A fleet in one process (ACCOUNTS_FILE): what it costs per 10-second cycle in Vonage API calls,
// how long a cycle takes, the daemon's resident memory, and how fast /metrics answers. Scenarios:
// one primary with 1, 100 or 1,000 subaccounts (one simulator: a primary and its subaccounts),
// 200 independent accounts (200 simulators in this process, one per account), and the
// single-account baseline configured from the environment alone, like bench/memory.mjs.
//
// Every scenario runs the built daemon as a child with POLL_SCHEDULE="*/10 * * * * *" for
// FLEET_SECONDS (default 60) and then scrapes /metrics from SCRAPERS (10) loops in another process
// (bench/scrapers.mjs, as Prometheus would be), each on its own connection, fetching it
// back to back, for SCRAPE_SECONDS (default 10). Subaccount balances stay above their threshold
// (the steady state), except in the "with transfers" line, where a few subaccounts are drained
// below it a few seconds before each slot.
//
// A cycle is read from the simulators' side: the k-th cycle is the k-th get-balance of every
// account (and, for a primary, its k-th subaccount list), plus the transfers between them; its
// duration runs from its first request's arrival to its last answer. Cycle 0 is the poll at
// start-up and is left out. "slot → last answer" counts from the 10-second boundary the cycle was
// scheduled for. FLEET_SCENARIOS (a comma list of baseline,sub1,sub100,sub1000,independent200,
// transfers) picks scenarios.
import { readFileSync, rmSync, mkdtempSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { quantile, sleep, startDaemonWithEnv, startSimulator } from './common.mjs';

const RUN_S = Number(process.env.FLEET_SECONDS ?? 60);
const SCRAPE_S = Number(process.env.SCRAPE_SECONDS ?? 10);
const SCRAPERS = 10;
const SCHEDULE = '*/10 * * * * *';
const SLOT_MS = 10_000;
const CONCURRENCY = 8;
if (!(RUN_S > 0) || !(SCRAPE_S > 0)) throw new Error('FLEET_SECONDS and SCRAPE_SECONDS must be positive numbers of seconds');

const SECRET = 'benchSecretQwertyuiop';
const TRX = '8ef2447e69604f642ae59363aa5f781b';
const THRESHOLD = 10;
const SUB_BALANCE = 50;
const TRANSFER_AMOUNT = 20;
const DRAINED_PER_CYCLE = 5;
const ENDPOINTS = ['balance', 'list_subaccounts', 'transfer', 'list_transfers', 'topup'];

// ---- Clean-up: every child killed, every temp dir removed, on any exit. ----------------------
const children = new Set();
const tempDirs = new Set();
const track = (proc) => {
  children.add(proc);
  proc.once('exit', () => children.delete(proc));
  return proc;
};
const tempDir = (prefix) => {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
};
const removeDir = (dir) => {
  rmSync(dir, { recursive: true, force: true });
  tempDirs.delete(dir);
};
process.on('exit', () => {
  for (const p of children) p.kill('SIGKILL');
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
});
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => process.exit(130));

/** Stops a daemon: SIGTERM, then SIGKILL if it has not exited within 10 s. */
async function stopDaemon(proc) {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  const done = await Promise.race([exited.then(() => true), sleep(10_000).then(() => false)]);
  if (!done) {
    proc.kill('SIGKILL');
    await exited;
  }
}

const status = (pid) => readFileSync(`/proc/${pid}/status`, 'utf8');
const kib = (text, field) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(text)[1]);
const mib = (k) => (k / 1024).toFixed(1);

// ---- The fleet file. ---------------------------------------------------------------------
function fleetYaml(accounts) {
  const lines = ['defaults:', `  threshold: ${THRESHOLD}`, '  cooldown: 15m', '  maxPerDay: 3', 'accounts:'];
  for (const a of accounts) {
    lines.push(
      `  - name: ${a.name}`,
      `    apiKey: ${a.apiKey}`,
      '    apiSecret: ${env:BENCH_API_SECRET}',
      '    trx: ${env:BENCH_TOPUP_TRX}',
      `    baseUrl: ${a.url}`,
      `    subaccountsBaseUrl: ${a.url}`,
      '    allowCustomBaseUrl: true',
    );
    if (a.subaccounts) {
      lines.push(
        '    subaccounts:',
        '      watch: all',
        '      refill: transfer',
        `      threshold: ${THRESHOLD}`,
        `      transferAmount: ${TRANSFER_AMOUNT}`,
        '      maxTransferredPerDay: 100000',
        '      cooldown: 15m',
      );
    }
  }
  return `${lines.join('\n')}\n`;
}

// ---- Requests as the simulators see them. ------------------------------------------------------
function recorder() {
  const seen = [];
  return {
    seen,
    /** onRequest for simulator `sim`: the arrival (record.at) and the end of the exchange (now). */
    hook: (sim) => (r) => seen.push({ sim, endpoint: r.endpoint, start: r.at, end: Date.now(), status: r.status }),
  };
}

/**
 * Cycles out of the requests: the k-th request of every source (a simulator's get-balance, and a
 * primary's subaccount list) belongs to cycle k; other requests go to the cycle they arrive in.
 */
function cyclesOf(seen) {
  const sources = new Map();
  for (const r of seen) {
    if (r.endpoint !== 'balance' && r.endpoint !== 'list_subaccounts') continue;
    const key = `${r.sim}/${r.endpoint}`;
    if (!sources.has(key)) sources.set(key, []);
    sources.get(key).push(r);
  }
  const lists = [...sources.values()].map((l) => l.sort((a, b) => a.start - b.start));
  if (lists.length === 0) return [];
  const complete = Math.min(...lists.map((l) => l.length));
  const longest = Math.max(...lists.map((l) => l.length));
  const starts = [];
  for (let k = 0; k < longest; k++) starts.push(Math.min(...lists.filter((l) => l.length > k).map((l) => l[k].start)));
  const cycles = [];
  for (let k = 0; k < complete; k++) {
    const from = starts[k];
    const to = starts[k + 1] ?? Infinity;
    const requests = seen.filter((r) => r.start >= from && r.start < to);
    cycles.push({
      k,
      start: from,
      end: Math.max(...requests.map((r) => r.end)),
      slot: Math.floor(from / SLOT_MS) * SLOT_MS,
      requests,
    });
  }
  return cycles;
}

// ---- /metrics under concurrent scrapers. -------------------------------------------------------
async function scrape(url) {
  const sample = await (await fetch(`${url}/metrics`)).text();
  const bytes = Buffer.byteLength(sample);
  const series = sample.split('\n').filter((l) => l !== '' && !l.startsWith('#')).length;
  const heapBefore = Number(/^nodejs_heap_size_used_bytes (\S+)$/m.exec(sample)?.[1] ?? NaN);
  // The scrapers run in a process of their own (bench/scrapers.mjs), as Prometheus would.
  const child = track(spawn(process.execPath, [new URL('./scrapers.mjs', import.meta.url).pathname, `${url}/metrics`, String(SCRAPERS), String(SCRAPE_S)], { stdio: ['ignore', 'pipe', 'inherit'] }));
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const code = await new Promise((r) => child.once('exit', r));
  if (code !== 0) throw new Error(`the scrapers exited with ${code}`);
  const { alone, times, failures } = JSON.parse(out);
  return { bytes, series, heapBefore, alone, scrapes: times.length, failures, p50: quantile(times, 0.5), p99: quantile(times, 0.99), max: times.at(-1) };
}

// ---- One scenario. -----------------------------------------------------------------------------
/**
 * `kind`: 'baseline' (env-only, one account), 'primary' (one simulator with `subs` subaccounts),
 * 'independent' (`accounts` simulators, no subaccounts). `drain`: subaccounts drained below the
 * threshold before each slot.
 */
async function runScenario({ label, kind, subs = 0, accounts = 1, drain = false }) {
  const rec = recorder();
  const sims = [];
  const stateDir = tempDir('bench-fleet-state-');
  let daemon;
  let drainTimer;
  let fileDir;
  try {
    let env;
    if (kind === 'primary') {
      const subaccounts = Array.from({ length: subs }, (_, i) => ({ apiKey: `sub${String(i).padStart(5, '0')}`, name: `Shop ${i}`, balance: SUB_BALANCE }));
      sims.push(await startSimulator({ apiKey: 'prim0001', apiSecret: SECRET, trx: TRX, balance: 1_000_000, subaccounts, onRequest: rec.hook(0) }));
    } else {
      for (let i = 0; i < accounts; i++) {
        sims.push(await startSimulator({ apiKey: `acct${String(i).padStart(4, '0')}`, apiSecret: SECRET, trx: TRX, balance: 50, subaccountsProvisioned: false, onRequest: rec.hook(i) }));
      }
    }
    const common = { POLL_SCHEDULE: SCHEDULE, STATE_DIR: stateDir, LOG_LEVEL: 'warn' };
    const spawnedAt = Date.now();
    if (kind === 'baseline') {
      // The environment alone, as bench/memory.mjs configures it.
      daemon = await startDaemonWithEnv(
        { ...common, VONAGE_API_KEY: 'acct0000', VONAGE_API_SECRET: SECRET, VONAGE_TOPUP_TRX: TRX, VONAGE_BASE_URL: sims[0].url, VONAGE_ALLOW_CUSTOM_BASE_URL: 'true', TOPUP_THRESHOLD: String(THRESHOLD) },
        { onSpawn: track },
      );
    } else {
      fileDir = tempDir('bench-fleet-file-');
      const file = join(fileDir, 'accounts.yml');
      const list = kind === 'primary'
        ? [{ name: 'primary', apiKey: 'prim0001', url: sims[0].url, subaccounts: true }]
        : sims.map((s, i) => ({ name: `acct-${String(i).padStart(4, '0')}`, apiKey: `acct${String(i).padStart(4, '0')}`, url: s.url }));
      writeFileSync(file, fleetYaml(list));
      daemon = await startDaemonWithEnv(
        { ...common, ACCOUNTS_FILE: file, BENCH_API_SECRET: SECRET, BENCH_TOPUP_TRX: TRX, POLL_CONCURRENCY: String(CONCURRENCY) },
        { onSpawn: track, timeoutMs: 30_000 },
      );
    }
    if (drain) {
      // A few seconds before each slot, the next few subaccounts drop below the threshold.
      let next = 0;
      const arm = () => {
        const at = Math.max(Date.now(), Math.ceil((Date.now() + 500) / SLOT_MS) * SLOT_MS - 2500);
        drainTimer = setTimeout(() => {
          for (let i = 0; i < DRAINED_PER_CYCLE; i++) sims[0].setSubaccountBalance(`sub${String(next++ % subs).padStart(5, '0')}`, THRESHOLD / 2);
          drainTimer = setTimeout(arm, 3000);
        }, at - Date.now());
      };
      // After the start-up poll (a few ms), and before the first scheduled slot if there is time.
      drainTimer = setTimeout(arm, 1000);
    }
    await sleep(Math.max(0, spawnedAt + RUN_S * 1000 - Date.now()));
    clearTimeout(drainTimer);
    const st = status(daemon.proc.pid);
    const rssKiB = kib(st, 'VmRSS');
    const hwmKiB = kib(st, 'VmHWM');
    const seenAtSnapshot = rec.seen.slice();
    const m = await scrape(daemon.url);
    const rssAfterScrapeKiB = kib(status(daemon.proc.pid), 'VmRSS');
    const heapText = await (await fetch(`${daemon.url}/metrics`)).text();
    const heapUsed = Number(/^nodejs_heap_size_used_bytes (\S+)$/m.exec(heapText)?.[1] ?? NaN);

    const cycles = cyclesOf(seenAtSnapshot);
    const scheduled = cycles.slice(1);
    const calls = Object.fromEntries(ENDPOINTS.map((e) => [e, 0]));
    let non2xx = 0;
    for (const c of scheduled) {
      for (const r of c.requests) {
        calls[r.endpoint] = (calls[r.endpoint] ?? 0) + 1;
        if (r.status === null || r.status >= 300) non2xx++;
      }
    }
    const n = scheduled.length;
    const perCycle = Object.fromEntries(Object.entries(calls).map(([e, v]) => [e, n ? v / n : NaN]));
    const span = scheduled.map((c) => c.end - c.start).sort((a, b) => a - b);
    const fromSlot = scheduled.map((c) => c.end - c.slot).sort((a, b) => a - b);
    const startLag = scheduled.map((c) => c.start - c.slot).sort((a, b) => a - b);
    // Slots from the first scheduled cycle to the last one that ran no cycle: skipped (overlap).
    const skipped = n < 2 ? 0 : (scheduled.at(-1).slot - scheduled[0].slot) / SLOT_MS + 1 - n;
    return {
      label,
      kind,
      accounts: kind === 'independent' ? accounts : 1,
      subs,
      cycles: n,
      perCycle,
      non2xx,
      span,
      fromSlot,
      startLag,
      skipped,
      rssKiB,
      hwmKiB,
      rssAfterScrapeKiB,
      heapUsed,
      metrics: m,
      transfersApplied: kind === 'primary' ? sims[0].appliedTransfers().length : 0,
      startupMs: cycles[0] ? cycles[0].end - cycles[0].start : NaN,
    };
  } finally {
    clearTimeout(drainTimer);
    if (daemon) await stopDaemon(daemon.proc);
    await Promise.all(sims.map((s) => s.close()));
    removeDir(stateDir);
    if (fileDir) removeDir(fileDir);
  }
}

// ---- Main. -------------------------------------------------------------------------------------
const SCENARIOS = [
  { id: 'baseline', label: 'baseline: 1 account, env only', kind: 'baseline' },
  { id: 'sub1', label: '1 primary + 1 subaccount', kind: 'primary', subs: 1 },
  { id: 'sub100', label: '1 primary + 100 subaccounts', kind: 'primary', subs: 100 },
  { id: 'sub1000', label: '1 primary + 1,000 subaccounts', kind: 'primary', subs: 1000 },
  { id: 'independent200', label: '200 independent accounts', kind: 'independent', accounts: 200 },
  { id: 'transfers', label: `1 primary + 100 subaccounts, ${DRAINED_PER_CYCLE} drained per cycle (transfers)`, kind: 'primary', subs: 100, drain: true },
];
const wanted = (process.env.FLEET_SCENARIOS ?? SCENARIOS.map((s) => s.id).join(',')).split(',').map((s) => s.trim());
const unknown = wanted.filter((w) => !SCENARIOS.some((s) => s.id === w));
if (unknown.length > 0) throw new Error(`unknown FLEET_SCENARIOS ${unknown.join(', ')}; known: ${SCENARIOS.map((s) => s.id).join(', ')}`);

const load0 = loadavg();
const results = [];
for (const s of SCENARIOS.filter((x) => wanted.includes(x.id))) {
  process.stderr.write(`fleet bench: ${s.label} (${RUN_S} s + ${SCRAPE_S} s of scrapes)…\n`);
  results.push(await runScenario(s));
}
const load1 = loadavg();

const ms = (v) => (Number.isFinite(v) ? `${Math.round(v)} ms` : '–');
const ms1 = (v) => (Number.isFinite(v) ? `${v.toFixed(1)} ms` : '–');
const num = (v) => (Number.isFinite(v) ? (Number.isInteger(v) ? String(v) : v.toFixed(2)) : '–');
const total = (r) => Object.values(r.perCycle).reduce((s, v) => s + v, 0);

console.log(`fleet: POLL_SCHEDULE="${SCHEDULE}", POLL_CONCURRENCY=${CONCURRENCY}, ${RUN_S} s per scenario, then ${SCRAPERS} scrapers for ${SCRAPE_S} s; ` +
  `${cpus().length} CPUs, load average ${load0[0].toFixed(2)} before, ${load1[0].toFixed(2)} after; node ${process.version}\n`);

console.log('API calls per cycle (scheduled cycles only; the poll at start-up is left out):\n');
console.log('| scenario | cycles measured | get-balance | list subaccounts | transfer | list transfers | top-up | total | answers not 2xx |');
console.log('|---|---|---|---|---|---|---|---|---|');
for (const r of results) {
  const p = r.perCycle;
  console.log(`| ${r.label} | ${r.cycles} | ${num(p.balance)} | ${num(p.list_subaccounts)} | ${num(p.transfer)} | ${num(p.list_transfers)} | ${num(p.topup)} | ${num(total(r))} | ${r.non2xx} |`);
}

console.log('\ncycle duration, seen by the simulator(s): first request\'s arrival → last answer, and the 10 s slot boundary → last answer:\n');
console.log('| scenario | start-up poll | first → last p50 | first → last max | slot → first request (max) | slot → last answer p50 | slot → last answer max | slots skipped (overlap) |');
console.log('|---|---|---|---|---|---|---|---|');
for (const r of results) {
  console.log(`| ${r.label} | ${ms(r.startupMs)} | ${ms(quantile(r.span, 0.5))} | ${ms(r.span.at(-1))} | ${ms(r.startLag.at(-1))} | ${ms(quantile(r.fromSlot, 0.5))} | ${ms(r.fromSlot.at(-1))} | ${r.skipped} |`);
}

console.log(`\nresident memory (VmRSS of /proc/<pid>/status) after ${RUN_S} s, and /metrics under ${SCRAPERS} concurrent back-to-back scrapers for ${SCRAPE_S} s:\n`);
console.log(`| scenario | RSS after ${RUN_S} s | peak RSS (VmHWM) | RSS after the scrapes | V8 heap used before / after the scrapes | /metrics body | series | one scrape alone (median of 5) | scrapes | /metrics p50 | /metrics p99 | max |`);
console.log('|---|---|---|---|---|---|---|---|---|---|---|---|');
for (const r of results) {
  const m = r.metrics;
  console.log(`| ${r.label} | ${mib(r.rssKiB)} MiB | ${mib(r.hwmKiB)} MiB | ${mib(r.rssAfterScrapeKiB)} MiB | ${(m.heapBefore / 2 ** 20).toFixed(1)} / ${(r.heapUsed / 2 ** 20).toFixed(1)} MiB | ${(m.bytes / 1024).toFixed(0)} KiB | ${m.series.toLocaleString('en')} | ${ms1(m.alone)} | ${m.scrapes}${m.failures ? ` (${m.failures} failed)` : ''} | ${ms1(m.p50)} | ${ms1(m.p99)} | ${ms1(m.max)} |`);
}
const xfer = results.find((r) => r.label.includes('transfers'));
if (xfer) console.log(`\n(transfers line: ${xfer.transfersApplied} transfers applied by the simulator over the whole run, start-up poll included)`);

const by = (id) => results.find((r) => r.label === SCENARIOS.find((s) => s.id === id).label);
const goals = [];
const s1000 = by('sub1000');
const i200 = by('independent200');
const base = by('baseline');
if (s1000) {
  goals.push(['1,000 subaccounts: API calls per cycle', '2 (get-balance + list)', num(total(s1000)), total(s1000) <= 2]);
  goals.push(['RSS at 1,000 subaccounts', '≤ 150 MiB', `${mib(s1000.rssKiB)} MiB${base ? ` (baseline ${mib(base.rssKiB)} MiB)` : ''}`, s1000.rssKiB / 1024 <= 150]);
  goals.push(['/metrics p99 at 1,000 subaccounts', '≤ 50 ms', ms1(s1000.metrics.p99), s1000.metrics.p99 <= 50]);
}
if (i200) {
  const worst = i200.fromSlot.at(-1);
  goals.push(['200 independent accounts fit a 10 s schedule', 'slot → last answer < 10 s, no slot skipped', `${ms(worst)} max, ${i200.skipped} skipped`, worst < SLOT_MS && i200.skipped === 0]);
}
if (goals.length > 0) {
  console.log('\ngoals:\n');
  console.log('| goal | target | measured | met |');
  console.log('|---|---|---|---|');
  for (const [g, t, v, ok] of goals) console.log(`| ${g} | ${t} | ${v} | ${ok ? 'yes' : '**no**'} |`);
}
