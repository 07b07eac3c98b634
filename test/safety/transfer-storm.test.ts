/**
 * Kill -9 storm for balance transfers (the fleet's subaccount refills, src/cycle/subaccount-group.ts).
 * Vonage has no idempotency key, so the only thing between a crash and a second transfer is the
 * transfers ledger (recorded before sending), the rule that a transfer of unknown outcome counts,
 * and the transfer history, where the ledger attempt id comes back as `reference`.
 *
 * The built daemon runs with ACCOUNTS_FILE: one primary (no trx: it never tops up by card), three
 * subaccounts kept at 0 EUR (below their threshold) by the test, a 1 s POLL_SCHEDULE. It is
 * restarted over and over on one STATE_DIR against one simulator and killed:
 *
 *  - failpoint after_transfer_recorded: every transfer of the cycle is in the ledger, none sent;
 *  - failpoint before_transfer_outcome_recorded: Vonage applied the first, its outcome is not written;
 *  - held answer (lost_answer hang): applied, the answer never comes, the daemon is killed;
 *  - held slow (slow): the request arrived, Vonage applies it only after the daemon is dead;
 *  - lost answer (reset, truncated): applied, the answer is lost, the daemon lives on: its next
 *    cycle must settle the transfer from the history, and never resend it;
 *  - history down (list_transfers answers 500 / 429 / garbage / reset), with a lost answer: the
 *    unknown transfer (and any inherited from the last crash) must go on counting;
 *  - list flaky (list_subaccounts fails first), and plain random kill delays.
 *
 * Ground truth is the simulator: every transfer request it received and every transfer it applied.
 *
 *  T1  no two transfer requests to one subaccount less than its cooldown apart (measured from the
 *      ledger stamp of the earlier one: exact, no tolerance), and counted ledger attempts to it a
 *      cooldown apart. Catches: an interrupted or unknown attempt not counted after a restart (the
 *      successor resends; the storm checks each successor decided inside the cooldown, so such a
 *      resend cannot fall outside it); a history miss or failure read as "did not happen" and
 *      retried; a retry of a lost answer; a decision on a stale ledger view.
 *  T2  every request carries as `reference` the id of a ledger attempt written before it, for the
 *      same subaccount and amount; no reference reaches Vonage twice; no applied transfer lacks its
 *      request. Catches: sending before recording (or without recording), a retry of the same
 *      attempt (same reference twice, even when spaced beyond the cooldown), a wrong reference
 *      (which would make the history lookup useless).
 *  T3  at most maxPerDay per subaccount in any rolling 24 h, and the EUR applied (and the EUR the
 *      ledger says may have moved) never above maxTransferredPerDay: the second storm, with a cap
 *      of 30 EUR and one subaccount at maxPerDay 1. Catches: a history miss, failure or lookup
 *      skipped read as `failed` (a refusal frees the EUR cap: the cooldown and daily count still
 *      hold, so only the EUR cap shows it), unknown or interrupted attempts left out of the cap,
 *      the per-subaccount cap not surviving a restart.
 *  T4  the primary, whose balance only our transfers move, never below primaryReserve after a
 *      transfer (the third storm has room for two transfers of three). Catches: a first-fit budget
 *      that forgets what it already planned this cycle, unknown transfers not subtracted.
 *  T5  liveness: transfers do happen, at least one per restart that was killed after Vonage
 *      applied one, and each kind of restart really landed at its instant enough times.
 *  T6  once a survivor has run with the history back: every applied transfer's attempt ends
 *      `success`, and no attempt says success for money that never moved. Catches: the history
 *      lookup made a no-op (no money is at risk then, which is why T1–T4 cannot see it: unknown
 *      counts like success; but the ledger would never settle), or resolved the wrong way.
 *
 * Cooldowns of 3, 4 and 5 s (one per subaccount, so they fall due apart and cycles fund one, two or
 * three at once): long enough that the restarted daemon's first decision (~0.5 s after a kill)
 * always lands inside the cooldown of the transfer it inherited, which the storm asserts, and short
 * enough for dozens of transfers per storm. A restart that needs a transfer due is deferred while
 * none is, and a random-delay restart runs instead, so cooldowns fill with restarts that must not
 * send. SAFETY_SEED replays a run; figures are printed as [figure] lines.
 *
 * Checked against deliberately broken builds (a copy of dist/ patched in /tmp, run with
 * TRANSFER_STORM_MAIN=/tmp/<copy>/dist/main.js; never src/), each with SAFETY_SEED=794987364:
 *  - unknown / interrupted transfers not counted (transfer-policy `counted`): T1, 25 violations
 *    (money sent twice to one subaccount 270-740 ms apart, cooldown 3 s), and T3 (sub-a twice at
 *    maxPerDay 1);
 *  - the history lookup skipped and the unknown read as absent at once (ABSENT_AFTER_MS 0): T3
 *    (45 EUR applied under a 30 EUR cap) and T6 (27 applied transfers recorded failed);
 *  - a lost answer retried once with the same reference: T2 (20: references sent twice), T1 (10),
 *    T4 (the retry took the primary to 47 EUR, reserve 50);
 *  - resolveUnknown made a no-op: T6 only (30: applied, never settled), as argued above.
 * A known gap the storm does not provoke (T4): a transfer Vonage applies after the next list read;
 * see transfer-late-apply.test.ts.
 */
