/**
 * Fuzzed input, seeded and reproducible (research note §5, C2, C3 and E1).
 *
 * A. Generated Vonage answers (JSON, XML, near misses, garbage, oversized; random statuses, content
 *    types, Retry-After and redirect headers), served over real loopback HTTP by a tiny node:http
 *    server, driven through the real client (src/vonage/account-client.ts) and a real Watchdog built the
 *    way the daemon builds it (buildParts). Judged by independent oracles (helpers/fuzz-bodies.ts):
 *    a reading is accepted only for 2xx + a well-formed balance; never a top-up on anything else;
 *    a top-up is reported successful only for 2xx + error-code "200"; every sent attempt is in the
 *    ledger, and none is ever "not sent"; failure reasons stay in the bounded set of src/vonage/errors.ts.
 * B. Generated configurations (helpers/fuzz-config.ts), _FILE variants on real temp files:
 *    loadConfig names exactly the variables the oracle finds invalid and never a secret; each valid
 *    one builds (buildParts). A sample also goes through the real binary (--check-config).
 * C. A secret canary over everything these runs output.
 *
 * On a failure the report lists the seed and the index of each offending input; re-run with the
 * same seed to reproduce. Figures are printed as `[figure] name: value` lines.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import fc from 'fast-check';
import type { DestinationStream } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, describeConfig, loadConfig, type Config } from '../../src/config/config.js';
import { buildParts, settleLedgers, type Parts } from '../../src/daemon.js';
import { FAILURE_REASONS, TOPUP_ONLY_FAILURE_REASONS, VonageError } from '../../src/vonage/errors.js';
import { createVonageClient, type VonageClient } from '../../src/vonage/account-client.js';
import type { CycleResult, Watchdog } from '../../src/cycle/watchdog.js';
import { balanceAnswers, balanceOracle, topUpAnswers, topUpOracle, BODY_CAP_BYTES, type BalanceVerdict } from './helpers/fuzz-bodies.js';
import { findSecret, secretForms } from './helpers/fuzz-canary.js';
import { FILE_VARIABLES, configSpecs, materialise, oracle, stateDirProbeFails, type Expected, type FileEntry, type Verdict } from './helpers/fuzz-config.js';
import { received, startFuzzServer, startTrap, type Canned, type FuzzServer, type Served } from './helpers/fuzz-server.js';

const SEEDS = { balance: 0x5eed_0001, topUp: 0x5eed_0002, config: 0x5eed_0003 };
const N_BALANCE_BODIES = 5000;
const N_TOPUP_BODIES = 5000;
const N_CONFIGS = 2000;
// Spawning a process per configuration (0.4-1 s each here: node loads axios, pino, prom-client,
// node-cron before --check-config runs) would take 15-30 minutes for 2,000, so every configuration
// is checked in-process (loadConfig + buildParts, exactly what main.ts runs before it starts), and
// this many of each kind also go through the real binary.
const CHILD_SAMPLES_PER_KIND = 30;
const MAIN = resolve(__dirname, '../../dist/main.js');

const figure = (name: string, value: string | number) => console.log(`[figure] ${name}: ${value}`);
const seconds = (since: number) => ((performance.now() - since) / 1000).toFixed(1);
const fileStarted = performance.now();

// Anything that escapes a promise or a callback during the runs fails the file.
const escaped: string[] = [];
const onRejection = (reason: unknown) => escaped.push(`unhandledRejection: ${reason instanceof Error ? reason.message : String(reason)}`);
const onException = (err: Error) => escaped.push(`uncaughtException: ${err.message}`);
beforeAll(() => {
  process.on('unhandledRejection', onRejection);
  process.on('uncaughtException', onException);
});
afterAll(() => {
  process.off('unhandledRejection', onRejection);
  process.off('uncaughtException', onException);
  figure('fuzz.test.ts elapsed seconds', seconds(fileStarted));
  expect(escaped).toEqual([]);
});

const POLL_REASONS: readonly string[] = FAILURE_REASONS;
const TOPUP_REASONS: readonly string[] = [...FAILURE_REASONS, ...TOPUP_ONLY_FAILURE_REASONS];

/** A pino destination that keeps every line. */
function sink(): DestinationStream & { text: () => string; lines: () => number } {
  const chunks: string[] = [];
  return {
    write: (msg: string) => {
      chunks.push(msg);
    },
    text: () => chunks.join(''),
    lines: () => chunks.length,
  };
}

function show(c: Canned): string {
  const body = c.body.length > 160 ? `${c.body.slice(0, 160)}…(${c.body.length} chars)` : c.body;
  return `${c.kind} HTTP ${c.status} ${JSON.stringify(c.contentType ?? null)} ${JSON.stringify(body)}`;
}

function reportViolations(label: string, seed: number, violations: string[]): void {
  if (violations.length === 0) return;
  throw new Error(`${label}: ${violations.length} violation(s) (seed ${seed}); first ones:\n${violations.slice(0, 12).join('\n')}`);
}

// =============================================================================================
// A. Fuzzed Vonage answers
// =============================================================================================

