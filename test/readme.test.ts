/** Keeps the README true as the code changes: every setting and every metric is documented. */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { CONFIG_VARIABLES } from '../src/config.js';
import { createMetrics } from '../src/metrics.js';

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

  it('quick start has the demo and the test command that CI runs', () => {
    const quick = section('Quick start');
    expect(quick).toContain('npm ci && npm run demo');
    expect(quick).toContain('npm ci && npm test');
    expect(readFileSync(resolve(__dirname, '../.ci/run'), 'utf8')).toMatch(/^npm test$/m);
  });
});