import { describe, expect, it } from 'vitest';
import type { SimFault, Simulator } from '../../src/simulator/simulator.js';
import { Outputs, alive, cleanupAfterAll, figure, percentile, prng, seedFor, sleep, until } from './helpers/crash-harness.js';
import { killAtRandom, restartFigures, runStorm, runSurvivor, startupFigure, type Restart as StormRestart, type StormRun, type Victim } from './helpers/storm.js';
import {
  DAY_MS,
  MAIN_UNDER_TEST,
  appliedByRef,
  auditTransfers,
  checkCaps,
  checkLedgerTruth,
  checkReferences,
  checkReserve,
  checkSpacing,
  countedTransfer,
  fleetEnv,
  fleetGroup,
  listCalls,
  mayHaveMoved,
  spawnFleetDaemon,
  startFleet,
  transferPosts,
  holdSubaccountsEmpty,
  type AuditedTransfer,
  type GroupSpec,
} from './helpers/transfer-harness.js';

const SLOW_HOLD_MS = 700;
const HISTORY_DOWN = 'could not read the transfer history';
const FOUND_IN_HISTORY = 'found in the transfer history';
const CAP_REASONS = ['"reason":"daily_cap"', '"reason":"transfer_cap"', '"reason":"primary_reserve"'];

const KINDS = [
  'failpoint_after_transfer',
  'failpoint_before_outcome',
  'held_hang',
  'held_slow',
  'lost_reset',
  'lost_truncated',
  'history_down',
  'list_flaky',
  'random',
] as const;
type Kind = (typeof KINDS)[number];

/**
 * The kinds, dealt from seeded shuffled decks of 20 (so every kind comes up, in a random order):
 * a restart whose kind needs a transfer due keeps its card until one is.
 */
const DECK: readonly [Kind, number][] = [
  ['failpoint_after_transfer', 3],
  ['failpoint_before_outcome', 3],
  ['held_hang', 2],
  ['held_slow', 2],
  ['lost_reset', 2],
  ['lost_truncated', 1],
  ['history_down', 2],
  ['list_flaky', 1],
  ['random', 4],
];
function dealer(rand: () => number): () => Kind {
  let deck: Kind[] = [];
  return () => {
    if (deck.length === 0) {
      deck = DECK.flatMap(([k, n]) => Array.from({ length: n }, () => k));
      for (let i = deck.length - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        [deck[i], deck[j]] = [deck[j]!, deck[i]!];
      }
    }
    return deck.pop()!;
  };
}
const needsTransfer = (k: Kind) => k !== 'random' && k !== 'list_flaky';