describe('A. fuzzed Vonage answers through the real client and a real Watchdog', () => {
  const API_KEY = 'fuzz-key';
  const SECRET = 'CANARY-fuzz-secret/+=%&9q';
  const TRX = 'CANARYtrx0fuzz7e69604f642ae5936';
  const BASIC = `Basic ${Buffer.from(`${API_KEY}:${SECRET}`).toString('base64')}`;
  const SECRETS = [SECRET, TRX];
  const GOOD_BALANCE: Canned = { status: 200, contentType: 'application/json', body: '{"value":5,"autoReload":true}', kind: 'default' };
  const GOOD_TOPUP: Canned = { status: 200, contentType: 'application/json', body: '{"error-code":"200","error-code-label":"success"}', kind: 'default' };

  let server: FuzzServer;
  let trap: Awaited<ReturnType<typeof startTrap>>;
  let tmp: string;
  const logs = sink();
  const outputs: { label: string; text: () => string | Promise<string> }[] = [];
  let balanceItems: Canned[] = [];
  let topUpItems: Canned[] = [];

  beforeAll(async () => {
    // tmpfs when available: ~10,000 fsync'd ledger records would otherwise dominate the runtime.
    tmp = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'fuzz-bodies-'));
    trap = await startTrap();
    server = await startFuzzServer({ balance: GOOD_BALANCE, topUp: GOOD_TOPUP });
    const fix = (c: Canned): Canned =>
      c.headers?.Location === '@@TRAP@@' ? { ...c, headers: { ...c.headers, Location: `${trap.url}/account/get-balance?api_key=x` } } : c;
    balanceItems = fc.sample(balanceAnswers, { seed: SEEDS.balance, numRuns: N_BALANCE_BODIES }).map(fix);
    topUpItems = fc.sample(topUpAnswers, { seed: SEEDS.topUp, numRuns: N_TOPUP_BODIES }).map(fix);
  });
  afterAll(async () => {
    await server?.close();
    await trap?.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  function env(stateDir: string): Record<string, string> {
    return {
      VONAGE_API_KEY: API_KEY,
      VONAGE_API_SECRET: SECRET,
      VONAGE_TOPUP_TRX: TRX,
      VONAGE_ACCOUNT_NAME: 'fuzz',
      VONAGE_BASE_URL: server.url,
      VONAGE_ALLOW_CUSTOM_BASE_URL: 'true',
      // So nearly every accepted reading is "below": the top-up path is exercised on each one.
      TOPUP_THRESHOLD: '1000',
      TOPUP_COOLDOWN: '1s',
      TOPUP_MAX_PER_DAY: '1000',
      HTTP_TIMEOUT: '5s',
      STATE_DIR: stateDir,
      LOG_LEVEL: 'debug',
    };
  }

  /** Watchdog parts as the daemon builds them, with a clock the test moves and no real sleeping. */
  function watchdogParts(name: string): { parts: Parts; watchdog: Watchdog; advance: (ms: number) => void } {
    let clock = Date.UTC(2030, 0, 1);
    const config = loadConfig(env(join(tmp, name)));
    const parts = buildParts(config, { logDestination: logs, now: () => clock, sleep: async () => {} });
    outputs.push({ label: `${name} metrics`, text: () => parts.metrics.registry.metrics() });
    outputs.push({ label: `${name} ledger dir`, text: () => readdirSync(join(tmp, name)).map((f) => `${f}\n${readFileSync(join(tmp, name, f), 'utf8')}`).join('\n') });
    return { parts, watchdog: parts.watchdogs[0]!, advance: (ms) => (clock += ms) };
  }

  function ourClient(): VonageClient {
    const config = loadConfig(env(join(tmp, 'unused')));
    return createVonageClient({ account: config.accounts[0]!, timeoutMs: config.httpTimeoutMs });
  }

  const verdictOf = (c: Canned): BalanceVerdict => {
    const r = received(c);
    return balanceOracle(c.status, c.contentType, r.text, r.bytes);
  };

  /** Common checks on every exchange the server saw. */
  function checkServed(served: Served[], violations: string[]): void {
    for (const s of served) {
      if (s.authorization !== BASIC) violations.push(`request #${s.seq} carried the wrong Authorization`);
      if (s.method === 'POST' && (new URLSearchParams(s.body).get('trx') !== TRX || s.body !== new URLSearchParams({ trx: TRX }).toString())) {
        violations.push(`top-up #${s.seq} did not carry exactly trx`);
      }
    }
  }

  it(`balance: ${N_BALANCE_BODIES} generated answers through the real client`, async () => {
    const started = performance.now();
    const client = ourClient();
    const violations: string[] = [];
    const errors: string[] = [];
    let accepted = 0;
    const kinds = new Map<string, number>();
    for (const [i, item] of balanceItems.entries()) {
      kinds.set(item.kind, (kinds.get(item.kind) ?? 0) + 1);
      const before = server.served.length;
      server.balanceQueue.push(item);
      const outcome = await client.getBalance().then(
        (reading) => ({ reading }),
        (error: unknown) => ({ error }),
      );
      const served = server.served.slice(before);
      checkServed(served, violations);
      if (served.length !== 1 || !served[0]!.fuzz) {
        violations.push(`#${i}: expected exactly one request, saw ${served.length}`);
        server.balanceQueue.length = 0;
        continue;
      }
      const verdict = verdictOf(item);
      if ('reading' in outcome) {
        accepted += 1;
        if (!verdict.ok) violations.push(`#${i}: ACCEPTED a reading (${outcome.reading.value}) from a malformed answer (${verdict.why}): ${show(item)}`);
        else if (outcome.reading.value !== verdict.value || outcome.reading.autoReload !== verdict.autoReload) {
          violations.push(`#${i}: read ${outcome.reading.value}/${outcome.reading.autoReload}, the oracle reads ${verdict.value}/${verdict.autoReload}: ${show(item)}`);
        }
      } else {
        const e = outcome.error;
        if (!(e instanceof VonageError)) violations.push(`#${i}: threw something other than VonageError: ${String(e)}`);
        else {
          errors.push(`${JSON.stringify(e)}\n${e.message}`);
          if (!POLL_REASONS.includes(e.reason)) violations.push(`#${i}: poll failure reason ${e.reason} is outside the bounded set`);
          if (e.endpoint !== 'get_balance') violations.push(`#${i}: endpoint ${e.endpoint}`);
        }
        if (verdict.ok) violations.push(`#${i}: REJECTED a well-formed answer (${e instanceof VonageError ? e.reason : '?'}): ${show(item)}`);
      }
    }
    outputs.push({ label: 'client balance errors', text: () => errors.join('\n') });
    figure('balance bodies through the client', balanceItems.length);
    figure('balance bodies accepted as readings', accepted);
    figure('balance body mix', [...kinds].map(([k, n]) => `${k}=${n}`).join(' '));
    figure('balance client phase seconds', seconds(started));
    reportViolations('balance via client', SEEDS.balance, violations);
    expect(accepted).toBeGreaterThan(N_BALANCE_BODIES * 0.1);
    expect(accepted).toBeLessThan(N_BALANCE_BODIES * 0.9);
  });

  it(`balance: the same ${N_BALANCE_BODIES} answers through a real Watchdog (threshold 1000): never a top-up on a malformed balance`, async () => {
    const started = performance.now();
    const { parts: balanceParts, watchdog, advance } = watchdogParts('balance-watchdog');
    await settleLedgers(balanceParts);
    const violations: string[] = [];
    server.balanceQueue.push(...balanceItems);
    let cycles = 0;
    let topUps = 0;
    let retried = 0;
    while (server.balanceQueue.length > 0) {
      const before = server.served.length;
      let result: CycleResult;
      try {
        result = await watchdog.runCycle();
      } catch (err) {
        violations.push(`cycle ${cycles}: runCycle threw ${err instanceof Error ? err.message : String(err)}`);
        break;
      }
      // Past the 1 s cooldown; 24 cycles a day stay under the cap of 1000, and the ledger's 7-day
      // memory stays small (policy checks are linear in it).
      advance(3_600_000);
      cycles += 1;
      const served = server.served.slice(before);
      checkServed(served, violations);
      const gets = served.filter((s) => s.method === 'GET');
      const posts = served.filter((s) => s.method === 'POST');
      const last = gets.at(-1);
      if (!last || gets.length > 3) {
        violations.push(`cycle ${cycles}: ${gets.length} balance requests`);
        continue;
      }
      if (gets.length > 1) retried += 1;
      // Only transient answers (5xx, 429) may be retried, and never a readable balance.
      for (const g of gets.slice(0, -1)) {
        if (!(g.canned.status >= 500 || g.canned.status === 429) || verdictOf(g.canned).ok) violations.push(`cycle ${cycles}: retried after ${show(g.canned)}`);
      }
      const verdict = verdictOf(last.canned);
      const where = `cycle ${cycles} (answer #${balanceItems.indexOf(last.canned)})`;
      if (result.reading) {
        if (!verdict.ok) violations.push(`${where}: ACCEPTED ${result.reading.value} from a malformed answer (${verdict.why}): ${show(last.canned)}`);
        else if (result.reading.value !== verdict.value || result.reading.autoReload !== verdict.autoReload) violations.push(`${where}: reading differs from the oracle: ${show(last.canned)}`);
      } else {
        if (verdict.ok) violations.push(`${where}: rejected a well-formed answer: ${show(last.canned)}`);
        if (!result.pollError || !POLL_REASONS.includes(result.pollError.reason)) violations.push(`${where}: poll failure reason ${result.pollError?.reason} outside the bounded set`);
      }
      const due = verdict.ok && verdict.value < 1000 && verdict.autoReload;
      if (posts.length > 0) {
        topUps += posts.length;
        if (!due) violations.push(`${where}: TOP-UP SENT on ${verdict.ok ? `a balance of ${verdict.value} (autoReload ${verdict.autoReload})` : `a malformed answer (${verdict.why})`}: ${show(last.canned)}`);
        if (posts.length > 1) violations.push(`${where}: ${posts.length} top-ups in one cycle`);
        if (result.topUp?.outcome !== 'success') violations.push(`${where}: a successful top-up reported as ${result.topUp?.outcome}`);
      } else if (due) {
        violations.push(`${where}: a due top-up was not sent (decision ${JSON.stringify(result.decision)})`);
      }
    }
    expect(server.balanceQueue).toHaveLength(0);
    figure('balance bodies through the Watchdog', balanceItems.length);
    figure('watchdog cycles on fuzzed balances', cycles);
    figure('cycles with balance retries', retried);
    figure('top-ups sent on fuzzed balances (all on well-formed, below-threshold, autoReload=true readings)', topUps);
    figure('balance watchdog phase seconds', seconds(started));
    reportViolations('balance via Watchdog', SEEDS.balance, violations);
    expect(topUps).toBeGreaterThan(100);
  });

  it(`top-up: ${N_TOPUP_BODIES} generated answers through the real client`, async () => {
    const started = performance.now();
    const client = ourClient();
    const violations: string[] = [];
    const errors: string[] = [];
    let successes = 0;
    const deliveries = new Map<string, number>();
    const kinds = new Map<string, number>();
    for (const [i, item] of topUpItems.entries()) {
      kinds.set(item.kind, (kinds.get(item.kind) ?? 0) + 1);
      const before = server.served.length;
      server.topUpQueue.push(item);
      const outcome = await client.topUp(TRX).then(
        () => ({ ok: true as const }),
        (error: unknown) => ({ ok: false as const, error }),
      );
      const served = server.served.slice(before);
      checkServed(served, violations);
      if (served.length !== 1 || !served[0]!.fuzz) {
        violations.push(`#${i}: expected exactly one request, saw ${served.length}`);
        server.topUpQueue.length = 0;
        continue;
      }
      const r = received(item);
      const verdict = topUpOracle(item.status, item.contentType, r.text, r.bytes);
      if (outcome.ok) {
        successes += 1;
        if (!verdict.success) violations.push(`#${i}: SUCCESS reported for ${show(item)}`);
        continue;
      }
      const e = outcome.error;
      if (verdict.success) violations.push(`#${i}: a success answer reported as failure: ${show(item)}`);
      if (!(e instanceof VonageError)) {
        violations.push(`#${i}: threw something other than VonageError`);
        continue;
      }
      errors.push(`${JSON.stringify(e)}\n${e.message}`);
      deliveries.set(e.delivery, (deliveries.get(e.delivery) ?? 0) + 1);
      if (!TOPUP_REASONS.includes(e.reason)) violations.push(`#${i}: reason ${e.reason} outside the bounded set`);
      // The request reached a server: it may have been applied, so it must never count as unsent.
      if (e.delivery === 'no') violations.push(`#${i}: delivery "no" for a request the server received: ${show(item)}`);
      const is2xx = item.status >= 200 && item.status <= 299;
      if ((is2xx && !verdict.success && !verdict.readable) || item.status >= 500 || r.bytes > BODY_CAP_BYTES) {
        if (e.delivery !== 'unknown') violations.push(`#${i}: outcome ${e.delivery} (${e.reason}) for an answer that may hide an applied top-up: ${show(item)}`);
      }
    }
    outputs.push({ label: 'client top-up errors', text: () => errors.join('\n') });
    figure('top-up bodies through the client', topUpItems.length);
    figure('top-up bodies reported successful', successes);
    figure('top-up body mix', [...kinds].map(([k, n]) => `${k}=${n}`).join(' '));
    figure('top-up failure deliveries', [...deliveries].map(([k, n]) => `${k}=${n}`).join(' '));
    figure('top-up client phase seconds', seconds(started));
    reportViolations('top-up via client', SEEDS.topUp, violations);
    expect(successes).toBeGreaterThan(N_TOPUP_BODIES * 0.05);
  });

  it(`top-up: the same ${N_TOPUP_BODIES} answers through a real Watchdog; every sent attempt is in the ledger`, async () => {
    const started = performance.now();
    const { parts, watchdog, advance } = watchdogParts('topup-watchdog');
    await settleLedgers(parts);
    const violations: string[] = [];
    server.topUpQueue.push(...topUpItems);
    const outcomes: string[] = [];
    let cycles = 0;
    while (server.topUpQueue.length > 0) {
      const before = server.served.length;
      let result: CycleResult;
      try {
        result = await watchdog.runCycle();
      } catch (err) {
        violations.push(`cycle ${cycles}: runCycle threw ${err instanceof Error ? err.message : String(err)}`);
        break;
      }
      advance(3_600_000);
      cycles += 1;
      const served = server.served.slice(before);
      checkServed(served, violations);
      const posts = served.filter((s) => s.method === 'POST');
      if (posts.length !== 1 || !posts[0]!.fuzz || !result.topUp) {
        violations.push(`cycle ${cycles}: ${posts.length} top-ups, decision ${JSON.stringify(result.decision)}`);
        continue;
      }
      const item = posts[0]!.canned;
      const r = received(item);
      const verdict = topUpOracle(item.status, item.contentType, r.text, r.bytes);
      const { outcome, reason } = result.topUp;
      outcomes.push(outcome);
      const where = `cycle ${cycles} (answer #${topUpItems.indexOf(item)})`;
      if ((outcome === 'success') !== verdict.success) violations.push(`${where}: outcome ${outcome}, oracle success=${verdict.success}: ${show(item)}`);
      if (outcome === 'not_sent') violations.push(`${where}: a sent top-up recorded as not_sent (not counted!): ${show(item)}`);
      if (outcome !== 'success' && (reason === undefined || !TOPUP_REASONS.includes(reason))) violations.push(`${where}: reason ${reason} outside the bounded set`);
    }
    // The ledger: one attempt per request that went out, each with its outcome, in order.
    const lines = readFileSync(parts.ledgers[0]!.path, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { type: string; id: string; outcome?: string });
    const attempts = lines.filter((l) => l.type === 'attempt');
    const recorded = attempts.map((a) => lines.find((l) => l.type === 'outcome' && l.id === a.id)?.outcome ?? 'missing');
    const posts = server.served.filter((s) => s.method === 'POST' && s.fuzz).length;
    expect(attempts.length).toBe(N_TOPUP_BODIES);
    expect(recorded).toEqual(outcomes);
    parts.closeLedgers();
    const tally = new Map<string, number>();
    for (const o of outcomes) tally.set(o, (tally.get(o) ?? 0) + 1);
    figure('top-up bodies through the Watchdog', topUpItems.length);
    figure('ledger attempts recorded / top-up requests received', `${attempts.length} / ${N_TOPUP_BODIES}`);
    figure('watchdog top-up outcomes', [...tally].map(([k, n]) => `${k}=${n}`).join(' '));
    figure('top-up watchdog phase seconds', seconds(started));
    reportViolations('top-up via Watchdog', SEEDS.topUp, violations);
    expect(posts).toBeGreaterThanOrEqual(N_TOPUP_BODIES);
  });

  it('no redirect was followed, no stray request, and bounded metric labels', async () => {
    expect(trap.hits()).toBe(0);
    expect(server.unexpected).toBe(0);
    for (const o of outputs.filter((x) => x.label.endsWith('metrics'))) {
      const text = await o.text();
      for (const m of text.matchAll(/^vonage_balance_poll_failures_total\{[^}]*reason="([^"]+)"/gm)) expect(POLL_REASONS).toContain(m[1]);
      for (const m of text.matchAll(/^vonage_topup_failures_total\{[^}]*reason="([^"]+)"/gm)) expect(TOPUP_REASONS).toContain(m[1]);
      for (const m of text.matchAll(/account="([^"]*)"/g)) expect(m[1]).toBe('fuzz');
    }
  });

  it('secret canary: logs, metrics, ledger files and error messages hold no form of the secret or trx', async () => {
    // Positive control: the check does find an encoded form.
    expect(findSecret(`x ${Buffer.from(`${API_KEY}:${SECRET}`).toString('base64')} y`, secretForms(SECRET, API_KEY))).toBeDefined();
    const texts: { label: string; text: string }[] = [{ label: 'logs', text: logs.text() }];
    for (const o of outputs) texts.push({ label: o.label, text: await o.text() });
    let bytes = 0;
    for (const { label, text } of texts) {
      bytes += text.length;
      const found = SECRETS.find((s) => findSecret(text, secretForms(s, API_KEY)) !== undefined);
      expect(found === undefined ? 'clean' : `${label} leaks a form of ${found === TRX ? 'the trx' : 'the secret'}`).toBe('clean');
    }
    figure('log lines scanned (body fuzz)', logs.lines());
    figure('characters scanned for the canary (body fuzz)', bytes);
  });
});

