/** Keeps the README true as the code changes: every setting and every metric is documented. */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { CONFIG_VARIABLES } from '../src/config/config.js';
import { createMetrics } from '../src/observe/metrics.js';

const readme = readFileSync(resolve(__dirname, '../README.md'), 'utf8');
const section = (title: string) => readme.split(`\n## ${title}\n`)[1]!.split('\n## ')[0]!;

describe('README', () => {
  it('documents every setting in the settings table', () => {
    const table = section('Settings');
    for (const v of CONFIG_VARIABLES) expect(table, v.name).toContain(`| \`${v.name}\``);
  });

  it('documents every metric the daemon exports, and no other', async () => {
    const registry = new Registry();
    createMetrics(registry, [{ name: 'a', threshold: 1, maxPerDay: 1, topupEnabled: true, dryRun: false }], '0.0.0');
    const exported = (await registry.getMetricsAsJSON()).map((m) => m.name).filter((n) => n.startsWith('vonage_'));
    const table = section('Metrics');
    const documented = [...table.matchAll(/^\| `(vonage_[a-z0-9_]+)/gm)].map((m) => m[1]);
    expect(documented.sort()).toEqual(exported.sort());
  });

  it('quick start has the demo and the test commands that CI runs', () => {
    const quick = section('Quick start');
    expect(quick).toContain('npm ci && npm run demo');
    expect(quick).toContain('npm ci && npm test');
    expect(quick).toContain('npm run test:integration');
    // The same Debian packages that .ci/run installs.
    expect(quick).toMatch(/apt-get install -y [^\n]*prometheus prometheus-alertmanager faketime/);
    const ci = readFileSync(resolve(__dirname, '../.ci/run'), 'utf8');
    expect(ci).toMatch(/^npm test$/m);
    expect(ci).toMatch(/^npm run test:integration$/m);
    // The system programs come before the suite that needs them, and the Node-only suite first.
    expect(ci.indexOf('apt-get install')).toBeGreaterThan(-1);
    expect(ci.indexOf('apt-get install')).toBeLessThan(ci.indexOf('npm run test:integration'));
    expect(ci.indexOf('\nnpm test\n')).toBeLessThan(ci.indexOf('\nnpm run test:integration\n'));
  });

  it('has one runbook section per alert, and says where to change the links', () => {
    const rules = parse(readFileSync(resolve(__dirname, '../config/prometheus/alerts.yml'), 'utf8')) as { groups: { rules: { alert?: string }[] }[] };
    const alerts = rules.groups.flatMap((g) => g.rules.map((r) => r.alert)).filter((a): a is string => a !== undefined);
    const runbook = section('Runbook');
    const subsections = [...runbook.matchAll(/^### (.+)$/gm)].map((m) => m[1]);
    expect(subsections.sort()).toEqual([...alerts].sort());
    const intro = runbook.split('\n### ')[0]!;
    expect(intro).toContain('https://github.com/vonage-reload-watchdog/vonage-reload-watchdog/blob/main/README.md');
    expect(intro).toContain('config/prometheus/alerts.yml');
  });
});