type Restart = StormRestart<Kind> & {
  firstListAt: number | undefined;
  /** The transfer whose outcome this process took to its grave (failpoint / held kinds). */
  worst?: { sub: string; at: number };
  /** Applied transfers the ledger still held as unknown / interrupted when this process started. */
  inheritedUnsettledApplied: number;
  /** Ledger attempts that may have been sent and were unsettled when this process started. */
  inheritedUnsettled: number;
  /** No subaccount could get a transfer (cap, reserve) when this restart began. */
  whileCapped: boolean;
  historyFailures: number;
  resolvedFromHistory: number;
  sawCap: boolean;
  ledgerProblem: boolean;
};

interface StormOptions {
  label: string;
  restarts: number;
  group: GroupSpec;
  primaryBalance: number;
  rand: () => number;
  outputs: Outputs;
}

interface StormResult extends StormRun<Restart> {
  sim: Simulator;
  stateDir: string;
  fleetFile: string;
}

const { sims, children } = cleanupAfterAll();

/** Milliseconds until some subaccount may get a transfer, by the ledger; Infinity when caps or reserve forbid all. */
function dueIn(g: GroupSpec, attempts: AuditedTransfer[], primaryBalance: number, now: number): number {
  const recent = attempts.filter((a) => now - a.at < DAY_MS);
  const eur = recent.filter(mayHaveMoved).reduce((n, a) => n + (a.amount ?? a.requested ?? 0), 0);
  if (eur + g.transferAmount > g.maxTransferredPerDay) return Number.POSITIVE_INFINITY;
  if (primaryBalance - g.transferAmount < g.primaryReserve) return Number.POSITIVE_INFINITY;
  let best = Number.POSITIVE_INFINITY;
  for (const s of g.subs) {
    const mine = recent.filter((a) => a.to === s.apiKey && countedTransfer(a));
    if (mine.length >= s.maxPerDay) continue;
    const last = mine.reduce((m, a) => Math.max(m, a.at), Number.NEGATIVE_INFINITY);
    best = Math.min(best, Math.max(0, last + s.cooldownMs - now));
  }
  return best;
}

const unsettled = (a: AuditedTransfer) => a.outcome === undefined || a.outcome === 'unknown';
const occurrences = (text: string, needle: string) => text.split(needle).length - 1;

