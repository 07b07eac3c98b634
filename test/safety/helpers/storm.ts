/**
 * The kill -9 storm both money paths share (test/safety/crash-storm.test.ts for card top-ups,
 * test/safety/transfer-storm.test.ts for balance transfers): the built daemon restarted over and
 * over on one STATE_DIR and killed, each restart of a seeded kind that aims at one instant; then one
 * survivor allowed to live. Each storm says only what its kinds are, how it arms the simulator for
 * one and where it kills; the restart loop, the deferral of kinds that need money to move, the
 * SIGKILL bookkeeping and the survivor's start and clean stop are here.
 */
import { expect } from 'vitest';
import { waitFor, type Child } from '../../helpers/daemon.js';
import { type Outputs, alive, figure, percentile, sleep, whenStarted } from './crash-harness.js';

/** A daemon of the storm: spawned on a free port, not waited for (spawnDaemon, spawnFleetDaemon). */
export type StormDaemon = Child & { spawnedAt: number };

/** What every storm records of a restart; each storm adds what its own output and ledger say. */
export interface Restart<K extends string> {
  kind: K;
  /** The instant the kill was meant to hit happened (failpoint fired, answer held...). */
  landed: boolean;
  /** Died on its own (a failpoint) before we sent SIGKILL. */
  selfKilled: boolean;
  spawnedAt: number;
  startupMs: number | undefined;
  /** It polled while a cooldown still held: a restart that must not send. */
  sawCooldown: boolean;
}

/** The restart's daemon, as the storm's own code sees it to pick its instant. */
export interface Victim {
  child: StormDaemon;
  /** SIGKILL, unless it is already dead. */
  kill: () => void;
  /** No kill() has reached it (so far): a failpoint killed it, or it still lives. */
  diedAlone: () => boolean;
}

/** One restart of a given kind, set up by the storm once the kind is final. */
export interface RestartPlan<X> {
  /** Added to the daemon's environment (a failpoint, say). */
  env?: Record<string, string>;
  /** Waits for the instant this kind aims at and kills there; true when that instant really came. */
  strike: (v: Victim) => Promise<boolean>;
  /** What the storm records beyond Restart, read once the daemon is dead. */
  record: (output: string, child: StormDaemon) => X;
}

export interface StormSpec<K extends string, X> {
  label: string;
  restarts: number;
  outputs: Outputs;
  /** cleanupAfterAll's list: a daemon the storm leaves behind on a failure is killed with the file. */
  children: Child[];
  /** The next kind, by the seeded draw. */
  deal: () => K;
  /** Kinds whose instant comes only when money moves (a top-up or transfer is due). */
  needsMoney: (kind: K) => boolean;
  /** The kind run instead while the kind dealt waits for money to be due. */
  whileNotDue: K;
  /** Milliseconds until money may move, by the ledger; Infinity when caps or reserve forbid it. */
  dueIn: () => number;
  spawn: (env: Record<string, string>) => Promise<StormDaemon>;
  /**
   * Arms the simulator for the restart. Draw the restart's random numbers here, not earlier: a
   * seed replays only if they come from the generator right after the kind.
   */
  plan: (turn: { index: number; kind: K; due: number }) => RestartPlan<X>;
  /** Waited after the last kill: a slow request whose daemon is dead is still applied when its delay ends. */
  settleMs: number;
}

export interface StormRun<R> {
  restarts: R[];
  elapsedMs: number;
}

