// The Prometheus and Alertmanager configs, checked by Prometheus's own tools:
// promtool check config / check rules / test rules, and amtool check-config.
// These tools are required, not optional: a missing tool fails the test with the install command
// (`npm run test:integration` checks for them first; CI's .ci/run installs them).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { ROOT, grafanaToPromql, read, readYaml } from '../deploy/lib.js';
import { requireProgram } from './helpers/system.js';

const tool = requireProgram;

function run(cmd: string, args: string[]): { code: number | null; stdout: string; output: string } {
  const r = spawnSync(cmd, args, { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  if (r.error) throw r.error;
  return { code: r.status, stdout: r.stdout, output: `${r.stdout}${r.stderr}` };
}

const scratch = mkdtempSync(join(tmpdir(), 'vrw-promtool-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('promtool', () => {
  it('accepts config/prometheus/prometheus.yml (and the rule files it loads)', () => {
    const r = run(tool('promtool', 'prometheus'), ['check', 'config', 'config/prometheus/prometheus.yml']);
    expect(r.output).toContain('SUCCESS');
    expect(r.code, r.output).toBe(0);
  });

  it('accepts config/prometheus/alerts.yml', () => {
    const r = run(tool('promtool', 'prometheus'), ['check', 'rules', 'config/prometheus/alerts.yml']);
    expect(r.code, r.output).toBe(0);
  });

  it('passes the alert unit tests in config/prometheus/alerts.test.yml', () => {
    const r = run(tool('promtool', 'prometheus'), ['test', 'rules', 'config/prometheus/alerts.test.yml']);
    expect(r.output).toContain('SUCCESS');
    expect(r.code, r.output).toBe(0);
  });

  it('accepts the rules in the generated Kubernetes PrometheusRule', () => {
    const rule = readYaml<{ spec: { groups: unknown[] } }>('deploy/kubernetes/prometheusrule.yaml');
    const file = join(scratch, 'prometheusrule-spec.yml');
    writeFileSync(file, stringify({ groups: rule.spec.groups }));
    const r = run(tool('promtool', 'prometheus'), ['check', 'rules', file]);
    const alerts = readYaml<{ groups: { rules: unknown[] }[] }>('config/prometheus/alerts.yml');
    const count = alerts.groups.reduce((n, g) => n + g.rules.length, 0);
    expect(r.output).toContain(`SUCCESS: ${count} rules found`);
    expect(r.code, r.output).toBe(0);
  });

  it('parses every PromQL query of the Grafana dashboard', () => {
    const dashboard = JSON.parse(read('config/grafana/dashboards/vonage-reload-watchdog.json')) as {
      panels: { title: string; targets?: { expr?: string }[] }[];
      annotations: { list: { name: string; expr?: string }[] };
    };
    const exprs = [
      ...dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr)),
      ...dashboard.annotations.list.map((a) => a.expr),
    ].filter((e): e is string => typeof e === 'string');
    expect(exprs.length).toBeGreaterThan(15);
    // Each query becomes a recording rule, which promtool parses (Grafana macros substituted).
    const file = join(scratch, 'grafana-queries.yml');
    writeFileSync(
      file,
      stringify({
        groups: [{ name: 'grafana', rules: exprs.map((e, i) => ({ record: `grafana:query_${i}`, expr: grafanaToPromql(e) })) }],
      }),
    );
    const r = run(tool('promtool', 'prometheus'), ['check', 'rules', file]);
    expect(r.code, r.output).toBe(0);
  });
});

describe('amtool', () => {
  it('accepts config/alertmanager/alertmanager.yml', () => {
    const r = run(tool('amtool', 'prometheus-alertmanager'), ['check-config', 'config/alertmanager/alertmanager.yml']);
    expect(r.output).toContain('SUCCESS');
    expect(r.code, r.output).toBe(0);
  });

  it('routes alerts by alertname and account to the receiver', () => {
    const am = tool('amtool', 'prometheus-alertmanager');
    const r = run(am, ['config', 'routes', 'test', '--config.file=config/alertmanager/alertmanager.yml', 'alertname=VonageBalanceCritical', 'severity=critical', 'account=main']);
    expect(r.code, r.output).toBe(0);
    expect(r.stdout.trim()).toBe('default');
    const config = readYaml<{ route: { group_by: string[] } }>('config/alertmanager/alertmanager.yml');
    expect(config.route.group_by).toEqual(['alertname', 'account']);
  });
});