async function storm(o: StormOptions): Promise<StormResult> {
  const g = o.group;
  const { sim, stateDir, fleetFile, env } = await startFleet({ prefix: `transfer-storm-${o.label}-`, group: g, primaryBalance: o.primaryBalance, sims, appliedLog: true });
  const release = holdSubaccountsEmpty(sim, g.subs.map((s) => s.apiKey));
  const applied = (requestId: string) => sim.appliedTransfers().some((t) => t.requestId === requestId);

  const run = await runStorm({
    label: o.label,
    restarts: o.restarts,
    outputs: o.outputs,
    children,
    deal: dealer(o.rand),
    needsMoney: needsTransfer,
    whileNotDue: 'random',
    dueIn: () => dueIn(g, auditTransfers(stateDir), sim.balance(), Date.now()),
    spawn: (extra) => spawnFleetDaemon({ ...env, ...extra }),
    settleMs: SLOW_HOLD_MS + 200,
    plan: ({ index: i, kind, due }) => {
      const r1 = o.rand();
      const r2 = o.rand();
      const before = auditTransfers(stateDir);
      const refs = appliedByRef(sim);
      const inheritedUnsettled = before.filter((a) => unsettled(a) && a.to !== undefined);
      sim.clearFaults();
      const appliedBefore = sim.appliedTransfers().length;
      const postsBefore = transferPosts(sim).length;
      const newApplied = () => sim.appliedTransfers().slice(appliedBefore);
      const extra: Record<string, string> = {};
      if (kind === 'failpoint_after_transfer') extra.WATCHDOG_FAILPOINTS = 'after_transfer_recorded';
      if (kind === 'failpoint_before_outcome') extra.WATCHDOG_FAILPOINTS = 'before_transfer_outcome_recorded';
      if (kind === 'held_hang') sim.setFault({ kind: 'lost_answer', endpoint: 'transfer', lostMode: 'hang', count: 1 });
      if (kind === 'held_slow') sim.setFault({ kind: 'slow', endpoint: 'transfer', delayMs: SLOW_HOLD_MS, count: 1 });
      if (kind === 'lost_reset') sim.setFault({ kind: 'lost_answer', endpoint: 'transfer', lostMode: 'reset', count: 1 });
      if (kind === 'lost_truncated') sim.setFault({ kind: 'lost_answer', endpoint: 'transfer', lostMode: 'truncated', count: 1 });
      if (kind === 'history_down') {
        const how: SimFault['kind'][] = ['server_error', 'rate_limit', 'garbage', 'reset'];
        sim.setFault({ kind: how[Math.floor(r2 * how.length)]!, endpoint: 'list_transfers' });
        sim.setFault({ kind: 'lost_answer', endpoint: 'transfer', lostMode: 'reset', count: 1 });
      }
      if (kind === 'list_flaky') {
        const how: SimFault['kind'][] = ['server_error', 'reset', 'garbage', 'rate_limit'];
        sim.setFault({ kind: how[Math.floor(r2 * how.length)]!, endpoint: 'list_subaccounts', count: 1 + Math.floor(r2 * 2) });
      }
      // The first start in an empty STATE_DIR waits out the lock's probation (~2 s); later ones do not.
      const startup = i === 0 ? 4000 : 1500;
      const deadline = Number.isFinite(due) ? startup + due + 1500 : startup + 1000;
      let worst: Restart['worst'];
      const attemptOf = (reference: string) => auditTransfers(stateDir).find((a) => a.id === reference);

      const strike = async (v: Victim): Promise<boolean> => {
        const { child, kill } = v;
        // Stop waiting for a transfer once none can come: the daemon said a cap or the reserve holds,
        // and the ledger agrees that they forbid every subaccount (read at most every 50 ms).
        let cappedAt = 0;
        let cappedNow = false;
        const capped = () => {
          if (!CAP_REASONS.some((c) => child.output().includes(c))) return false;
          if (Date.now() - cappedAt >= 50) {
            cappedAt = Date.now();
            cappedNow = !Number.isFinite(dueIn(g, auditTransfers(stateDir), sim.balance(), Date.now()));
          }
          return cappedNow;
        };
        switch (kind) {
          case 'failpoint_after_transfer':
          case 'failpoint_before_outcome': {
            await until(() => !alive(child) || capped(), deadline, 10);
            if (alive(child) && capped()) await until(() => !alive(child), 300, 10); // a cycle deciding right now
            kill();
            const landed = v.diedAlone();
            const p = transferPosts(sim)[postsBefore];
            if (landed && kind === 'failpoint_before_outcome' && p?.reference) worst = { sub: p.to, at: attemptOf(p.reference)?.at ?? p.at };
            return landed;
          }
          case 'held_hang': {
            // Applied, the answer held until HTTP_TIMEOUT: kill before the client gives up.
            await until(() => newApplied().length > 0 || !alive(child) || capped(), deadline, 2);
            const t = newApplied()[0];
            const landed = t !== undefined && alive(child);
            kill();
            if (landed && t) worst = { sub: t.to, at: attemptOf(t.reference)?.at ?? t.at };
            return landed;
          }
          case 'held_slow': {
            // The request has arrived; the simulator applies it after SLOW_HOLD_MS, whoever is left
            // to read the answer. Kill at a random instant inside that window.
            await until(() => child.output().includes('sending balance transfer') || !alive(child) || capped(), deadline, 5);
            await until(() => transferPosts(sim).length > postsBefore || !alive(child), 500, 10);
            const p = transferPosts(sim)[postsBefore];
            let landed = false;
            if (p) {
              await sleep(p.at + r1 * (SLOW_HOLD_MS - 200) - Date.now());
              landed = alive(child) && !applied(p.requestId);
              if (landed && p.reference) worst = { sub: p.to, at: attemptOf(p.reference)?.at ?? p.at };
            }
            kill();
            return landed;
          }
          case 'lost_reset':
          case 'lost_truncated': {
            // Applied, answer lost, the daemon lives: its next cycle must find it in the history.
            const resolved = () => {
              const t = newApplied()[0];
              return t !== undefined && (attemptOf(t.reference)?.outcomes.includes('success/found_in_history') ?? false);
            };
            await until(() => resolved() || !alive(child) || capped(), deadline + 2000, 20);
            const landed = resolved() && alive(child);
            await sleep(r1 * 400);
            kill();
            return landed;
          }
          case 'history_down': {
            // Applied, answer lost, and the history refuses: the unknown transfer must stay counted.
            const held = () => {
              const t = newApplied()[0];
              if (!t) return false;
              const a = attemptOf(t.reference);
              return a?.outcome === 'unknown' && occurrences(child.output(), HISTORY_DOWN) >= 2;
            };
            await until(() => held() || !alive(child) || capped(), deadline + 2500, 20);
            const landed = held() && alive(child);
            await sleep(r1 * 300);
            kill();
            return landed;
          }
          case 'list_flaky':
            return killAtRandom(v, r1, 2500);
          case 'random':
            return killAtRandom(v, r1);
        }
      };
      return {
        env: extra,
        strike,
        record: (out, child) => ({
          firstListAt: listCalls(sim).find((at) => at >= child.spawnedAt),
          ...(worst ? { worst } : {}),
          inheritedUnsettled: inheritedUnsettled.length,
          inheritedUnsettledApplied: inheritedUnsettled.filter((a) => refs.has(a.id)).length,
          whileCapped: !Number.isFinite(due),
          historyFailures: occurrences(out, HISTORY_DOWN),
          resolvedFromHistory: occurrences(out, FOUND_IN_HISTORY),
          sawCap: CAP_REASONS.some((c) => out.includes(c)),
          ledgerProblem: out.includes('"reason":"ledger_unavailable"') || out.includes('could not record'),
        }),
      };
    },
  });
  release();
  return { ...run, sim, stateDir, fleetFile };
}

