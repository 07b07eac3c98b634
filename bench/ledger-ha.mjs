// The price of the shared ledger (issue 10): a claim (decide and record one top-up, atomically)
// and a whole cycle (poll the simulator, read the ledger, decide) on PostgreSQL against the file
// ledger, side by side. PostgreSQL runs here, on loopback, as the unprivileged `postgres` user in
// a temporary directory (initdb refuses root), fsync off as in the tests: the figures are the
// round trips and the locking, not a disk. Needs the PostgreSQL 15 server binaries
// (apt-get install postgresql) and a build (npm run build).
//   node bench/ledger-ha.mjs            CLAIMS=2000 CYCLES=300 by default
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

const CLAIMS = Number(process.env.CLAIMS ?? 2000);
const CYCLES = Number(process.env.CYCLES ?? 300);
const BIN = ['/usr/lib/postgresql/16/bin', '/usr/lib/postgresql/15/bin'].find((d) => existsSync(join(d, 'initdb')));
if (!BIN) {
  console.error('bench/ledger-ha.mjs needs the PostgreSQL server: apt-get install -y postgresql');
  process.exit(1);
}

const { FileLedger } = await import('../dist/ledger/file-ledger.js');
const { PostgresLedger } = await import('../dist/ledger/postgres-ledger.js');
const { migrate } = await import('../dist/ledger/postgres-schema.js');
const { startSimulator } = await import('../dist/simulator/simulator.js');
const { loadConfig } = await import('../dist/config/config.js');
const { buildParts, settleLedgers } = await import('../dist/daemon.js');

const freePort = () => new Promise((resolve) => { const s = createServer(); s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); }); });

async function startPostgres() {
  const root = process.getuid() === 0;
  const dir = mkdtempSync(join(tmpdir(), 'bench-pg-'));
  writeFileSync(join(dir, 'pw'), 'bench-pw\n');
  const as = root ? { uid: Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' })), gid: Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' })) } : {};
  if (root) { chownSync(dir, as.uid, as.gid); chownSync(join(dir, 'pw'), as.uid, as.gid); }
  chmodSync(dir, 0o700);
  execFileSync(join(BIN, 'initdb'), ['-D', join(dir, 'data'), '-U', 'postgres', '--auth-host=scram-sha-256', '--auth-local=trust', `--pwfile=${join(dir, 'pw')}`, '--no-sync'], { ...as, stdio: 'pipe', cwd: dir });
  const port = await freePort();
  const proc = spawn(join(BIN, 'postgres'), ['-D', join(dir, 'data'), '-k', dir, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off'], { ...as, stdio: ['ignore', 'pipe', 'pipe'], cwd: dir });
  let log = '';
  proc.stderr.on('data', (d) => (log += d));
  proc.stdout.on('data', (d) => (log += d));
  for (let i = 0; i < 600 && !/ready to accept connections/.test(log); i++) await new Promise((r) => setTimeout(r, 50));
  return { url: `postgres://postgres:bench-pw@127.0.0.1:${port}/postgres`, stop: async () => { const done = new Promise((r) => proc.once('exit', r)); proc.kill('SIGINT'); await done; rmSync(dir, { recursive: true, force: true }); } };
}

const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]; };
const fmt = (xs) => `${pct(xs, 50).toFixed(2)} / ${pct(xs, 99).toFixed(2)}`;

const settings = { threshold: 10, cooldownMs: 0, maxPerDay: 1_000_000, topupEnabled: true, dryRun: false, maxReadingAgeMs: 10_000 };
const reading = () => ({ value: 4, autoReload: true, at: Date.now(), mono: performance.now() });

async function claims(ledger) {
  const times = [];
  for (let i = 0; i < CLAIMS; i++) {
    const t = performance.now();
    const c = await ledger.claim(reading(), settings, performance.now());
    if (!c.attempt) throw new Error(`claim ${i} not granted: ${JSON.stringify(c.decision)}`);
    await ledger.recordOutcome(c.attempt, 'success');
    times.push(performance.now() - t);
  }
  return times;
}

async function cycles(extra) {
  const sim = await startSimulator({ apiKey: 'benchkey', apiSecret: 'bench-secret-0123456789', trx: 'bench-trx', balance: 50 });
  const stateDir = mkdtempSync(join(tmpdir(), 'bench-ha-state-'));
  const config = loadConfig({ VONAGE_API_KEY: 'benchkey', VONAGE_API_SECRET: 'bench-secret-0123456789', VONAGE_TOPUP_TRX: 'bench-trx', VONAGE_BASE_URL: sim.url, VONAGE_ALLOW_CUSTOM_BASE_URL: 'true', TOPUP_THRESHOLD: '10', STATE_DIR: stateDir, LOG_LEVEL: 'silent', INSTANCE_ID: 'bench', ...extra });
  const parts = buildParts(config, { pollAtStart: false });
  await settleLedgers(parts);
  const times = [];
  for (let i = 0; i < CYCLES + 20; i++) {
    const t = performance.now();
    const [r] = await parts.fleet.runCycle();
    if (!r.primary.ok) throw new Error('cycle failed');
    if (i >= 20) times.push(performance.now() - t);
  }
  await parts.closeLedgers();
  await sim.close();
  rmSync(stateDir, { recursive: true, force: true });
  return times;
}

const db = await startPostgres();
try {
  const pool = new pg.Pool({ connectionString: db.url, max: 4 });
  await migrate(pool, 'bench');
  const dir = mkdtempSync(join(tmpdir(), 'bench-ha-file-'));
  const file = FileLedger.open(dir, 'bench', Date.now, { apiKey: 'benchkey' });
  const fileClaims = await claims(file);
  file.close();
  rmSync(dir, { recursive: true, force: true });
  const pgLedger = new PostgresLedger({ pool, schema: 'bench', account: 'bench', apiKey: 'benchkey', kind: 'topups', instanceId: 'bench', sendBoundMs: 7500 });
  const pgClaims = await claims(pgLedger);
  await pool.end();
  const fileCycles = await cycles({ LEDGER: 'file' });
  const pgCycles = await cycles({ LEDGER: 'postgres', DATABASE_URL: db.url, DATABASE_SCHEMA: 'bench_cycle' });
  console.log(`${CLAIMS} claims (each granted, recorded, then its outcome written) and ${CYCLES} cycles (balance read from the simulator over loopback, ledger read, decision: none), one after another`);
  console.log('| ledger | claim + outcome, p50 / p99 ms | cycle, p50 / p99 ms |');
  console.log('|---|---|---|');
  console.log(`| file (STATE_DIR, fsync per record) | ${fmt(fileClaims)} | ${fmt(fileCycles)} |`);
  console.log(`| PostgreSQL 15 on loopback (one transaction per claim, advisory lock, lease check) | ${fmt(pgClaims)} | ${fmt(pgCycles)} |`);
} finally {
  await db.stop();
}
