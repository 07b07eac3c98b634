/**
 * The real Prometheus (Debian's package) scrapes the built daemon, which watches the simulator,
 * using the shipped scrape configuration and alert rules. No Docker engine needed: this is the
 * compose stack's watchdog → Prometheus path, on loopback.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { startSimulator, type Simulator } from '../../src/simulator/simulator.js';
import { API_KEY, CANARY_SECRET, TRX, expectNoSecret } from '../helpers/account.js';
import { baseEnv, freePort, startDaemon, stop, tempDir, waitFor, type Child } from '../helpers/daemon.js';
import { requireProgram } from './helpers/system.js';

const ROOT = resolve(__dirname, '../..');

let sim: Simulator;
let daemon: Child;
let prom: ChildProcess;
let promUrl: string;
let promLog = '';
let promtool: string;

beforeAll(async () => {
  const prometheus = requireProgram('prometheus', 'prometheus');
  promtool = requireProgram('promtool', 'prometheus');
  sim = await startSimulator({ apiKey: API_KEY, apiSecret: CANARY_SECRET, trx: TRX, balance: 11, drainPerSecond: 0.5, topUpAmount: 20 });
  daemon = await startDaemon(baseEnv(sim.url, { STATE_DIR: tempDir(), LOG_LEVEL: 'info' }));
  const target = new URL(daemon.url).host;

  // The shipped files, with only what a loopback run must change: the target address, and
  // intervals and `for:` durations short enough for a test. promtool's rule unit tests
  // (config/prometheus/alerts.test.yml) check the real durations.
  const dir = tempDir('prom-');
  const config = parse(readFileSync(join(ROOT, 'config/prometheus/prometheus.yml'), 'utf8')) as Record<string, any>;
  config.global = { ...config.global, scrape_interval: '1s', evaluation_interval: '1s', scrape_timeout: '1s' };
  delete config.alerting;
  const job = (config.scrape_configs as any[]).find((j) => j.job_name === 'vonage-reload-watchdog');
  job.scrape_interval = '1s';
  job.static_configs = [{ targets: [target] }];
  config.scrape_configs = [job];
  config.rule_files = [join(dir, 'alerts.yml')];
  const rules = parse(readFileSync(join(ROOT, 'config/prometheus/alerts.yml'), 'utf8')) as { groups: { interval?: string; rules: { for?: string }[] }[] };
  for (const g of rules.groups) {
    g.interval = '1s';
    for (const r of g.rules) if (r.for) r.for = '1s';
  }
  writeFileSync(join(dir, 'alerts.yml'), stringify(rules));
  writeFileSync(join(dir, 'prometheus.yml'), stringify(config));

  const port = await freePort();
  promUrl = `http://127.0.0.1:${port}`;
  prom = spawn(prometheus, [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  prom.stdout!.on('data', (d: Buffer) => (promLog += d.toString()));
  prom.stderr!.on('data', (d: Buffer) => (promLog += d.toString()));
  await waitFor(async () => (await fetch(`${promUrl}/-/ready`).catch(() => undefined))?.ok === true, 30_000, () => promLog);
}, 60_000);

afterAll(async () => {
  prom?.kill('SIGTERM');
  if (daemon) await stop(daemon);
  await sim?.close();
});

async function query(q: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]> {
  const res = (await (await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(q)}`)).json()) as { data: { result: any[] } };
  return res.data.result;
}

describe('real Prometheus scraping the daemon', () => {
  it('sees the balance, the top-up counter move, and the low-balance alert fire while the balance stays down', async () => {
    await waitFor(async () => (await query('vonage_balance_euros{account="e2e"} > 0')).length === 1, 20_000, () => promLog);
    await waitFor(async () => Number((await query('vonage_topups_total{account="e2e"}'))[0]?.value[1] ?? 0) === 1, 30_000, () => `${promLog}\n${daemon.output()}`);
    // The balance rose by the top-up; Prometheus saw it rise.
    await waitFor(async () => (await query('max_over_time(vonage_balance_euros{account="e2e"}[1m]) > 20')).length === 1, 20_000);

    // Keep the balance down: inside the cooldown the watchdog may not top up again, and the alert must fire.
    sim.setDrainPerSecond(0);
    sim.setBalance(4);
    await waitFor(async () => {
      const alerts = (await (await fetch(`${promUrl}/api/v1/alerts`)).json()) as { data: { alerts: { labels: Record<string, string>; state: string }[] } };
      return alerts.data.alerts.some((a) => a.labels.alertname === 'VonageBalanceLow' && a.labels.account === 'e2e' && a.state === 'firing');
    }, 30_000, () => promLog);
    expect(sim.appliedTopUps()).toHaveLength(1);
    expect((await query('up{job="vonage-reload-watchdog"}'))[0]?.value[1]).toBe('1');
  }, 90_000);

  it('the live /metrics passes promtool check metrics', async () => {
    const text = await (await fetch(`${daemon.url}/metrics`)).text();
    const r = spawnSync(promtool, ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect(`${r.stdout}${r.stderr}`.trim()).toBe('');
    expect(r.status).toBe(0);
    expectNoSecret(text, '/metrics');
  });
});
