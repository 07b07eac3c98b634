/**
 * The built daemon with a fleet file, as an operator runs it: ACCOUNTS_FILE with a primary and
 * its subaccounts and an independent account, against the simulator over loopback. A subaccount
 * below its threshold is refilled by one transfer; /status, /readyz and /metrics show the fleet;
 * SIGHUP adds an account, and a bad file keeps the fleet and says so.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { API_KEY, CANARY_SECRET, expectNoSecret } from './helpers/account.js';
import { metricValue, tempDir, waitFor } from './helpers/daemon.js';
import { daemonHarness } from './helpers/harness.js';

const h = daemonHarness();

function fleetYaml(url: string, extra = ''): string {
  return `defaults: {threshold: 10, cooldown: 1h, maxPerDay: 3, topupEnabled: true, dryRun: false}
accounts:
  - name: eu-prod
    apiKey: ${API_KEY}
    apiSecret: \${env:EU_SECRET}
    trx: \${env:EU_TRX}
    baseUrl: ${url}
    subaccountsBaseUrl: ${url}
    allowCustomBaseUrl: true
    subaccounts:
      watch: all
      threshold: 10
      refill: transfer
      transferAmount: 20
      primaryReserve: 100
      maxTransferredPerDay: 200
      cooldown: 1h
      maxPerDay: 5
${extra}`;
}

describe('the built daemon with ACCOUNTS_FILE', () => {
  it('refills a subaccount by one transfer, reports the fleet, and reloads on SIGHUP', async () => {
    const sim = await h.simulator({ balance: 500, subaccounts: [{ apiKey: 'sub0001', name: 'Support', balance: 3 }, { apiKey: 'sub0002', name: 'Shared', balance: null }, { apiKey: 'sub0003', name: 'Sales', balance: 80 }] });
    const dir = tempDir('fleet-e2e-');
    const file = join(dir, 'accounts.yml');
    writeFileSync(file, fleetYaml(sim.url));
    const env = {
      PATH: process.env.PATH ?? '',
      ACCOUNTS_FILE: file,
      EU_SECRET: CANARY_SECRET,
      EU_TRX: '8ef2447e69604f642ae59363aa5f781b',
      POLL_SCHEDULE: '* * * * * *',
      HTTP_TIMEOUT: '1s',
      STATE_DIR: join(dir, 'state'),
      METRICS_HOST: '127.0.0.1',
      LOG_LEVEL: 'debug',
    };
    const d = await h.daemon(env);
    await waitFor(() => sim.appliedTransfers().length === 1, 10_000, d.output);
    expect(sim.appliedTransfers()[0]).toMatchObject({ to: 'sub0001', amount: 20 });
    // A few more cycles: the cooldown holds, the shared one is never refilled.
    const lists = () => sim.requests().filter((r) => r.endpoint === 'list_subaccounts').length;
    const seen = lists();
    await waitFor(() => lists() >= seen + 2, 10_000, d.output);
    expect(sim.appliedTransfers()).toHaveLength(1);

    expect(await metricValue(d.url, 'vonage_balance_transfers_total{account="sub0001"}')).toBe(1);
    expect(await metricValue(d.url, 'vonage_subaccounts_watched{account="eu-prod"}')).toBe(3);
    expect(await metricValue(d.url, 'vonage_watchdog_config_last_reload_successful')).toBe(1);
    const status = (await (await fetch(`${d.url}/status`)).json()) as { accounts: { account: string; primary: string | null; sharesPrimaryBalance?: boolean }[] };
    expect(status.accounts.map((a) => [a.account, a.primary])).toEqual([['eu-prod', null], ['sub0001', 'eu-prod'], ['sub0002', 'eu-prod'], ['sub0003', 'eu-prod']]);
    expect(status.accounts.find((a) => a.account === 'sub0002')?.sharesPrimaryBalance).toBe(true);
    expect((await fetch(`${d.url}/readyz`)).status).toBe(200);

    // SIGHUP with a second account: it gets its series and is polled.
    writeFileSync(file, fleetYaml(sim.url, `  - name: us-marketing\n    apiKey: ${API_KEY}2\n    apiSecret: \${env:EU_SECRET}\n    baseUrl: ${sim.url}\n    allowCustomBaseUrl: true\n`).replace('maxPerDay: 5\n', 'maxPerDay: 5\n'));
    d.proc.kill('SIGHUP');
    await waitFor(async () => (await metricValue(d.url, 'vonage_balance_polls_total{account="us-marketing"}')) !== undefined, 10_000, d.output);
    // A bad file: the fleet stays, the gauge says it failed, the process lives on.
    writeFileSync(file, `${fleetYaml(sim.url)}    tresholdd: 5\n`);
    d.proc.kill('SIGHUP');
    await waitFor(async () => (await metricValue(d.url, 'vonage_watchdog_config_last_reload_successful')) === 0, 10_000, d.output);
    expect(await metricValue(d.url, 'vonage_balance_polls_total{account="us-marketing"}')).toBeDefined();
    expect(d.output()).toContain('configuration reload failed');
    expect((await fetch(`${d.url}/healthz`)).status).toBe(200);
    expectNoSecret(d.output(), 'daemon output');
    expectNoSecret(await (await fetch(`${d.url}/metrics`)).text(), 'metrics');
  });

  it('refuses the single-account variables beside ACCOUNTS_FILE, naming them, exit 78', async () => {
    const dir = tempDir('fleet-e2e-');
    const file = join(dir, 'accounts.yml');
    writeFileSync(file, fleetYaml('https://rest.nexmo.com'));
    const { run } = await import('./helpers/daemon.js');
    const c = run(['--check-config'], { PATH: process.env.PATH ?? '', ACCOUNTS_FILE: file, EU_SECRET: CANARY_SECRET, EU_TRX: 'x1234567', VONAGE_API_KEY: 'abc', TOPUP_THRESHOLD: '5', STATE_DIR: join(dir, 'state') });
    const { code } = await c.exited;
    expect(code).toBe(78);
    expect(c.output()).toContain('VONAGE_API_KEY');
    expect(c.output()).toContain('TOPUP_THRESHOLD');
    expectNoSecret(c.output(), 'output');
  });

  it('a fleet of 40 accounts starts and cycles without a Node warning on stderr (one cycle signal, one listener per account at a time)', async () => {
    const sim = await h.simulator({ balance: 500 });
    const dir = tempDir('fleet-40-');
    const file = join(dir, 'accounts.yml');
    const accounts = Array.from({ length: 40 }, (_, i) => `  - {name: acct${i}, apiKey: ${i === 0 ? API_KEY : `${API_KEY}${i}`}, apiSecret: "\${env:EU_SECRET}", baseUrl: ${sim.url}, allowCustomBaseUrl: true}`);
    writeFileSync(file, `defaults: {threshold: 10, cooldown: 1h}\naccounts:\n${accounts.join('\n')}\n`);
    const d = await h.daemon({ PATH: process.env.PATH ?? '', ACCOUNTS_FILE: file, EU_SECRET: CANARY_SECRET, POLL_SCHEDULE: '* * * * * *', HTTP_TIMEOUT: '1s', STATE_DIR: join(dir, 'state'), METRICS_HOST: '127.0.0.1' });
    const polls = () => sim.requests().filter((r) => r.endpoint === 'balance').length;
    await waitFor(() => polls() >= 40 * 3, 20_000, d.output);
    expect(d.output()).not.toMatch(/Warning|warning:/);
  }, 30_000);
});
