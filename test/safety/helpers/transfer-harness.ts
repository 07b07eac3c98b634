/**
 * The pieces of the balance-transfer safety tests (test/safety/transfer-storm.test.ts): a fleet
 * file for one primary and its subaccounts on the simulator, the built daemon run on it, the
 * transfers ledger as the daemon wrote it, the simulator's ground truth (every transfer request it
 * received, every transfer it applied), and the invariants checked over them.
 *
 * Each checker returns the list of violations (empty when the invariant holds) so that a failing
 * storm prints every broken rule at once, with the subaccount, the times and the references.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ledgerFileName } from '../../../src/ledger/file-ledger.js';
import { startSimulator, type AppliedTransfer, type Simulator, type SimRequestRecord } from '../../../src/simulator/simulator.js';
import { API_KEY, CANARY_SECRET } from '../../helpers/account.js';
import { MAIN, baseEnv, freePort, type Child } from '../../helpers/daemon.js';
import { ACCOUNT, DAY_MS, childDir, maxInWindow, readTextOrEmpty, scratchDir } from './crash-harness.js';

export { DAY_MS };
export const PRIMARY_KEY = API_KEY;

/**
 * The daemon under test: the built dist/main.js. TRANSFER_STORM_MAIN points the storm at another
 * build (a deliberately broken copy of dist/, to see the invariants catch a removed protection);
 * it is printed as a figure whenever set, so a run against anything but dist/ never passes unseen.
 */
export const MAIN_UNDER_TEST = process.env.TRANSFER_STORM_MAIN ? resolve(process.env.TRANSFER_STORM_MAIN) : MAIN;

export interface SubSpec {
  apiKey: string;
  cooldownMs: number;
  maxPerDay: number;
}

export interface GroupSpec {
  subs: SubSpec[];
  /** Below this a subaccount is refilled (the test keeps every subaccount at 0). */
  threshold: number;
  transferAmount: number;
  primaryReserve: number;
  maxTransferredPerDay: number;
  /** The primary's own top-up threshold (it has no trx: it never tops up by card). */
  primaryThreshold: number;
}

/**
 * The group every transfer test starts from: subaccounts refilled below 10 EUR by 5 EUR transfers,
 * a primary reserve of 50 EUR, an EUR cap out of reach. A test states its subaccounts and whatever
 * its argument rests on.
 */
export function fleetGroup(subs: SubSpec[], limits: Partial<Omit<GroupSpec, 'subs'>> = {}): GroupSpec {
  return { subs, threshold: 10, transferAmount: 5, primaryReserve: 50, maxTransferredPerDay: 100_000, primaryThreshold: 10, ...limits };
}

