/**
 * Shared pieces of the crash / lost-answer / lagging-balance / shutdown safety tests: a seeded
 * PRNG, the built daemon as a child process (test/helpers/daemon.ts), the ledger file as the
 * daemon wrote it, the simulator's ground truth, and a collector for the secret canary.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ledgerFileName } from '../../../src/ledger/file-ledger.js';
import type { AppliedTopUp, Simulator, SimRequestRecord } from '../../../src/simulator/simulator.js';
import { expectNoSecret } from '../../helpers/account.js';
import { afterAll } from 'vitest';
import { freePort, run, type Child } from '../../helpers/daemon.js';

/** The account label every child daemon runs with (baseEnv sets VONAGE_ACCOUNT_NAME=e2e). */
export const ACCOUNT = 'e2e';

export const DAY_MS = 86_400_000;

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)));

/** mulberry32: small, fast, good enough to make random instants reproducible from a seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** SAFETY_SEED=<n> replays a run; otherwise a fresh seed, always printed. */
export function seedFor(name: string): number {
  const fromEnv = process.env.SAFETY_SEED;
  const seed = fromEnv !== undefined && /^\d+$/.test(fromEnv) ? Number(fromEnv) : Math.floor(Math.random() * 2 ** 31);
  figure(`${name} seed (replay with SAFETY_SEED=${seed})`, seed);
  return seed;
}

export function figure(name: string, value: string | number): void {
  console.log(`[figure] ${name}: ${value}`);
}

const scratch: string[] = [];

/** A temporary directory removed by removeScratch() (kept when KEEP_SAFETY_STATE=1, for autopsy). */
export function scratchDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  scratch.push(dir);
  return dir;
}

export function removeScratch(): void {
  if (process.env.KEEP_SAFETY_STATE === '1') {
    if (scratch.length > 0) console.log(`[safety] kept ${scratch.length} state dirs, e.g. ${scratch[0]}`);
    return;
  }
  for (const dir of scratch.splice(0)) rmSync(dir, { recursive: true, force: true });
}

/** Working directory for every child (no .env there); one per test file, not one per spawn. */
let childCwd: string | undefined;
export function childDir(): string {
  childCwd ??= scratchDir('crash-cwd-');
  return childCwd;
}

/** Spawns dist/main.js on a free metrics port; returns at once (no readiness wait). */
export async function spawnDaemon(env: Record<string, string>): Promise<Child & { spawnedAt: number }> {
  const port = String(await freePort());
  const spawnedAt = Date.now();
  const child = run([], { ...env, METRICS_PORT: port }, childDir());
  return { ...child, spawnedAt };
}

export const alive = (c: Child) => c.proc.exitCode === null && c.proc.signalCode === null;

/** Waits for `check` (polled every `everyMs`) or the deadline; true if it held. */
export async function until(check: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 5): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(everyMs);
  }
}

// ---------------------------------------------------------------------------------------------
// The ledger file, read the way a person auditing it would.

export type LedgerLine =
  | { type: 'attempt'; id: string; at: number; balance: number }
  | { type: 'outcome'; id: string; at: number; outcome: string; reason?: string }
  | { type: 'confirmed'; id: string; at: number; balance: number };

export function ledgerPath(stateDir: string): string {
  return join(stateDir, ledgerFileName(ACCOUNT));
}