interface StatusRow {
  account?: string;
  primary?: string | null;
  transfersLast24h?: number;
}

/**
 * After the storm, one daemon allowed to live, with every fault cleared and the subaccounts above
 * their threshold: it must settle from the history every applied transfer still unknown, send
 * nothing, agree with the ledger in /status, and stop cleanly.
 */
async function survivor(r: StormResult, g: GroupSpec, outputs: Outputs, label: string) {
  r.sim.clearFaults();
  for (const s of g.subs) r.sim.setSubaccountBalance(s.apiKey, g.threshold + 100);
  const postsBefore = transferPosts(r.sim).length;
  const s = await runSurvivor({
    label,
    outputs,
    children,
    spawn: () => spawnFleetDaemon(fleetEnv(r.fleetFile, r.stateDir)),
    whileUp: () => {
      const applied = appliedByRef(r.sim);
      return until(() => auditTransfers(r.stateDir).every((a) => !(applied.has(a.id) && unsettled(a))), 10_000, 100);
    },
  });
  expect(transferPosts(r.sim).length, `${label}: the survivor sent a transfer`).toBe(postsBefore);
  const { accounts } = s.status as { accounts: StatusRow[] };
  return { settled: s.during, rows: accounts.filter((a) => a.primary !== null && a.primary !== undefined), output: s.output };
}