const duration = (ms: number) => (ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`);

/** The fleet file: one primary (no trx, so never a card top-up), its subaccounts refilled by transfer. */
export function fleetYaml(simUrl: string, g: GroupSpec): string {
  const first = g.subs[0];
  if (!first) throw new Error('a group needs a subaccount');
  const overrides = g.subs
    .filter((s) => s.cooldownMs !== first.cooldownMs || s.maxPerDay !== first.maxPerDay)
    .map((s) => `        ${s.apiKey}: {cooldown: ${duration(s.cooldownMs)}, maxPerDay: ${s.maxPerDay}}`);
  return [
    'accounts:',
    `  - name: ${ACCOUNT}`,
    `    apiKey: ${PRIMARY_KEY}`,
    '    apiSecret: ${env:STORM_PRIMARY_SECRET}',
    `    threshold: ${g.primaryThreshold}`,
    `    baseUrl: ${simUrl}`,
    `    subaccountsBaseUrl: ${simUrl}`,
    '    allowCustomBaseUrl: true',
    '    subaccounts:',
    '      watch: all',
    '      refill: transfer',
    `      threshold: ${g.threshold}`,
    `      transferAmount: ${g.transferAmount}`,
    `      primaryReserve: ${g.primaryReserve}`,
    `      maxTransferredPerDay: ${g.maxTransferredPerDay}`,
    `      cooldown: ${duration(first.cooldownMs)}`,
    `      maxPerDay: ${first.maxPerDay}`,
    ...(overrides.length > 0 ? ['      overrides:', ...overrides] : []),
    '',
  ].join('\n');
}

/** What every child daemon of the tests runs with (baseEnv) that is not about one account. */
const PROCESS_WIDE = ['PATH', 'POLL_SCHEDULE', 'METRICS_HOST', 'LOG_LEVEL'] as const;

/**
 * The environment of a fleet daemon: ACCOUNTS_FILE and the process-wide settings, nothing per
 * account (the VONAGE_* of baseEnv would make it a single-account daemon).
 */
export function fleetEnv(fleetFile: string, stateDir: string, extra: Record<string, string> = {}): Record<string, string> {
  const base = baseEnv('');
  return {
    ...Object.fromEntries(PROCESS_WIDE.map((k) => [k, base[k] ?? ''])),
    ACCOUNTS_FILE: fleetFile,
    STORM_PRIMARY_SECRET: CANARY_SECRET,
    STATE_DIR: stateDir,
    // Pinned, not inherited: the storm's held-answer kills and the late-apply timeout are timed against it.
    HTTP_TIMEOUT: '1s',
    ...extra,
  };
}

export function writeFleetFile(dir: string, simUrl: string, g: GroupSpec): string {
  const path = join(dir, 'fleet.yml');
  writeFileSync(path, fleetYaml(simUrl, g));
  return path;
}

export interface Fleet {
  sim: Simulator;
  stateDir: string;
  fleetFile: string;
  /** fleetEnv for this fleet file and STATE_DIR. */
  env: Record<string, string>;
}

/**
 * A simulator holding the group's primary at `primaryBalance` and its subaccounts at 0 EUR, the
 * fleet file pointing at it, and an empty STATE_DIR. `appliedLog` also keeps the simulator's
 * crash-proof log of applied transfers in the scratch directory.
 */
export async function startFleet(o: { prefix: string; group: GroupSpec; primaryBalance: number; sims: Simulator[]; appliedLog?: boolean }): Promise<Fleet> {
  const dir = scratchDir(o.prefix);
  const stateDir = join(dir, 'state');
  mkdirSync(stateDir);
  const sim = await startSimulator({
    apiKey: PRIMARY_KEY,
    apiSecret: CANARY_SECRET,
    balance: o.primaryBalance,
    subaccounts: o.group.subs.map((s) => ({ apiKey: s.apiKey, balance: 0 })),
    ...(o.appliedLog ? { appliedTransfersLogPath: join(dir, 'applied-transfers.jsonl') } : {}),
  });
  o.sims.push(sim);
  const fleetFile = writeFleetFile(dir, sim.url, o.group);
  return { sim, stateDir, fleetFile, env: fleetEnv(fleetFile, stateDir) };
}

/** Spawns the daemon under test on a free port; returns at once (no readiness wait). */
export async function spawnFleetDaemon(env: Record<string, string>): Promise<Child & { spawnedAt: number }> {
  const port = String(await freePort());
  const spawnedAt = Date.now();
  let out = '';
  const proc = spawn(process.execPath, [MAIN_UNDER_TEST], { env: { ...env, METRICS_PORT: port }, cwd: childDir(), stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => proc.on('exit', (code, signal) => r({ code, signal })));
  return { proc, output: () => out, exited, url: `http://127.0.0.1:${port}`, spawnedAt };
}

/** Keeps every watched subaccount at 0 EUR, below any threshold: each transfer is spent at once. */
export function holdSubaccountsEmpty(sim: Simulator, keys: readonly string[], everyMs = 10): () => void {
  const timer = setInterval(() => {
    for (const k of keys) if (sim.subaccount(k)?.balance !== 0) sim.setSubaccountBalance(k, 0);
  }, everyMs);
  return () => clearInterval(timer);
}

// ---------------------------------------------------------------------------------------------
// The transfers ledger (transfers-<primary>.jsonl), read the way a person auditing it would.

export interface AuditedTransfer {
  id: string;
  at: number;
  to?: string;
  requested?: number;
  /** EUR confirmed (a success, or found in the history). */
  amount?: number;
  /** The last outcome written; undefined: interrupted (the restarted daemon reads it as unknown). */
  outcome?: string;
  reason?: string;
  /** Every outcome written, in order (unknown first, then success/found_in_history, say). */
  outcomes: string[];
}

