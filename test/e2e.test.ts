/**
 * The built daemon as a child process against the simulator over loopback: the whole product,
 * as users run it.
 */
import { chmodSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { API_KEY, CANARY_SECRET, TRX, expectNoSecret } from './helpers/account.js';
import { baseEnv, metricValue, run, stop, tempDir, waitFor } from './helpers/daemon.js';
import { daemonHarness } from './helpers/harness.js';

const { simulator, daemon } = daemonHarness();
const A = '{account="e2e"}';

describe('daemon end to end', () => {
  it('tops up exactly once when the balance drains below the threshold, and reports it', async () => {
    const s = await simulator({ balance: 10.6, drainPerSecond: 0.5 });
    const d = await daemon(baseEnv(s.url, { STATE_DIR: tempDir() }));
    await waitFor(() => s.appliedTopUps().length === 1, 15_000, d.output);
    // Keep watching a while after: the balance is back above, then drains again within the cooldown.
    s.setBalance(5);
    await waitFor(async () => ((await metricValue(d.url, `vonage_topups_skipped_total{account="e2e",reason="cooldown"}`)) ?? 0) >= 2, 10_000, d.output);
    expect(s.appliedTopUps()).toHaveLength(1);
    expect(s.requests().filter((r) => r.endpoint === 'topup')).toHaveLength(1);

    expect(await metricValue(d.url, `vonage_topups_total${A}`)).toBe(1);
    expect(await metricValue(d.url, `vonage_balance_poll_success${A}`)).toBe(1);
    expect(await metricValue(d.url, `vonage_auto_reload_enabled${A}`)).toBe(1);
    expect(await metricValue(d.url, `vonage_topup_threshold_euros${A}`)).toBe(10);
    expect(await metricValue(d.url, `vonage_topup_attempts_last_24h${A}`)).toBe(1);
    expect(await metricValue(d.url, `vonage_ledger_writable${A}`)).toBe(1);
    expect(await metricValue(d.url, `vonage_balance_euros${A}`)).toBeLessThan(10);
    expect(await metricValue(d.url, `vonage_topup_last_success_timestamp_seconds${A}`)).toBeGreaterThan(Date.now() / 1000 - 30);
    expect(await metricValue(d.url, `vonage_topup_failures_total{account="e2e",reason="timeout"}`)).toBe(0);
    expect(await metricValue(d.url, `vonage_api_request_duration_seconds_count{account="e2e",endpoint="top_up"}`)).toBe(1);
    expect((await (await fetch(`${d.url}/metrics`)).text())).toMatch(/^vonage_watchdog_build_info\{version="\d+\.\d+\.\d+"\} 1$/m);

    const status = (await (await fetch(`${d.url}/status`)).json()) as { accounts: { lastTopUp: { outcome: string }; balance: number; cooldownUntil: string; nextPoll: string }[]; nextPoll: string };
    expect(status.accounts[0]).toMatchObject({ lastTopUp: { outcome: 'success' }, threshold: 10, autoReload: true });
    expect(Date.parse(status.accounts[0]!.cooldownUntil)).toBeGreaterThan(Date.now());
    expect(Date.parse(status.nextPoll)).toBeGreaterThan(Date.now() - 1000);
    // Not adaptive: the account is read at the next tick (the slot armed, or the one whose cycle is running now).
    expect(status.accounts[0]).toMatchObject({ nextPollReason: 'schedule', pollIntervalSeconds: 1 });
    expect(Math.abs(Date.parse(status.accounts[0]!.nextPoll) - Date.parse(status.nextPoll))).toBeLessThanOrEqual(1000);
    expect((await fetch(`${d.url}/readyz`)).status).toBe(200);
  });

  it('TOPUP_LEAD_TIME: tops up before the threshold is crossed when the forecast says it soon will be, once, counted as a forecast trigger', async () => {
    // 20 EUR falling 0.25 EUR/s: the threshold (10) is 40 s away; with a 30 s lead the top-up is
    // due once three polls have given a rate and the runway is 30 s or less (near 17.5 EUR).
    const s = await simulator({ balance: 20, drainPerSecond: 0.25, topUpAmount: 20 });
    const d = await daemon(baseEnv(s.url, { STATE_DIR: tempDir(), TOPUP_LEAD_TIME: '30s' }));
    await waitFor(() => s.appliedTopUps().length === 1, 20_000, d.output);
    const line = d.output().split('\n').find((l) => l.includes('forecast: the threshold is within TOPUP_LEAD_TIME; sending top-up'));
    expect(line, d.output()).toBeDefined();
    const sent = JSON.parse(line!) as { balance: number; runwaySeconds: number; trigger: string };
    expect(sent.trigger).toBe('forecast');
    expect(sent.balance).toBeGreaterThan(10);
    expect(sent.runwaySeconds).toBeLessThanOrEqual(30);
    expect(await metricValue(d.url, 'vonage_refill_triggers_total{account="e2e",trigger="forecast"}')).toBe(1);
    expect(await metricValue(d.url, 'vonage_refill_triggers_total{account="e2e",trigger="threshold"}')).toBe(0);
    expect(await metricValue(d.url, `vonage_balance_burn_rate_euros_per_second${A}`)).toBeCloseTo(0.25, 1);
    // The cooldown holds the next one: the balance falls again, the forecast says so, nothing more is sent.
    s.setBalance(17);
    await waitFor(() => d.output().includes('a rule holds the top-up back'), 15_000, d.output);
    expect(s.appliedTopUps()).toHaveLength(1);
    // Held by the forecast is not a skip: the balance never was below the threshold.
    expect(await metricValue(d.url, 'vonage_topups_skipped_total{account="e2e",reason="cooldown"}')).toBe(0);
    const status = (await (await fetch(`${d.url}/status`)).json()) as { accounts: { forecast: { confidence: string; leadTimeSeconds: number; runwaySeconds: number | null } }[] };
    expect(status.accounts[0]!.forecast).toMatchObject({ leadTimeSeconds: 30 });
    expect(['low', 'high']).toContain(status.accounts[0]!.forecast.confidence);
  }, 90_000);

  it('without TOPUP_LEAD_TIME the forecast only reports: no top-up while the balance is above the threshold; runway +Inf while it is not draining', async () => {
    const s = await simulator({ balance: 20, drainPerSecond: 0.25 });
    const d = await daemon(baseEnv(s.url, { STATE_DIR: tempDir() }));
    expect(await (await fetch(`${d.url}/metrics`)).text()).toContain(`vonage_balance_runway_seconds${A} +Inf`);
    await waitFor(async () => ((await metricValue(d.url, `vonage_balance_runway_seconds${A}`)) ?? Infinity) < 40, 15_000, d.output);
    expect(s.appliedTopUps()).toHaveLength(0);
    expect(await metricValue(d.url, 'vonage_refill_triggers_total{account="e2e",trigger="forecast"}')).toBe(0);
  }, 30_000);

  it('kill -9 and restart inside the cooldown: no second top-up', async () => {
    const s = await simulator({ balance: 5 });
    const state = tempDir();
    const env = baseEnv(s.url, { STATE_DIR: state });
    const first = await daemon(env);
    await waitFor(() => s.appliedTopUps().length === 1, 10_000, first.output);
    s.setBalance(3);
    first.proc.kill('SIGKILL');
    await first.exited;

    const second = await daemon(env);
    await waitFor(async () => ((await metricValue(second.url, `vonage_topups_skipped_total{account="e2e",reason="cooldown"}`)) ?? 0) >= 3, 10_000, second.output);
    expect(s.appliedTopUps()).toHaveLength(1);
    expect(await metricValue(second.url, `vonage_topup_attempts_last_24h${A}`)).toBe(1);
  });

  it('a lost answer is counted as an attempt, never re-sent, and reconciled from the balance', async () => {
    const s = await simulator({ balance: 5 });
    s.setFault({ kind: 'lost_answer', lostMode: 'reset', count: 1 });
    const d = await daemon(baseEnv(s.url, { STATE_DIR: tempDir(), TOPUP_COOLDOWN: '1h' }));
    await waitFor(() => d.output().includes('treating it as applied'), 10_000, d.output);
    s.setBalance(2);
    await waitFor(async () => ((await metricValue(d.url, `vonage_topups_skipped_total{account="e2e",reason="cooldown"}`)) ?? 0) >= 2, 10_000, d.output);
    expect(s.appliedTopUps()).toHaveLength(1);
    expect(s.requests().filter((r) => r.endpoint === 'topup')).toHaveLength(1);
    expect(await metricValue(d.url, `vonage_topup_failures_total{account="e2e",reason="network"}`)).toBe(1);
    const status = (await (await fetch(`${d.url}/status`)).json()) as { accounts: { lastTopUp: unknown }[] };
    expect(status.accounts[0]!.lastTopUp).toMatchObject({ outcome: 'unknown', confirmedByBalance: true });
  });

  it('watches and reports but never tops up when STATE_DIR cannot be written, and says why', async () => {
    const s = await simulator({ balance: 5 });
    const base = tempDir();
    writeFileSync(join(base, 'not-a-dir'), '');
    const d = await daemon(baseEnv(s.url, { STATE_DIR: join(base, 'not-a-dir', 'state') }));
    await waitFor(async () => ((await metricValue(d.url, `vonage_topups_skipped_total{account="e2e",reason="ledger_unavailable"}`)) ?? 0) >= 2, 10_000, d.output);
    expect(await metricValue(d.url, `vonage_ledger_writable${A}`)).toBe(0);
    expect(await metricValue(d.url, `vonage_balance_euros${A}`)).toBe(5);
    expect(s.appliedTopUps()).toHaveLength(0);
    const line = d.output().split('\n').find((l) => l.includes('top-ups are DISABLED until the ledger is writable'));
    expect(line).toMatch(/cannot create STATE_DIR .*ENOTDIR/);
  });

  it('dry run and kill switch decide and report, never send', async () => {
    const s = await simulator({ balance: 5 });
    const dry = await daemon(baseEnv(s.url, { STATE_DIR: tempDir(), DRY_RUN: 'yes' }));
    const off = await daemon(baseEnv(s.url, { STATE_DIR: tempDir(), TOPUP_ENABLED: '0', VONAGE_TOPUP_TRX: '' }));
    await waitFor(async () => ((await metricValue(dry.url, `vonage_topups_skipped_total{account="e2e",reason="dry_run"}`)) ?? 0) >= 2, 10_000, dry.output);
    await waitFor(async () => ((await metricValue(off.url, `vonage_topups_skipped_total{account="e2e",reason="disabled"}`)) ?? 0) >= 2, 10_000, off.output);
    expect(await metricValue(dry.url, `vonage_topup_enabled${A}`)).toBe(0);
    expect(s.requests().filter((r) => r.endpoint === 'topup')).toHaveLength(0);
  });

  it('a bad answer from Vonage is a failed poll, never a zero balance; /readyz says so; /healthz stays up', async () => {
    const s = await simulator({ balance: 25 });
    const d = await daemon(baseEnv(s.url, { STATE_DIR: tempDir() }));
    await waitFor(async () => (await fetch(`${d.url}/readyz`)).status === 200, 10_000, d.output);
    s.setFault({ kind: 'auth_failure', endpoint: 'balance' });
    await waitFor(async () => (await fetch(`${d.url}/readyz`)).status === 503, 10_000, d.output);
    expect(await (await fetch(`${d.url}/readyz`)).text()).toMatch(/latest balance poll failed/);
    expect((await fetch(`${d.url}/healthz`)).status).toBe(200);
    expect(await metricValue(d.url, `vonage_balance_euros${A}`)).toBe(25);
    expect(await metricValue(d.url, `vonage_balance_poll_success${A}`)).toBe(0);
    expect(await metricValue(d.url, `vonage_balance_poll_failures_total{account="e2e",reason="auth_failed"}`)).toBeGreaterThanOrEqual(1);
    s.clearFaults();
    await waitFor(async () => (await fetch(`${d.url}/readyz`)).status === 200, 10_000, d.output);
    expect(s.appliedTopUps()).toHaveLength(0);
  });

  it('polls once at start-up, whatever the schedule', async () => {
    const s = await simulator({ balance: 25 });
    const d = await daemon(baseEnv(s.url, { STATE_DIR: tempDir(), POLL_SCHEDULE: '0 0 1 1 *' }));
    await waitFor(async () => (await fetch(`${d.url}/readyz`)).status === 200, 10_000, d.output);
    expect(await metricValue(d.url, `vonage_balance_euros${A}`)).toBe(25);
    expect(s.requests().filter((r) => r.endpoint === 'balance')).toHaveLength(1);
  });

  it('SIGTERM stops scheduling, closes the server and exits 0', async () => {
    const s = await simulator({ balance: 25 });
    const d = await daemon(baseEnv(s.url, { STATE_DIR: tempDir() }));
    const t = Date.now();
    d.proc.kill('SIGTERM');
    expect(await d.exited).toEqual({ code: 0, signal: null });
    expect(Date.now() - t).toBeLessThan(3000);
    expect(d.output()).toMatch(/"msg":"stopped"/);
  });

  it('a second SIGTERM during a graceful stop does not abandon the in-flight top-up', async () => {
    const s = await simulator({ balance: 5 });
    s.setFault({ kind: 'slow', endpoint: 'topup', delayMs: 1200 });
    const d = await daemon(baseEnv(s.url, { STATE_DIR: tempDir(), HTTP_TIMEOUT: '3s' }));
    await waitFor(() => d.output().includes('sending top-up'), 10_000, d.output);
    d.proc.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 100));
    d.proc.kill('SIGTERM');
    expect(await d.exited).toEqual({ code: 0, signal: null });
    expect(d.output()).toMatch(/"msg":"top-up succeeded"/);
    expect(s.appliedTopUps()).toHaveLength(1);
  });

  it('protects /metrics and /status with a bearer token; probes stay open', async () => {
    const s = await simulator({ balance: 25 });
    const d = await daemon(baseEnv(s.url, { STATE_DIR: tempDir(), METRICS_AUTH_TOKEN: 'tok-123456' }));
    expect((await fetch(`${d.url}/metrics`)).status).toBe(401);
    expect((await fetch(`${d.url}/status`, { headers: { Authorization: 'Bearer wrong' } })).status).toBe(401);
    expect((await fetch(`${d.url}/metrics`, { headers: { Authorization: 'Bearer tok-123456' } })).status).toBe(200);
    expect((await fetch(`${d.url}/healthz`)).status).toBe(200);
    expect([200, 503]).toContain((await fetch(`${d.url}/readyz`)).status);
  });
});