/** T1–T4 and T6 over the ground truth and the ledger; every violation listed at once. */
function verify(r: StormResult, g: GroupSpec, label: string) {
  const posts = transferPosts(r.sim);
  const attempts = auditTransfers(r.stateDir);
  const applied = r.sim.appliedTransfers();
  const spacing = checkSpacing(posts, attempts, g.subs);
  const refs = checkReferences(r.sim, posts, attempts);
  const caps = checkCaps(r.sim, posts, attempts, g);
  const reserve = checkReserve(r.sim, g);
  const truth = checkLedgerTruth(r.sim, attempts);
  const minCooldown = Math.min(...g.subs.map((s) => s.cooldownMs));
  figure(`${label} transfer requests / applied (ground truth) / ledger attempts (counted)`, `${posts.length} / ${applied.length} / ${attempts.length} (${attempts.filter(countedTransfer).length})`);
  figure(`${label} applied per subaccount`, g.subs.map((s) => `${s.apiKey}=${applied.filter((t) => t.to === s.apiKey).length}`).join(' '));
  figure(`${label} T1 min arrival since the previous transfer's ledger stamp, same subaccount (ms) vs shortest cooldown`, `${spacing.minArrivalSinceStamp} vs ${minCooldown}`);
  figure(`${label} T1 min gap between counted ledger attempts, same subaccount (ms)`, spacing.minAttemptGap);
  figure(`${label} T2 references sent twice / requests without their attempt`, `${refs.problems.filter((p) => p.includes('sent')).length} / ${refs.problems.filter((p) => p.includes('no ledger attempt') || p.includes('no reference')).length}`);
  figure(`${label} T2 max ledger-stamp-to-arrival latency (ms)`, refs.maxLag);
  figure(`${label} T3 max per subaccount in 24 h vs maxPerDay`, g.subs.map((s) => `${s.apiKey}=${caps.perSub[s.apiKey]}/${s.maxPerDay}`).join(' '));
  figure(`${label} T3 EUR applied in 24 h / EUR the ledger counts as moved vs maxTransferredPerDay`, `${caps.maxEur} / ${caps.ledgerEur} vs ${g.maxTransferredPerDay}`);
  figure(`${label} T4 lowest primary balance after a transfer vs primaryReserve`, `${reserve.minAfter} vs ${g.primaryReserve}`);
  const never = attempts.filter((a) => !posts.some((p) => p.reference === a.id));
  figure(`${label} ledger attempts never sent (crash between record and send)`, never.length);
  figure(`${label} ledger attempts settled from the history`, attempts.filter((a) => a.outcomes.includes('success/found_in_history')).length);
  expect([...spacing.problems, ...refs.problems, ...caps.problems, ...reserve.problems, ...truth.problems]).toEqual([]);
  return { posts, attempts, applied, never };
}

function summarize(label: string, r: StormResult, g: GroupSpec) {
  restartFigures(label, r.restarts, KINDS);
  figure(`${label} restarts begun with caps or reserve forbidding every transfer`, r.restarts.filter((x) => x.whileCapped).length);
  figure(`${label} restarts that saw daily_cap / transfer_cap / primary_reserve`, r.restarts.filter((x) => x.sawCap).length);
  figure(`${label} restarts that inherited an unsettled attempt / an applied one of unknown outcome`, `${r.restarts.filter((x) => x.inheritedUnsettled > 0).length} / ${r.restarts.filter((x) => x.inheritedUnsettledApplied > 0).length}`);
  figure(`${label} history refusals logged / transfers settled from the history (log lines)`, `${r.restarts.reduce((n, x) => n + x.historyFailures, 0)} / ${r.restarts.reduce((n, x) => n + x.resolvedFromHistory, 0)}`);
  startupFigure(label, r.restarts);
  // Detection power: after a kill that took a transfer's outcome with it, how soon the successor
  // read the list (its first chance to resend), against that subaccount's cooldown.
  const power = detection(r, g);
  figure(`${label} worst-instant kills whose successor decided inside the cooldown (resend would break T1)`, `${power.inside} / ${power.total}`);
  figure(`${label} worst-instant kill to successor's first list read (ms) median / max`, `${percentile(power.delays, 50)} / ${power.delays.length ? Math.max(...power.delays) : 'n/a'}`);
  figure(`${label} storm wall time (s)`, (r.elapsedMs / 1000).toFixed(1));
  return power;
}