// =============================================================================================
// B. Fuzzed configuration
// =============================================================================================

/**
 * The configurations are generated, written out and judged by the oracle before anything else, so
 * the child-process sample can run in the background (one process at a time, on the second core)
 * while part A and the in-process checks keep the first core busy. Its results are checked in its
 * own test below.
 */
interface ConfigCase {
  i: number;
  env: Record<string, string | undefined>;
  verdict: Verdict;
  markers: string[];
  base64: string[];
}
interface ChildResult {
  c: ConfigCase;
  code: number | null;
  stdout: string;
  stderr: string;
  error?: string;
}
const configWorld = {
  base: '',
  cwd: '',
  cases: [] as ConfigCase[],
  sample: { invalid: [] as ConfigCase[], valid: [] as ConfigCase[] },
  children: Promise.resolve([] as ChildResult[]),
  childSeconds: 0,
  /** How the key, secret, trx and token were supplied, over all configurations. */
  sourceKinds: new Map<string, number>(),
};

const markerOf = (i: number) => `CANARY${i}Z`;
/** Whether a configuration reads one of the four NAME_FILE variables (set, non-empty). */
const usesFile = (env: Record<string, string | undefined>) => FILE_VARIABLES.some((n) => !!env[`${n}_FILE`]);

/** Base64 forms of every secret value the program may know (the markers catch every other form). */
function base64Forms(env: Record<string, string | undefined>, files: Map<string, FileEntry>): string[] {
  const value = (name: string): string | undefined => {
    const direct = env[name];
    if (direct) return direct;
    const path = env[`${name}_FILE`];
    const f = path ? files.get(path) : undefined;
    return f?.kind === 'file' ? f.content.replace(/\r?\n$/, '') : undefined;
  };
  const key = value('VONAGE_API_KEY') ?? '';
  const forms: string[] = [];
  for (const name of ['VONAGE_API_SECRET', 'VONAGE_TOPUP_TRX', 'METRICS_AUTH_TOKEN']) {
    const v = value(name);
    if (v && v.length >= 4) forms.push(...secretForms(v, key).filter((f) => !f.toLowerCase().includes('canary')));
  }
  return forms;
}