describe('command line', () => {
  it('exits 78 before doing anything, naming every bad variable and never the secret', async () => {
    const c = run([], { PATH: process.env.PATH ?? '', VONAGE_API_SECRET: CANARY_SECRET, TOPUP_THRESHOLD: 'lots', TOPUP_ENABLED: 'maybe', VONAGE_BASE_URL: `http://example.com/?s=${CANARY_SECRET}` });
    expect((await c.exited).code).toBe(78);
    const out = c.output();
    for (const v of ['VONAGE_API_KEY', 'TOPUP_THRESHOLD', 'TOPUP_ENABLED', 'VONAGE_BASE_URL']) expect(out).toContain(v);
    expectNoSecret(out, 'config error output');
  });

  it('--check-config prints the effective settings with secrets masked', async () => {
    const c = run(['--check-config'], baseEnv('https://rest.nexmo.com', { VONAGE_ALLOW_CUSTOM_BASE_URL: 'false' }));
    expect((await c.exited).code).toBe(0);
    expect(c.output()).toMatch(/TOPUP_THRESHOLD\s+10/);
    expectNoSecret(c.output(), '--check-config');
    expect(c.output()).not.toContain(TRX);
  });

  it('--help lists every variable; a bad flag exits 64', async () => {
    const help = run(['--help'], { PATH: process.env.PATH ?? '' });
    expect((await help.exited).code).toBe(0);
    for (const v of ['VONAGE_API_KEY', 'TOPUP_COOLDOWN', 'POLL_SCHEDULE', 'METRICS_PORT', 'STATE_DIR']) expect(help.output()).toContain(v);
    const bad = run(['--bogus'], { PATH: process.env.PATH ?? '' });
    expect((await bad.exited).code).toBe(64);
  });

  it('--once runs one cycle: exit 0 after a top-up, non-zero when the poll fails', async () => {
    const s = await simulator({ balance: 5 });
    const state = tempDir();
    const ok = run(['--once'], baseEnv(s.url, { STATE_DIR: state }));
    expect((await ok.exited).code).toBe(0);
    expect(s.appliedTopUps()).toHaveLength(1);
    // Inside the cooldown now: the second --once skips and still succeeds.
    const again = run(['--once'], baseEnv(s.url, { STATE_DIR: state }));
    expect((await again.exited).code).toBe(0);
    expect(s.appliedTopUps()).toHaveLength(1);
    s.setFault({ kind: 'server_error', endpoint: 'balance' });
    const failed = run(['--once'], baseEnv(s.url, { STATE_DIR: state }));
    expect((await failed.exited).code).toBe(1);
  });

  it('reads a .env file from the working directory; the real environment wins', async () => {
    const s = await simulator({ balance: 25 });
    const cwd = tempDir();
    const env = baseEnv(s.url, { STATE_DIR: tempDir() });
    const { TOPUP_THRESHOLD: _t, ...withoutThreshold } = env;
    writeFileSync(join(cwd, '.env'), 'TOPUP_THRESHOLD=42\nHTTP_TIMEOUT=3s\n');
    const c = run(['--check-config'], { ...withoutThreshold, HTTP_TIMEOUT: '2s' }, cwd);
    expect((await c.exited).code).toBe(0);
    expect(c.output()).toMatch(/TOPUP_THRESHOLD\s+42/);
    expect(c.output()).toMatch(/HTTP_TIMEOUT\s+2s/);
  });
});

