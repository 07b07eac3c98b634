/**
 * `npm run demo`: the built-in simulator with a draining balance, and the real daemon (as a child
 * process, exactly as `npm start` runs it) on a fast schedule. A top-up happens within a minute,
 * with no Vonage account. Ctrl-C stops both. DEMO_SECONDS stops it by itself.
 *
 * The daemon runs with settings it would accept without a warning: a demo whose first line is a
 * warning about its own configuration teaches users to ignore warnings. So the cooldown is the
 * advised 10 minutes, and the demo shows the cooldown holding back the second dip instead.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { demoSettings, runDemoDaemon } from './demo-daemon.js';
import { startSimulator } from './simulator/simulator.js';

const sim = await startSimulator({ port: Number(process.env.SIM_PORT ?? 8480), balance: 12, drainPerSecond: 0.2, topUpAmount: 20 });
const stateDir = mkdtempSync(join(tmpdir(), 'vonage-watchdog-demo-'));
const metricsPort = process.env.METRICS_PORT ?? '8479';
const cooldown = '10m';

process.stdout.write(`
  Vonage simulator: ${sim.url}   balance 12.00 EUR, draining 0.20 EUR/s, top-up adds 20 EUR
  Watchdog:         threshold 10 EUR, polls every 2 s, cooldown ${cooldown}, at most 3 top-ups a day
  Watch it:         http://localhost:${metricsPort}/metrics   http://localhost:${metricsPort}/status
  Stop:             Ctrl-C

`);

runDemoDaemon({
  env: {
    ...process.env,
    VONAGE_API_KEY: 'demo-key',
    VONAGE_API_SECRET: 'demo-secret',
    VONAGE_TOPUP_TRX: '8ef2447e69604f642ae59363aa5f781b',
    VONAGE_ACCOUNT_NAME: 'demo',
    VONAGE_BASE_URL: sim.url,
    VONAGE_ALLOW_CUSTOM_BASE_URL: 'true',
    TOPUP_THRESHOLD: '10',
    TOPUP_COOLDOWN: cooldown,
    TOPUP_MAX_PER_DAY: '3',
    ...demoSettings(stateDir, metricsPort),
  },
  onExit: async () => {
    await sim.close();
    rmSync(stateDir, { recursive: true, force: true });
    const applied = sim.appliedTopUps().length;
    process.stdout.write(`\ndemo over: the simulator applied ${applied} top-up${applied === 1 ? '' : 's'}.\n`);
  },
});