function detection(r: StormResult, g: GroupSpec) {
  let inside = 0;
  let total = 0;
  const delays: number[] = [];
  r.restarts.forEach((x, i) => {
    const next = r.restarts[i + 1];
    if (!x.worst || !next || next.firstListAt === undefined) return;
    const cooldown = g.subs.find((s) => s.apiKey === x.worst!.sub)!.cooldownMs;
    total += 1;
    const d = next.firstListAt - x.worst.at;
    delays.push(d);
    if (d < cooldown) inside += 1;
  });
  return { inside, total, delays };
}

const landed = (r: StormResult, k: Kind) => r.restarts.filter((x) => x.kind === k && x.landed).length;

/** A storm, its figures, the survivor, then T1–T4 and T6 and a settled ledger: what every storm test holds to. */
async function auditedStorm(o: StormOptions) {
  const r = await storm(o);
  const power = summarize(o.label, r, o.group);
  const s = await survivor(r, o.group, o.outputs, o.label);
  const checked = verify(r, o.group, o.label);
  expect(s.settled, 'the survivor settles every applied transfer from the history').toBe(true);
  o.outputs.addStateDir(`${o.label} STATE_DIR`, r.stateDir);
  return { r, power, s, ...checked };
}

describe('kill -9 storm over balance transfers (fleet: a primary and its subaccounts)', () => {
  const outputs = new Outputs();
  if (process.env.TRANSFER_STORM_MAIN) figure('DAEMON UNDER TEST IS NOT dist/main.js', MAIN_UNDER_TEST);

  it('60+ kill -9 restarts at random and worst instants, lost answers, history down: never a duplicate transfer', async () => {
    const seed = seedFor('transfer storm');
    const group = fleetGroup([
      { apiKey: 'sub-a', cooldownMs: 3000, maxPerDay: 1000 },
      { apiKey: 'sub-b', cooldownMs: 4000, maxPerDay: 1000 },
      { apiKey: 'sub-c', cooldownMs: 5000, maxPerDay: 1000 },
    ]);
    const { r, power, s, applied, attempts, never } = await auditedStorm({ label: 'storm', restarts: 64, group, primaryBalance: 100_000, rand: prng(seed), outputs });

    // T5: the storm moved money, and really hit what it claims to.
    const killedAfterApply = landed(r, 'failpoint_before_outcome') + landed(r, 'held_hang') + landed(r, 'held_slow') + landed(r, 'lost_reset') + landed(r, 'lost_truncated') + landed(r, 'history_down');
    figure('storm restarts killed or faulted after Vonage applied a transfer', killedAfterApply);
    expect(applied.length).toBeGreaterThanOrEqual(Math.max(20, killedAfterApply));
    expect(landed(r, 'failpoint_after_transfer')).toBeGreaterThanOrEqual(3);
    expect(landed(r, 'failpoint_before_outcome')).toBeGreaterThanOrEqual(3);
    expect(landed(r, 'held_hang') + landed(r, 'held_slow')).toBeGreaterThanOrEqual(3);
    expect(landed(r, 'lost_reset') + landed(r, 'lost_truncated')).toBeGreaterThanOrEqual(3);
    expect(landed(r, 'history_down')).toBeGreaterThanOrEqual(2);
    expect(r.restarts.filter((x) => x.inheritedUnsettledApplied > 0).length).toBeGreaterThanOrEqual(3);
    expect(r.restarts.filter((x) => x.sawCooldown).length).toBeGreaterThanOrEqual(10);
    // Every kill after record and before send left attempts that were never sent.
    expect(never.length).toBeGreaterThanOrEqual(landed(r, 'failpoint_after_transfer'));
    // The successor of a kill at the worst instant always decided inside that transfer's cooldown:
    // had it resent, T1 would have seen it.
    expect(power.total).toBeGreaterThanOrEqual(5);
    expect(power.inside).toBe(power.total);
    // A record torn by kill -9 never made the ledger untrusted (that would stop every transfer).
    expect(r.restarts.filter((x) => x.ledgerProblem).length).toBe(0);
    // /status agrees with the ledger.
    for (const sub of group.subs) {
      const row = s.rows.find((x) => x.account === sub.apiKey);
      expect(row?.transfersLast24h, `/status transfersLast24h of ${sub.apiKey}`).toBe(attempts.filter((a) => a.to === sub.apiKey && countedTransfer(a)).length);
    }
  });

  it('a cap storm (maxTransferredPerDay 30 EUR, one subaccount at maxPerDay 1): the caps bind and hold across restarts', async () => {
    const seed = seedFor('transfer cap storm') + 1;
    const group = fleetGroup(
      [
        // sub-b and sub-c are held by the EUR cap alone, so an applied transfer that the ledger
        // wrongly frees from it shows as EUR over the cap.
        { apiKey: 'sub-a', cooldownMs: 1000, maxPerDay: 1 },
        { apiKey: 'sub-b', cooldownMs: 1000, maxPerDay: 1000 },
        { apiKey: 'sub-c', cooldownMs: 1000, maxPerDay: 1000 },
      ],
      { maxTransferredPerDay: 30 },
    );
    const { r, attempts, applied } = await auditedStorm({ label: 'cap-storm', restarts: 16, group, primaryBalance: 100_000, rand: prng(seed), outputs });
    const ledgerEur = attempts.filter(mayHaveMoved).reduce((n, a) => n + (a.amount ?? a.requested ?? 0), 0);
    expect(ledgerEur, 'the EUR cap was reached (in what may have moved)').toBe(30);
    expect(applied.reduce((n, t) => n + t.amount, 0)).toBeLessThanOrEqual(30);
    expect(applied.length).toBeGreaterThanOrEqual(1);
    expect(attempts.filter((a) => a.to === 'sub-a' && countedTransfer(a)).length, 'sub-a got its one transfer a day').toBe(1);
    expect(r.restarts.filter((x) => x.sawCap).length).toBeGreaterThanOrEqual(5);
  });

  it('a reserve storm (room for two transfers of three above primaryReserve): the primary never goes below it', async () => {
    const seed = seedFor('transfer reserve storm') + 2;
    // 62 EUR over a reserve of 50 at 5 EUR a transfer: room for two.
    const subs = ['sub-a', 'sub-b', 'sub-c'].map((apiKey) => ({ apiKey, cooldownMs: 1000, maxPerDay: 1000 }));
    const group = fleetGroup(subs, { transferAmount: 5, primaryReserve: 50 });
    const { r, applied, attempts } = await auditedStorm({ label: 'reserve-storm', restarts: 12, group, primaryBalance: 62, rand: prng(seed), outputs });
    // Not vacuous: the daemon decided to spend the room. Whether any of it reached Vonage depends
    // on where the kills fell: an attempt killed before it was sent holds the reserve until the
    // history shows it absent (five minutes, longer than the storm), so none applied is a safe end.
    const spent = attempts.filter(mayHaveMoved);
    expect(spent.length).toBeGreaterThanOrEqual(1);
    expect(spent.length, 'the ledger never planned more than the reserve leaves room for').toBeLessThanOrEqual(2);
    expect(applied.length).toBeLessThanOrEqual(2);
    expect(r.restarts.filter((x) => x.sawCap).length).toBeGreaterThanOrEqual(4);
  });

  it('the canary secret appears in no output of the storms', () => {
    figure('transfer storm canary outputs checked (items / bytes)', `${outputs.count} / ${outputs.bytes}`);
    expect(outputs.count).toBeGreaterThan(80);
    outputs.check();
  });
});