function leak(text: string, c: ConfigCase): string | undefined {
  const lower = text.toLowerCase();
  for (const m of c.markers) if (lower.includes(m.toLowerCase())) return 'a canary marker';
  return findSecret(text, c.base64) === undefined ? undefined : 'a base64 form of a secret';
}

function runChild(c: ConfigCase, cwd: string): Promise<ChildResult> {
  return new Promise((done) => {
    const env: Record<string, string> = { PATH: process.env.PATH ?? '' };
    for (const [k, v] of Object.entries(c.env)) if (v !== undefined) env[k] = v;
    let stdout = '';
    let stderr = '';
    try {
      const child = spawn(process.execPath, [MAIN, '--check-config'], { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('error', (err) => done({ c, code: null, stdout, stderr, error: err.message }));
      child.on('close', (code) => done({ c, code, stdout, stderr }));
    } catch (err) {
      done({ c, code: null, stdout, stderr, error: err instanceof Error ? err.message : String(err) });
    }
  });
}

beforeAll(() => {
  const w = configWorld;
  w.base = mkdtempSync(join(tmpdir(), 'fuzz-config-'));
  w.cwd = join(w.base, 'cwd');
  mkdirSync(w.cwd);
  mkdirSync(join(w.base, 'a-directory'));
  writeFileSync(join(w.base, 'a-file'), 'not a directory');
  const specs = fc.sample(configSpecs, { seed: SEEDS.config, numRuns: N_CONFIGS });
  for (const [i, spec] of specs.entries()) {
    for (const src of Object.values(spec.sources)) {
      const kind =
        src.kind === 'file' ? `file${src.content.endsWith('\r\n') ? '(CRLF)' : src.content.endsWith('\n') ? '(LF)' : '(no newline)'}${src.content.replace(/\r?\n$/, '') === '' ? '(empty)' : ''}` : src.kind;
      w.sourceKinds.set(kind, (w.sourceKinds.get(kind) ?? 0) + 1);
    }
    const m = materialise(spec, markerOf(i), {
      file: (name) => join(w.base, `c${i}-${name}`),
      dir: join(w.base, 'a-directory'),
      aFile: join(w.base, 'a-file'),
      stateBase: join(w.base, `state${i % 5}`),
    });
    for (const [path, f] of m.files) if (f.kind === 'file') writeFileSync(path, f.content);
    w.cases.push({ i, env: m.env, verdict: oracle(m.env, m.files), markers: m.markers, base64: base64Forms(m.env, m.files) });
  }
  // Environment values cannot hold NUL, and lone surrogates would reach the child re-encoded.
  const spawnable = (c: ConfigCase) => Object.values(c.env).every((v) => v === undefined || (!v.includes('\0') && !/\p{Cs}/u.test(v)));
  w.sample.invalid = w.cases.filter((c) => !c.verdict.valid && spawnable(c)).slice(0, CHILD_SAMPLES_PER_KIND);
  w.sample.valid = w.cases.filter((c) => c.verdict.valid && spawnable(c)).slice(0, CHILD_SAMPLES_PER_KIND);
  if (existsSync(MAIN)) {
    const started = performance.now();
    w.children = (async () => {
      const results: ChildResult[] = [];
      for (const c of [...w.sample.invalid, ...w.sample.valid]) results.push(await runChild(c, w.cwd));
      w.childSeconds = (performance.now() - started) / 1000;
      return results;
    })();
  }
});
afterAll(async () => {
  await configWorld.children;
  if (configWorld.base) rmSync(configWorld.base, { recursive: true, force: true });
});

describe('B. fuzzed configuration', () => {
  let previousCwd: string;
  beforeAll(() => {
    // STATE_DIR defaults to ./data and may be relative: keep whatever buildParts creates in here.
    previousCwd = process.cwd();
    process.chdir(configWorld.cwd);
  });
  afterAll(() => {
    process.chdir(previousCwd);
  });

  it('the oracle itself agrees with hand-written cases from the contract (so agreement below means something)', () => {
    const MIN = { VONAGE_API_KEY: 'abcd1234', VONAGE_API_SECRET: 'CANARY-s', VONAGE_TOPUP_TRX: 'trx1', TOPUP_THRESHOLD: '10' };
    const none = new Map<string, FileEntry>();
    const bad = (env: Record<string, string | undefined>, files = none) => {
      const v = oracle(env, files);
      return v.valid ? [] : [...v.bad].sort();
    };
    expect(bad(MIN)).toEqual([]);
    expect(bad({})).toEqual(['TOPUP_THRESHOLD', 'VONAGE_API_KEY', 'VONAGE_API_SECRET', 'VONAGE_TOPUP_TRX']);
    expect(bad({ ...MIN, VONAGE_TOPUP_TRX: undefined, TOPUP_ENABLED: 'maybe' })).toEqual(['TOPUP_ENABLED']);
    expect(bad({ ...MIN, VONAGE_TOPUP_TRX: '', TOPUP_ENABLED: ' No ' })).toEqual([]);
    expect(bad({ ...MIN, VONAGE_ALLOW_CUSTOM_BASE_URL: 'sure', VONAGE_BASE_URL: 'https://proxy.internal' })).toEqual(['VONAGE_ALLOW_CUSTOM_BASE_URL']);
    expect(bad({ ...MIN, VONAGE_ALLOW_CUSTOM_BASE_URL: 'sure', VONAGE_BASE_URL: 'http://proxy.internal' })).toEqual(['VONAGE_ALLOW_CUSTOM_BASE_URL', 'VONAGE_BASE_URL']);
    expect(bad({ ...MIN, VONAGE_BASE_URL: 'https://rest.nexmo.com/account' })).toEqual(['VONAGE_BASE_URL']);
    expect(bad({ ...MIN, VONAGE_ALLOW_CUSTOM_BASE_URL: 'YES', VONAGE_BASE_URL: 'http://2130706433:8080/sim/' })).toEqual([]);
    expect(bad({ ...MIN, VONAGE_BASE_URL: ' HTTPS://REST.Nexmo.com:443 ' })).toEqual([]);
    for (const t of ['1e3', '+5', '.5', '10.', '0.000', '1000000.01', '１０']) expect(bad({ ...MIN, TOPUP_THRESHOLD: t }), t).toEqual(['TOPUP_THRESHOLD']);
    for (const t of ['0.01', ' 007 ', '1000000']) expect(bad({ ...MIN, TOPUP_THRESHOLD: t }), t).toEqual([]);
    for (const t of ['30m1h', '1m1m', '15M', '7d1ms', '999ms', '15']) expect(bad({ ...MIN, TOPUP_COOLDOWN: t }), t).toEqual(['TOPUP_COOLDOWN']);
    for (const t of ['1h30m', '7d', '1s', '168h']) expect(bad({ ...MIN, TOPUP_COOLDOWN: t }), t).toEqual([]);
    expect(bad({ ...MIN, VONAGE_API_SECRET_FILE: '/s' }, new Map([['/s', { kind: 'file', content: 'x\n' }]]))).toEqual(['VONAGE_API_SECRET']);
    expect(bad({ ...MIN, VONAGE_API_SECRET: undefined, VONAGE_API_SECRET_FILE: '/s' }, new Map([['/s', { kind: 'file', content: '\r\n' }]]))).toEqual(['VONAGE_API_SECRET_FILE']);
    expect(bad({ ...MIN, VONAGE_API_SECRET: undefined, VONAGE_API_SECRET_FILE: '/s' }, new Map([['/s', { kind: 'file', content: 'CANARY-s\n\n' }]]))).toEqual(['VONAGE_API_SECRET_FILE']);
    expect(bad({ ...MIN, VONAGE_API_SECRET: undefined, VONAGE_API_SECRET_FILE: '/d' }, new Map([['/d', { kind: 'dir' }]]))).toEqual(['VONAGE_API_SECRET_FILE']);
    expect(bad({ ...MIN, VONAGE_ACCOUNT_NAME: ' acme', STATE_DIR: '  ', METRICS_PORT: '65536', LOG_LEVEL: 'verbose' })).toEqual(['LOG_LEVEL', 'METRICS_PORT', 'STATE_DIR', 'VONAGE_ACCOUNT_NAME']);
  });

  it(`${N_CONFIGS} generated configurations in-process: loadConfig names exactly the bad variables, never a secret; every valid one builds`, async () => {
    const started = performance.now();
    const violations: string[] = [];
    let valid = 0;
    let built = 0;
    let fileVariants = 0;
    const named = new Map<string, number>();
    let logChars = 0;
    for (const c of configWorld.cases) {
      const { i, verdict } = c;
      const m = { env: c.env };
      if (usesFile(m.env)) fileVariants += 1;
      const where = `config #${i}`;

      let config: Config | undefined;
      let error: unknown;
      try {
        config = loadConfig(m.env);
      } catch (err) {
        error = err;
      }
      if (!verdict.valid) {
        if (!(error instanceof ConfigError)) {
          violations.push(`${where}: expected a ConfigError naming ${[...verdict.bad].join(', ')}, got ${config ? 'a config' : String(error)}; env ${JSON.stringify(m.env)}`);
          continue;
        }
        const got = new Set(error.problems.map((p) => p.variable));
        for (const v of got) named.set(v, (named.get(v) ?? 0) + 1);
        const missing = [...verdict.bad].filter((v) => !got.has(v));
        const extra = [...got].filter((v) => !verdict.bad.has(v));
        if (missing.length > 0 || extra.length > 0) {
          violations.push(`${where}: names ${JSON.stringify([...got])}, the oracle expects ${JSON.stringify([...verdict.bad])}; problems ${JSON.stringify(error.problems)}; env ${JSON.stringify(m.env)}`);
        }
        const leaked = leak(`${error.message}\n${JSON.stringify(error.problems)}`, c);
        if (leaked) violations.push(`${where}: the ConfigError contains ${leaked}`);
        if (/[\x00-\x09\x0b-\x1f\x7f]/.test(error.message)) violations.push(`${where}: control characters in the message`);
        continue;
      }
      valid += 1;
      if (!config) {
        violations.push(`${where}: valid per the oracle, but ${error instanceof ConfigError ? `ConfigError ${JSON.stringify(error.problems)}` : String(error)}; env ${JSON.stringify(m.env)}`);
        continue;
      }
      const a = config.accounts[0]!;
      const actual: Expected = {
        apiKey: a.apiKey,
        apiSecret: a.apiSecret,
        trx: a.trx,
        name: a.name,
        baseUrl: a.baseUrl,
        auth: a.auth,
        threshold: a.threshold,
        cooldownMs: a.cooldownMs,
        maxPerDay: a.maxPerDay,
        topupEnabled: a.topupEnabled,
        dryRun: a.dryRun,
        pollSchedule: config.pollSchedule,
        httpTimeoutMs: config.httpTimeoutMs,
        stateDir: config.stateDir,
        host: config.metrics.host,
        port: config.metrics.port,
        authToken: config.metrics.authToken,
        level: config.log.level,
        format: config.log.format,
      };
      const diff = Object.keys(verdict.expected).filter((k) => !Object.is(actual[k as keyof Expected], verdict.expected[k as keyof Expected]));
      if (diff.length > 0) violations.push(`${where}: settings differ from the oracle in ${diff.map((k) => `${k}: ${JSON.stringify(actual[k as keyof Expected])} vs ${JSON.stringify(verdict.expected[k as keyof Expected])}`).join('; ')}`);

      // "Starts": everything the daemon builds before it listens.
      const logs = sink();
      try {
        const parts = buildParts(config, { logDestination: logs });
        const metrics = await parts.metrics.registry.metrics();
        parts.closeLedgers();
        built += 1;
        const text = `${logs.text()}\n${metrics}\n${JSON.stringify(describeConfig(config))}\n${config.warnings.join('\n')}`;
        logChars += text.length;
        const leaked = leak(text, c);
        if (leaked) violations.push(`${where}: logs/metrics/settings contain ${leaked}`);
      } catch (err) {
        violations.push(`${where}: buildParts threw ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    // Ledger and lock files (and their names) that buildParts left behind hold no secret either.
    const walk = (dir: string): string[] =>
      existsSync(dir) ? readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? [e.name, ...walk(join(dir, e.name))] : [e.name, readFileSync(join(dir, e.name), 'utf8')])) : [];
    const stateText = [configWorld.cwd, ...[0, 1, 2, 3, 4].map((k) => join(configWorld.base, `state${k}`))].flatMap(walk).join('\n');
    const stateLeak = /canary\d+z/i.exec(stateText);
    if (stateLeak) violations.push(`STATE_DIR contents hold the marker ${stateLeak[0]}`);
    figure('state files and names scanned for canaries (valid configs)', stateText.length);
    figure('configurations tried in-process', configWorld.cases.length);
    figure('configurations valid (built with buildParts)', `${valid} (${built})`);
    figure('configurations invalid', configWorld.cases.length - valid);
    figure('configurations reading a NAME_FILE (key, secret, trx or token)', fileVariants);
    figure('how key/secret/trx/token were supplied', [...configWorld.sourceKinds].sort((x, y) => y[1] - x[1]).map(([k, n]) => `${k}=${n}`).join(' '));
    figure('variables named by ConfigErrors', [...named].sort((x, y) => y[1] - x[1]).map(([k, n]) => `${k}=${n}`).join(' '));
    figure('characters scanned for canaries (valid configs: logs, metrics, settings)', logChars);
    figure('config in-process phase seconds', seconds(started));
    reportViolations('config fuzz', SEEDS.config, violations);
    expect(valid).toBeGreaterThan(N_CONFIGS * 0.2);
    expect(configWorld.cases.length - valid).toBeGreaterThan(N_CONFIGS * 0.2);
  });

  it(`a sample (${CHILD_SAMPLES_PER_KIND} invalid + ${CHILD_SAMPLES_PER_KIND} valid) through the real binary: exit 78 naming the variables without values, or exit 0`, async () => {
    expect(existsSync(MAIN), 'dist/main.js is missing: run `npm run build` (npm run test:safety does)').toBe(true);
    const { invalid, valid } = configWorld.sample;
    expect(invalid).toHaveLength(CHILD_SAMPLES_PER_KIND);
    expect(valid).toHaveLength(CHILD_SAMPLES_PER_KIND);
    // Started in the file's beforeAll, one process at a time, while the in-process parts ran.
    const results = await configWorld.children;
    const violations: string[] = [];
    for (const { c, code, stdout, stderr, error } of results) {
      const where = `config #${c.i}`;
      if (error) violations.push(`${where}: could not run the child: ${error}`);
      const leaked = leak(`${stdout}\n${stderr}`, c);
      if (leaked) violations.push(`${where}: the child's output contains ${leaked}`);
      if (!c.verdict.valid) {
        if (code !== 78) violations.push(`${where}: exit ${code}, expected 78; stderr ${JSON.stringify(stderr.slice(0, 300))}`);
        const lines = stderr.split('\n').filter((l) => l.startsWith('  '));
        const names = new Set(lines.map((l) => l.trim().split(':')[0]!));
        const want = [...c.verdict.bad];
        if (want.some((v) => !names.has(v)) || [...names].some((v) => !c.verdict.valid && !(c.verdict as { bad: Set<string> }).bad.has(v))) {
          violations.push(`${where}: the child names ${JSON.stringify([...names])}, expected ${JSON.stringify(want)}`);
        }
        if (!stderr.startsWith('vonage-reload-watchdog: invalid configuration, nothing was done:\n')) violations.push(`${where}: unexpected stderr header`);
        if (stdout !== '') violations.push(`${where}: wrote to stdout`);
      } else if (stateDirProbeFails(c.verdict.expected, join(configWorld.base, 'a-file'))) {
        // Valid to loadConfig, but --check-config also probes STATE_DIR, and a path under a
        // regular file cannot be a directory: exit 78 naming STATE_DIR alone.
        if (code !== 78) violations.push(`${where}: exit ${code}, expected 78 (STATE_DIR probe); stderr ${JSON.stringify(stderr.slice(0, 300))}`);
        const named = stderr.split('\n').filter((l) => l.startsWith('  ')).map((l) => l.trim().split(':')[0]);
        if (named.join(',') !== 'STATE_DIR') violations.push(`${where}: the probe failure names ${JSON.stringify(named)}, expected only STATE_DIR`);
      } else {
        if (code !== 0) violations.push(`${where}: exit ${code}, expected 0; stderr ${JSON.stringify(stderr.slice(0, 300))}`);
        if (!stdout.startsWith('configuration is valid; effective settings:\n')) violations.push(`${where}: unexpected stdout ${JSON.stringify(stdout.slice(0, 200))}`);
        // The settings printed are the ones loaded in-process.
        for (const [k, v] of Object.entries(describeConfig(loadConfig(c.env)))) {
          if (!stdout.split('\n').some((l) => l.trim().startsWith(k) && l.trimEnd().endsWith(v.trim()))) violations.push(`${where}: ${k} not printed as ${JSON.stringify(v)}`);
        }
      }
    }
    figure('child-process --check-config runs (invalid + valid)', `${results.length} (${invalid.length} + ${valid.length})`);
    figure('child-process runs using a _FILE variable', results.filter(({ c }) => usesFile(c.env)).length);
    figure('child-process phase seconds (in the background, one at a time)', configWorld.childSeconds.toFixed(1));
    reportViolations('config via the binary', SEEDS.config, violations);
  });
});


// =============================================================================================
// Reproducers for bugs this fuzz found (they fail until src/ is fixed)
// =============================================================================================

describe('bug reproducers found by the body fuzz', () => {
  // src/vonage/account-parse.ts:46/52: parseFlatXml collects children into `const fields: Fields = {}` and
  // rejects a repeated child with `if (name in fields)`. `in` also sees Object.prototype, so the
  // first <constructor>, <toString>, <valueOf>, <hasOwnProperty>, <isPrototypeOf>,
  // <propertyIsEnumerable> or <toLocaleString> child counts as "repeated" and the whole document is
  // refused. A balance is then a failed poll (bad_response) and, worse, a top-up Vonage answered
  // with error-code 200 is recorded as outcome "unknown"/bad_response instead of "success".
  // Fail-safe for money (the attempt is counted either way) but wrong: metrics and /status report
  // a failure, and a valid reading is lost. Fix: Object.create(null) or a Map, or Object.hasOwn.
  const BALANCE_XML = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<accountBalance>\n  <value>5.00000000</value>\n  <autoReload>true</autoReload>\n  <constructor>x</constructor>\n</accountBalance>\n';
  const TOPUP_XML = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<response>\n  <error-code>200</error-code>\n  <error-code-label>success</error-code-label>\n  <toString>x</toString>\n</response>\n';
  let server: FuzzServer;
  beforeAll(async () => {
    server = await startFuzzServer({
      balance: { status: 200, contentType: 'application/xml', body: BALANCE_XML, kind: 'reproducer' },
      topUp: { status: 200, contentType: 'application/xml', body: TOPUP_XML, kind: 'reproducer' },
    });
  });
  afterAll(async () => {
    await server?.close();
  });
  const client = () => createVonageClient({ account: { apiKey: 'k', apiSecret: 'secret-value', baseUrl: server.url, auth: 'basic' }, timeoutMs: 5000 });

  it('a well-formed XML balance with an extra <constructor> element is read (the oracle accepts it)', async () => {
    expect(balanceOracle(200, 'application/xml', BALANCE_XML, BALANCE_XML.length)).toEqual({ ok: true, value: 5, autoReload: true });
    await expect(client().getBalance()).resolves.toMatchObject({ value: 5, autoReload: true });
  });

  it('an XML top-up answer with error-code 200 and an extra <toString> element is a success', async () => {
    expect(topUpOracle(200, 'application/xml', TOPUP_XML, TOPUP_XML.length)).toEqual({ success: true });
    await expect(client().topUp('trx')).resolves.toBeDefined();
  });
});

describe('bug reproducers found while building the config fuzz', () => {
  // src/config/config.ts:376-384 (checkAccountName) accepts any text, so a secret pasted into
  // VONAGE_ACCOUNT_NAME becomes the `account` label of every series on /metrics (unauthenticated
  // unless METRICS_AUTH_TOKEN is set, listening on 0.0.0.0 by default), the /status `account`
  // field, the ledger file name and records, and the --check-config output. The logs are scrubbed
  // (log.ts), but metrics and settings are not. The module already withholds a pasted secret from
  // messages (quote(), "where a secret pasted into the wrong variable is caught"); the same
  // overlap rule should refuse it here. This test passes if the configuration is refused without
  // showing the secret, or if the secret reaches neither metrics nor the printed settings.
  it('a secret pasted into VONAGE_ACCOUNT_NAME is refused, or at least never published', async () => {
    const secret = 'CANARY-pasted-s3cr3t';
    const dir = mkdtempSync(join(tmpdir(), 'fuzz-pasted-'));
    try {
      const env = { VONAGE_API_KEY: 'abcd1234', VONAGE_API_SECRET: secret, VONAGE_TOPUP_TRX: 'trx-12345', TOPUP_THRESHOLD: '10', VONAGE_ACCOUNT_NAME: secret, STATE_DIR: dir };
      let config: Config;
      try {
        config = loadConfig(env);
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        expect((err as ConfigError).problems.map((p) => p.variable)).toContain('VONAGE_ACCOUNT_NAME');
        expect(findSecret(`${(err as Error).message}${JSON.stringify((err as ConfigError).problems)}`, secretForms(secret))).toBeUndefined();
        return;
      }
      const parts = buildParts(config, { logDestination: sink() });
      const metrics = await parts.metrics.registry.metrics();
      parts.closeLedgers();
      expect(findSecret(metrics, secretForms(secret)) === undefined, 'the pasted secret is the account label of every series on /metrics').toBe(true);
      expect(findSecret(JSON.stringify(describeConfig(config)), secretForms(secret)) === undefined, 'the pasted secret is printed by --check-config').toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