/** A file the daemon (or the simulator) may not have written yet reads as empty. */
export function readTextOrEmpty(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

export function ledgerText(stateDir: string): string {
  return readTextOrEmpty(ledgerPath(stateDir));
}

/** Complete lines only (a torn last line has no newline yet). Throws on a line that is not JSON. */
export function ledgerLines(stateDir: string): LedgerLine[] {
  const text = ledgerText(stateDir);
  return text
    .split('\n')
    .slice(0, -1)
    .filter((l) => l.trim() !== '')
    .map((l, i) => {
      try {
        return JSON.parse(l) as LedgerLine;
      } catch {
        throw new Error(`ledger line ${i + 1} is not JSON: ${l.slice(0, 200)}`);
      }
    });
}

export interface AuditedAttempt {
  id: string;
  at: number;
  outcome?: string;
  reason?: string;
  confirmed: boolean;
}

export function auditLedger(stateDir: string): AuditedAttempt[] {
  const byId = new Map<string, AuditedAttempt>();
  for (const line of ledgerLines(stateDir)) {
    if (line.type === 'attempt') byId.set(line.id, { id: line.id, at: line.at, confirmed: false });
    else if (line.type === 'outcome') {
      const a = byId.get(line.id);
      if (a) {
        a.outcome = line.outcome;
        if (line.reason !== undefined) a.reason = line.reason;
      }
    } else if (line.type === 'confirmed') {
      const a = byId.get(line.id);
      if (a) a.confirmed = true;
    }
  }
  return [...byId.values()].sort((x, y) => x.at - y.at);
}

/** Attempts that count for cooldown and cap: everything but a provable `not_sent`. */
export const counted = (attempts: AuditedAttempt[]) => attempts.filter((a) => a.outcome !== 'not_sent');

// ---------------------------------------------------------------------------------------------
// Ground truth from the simulator.

export function topUpPosts(sim: Simulator): SimRequestRecord[] {
  return sim
    .requests()
    .filter((r) => r.endpoint === 'topup' && r.method === 'POST')
    .sort((a, b) => a.at - b.at);
}

/** When each applied top-up's request reached the simulator (what the money decision is about). */
export function appliedWithArrival(sim: Simulator): (AppliedTopUp & { arrivedAt: number })[] {
  const posts = new Map(topUpPosts(sim).map((p) => [p.requestId, p]));
  return sim.appliedTopUps().map((t) => {
    const p = posts.get(t.requestId);
    if (!p) throw new Error(`applied top-up ${t.requestId} has no recorded POST`);
    return { ...t, arrivedAt: p.at };
  });
}

export function gaps(times: number[]): number[] {
  const s = [...times].sort((a, b) => a - b);
  return s.slice(1).map((t, i) => t - s[i]!);
}

export const minOf = (xs: number[]) => (xs.length === 0 ? Number.POSITIVE_INFINITY : Math.min(...xs));

/** The most events in any window [t, t + windowMs). */
export function maxInWindow(times: number[], windowMs: number): number {
  const s = [...times].sort((a, b) => a - b);
  let best = 0;
  let lo = 0;
  for (let hi = 0; hi < s.length; hi++) {
    while (s[hi]! - s[lo]! >= windowMs) lo++;
    best = Math.max(best, hi - lo + 1);
  }
  return best;
}

export function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

/**
 * Each POST must be explained by its own ledger attempt stamped before it (within `maxLagMs`):
 * a POST with no attempt, or two POSTs for one attempt, is a re-send. Returns the pairs and the
 * latency from ledger stamp to arrival for each POST.
 */
export function matchPostsToAttempts(
  posts: { at: number }[],
  attempts: AuditedAttempt[],
  maxLagMs: number,
): { lags: number[]; pairs: { postAt: number; attemptAt: number }[]; problems: string[] } {
  const problems: string[] = [];
  const lags: number[] = [];
  const pairs: { postAt: number; attemptAt: number }[] = [];
  const used = new Set<string>();
  for (const p of [...posts].sort((a, b) => a.at - b.at)) {
    let best: AuditedAttempt | undefined;
    for (const a of attempts) if (a.at <= p.at && !used.has(a.id) && (!best || a.at > best.at)) best = a;
    if (!best || p.at - best.at > maxLagMs) {
      problems.push(`POST at ${new Date(p.at).toISOString()} has no unused ledger attempt within ${maxLagMs} ms before it`);
      continue;
    }
    used.add(best.id);
    lags.push(p.at - best.at);
    pairs.push({ postAt: p.at, attemptAt: best.at });
  }
  return { lags, pairs, problems };
}

/**
 * "No two top-ups within one cooldown", on the simulator's arrival times, without a fixed
 * tolerance. The daemon stamps the attempt, fsyncs, then sends; the simulator stamps arrival a
 * little later (lag L >= 0, larger on a loaded box). So the arrival gap is attempt gap + L2 - L1:
 * it may fall short of the cooldown by the EARLIER request's own lag, never more. The exact check
 * is therefore: every POST arrives at least one cooldown after the ledger stamp of the previous
 * POST (arrival[i+1] - stamp[i] >= cooldown), with each POST matched to its own attempt (so a
 * re-send cannot borrow one). A duplicate cannot hide in a tolerance because there is none.
 * Also: counted ledger attempts are at least one cooldown apart (exact).
 */
export function checkSpacing(posts: { at: number }[], attempts: AuditedAttempt[], cooldownMs: number, maxLagMs = 2000) {
  const { lags, pairs, problems } = matchPostsToAttempts(posts, attempts, maxLagMs);
  for (let i = 1; i < pairs.length; i++) {
    const since = pairs[i]!.postAt - pairs[i - 1]!.attemptAt;
    if (since < cooldownMs) {
      problems.push(`POST at ${new Date(pairs[i]!.postAt).toISOString()} arrived ${since} ms after the previous top-up was committed (cooldown ${cooldownMs} ms)`);
    }
  }
  const attemptGaps = gaps(counted(attempts).map((a) => a.at));
  for (const g of attemptGaps) if (g < cooldownMs) problems.push(`two counted ledger attempts ${g} ms apart (cooldown ${cooldownMs} ms)`);
  return {
    problems,
    minArrivalGap: minOf(gaps(posts.map((p) => p.at))),
    maxLag: lags.length === 0 ? 0 : Math.max(...lags),
    minAttemptGap: minOf(attemptGaps),
  };
}

/** Keeps the simulated balance below the threshold: every applied top-up is spent again at once. */
export function holdBalanceLow(sim: Simulator, low: number, threshold: number, everyMs = 10): () => void {
  const timer = setInterval(() => {
    if (sim.balance() >= threshold) sim.setBalance(low);
  }, everyMs);
  return () => clearInterval(timer);
}

// ---------------------------------------------------------------------------------------------
// Secret canary over everything a run produced.

export class Outputs {
  private readonly items: [string, string][] = [];
  add(label: string, text: string): void {
    this.items.push([label, text]);
  }
  addStateDir(label: string, dir: string): void {
    for (const f of readdirSync(dir)) {
      try {
        this.add(`${label}/${f}`, readFileSync(join(dir, f), 'utf8'));
      } catch {
        // a lock temp file may vanish between readdir and read
      }
    }
  }
  async addHttp(label: string, url: string): Promise<void> {
    for (const path of ['/metrics', '/status']) {
      const r = await fetch(`${url}${path}`).catch(() => undefined);
      if (r) this.add(`${label} ${path}`, await r.text());
    }
  }
  get count(): number {
    return this.items.length;
  }
  get bytes(): number {
    return this.items.reduce((n, [, t]) => n + t.length, 0);
  }
  check(): void {
    for (const [label, text] of this.items) expectNoSecret(text, label);
  }
}

/** Resolves with the time the daemon logged that it started, or undefined if it exits first. */
export function whenStarted(c: Child): Promise<number | undefined> {
  return new Promise((resolve) => {
    let done = false;
    const check = () => {
      if (done) return;
      if (c.output().includes('"msg":"watchdog started"')) {
        done = true;
        resolve(Date.now());
      }
    };
    c.proc.stdout?.on('data', () => setImmediate(check));
    void c.exited.then(() => {
      check();
      if (!done) {
        done = true;
        resolve(undefined);
      }
    });
    check();
  });
}

/**
 * Simulators and daemons a test file starts, cleaned up after its last test: children still
 * alive are killed, simulators closed, scratch directories removed.
 */
export function cleanupAfterAll(): { sims: Simulator[]; children: Child[] } {
  const tracked = { sims: [] as Simulator[], children: [] as Child[] };
  afterAll(async () => {
    for (const c of tracked.children) if (alive(c)) c.proc.kill('SIGKILL');
    for (const s of tracked.sims) await s.close();
    removeScratch();
  });
  return tracked;
}