export function transferLedgerPath(stateDir: string): string {
  return join(stateDir, ledgerFileName(ACCOUNT, 'transfers'));
}

/** Complete lines only (a torn last line has no newline yet). Throws on a line that is not JSON. */
export function auditTransfers(stateDir: string): AuditedTransfer[] {
  const text = readTextOrEmpty(transferLedgerPath(stateDir));
  const byId = new Map<string, AuditedTransfer>();
  text
    .split('\n')
    .slice(0, -1)
    .filter((l) => l.trim() !== '')
    .forEach((l, i) => {
      let rec: Record<string, unknown>;
      try {
        rec = JSON.parse(l) as Record<string, unknown>;
      } catch {
        throw new Error(`transfers ledger line ${i + 1} is not JSON: ${l.slice(0, 200)}`);
      }
      const id = String(rec.id);
      if (rec.type === 'attempt') {
        if (byId.has(id)) throw new Error(`transfers ledger line ${i + 1}: attempt ${id} recorded twice`);
        byId.set(id, {
          id,
          at: Number(rec.at),
          ...(typeof rec.to === 'string' ? { to: rec.to } : {}),
          ...(typeof rec.requested === 'number' ? { requested: rec.requested } : {}),
          outcomes: [],
        });
        return;
      }
      const a = byId.get(id);
      if (!a) return;
      if (rec.type === 'outcome') {
        a.outcome = String(rec.outcome);
        a.outcomes.push(typeof rec.reason === 'string' ? `${a.outcome}/${rec.reason}` : a.outcome);
        if (typeof rec.reason === 'string') a.reason = rec.reason;
        else delete a.reason;
      } else if (rec.type === 'confirmed' && typeof rec.amount === 'number') {
        a.amount = rec.amount;
      }
    });
  return [...byId.values()].sort((x, y) => x.at - y.at);
}

/** Counts for cooldown and daily count: everything but a provable `not_sent`. */
export const countedTransfer = (a: AuditedTransfer) => a.outcome !== 'not_sent';
/** May have moved money: counts for the EUR cap (a refusal, `failed`, moved none). */
export const mayHaveMoved = (a: AuditedTransfer) => a.outcome === undefined || a.outcome === 'success' || a.outcome === 'unknown' || a.outcome === 'pending';

// ---------------------------------------------------------------------------------------------
// Ground truth from the simulator.

export interface TransferPost {
  at: number;
  requestId: string;
  from: string;
  to: string;
  amount: number;
  /** undefined when the body had none (or was not JSON). */
  reference: string | undefined;
}

export function transferPosts(sim: Simulator): TransferPost[] {
  return sim
    .requests()
    .filter((r: SimRequestRecord) => r.endpoint === 'transfer' && r.method === 'POST')
    .map((r) => {
      let body: Record<string, unknown> = {};
      try {
        body = JSON.parse(r.body) as Record<string, unknown>;
      } catch {
        // kept with an undefined reference: T2 reports it
      }
      return {
        at: r.at,
        requestId: r.requestId,
        from: String(body.from),
        to: String(body.to),
        amount: Number(body.amount),
        reference: typeof body.reference === 'string' && body.reference !== '' ? body.reference : undefined,
      };
    })
    .sort((a, b) => a.at - b.at);
}

export const listCalls = (sim: Simulator) => sim.requests().filter((r) => r.endpoint === 'list_subaccounts').map((r) => r.at);

export function appliedByRef(sim: Simulator): Map<string, AppliedTransfer> {
  return new Map(sim.appliedTransfers().map((t) => [t.reference, t]));
}

// ---------------------------------------------------------------------------------------------
// The invariants. Each returns its violations; an empty list means it holds.

const iso = (ms: number) => new Date(ms).toISOString();

/**
 * T1, per subaccount, with no tolerance: every transfer request to a subaccount reached the
 * simulator at least one cooldown after the ledger stamp of the previous request to it (the
 * daemon stamps, fsyncs, then sends, so the arrival is later than its own stamp; measuring from the
 * previous stamp is exact). And counted ledger attempts to a subaccount are one cooldown apart.
 */