describe('secret canary', () => {
  it('never appears in logs, metrics, /status, errors or the ledger, in any encoding', async () => {
    const outputs: [string, string][] = [];
    for (const auth of ['basic', 'query']) {
      const s = await simulator({ balance: 5 });
      const state = tempDir();
      const d = await daemon(baseEnv(s.url, { STATE_DIR: state, VONAGE_AUTH: auth, TOPUP_COOLDOWN: '1s', LOG_LEVEL: 'trace' }));
      for (const kind of ['auth_failure', 'server_error', 'reset', 'garbage', 'redirect', 'hang', 'huge', 'topup_failed', 'lost_answer'] as const) {
        s.clearFaults();
        s.setFault({ kind, count: 2, ...(kind === 'redirect' ? { location: `${s.url}/account/get-balance?api_secret=${CANARY_SECRET}` } : {}) });
        const before = s.requests().length;
        await waitFor(() => s.requests().length >= before + 2, 10_000, d.output);
      }
      outputs.push([`${auth} /metrics`, await (await fetch(`${d.url}/metrics`)).text()]);
      outputs.push([`${auth} /status`, await (await fetch(`${d.url}/status`)).text()]);
      await stop(d);
      outputs.push([`${auth} logs`, d.output()]);
      for (const f of readdirSync(state)) outputs.push([`${auth} ${f}`, readFileSync(join(state, f), 'utf8')]);
      // The fault runs really exercised failures and top-ups, or this test proves nothing.
      expect(d.output()).toMatch(/"reason":"auth_failed"/);
      expect(s.requests().some((r) => r.endpoint === 'topup')).toBe(true);
    }
    for (const [label, text] of outputs) expectNoSecret(text, label);
  }, 120_000);
});