export async function runStorm<K extends string, X>(spec: StormSpec<K, X>): Promise<StormRun<Restart<K> & X>> {
  const restarts: (Restart<K> & X)[] = [];
  const started = Date.now();
  // A kind that needs money to move, dealt while none may move for more than a second yet, keeps
  // its turn for a later restart and this one runs `whileNotDue` instead: a cooldown is filled with
  // restarts that must not send rather than waited out, and the seeded sequence stays the same.
  let deferred: K | undefined;
  for (let i = 0; i < spec.restarts; i++) {
    let kind = deferred ?? spec.deal();
    deferred = undefined;
    const due = spec.dueIn();
    if (spec.needsMoney(kind) && due > 1000 && Number.isFinite(due)) {
      deferred = kind;
      kind = spec.whileNotDue;
    }
    const plan = spec.plan({ index: i, kind, due });
    const child = await spec.spawn(plan.env ?? {});
    spec.children.push(child);
    const startedAt = whenStarted(child);
    let weKilled = false;
    const kill = () => {
      if (alive(child)) {
        weKilled = true;
        child.proc.kill('SIGKILL');
      }
    };
    const landed = await plan.strike({ child, kill, diedAlone: () => !weKilled });
    const exit = await child.exited;
    expect(exit.signal, `${spec.label} restart ${i} (${kind}) must die by SIGKILL, got ${JSON.stringify(exit)}\n${child.output().slice(-3000)}`).toBe('SIGKILL');
    const out = child.output();
    spec.outputs.add(`${spec.label} restart ${i} (${kind})`, out);
    const seen = await startedAt;
    restarts.push({
      kind,
      landed,
      selfKilled: !weKilled,
      spawnedAt: child.spawnedAt,
      startupMs: seen === undefined ? undefined : seen - child.spawnedAt,
      sawCooldown: out.includes('"reason":"cooldown"'),
      ...plan.record(out, child),
    });
  }
  await sleep(spec.settleMs);
  return { restarts, elapsedMs: Date.now() - started };
}

/** How long a random-instant kill may wait: from mid-startup through the first polls (and the money, when due). */
export const RANDOM_KILL_SPAN_MS = 1800;

/** Kills at a random instant up to `spanMs` after the spawn; landed when the daemon was still alive for it. */
export async function killAtRandom(v: Victim, r: number, spanMs = RANDOM_KILL_SPAN_MS): Promise<boolean> {
  await sleep(r * spanMs);
  const landed = alive(v.child);
  v.kill();
  return landed;
}

/** The figures every storm prints first: how many restarts, each kind's landed / total, how many hit a cooldown. */
export function restartFigures<K extends string>(label: string, restarts: Restart<K>[], kinds: readonly K[]): void {
  const by = (k: K) => restarts.filter((x) => x.kind === k);
  figure(`${label} restarts (kill -9)`, restarts.length);
  for (const k of kinds) figure(`${label} restarts ${k} (landed / total)`, `${by(k).filter((x) => x.landed).length} / ${by(k).length}`);
  figure(`${label} restarts that polled inside a cooldown`, restarts.filter((x) => x.sawCooldown).length);
}

export function startupFigure(label: string, restarts: Restart<string>[]): void {
  const startups = restarts.map((x) => x.startupMs).filter((x): x is number => x !== undefined);
  figure(`${label} node startup to "watchdog started" (ms) median / p95 / max`, `${percentile(startups, 50)} / ${percentile(startups, 95)} / ${Math.max(...startups)}`);
}

export interface SurvivorOptions<T> {
  label: string;
  outputs: Outputs;
  children: Child[];
  spawn: () => Promise<Child>;
  /** Runs once the survivor is ready, before /status is read (to wait for it to settle the ledger, say). */
  whileUp?: (child: Child) => Promise<T>;
}

/**
 * After the storm, one daemon allowed to live: ready (/readyz), its /status read, its /metrics and
 * /status kept for the canary, then SIGTERM, which it must answer with a clean exit.
 */
export async function runSurvivor<T = undefined>(o: SurvivorOptions<T>): Promise<{ status: unknown; during: T | undefined; output: string }> {
  const child = await o.spawn();
  o.children.push(child);
  await waitFor(async () => (await fetch(`${child.url}/readyz`).catch(() => undefined))?.status === 200, 15_000, child.output);
  const during = o.whileUp ? await o.whileUp(child) : undefined;
  const status: unknown = await (await fetch(`${child.url}/status`)).json();
  await o.outputs.addHttp(`${o.label} survivor`, child.url);
  child.proc.kill('SIGTERM');
  expect(await child.exited).toEqual({ code: 0, signal: null });
  o.outputs.add(`${o.label} survivor logs`, child.output());
  return { status, during, output: child.output() };
}