export function checkSpacing(posts: TransferPost[], attempts: AuditedTransfer[], subs: SubSpec[]) {
  const problems: string[] = [];
  const byId = new Map(attempts.map((a) => [a.id, a]));
  let minArrivalSinceStamp = Number.POSITIVE_INFINITY;
  let minAttemptGap = Number.POSITIVE_INFINITY;
  for (const s of subs) {
    const mine = posts.filter((p) => p.to === s.apiKey);
    for (let i = 1; i < mine.length; i++) {
      const prev = mine[i - 1]!;
      const stamp = prev.reference !== undefined ? byId.get(prev.reference)?.at : undefined;
      // A request without its attempt is T2's to report; measure it from its own arrival here.
      const since = mine[i]!.at - (stamp ?? prev.at);
      minArrivalSinceStamp = Math.min(minArrivalSinceStamp, since);
      if (since < s.cooldownMs) {
        problems.push(`T1 ${s.apiKey}: transfer request at ${iso(mine[i]!.at)} (ref ${mine[i]!.reference}) arrived ${since} ms after the previous one (ref ${prev.reference}) was committed; cooldown ${s.cooldownMs} ms`);
      }
    }
    const counted = attempts.filter((a) => a.to === s.apiKey && countedTransfer(a)).map((a) => a.at).sort((x, y) => x - y);
    for (let i = 1; i < counted.length; i++) {
      const g = counted[i]! - counted[i - 1]!;
      minAttemptGap = Math.min(minAttemptGap, g);
      if (g < s.cooldownMs) problems.push(`T1 ${s.apiKey}: two counted ledger attempts ${g} ms apart (cooldown ${s.cooldownMs} ms)`);
    }
  }
  return { problems, minArrivalSinceStamp, minAttemptGap };
}

/**
 * T2: every transfer request carries a reference that is the id of a ledger attempt written
 * before the request arrived, for the same subaccount and amount, from the primary; no reference
 * reaches the simulator twice, and no applied transfer lacks its request.
 */
export function checkReferences(sim: Simulator, posts: TransferPost[], attempts: AuditedTransfer[]) {
  const problems: string[] = [];
  const byId = new Map(attempts.map((a) => [a.id, a]));
  const seen = new Map<string, number>();
  let maxLag = 0;
  for (const p of posts) {
    if (p.reference === undefined) {
      problems.push(`T2 transfer request at ${iso(p.at)} to ${p.to} carries no reference`);
      continue;
    }
    seen.set(p.reference, (seen.get(p.reference) ?? 0) + 1);
    const a = byId.get(p.reference);
    if (!a) {
      problems.push(`T2 transfer request at ${iso(p.at)} to ${p.to}: reference ${p.reference} is no ledger attempt`);
      continue;
    }
    if (a.at > p.at) problems.push(`T2 reference ${p.reference}: the ledger attempt (${iso(a.at)}) is later than the request (${iso(p.at)})`);
    if (a.to !== p.to || a.requested !== p.amount || p.from !== PRIMARY_KEY) {
      problems.push(`T2 reference ${p.reference}: request ${p.from}→${p.to} ${p.amount} EUR, ledger attempt →${a.to} ${a.requested} EUR`);
    }
    maxLag = Math.max(maxLag, p.at - a.at);
  }
  for (const [ref, n] of seen) if (n > 1) problems.push(`T2 reference ${ref} was sent ${n} times`);
  const postIds = new Set(posts.map((p) => p.requestId));
  const applied = sim.appliedTransfers();
  for (const t of applied) if (!postIds.has(t.requestId)) problems.push(`T2 applied transfer ${t.id} has no recorded request`);
  const refs = new Map<string, number>();
  for (const t of applied) refs.set(t.reference, (refs.get(t.reference) ?? 0) + 1);
  for (const [ref, n] of refs) if (n > 1) problems.push(`T2 reference ${ref} was applied ${n} times`);
  return { problems, maxLag };
}

/**
 * T3: at most maxPerDay transfers to each subaccount in any rolling 24 h (requests at the
 * simulator, and counted ledger attempts); the EUR applied in any rolling 24 h never above the
 * primary's maxTransferredPerDay (ground truth), nor the EUR the ledger says may have moved.
 */
