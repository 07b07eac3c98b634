/**
 * `npm run demo:fleet`: a primary account with five subaccounts on the built-in simulator, and
 * the real daemon (a child process, as `npm start` runs it) watching them through a fleet file
 * (ACCOUNTS_FILE). Within a minute: balance transfers to the subaccounts that drain fastest, the
 * per-subaccount cooldown holding back a second one, a card top-up of the primary once the
 * transfers have taken it below its own threshold, a subaccount that spends the primary's balance
 * reported and never refilled, and a suspended one skipped. Ctrl-C stops it; DEMO_SECONDS stops
 * it by itself.
 *
 * As in `npm run demo`, the daemon runs with settings it accepts without a warning (cooldowns of
 * 10 minutes), so the cooldown is shown holding rather than shortened to show a second refill.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { demoSettings, runDemoDaemon } from './demo-daemon.js';
import { startSimulator } from './simulator/simulator.js';

/** The subaccounts, each draining at its own rate (EUR per second); null balance = shared. */
const SUBACCOUNTS = [
  { apiKey: 'a1f0c001', name: 'Marketing blasts', balance: 8, drain: 0.3 },
  { apiKey: 'a1f0c002', name: 'Support line', balance: 9, drain: 0.12 },
  { apiKey: 'a1f0c003', name: 'Transactional', balance: 10, drain: 0.08 },
  { apiKey: 'a1f0c004', name: 'Reports', balance: null, drain: 0 },
  { apiKey: 'a1f0c005', name: 'Old campaign', balance: 1, drain: 0, suspended: true },
] as const;

const PRIMARY_BALANCE = 34;
const PRIMARY_THRESHOLD = 25;
const TRANSFER_AMOUNT = 10;
const SUB_THRESHOLD = 5;

const sim = await startSimulator({
  port: Number(process.env.SIM_PORT ?? 8480),
  balance: PRIMARY_BALANCE,
  drainPerSecond: 0.02,
  topUpAmount: 50,
  primaryName: 'Demo primary',
  subaccounts: SUBACCOUNTS.map((s) => ({ apiKey: s.apiKey, name: s.name, balance: s.balance, suspended: 'suspended' in s ? s.suspended : false })),
});
// The simulator's subaccounts keep their balance until told; the demo spends it once a second.
const spending = setInterval(() => {
  for (const s of SUBACCOUNTS) if (s.balance !== null && s.drain > 0) sim.drainSubaccount(s.apiKey, s.drain);
}, 1000);

const stateDir = mkdtempSync(join(tmpdir(), 'vonage-watchdog-demo-fleet-'));
const accountsFile = join(stateDir, 'accounts.yaml');
writeFileSync(
  accountsFile,
  `# The demo's fleet: one primary and the subaccounts Vonage lists for it.
defaults: {cooldown: 10m, maxPerDay: 3}
accounts:
  - name: demo-primary
    apiKey: demo-key
    apiSecret: \${env:DEMO_API_SECRET}
    trx: \${env:DEMO_TOPUP_TRX}
    threshold: ${PRIMARY_THRESHOLD}
    baseUrl: ${sim.url}
    subaccountsBaseUrl: ${sim.url}
    allowCustomBaseUrl: true
    subaccounts:
      watch: all
      refill: transfer
      threshold: ${SUB_THRESHOLD}
      transferAmount: ${TRANSFER_AMOUNT}
      primaryReserve: 10
      maxTransferredPerDay: 100
      cooldown: 10m
      maxPerDay: 5
      overrides: {a1f0c003: {threshold: 8}}
`,
);
const metricsPort = process.env.METRICS_PORT ?? '8479';

process.stdout.write(`
  Vonage simulator: ${sim.url}   primary ${PRIMARY_BALANCE} EUR (threshold ${PRIMARY_THRESHOLD}, a top-up adds 50 EUR)
  Subaccounts:      ${SUBACCOUNTS.map((s) => `${s.name} ${s.balance === null ? 'shared balance' : `${s.balance} EUR${'suspended' in s ? ', suspended' : `, -${s.drain}/s`}`}`).join('; ')}
  Watchdog:         subaccount threshold ${SUB_THRESHOLD} EUR (Transactional: 8), ${TRANSFER_AMOUNT} EUR per transfer, polls every 2 s,
                    cooldown 10m, the primary never left below 10 EUR
  Fleet file:       ${accountsFile}
  Watch it:         http://localhost:${metricsPort}/metrics   http://localhost:${metricsPort}/status
  Stop:             Ctrl-C

`);

runDemoDaemon({
  // Not the user's directory: a .env there describing one account (VONAGE_*) would, beside
  // ACCOUNTS_FILE, be refused as ambiguous; the demo must run as shown whatever is around it.
  cwd: stateDir,
  env: {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    ACCOUNTS_FILE: accountsFile,
    DEMO_API_SECRET: 'demo-secret',
    DEMO_TOPUP_TRX: '8ef2447e69604f642ae59363aa5f781b',
    ...demoSettings(stateDir, metricsPort),
    ...(process.env.LOG_LEVEL ? { LOG_LEVEL: process.env.LOG_LEVEL } : {}),
  },
  onExit: async () => {
    clearInterval(spending);
    await sim.close();
    rmSync(stateDir, { recursive: true, force: true });
    const transfers = sim.appliedTransfers();
    const topups = sim.appliedTopUps().length;
    const names = new Map<string, string>(SUBACCOUNTS.map((s) => [s.apiKey, s.name]));
    process.stdout.write(
      `\ndemo over: the simulator applied ${transfers.length} balance transfer${transfers.length === 1 ? '' : 's'}` +
        `${transfers.length > 0 ? ` (${transfers.map((t) => `${t.amount} EUR to ${names.get(t.to) ?? t.to}`).join(', ')})` : ''}` +
        ` and ${topups} card top-up${topups === 1 ? '' : 's'} of the primary.\n`,
    );
  },
});
