// Ledger start-up time at any history length (issue 7, defect 7): a ledger of N attempts, each with
// its outcome, spread over N/1000 days (the most TOPUP_MAX_PER_DAY allows). The first open reads it
// all and rotates it into an archive; every later open reads only the last 7 days. Run in a
// child process per size, so each figure includes nothing but the open.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const SIZES = (process.env.LEDGER_SIZES ?? '1000,130000,1000000').split(',').map(Number);
const DAY = 86_400_000;

if (process.argv[2] === '--open') {
  const { Ledger } = await import('../dist/ledger/file-ledger.js');
  const started = performance.now();
  const l = Ledger.open(process.argv[3], 'bench', Date.now);
  const ms = performance.now() - started;
  const view = l.view();
  l.close();
  process.stdout.write(JSON.stringify({ ms, attempts: view.attempts.length, writable: view.writable, rssMiB: process.memoryUsage().rss / 2 ** 20 }));
  process.exit(0);
}

const open = (dir) => {
  const r = spawnSync(process.execPath, [new URL(import.meta.url).pathname, '--open', dir], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout);
};

console.log('| attempts in the ledger | file size | first open (reads all, rotates) | later opens | attempts kept in memory | RSS of the opening process after the open |');
console.log('|---|---|---|---|---|---|');
for (const n of SIZES) {
  const dir = mkdtempSync(join(tmpdir(), 'bench-ledger-'));
  const file = join(dir, 'topups-bench.jsonl');
  const now = Date.now();
  const span = Math.max(1, n / 1000) * DAY;
  const chunks = [];
  for (let i = 0; i < n; i++) {
    const at = Math.round(now - span + (i * span) / n);
    chunks.push(`{"v":1,"type":"attempt","at":${at},"id":"id-${i}","balance":4,"threshold":10,"account":"bench"}\n{"v":1,"type":"outcome","at":${at + 1},"id":"id-${i}","outcome":"success"}\n`);
    if (chunks.length === 50_000) {
      writeFileSync(file, chunks.join(''), { flag: 'a' });
      chunks.length = 0;
    }
  }
  writeFileSync(file, chunks.join(''), { flag: 'a' });
  const bytes = statSync(file).size;
  const first = open(dir);
  const later = [open(dir), open(dir), open(dir)].sort((a, b) => a.ms - b.ms)[1];
  console.log(`| ${n.toLocaleString('en')} | ${(bytes / 2 ** 20).toFixed(1)} MiB | ${first.ms.toFixed(0)} ms | ${later.ms.toFixed(1)} ms (median of 3) | ${first.attempts.toLocaleString('en')} | ${Math.max(first.rssMiB, later.rssMiB).toFixed(0)} MiB |`);
  rmSync(dir, { recursive: true, force: true });
}