export function checkCaps(sim: Simulator, posts: TransferPost[], attempts: AuditedTransfer[], g: GroupSpec) {
  const problems: string[] = [];
  const perSub: Record<string, number> = {};
  for (const s of g.subs) {
    const truth = maxInWindow(posts.filter((p) => p.to === s.apiKey).map((p) => p.at), DAY_MS);
    const ledger = maxInWindow(attempts.filter((a) => a.to === s.apiKey && countedTransfer(a)).map((a) => a.at), DAY_MS);
    perSub[s.apiKey] = truth;
    if (truth > s.maxPerDay) problems.push(`T3 ${s.apiKey}: ${truth} transfer requests in 24 h (maxPerDay ${s.maxPerDay})`);
    if (ledger > s.maxPerDay) problems.push(`T3 ${s.apiKey}: ${ledger} counted ledger attempts in 24 h (maxPerDay ${s.maxPerDay})`);
  }
  const applied = sim.appliedTransfers().filter((t) => t.from === PRIMARY_KEY);
  let maxEur = 0;
  for (const t of applied) {
    const eur = applied.filter((u) => u.at >= t.at && u.at < t.at + DAY_MS).reduce((n, u) => n + u.amount, 0);
    maxEur = Math.max(maxEur, eur);
  }
  if (maxEur > g.maxTransferredPerDay + 1e-9) problems.push(`T3 ${maxEur} EUR applied in 24 h (maxTransferredPerDay ${g.maxTransferredPerDay})`);
  const ledgerEur = attempts.filter(mayHaveMoved).reduce((n, a) => n + (a.amount ?? a.requested ?? 0), 0);
  if (ledgerEur > g.maxTransferredPerDay + 1e-9) problems.push(`T3 the ledger counts ${ledgerEur} EUR that may have moved (maxTransferredPerDay ${g.maxTransferredPerDay})`);
  return { problems, perSub, maxEur, ledgerEur };
}

/**
 * T4: the test never touches the primary's balance and the primary never tops up by card, so its
 * balance moves only by our transfers: after each applied transfer it must be at or above the
 * reserve.
 */
export function checkReserve(sim: Simulator, g: GroupSpec) {
  const problems: string[] = [];
  let minAfter = Number.POSITIVE_INFINITY;
  for (const t of sim.appliedTransfers()) {
    minAfter = Math.min(minAfter, t.primaryBalanceAfter);
    if (t.primaryBalanceAfter < g.primaryReserve - 1e-9) {
      problems.push(`T4 the transfer ${t.reference} to ${t.to} at ${iso(t.at)} left the primary at ${t.primaryBalanceAfter} EUR, below its reserve of ${g.primaryReserve}`);
    }
  }
  if (sim.appliedTopUps().length > 0) problems.push(`T4 the primary was topped up by card ${sim.appliedTopUps().length} times (it has no trx)`);
  return { problems, minAfter };
}

/**
 * T6, once the survivor has run with the history available: the ledger agrees with the money.
 * Every applied transfer's attempt ends `success` (said by the answer, or found in the history);
 * no attempt whose transfer was never applied says `success`. An applied transfer recorded
 * `failed` (absent from the history) would free EUR cap and reserve that were really spent.
 */
export function checkLedgerTruth(sim: Simulator, attempts: AuditedTransfer[]) {
  const problems: string[] = [];
  const applied = appliedByRef(sim);
  for (const a of attempts) {
    const t = applied.get(a.id);
    if (t && a.outcome !== 'success') problems.push(`T6 attempt ${a.id} to ${a.to} was applied by Vonage but the ledger ends ${a.outcome ?? 'without an outcome'} (${a.outcomes.join(' → ') || 'interrupted'})`);
    if (!t && a.outcome === 'success') problems.push(`T6 attempt ${a.id} to ${a.to} says success but no such transfer was applied`);
    if (t && a.amount !== undefined && Math.abs(a.amount - t.amount) > 1e-9) problems.push(`T6 attempt ${a.id}: ledger amount ${a.amount}, applied ${t.amount}`);
  }
  return { problems };
}
