// Static checks of the deployment files (no Docker engine, no cluster needed): the Dockerfile,
// .dockerignore, docker-compose.yml, the Kubernetes manifests, the Prometheus/Grafana configs
// and .env.example, against each other and against the daemon's public contract.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, type Dirent } from 'node:fs';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { CONFIG_VARIABLES } from '../../src/config/config.js';
import { FAILURE_REASONS, TOPUP_ONLY_FAILURE_REASONS, TRANSFER_ONLY_FAILURE_REASONS } from '../../src/vonage/errors.js';
import { createMetrics } from '../../src/observe/metrics.js';
import { parseTopUp } from '../../src/vonage/account-parse.js';
import {
  ROOT,
  copyParts,
  dockerignoreExcludes,
  envPairs,
  execForm,
  githubAnchors,
  hashComments,
  interpolation,
  parseDockerfile,
  promqlMetricNames,
  read,
  readYaml,
  readmeAnchorRefs,
  repositoryPaths,
  stages,
  type Stage,
} from './lib.js';

// ---- The public contract ------------------------------------------------------------------------

const CONTRACT_METRICS = [
  'vonage_balance_euros',
  'vonage_auto_reload_enabled',
  'vonage_topup_threshold_euros',
  'vonage_balance_poll_success',
  'vonage_balance_last_success_timestamp_seconds',
  'vonage_balance_polls_total',
  'vonage_balance_poll_failures_total',
  'vonage_topups_total',
  'vonage_topup_failures_total',
  'vonage_topups_skipped_total',
  'vonage_topup_last_success_timestamp_seconds',
  'vonage_topup_last_attempt_timestamp_seconds',
  'vonage_topup_attempts_last_24h',
  'vonage_topup_max_per_day',
  'vonage_topup_enabled',
  'vonage_ledger_writable',
  'vonage_watchdog_leader',
  'vonage_ledger_up',
  'vonage_leader_transitions_total',
  'vonage_topup_last_amount_euros',
  'vonage_topped_up_euros_total',
  'vonage_topup_unresolved_attempts',
  'vonage_api_request_duration_seconds',
  'vonage_watchdog_build_info',
  'vonage_watchdog_log_lines_dropped_total',
  'vonage_watchdog_clock_steps_total',
  'vonage_account_info',
  'vonage_subaccounts_watched',
  'vonage_balance_transfers_total',
  'vonage_balance_transfer_failures_total',
  'vonage_balance_transferred_euros_total',
  'vonage_refilled_euros_total',
  'vonage_balance_burn_rate_euros_per_second',
  'vonage_balance_runway_seconds',
  'vonage_balance_next_poll_timestamp_seconds',
  'vonage_balance_poll_max_interval_seconds',
  'vonage_refill_blocked',
  'vonage_refill_triggers_total',
  'vonage_watchdog_config_last_reload_successful',
  'vonage_watchdog_config_last_reload_success_timestamp_seconds',
];
const HISTOGRAMS = ['vonage_api_request_duration_seconds'];
const PROMETHEUS_BUILTINS = ['up', 'scrape_duration_seconds', 'scrape_samples_scraped', 'ALERTS', 'ALERTS_FOR_STATE'];

const CONTRACT_ENV = [
  'VONAGE_API_KEY', 'VONAGE_API_KEY_FILE', 'VONAGE_API_SECRET', 'VONAGE_API_SECRET_FILE',
  'VONAGE_TOPUP_TRX', 'VONAGE_TOPUP_TRX_FILE', 'VONAGE_ACCOUNT_NAME', 'VONAGE_BASE_URL',
  'VONAGE_ALLOW_CUSTOM_BASE_URL', 'VONAGE_AUTH', 'TOPUP_THRESHOLD', 'TOPUP_COOLDOWN',
  'TOPUP_MAX_PER_DAY', 'TOPUP_LEAD_TIME', 'TOPUP_ENABLED', 'DRY_RUN', 'POLL_SCHEDULE', 'POLL_ADAPTIVE', 'POLL_MAX_INTERVAL', 'HTTP_TIMEOUT', 'STATE_DIR',
  'METRICS_HOST', 'METRICS_PORT', 'METRICS_AUTH_TOKEN', 'METRICS_AUTH_TOKEN_FILE', 'LOG_LEVEL',
  'LOG_FORMAT',
];

const ALERTS = [
  'VonageBalanceLow', 'VonageBalanceCritical', 'VonageRunwayShort', 'VonageTopUpFailed', 'VonageTopUpOutcomeUnknown',
  'VonageTopUpDailyCapReached', 'VonageAutoReloadDisabled', 'VonageBalancePollFailing',
  'VonageBalancePollStale', 'VonageWatchdogDown', 'VonageLedgerUnwritable',
  'VonageTopUpsDisabledForADay',
];
const RUNBOOK_BASE = 'https://github.com/vonage-reload-watchdog/vonage-reload-watchdog/blob/main/README.md#';

const JOB = 'vonage-reload-watchdog';

function allowedMetricName(name: string): boolean {
  if (CONTRACT_METRICS.includes(name) || PROMETHEUS_BUILTINS.includes(name)) return true;
  if (HISTOGRAMS.some((h) => [`${h}_bucket`, `${h}_sum`, `${h}_count`].includes(name))) return true;
  return /^(process|nodejs)_[a-z0-9_]+$/.test(name);
}

// ---- Parsed files -------------------------------------------------------------------------------

type Dict = Record<string, unknown>;
const dockerfile = stages(parseDockerfile(read('Dockerfile')));
const finalStage = dockerfile[dockerfile.length - 1] as Stage;
const stageNames = new Set(dockerfile.map((s) => s.name).filter((n): n is string => n !== undefined));
const stageByName = (name: string): Stage | undefined => dockerfile.find((s) => s.name === name);
const ins = (stage: Stage, keyword: string) => stage.instructions.filter((i) => i.keyword === keyword);
/** Everything a stage inherits through FROM <earlier stage>, then its own instructions. */
function lineage(stage: Stage): Stage[] {
  const parent = stageByName(stage.from);
  return parent && parent.index < stage.index ? [...lineage(parent), stage] : [stage];
}

interface ComposeService {
  image?: string;
  build?: { context?: string; target?: string };
  command?: string[];
  read_only?: boolean;
  tmpfs?: string[];
  cap_drop?: string[];
  security_opt?: string[];
  volumes?: string[];
  ports?: (string | Dict)[];
  environment?: Record<string, unknown>;
  env_file?: ({ path: string; required?: boolean } | string)[];
  network_mode?: string;
  init?: boolean;
  healthcheck?: Dict;
}
const compose = readYaml<{ services: Record<string, ComposeService>; volumes?: Record<string, unknown> }>('docker-compose.yml');
const services = compose.services;
const watchdog = services.watchdog as ComposeService;
const simulator = services.simulator as ComposeService;

const K8S = 'deploy/kubernetes';
interface Container {
  name: string;
  image: string;
  ports?: { name?: string; containerPort: number }[];
  env?: { name: string; value?: string; valueFrom?: unknown }[];
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
  securityContext?: Dict & { capabilities?: { drop?: string[]; add?: string[] }; seccompProfile?: { type?: string } };
  livenessProbe?: { httpGet?: { path: string; port: string | number } };
  readinessProbe?: { httpGet?: { path: string; port: string | number } };
  startupProbe?: { httpGet?: { path: string; port: string | number } };
}
interface Deployment {
  kind: string;
  metadata: { name: string; namespace?: string };
  spec: {
    replicas: number;
    strategy: { type: string };
    selector: { matchLabels: Record<string, string> };
    template: {
      metadata: { labels: Record<string, string> };
      spec: {
        securityContext: Dict & { seccompProfile?: { type?: string } };
        containers: Container[];
        volumes: { name: string; secret?: { secretName: string }; persistentVolumeClaim?: { claimName: string }; emptyDir?: Dict }[];
        automountServiceAccountToken?: boolean;
      };
    };
  };
}
const deployment = readYaml<Deployment>(`${K8S}/deployment.yaml`);
const pod = deployment.spec.template.spec;
const container = pod.containers[0] as Container;
const secret = readYaml<{ kind: string; metadata: { name: string }; stringData: Record<string, string> }>(`${K8S}/secret.yaml`);
const service = readYaml<{ kind: string; metadata: { name: string; labels: Record<string, string> }; spec: { selector: Record<string, string>; ports: { name: string; port: number; targetPort: string | number }[] } }>(`${K8S}/service.yaml`);
const serviceMonitor = readYaml<{ kind: string; spec: { selector: { matchLabels: Record<string, string> }; endpoints: { port: string; path: string }[] } }>(`${K8S}/servicemonitor.yaml`);
const pvc = readYaml<{ kind: string; metadata: { name: string }; spec: { accessModes: string[] } }>(`${K8S}/pvc.yaml`);

interface Rule { alert?: string; record?: string; expr: string; for?: string; labels?: Record<string, string>; annotations?: Record<string, string> }
const alertRules = readYaml<{ groups: { name: string; rules: Rule[] }[] }>('config/prometheus/alerts.yml');
const rules = alertRules.groups.flatMap((g) => g.rules);

interface Panel { id: number; type: string; title: string; gridPos: { x: number; y: number; w: number; h: number }; datasource?: { uid?: string }; targets?: { expr?: string; datasource?: { uid?: string } }[]; panels?: Panel[] }
interface Dashboard {
  uid: string;
  title: string;
  panels: Panel[];
  annotations: { list: { expr?: string; datasource?: { uid?: string } }[] };
  templating: { list: { name: string; type: string; query?: unknown; definition?: string }[] };
}
const dashboard = JSON.parse(read('config/grafana/dashboards/vonage-reload-watchdog.json')) as Dashboard;
const allPanels = (ps: Panel[]): Panel[] => ps.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
function dashboardExprs(): { where: string; expr: string }[] {
  const out: { where: string; expr: string }[] = [];
  for (const p of allPanels(dashboard.panels)) {
    for (const t of p.targets ?? []) if (t.expr) out.push({ where: `panel "${p.title}"`, expr: t.expr });
  }
  for (const a of dashboard.annotations.list) if (a.expr) out.push({ where: 'annotation', expr: a.expr });
  return out;
}

// ---- Helpers' own tests -------------------------------------------------------------------------

describe('test helpers', () => {
  it('parseDockerfile joins continuations and drops comments', () => {
    const parsed = parseDockerfile('# syntax=docker/dockerfile:1\nFROM a:1.2.3 AS x\nRUN a \\\n  # note\n  && b\nCMD ["node", "x.js"]\n');
    expect(parsed.map((i) => [i.keyword, i.args])).toEqual([
      ['FROM', 'a:1.2.3 AS x'],
      ['RUN', 'a && b'],
      ['CMD', '["node", "x.js"]'],
    ]);
    expect(execForm('["node", "x.js"]')).toEqual(['node', 'x.js']);
    expect(execForm('node x.js')).toBeUndefined();
    expect(copyParts('--from=build --chown=1:1 /app/dist ./dist')).toEqual({ flags: { from: 'build', chown: '1:1' }, sources: ['/app/dist'], dest: './dist' });
    expect(envPairs('A=1 B="two words" C=/data')).toEqual({ A: '1', B: 'two words', C: '/data' });
  });

  it('promqlMetricNames finds metric names only', () => {
    expect(promqlMetricNames('sum by (le, endpoint) (rate(x_bucket{account=~"$account"}[$__rate_interval])) > 0.5 * y offset 5m')).toEqual(['x_bucket', 'y']);
    expect(promqlMetricNames('time() - a and b > 0 or absent(up{job="j"})')).toEqual(['a', 'b', 'up']);
    expect(promqlMetricNames('increase(c[15m]) > 1e3')).toEqual(['c']);
  });

  it('dockerignoreExcludes follows last-match-wins with parent directories', () => {
    const rules = '*\n!src/\n**/*.test.ts\n';
    expect(dockerignoreExcludes(rules, 'src/a.ts')).toBe(false);
    expect(dockerignoreExcludes(rules, 'src/a.test.ts')).toBe(true);
    expect(dockerignoreExcludes(rules, 'README.md')).toBe(true);
    expect(interpolation('${A:-x y}')).toEqual({ name: 'A', default: 'x y' });
  });
});

// ---- Dockerfile ---------------------------------------------------------------------------------

describe('Dockerfile', () => {
  it('has a build, a deps and a final stage', () => {
    expect(dockerfile.length).toBeGreaterThanOrEqual(3);
    const build = stageByName('build');
    const deps = stageByName('deps');
    expect(build, 'a stage named build').toBeDefined();
    expect(deps, 'a stage named deps').toBeDefined();
    const runs = (s: Stage) => lineage(s).flatMap((st) => ins(st, 'RUN').map((i) => i.args));
    expect(runs(build as Stage).some((r) => /\bnpm ci\b/.test(r) && !r.includes('--omit=dev'))).toBe(true);
    expect(runs(build as Stage).some((r) => /\bnpm run build\b/.test(r))).toBe(true);
    expect(runs(deps as Stage).some((r) => /\bnpm ci\b.*--omit=dev/.test(r))).toBe(true);
  });

  it('pins every base image to a full version (or a digest), on an LTS Node', () => {
    const external = dockerfile.filter((s) => !stageNames.has(s.from) || (stageByName(s.from)?.index ?? Infinity) >= s.index);
    expect(external.length).toBeGreaterThan(0);
    for (const s of external) {
      expect(s.from, `FROM ${s.from}`).not.toMatch(/:latest\b/);
      expect(s.from, `FROM ${s.from} must carry a tag or digest`).toMatch(/[:@]/);
      expect(s.from, `FROM ${s.from} must name a full x.y.z version or a digest`).toMatch(/:v?\d+\.\d+\.\d+|@sha256:[0-9a-f]{64}/);
      const node = /^(?:docker\.io\/(?:library\/)?)?node:(\d+)\./.exec(s.from);
      if (node) {
        const major = Number(node[1]);
        expect(major % 2, 'Node LTS lines are even').toBe(0);
        expect(major, 'official Node 20 images are discontinued').toBeGreaterThanOrEqual(22);
      }
    }
  });

  it('runs the final stage as a non-root user', () => {
    const users = lineage(finalStage).flatMap((s) => ins(s, 'USER'));
    const last = users[users.length - 1];
    expect(last, 'the final stage sets USER').toBeDefined();
    const user = (last?.args ?? '').split(':')[0] ?? '';
    expect(['', 'root', '0']).not.toContain(user);
    expect(ins(finalStage, 'USER').length, 'USER is set in the final stage itself').toBeGreaterThan(0);
  });

  it('uses exec form for ENTRYPOINT, CMD and HEALTHCHECK, with tini as init and node (not npm) as the command', () => {
    const entry = ins(finalStage, 'ENTRYPOINT').at(-1);
    const cmd = ins(finalStage, 'CMD').at(-1);
    const health = ins(finalStage, 'HEALTHCHECK').at(-1);
    expect(execForm(entry?.args ?? '')).toEqual(['/usr/bin/tini', '--']);
    const cmdArgs = execForm(cmd?.args ?? '');
    expect(cmdArgs).toEqual(['node', 'dist/main.js']);
    expect(cmdArgs?.some((a) => /\b(npm|npx|yarn|pnpm)\b/.test(a))).toBe(false);
    const healthCmd = /^(?:--\S+\s+)*CMD\s+(.*)$/s.exec(health?.args ?? '');
    expect(healthCmd, 'HEALTHCHECK ... CMD [...]').not.toBeNull();
    expect(execForm(healthCmd?.[1] ?? '')).toEqual(['node', 'dist/healthcheck.js']);
    // tini comes from an earlier stage, and the file it is copied to is the ENTRYPOINT.
    const tiniCopy = ins(finalStage, 'COPY').map((i) => copyParts(i.args)).find((c) => c.dest === '/usr/bin/tini');
    expect(tiniCopy?.flags.from, 'tini is copied from an earlier stage').toBeDefined();
  });

  it('copies only production node_modules, dist and package.json into the final stage', () => {
    const copies = ins(finalStage, 'COPY').map((i) => copyParts(i.args));
    expect(ins(finalStage, 'ADD')).toEqual([]);
    for (const c of copies) {
      for (const src of c.sources) {
        expect(src, 'no whole-context copy').not.toMatch(/^\.\/?$/);
        expect(src.split('/'), `final stage copies ${src}`).not.toContain('src');
        expect(src.split('/'), `final stage copies ${src}`).not.toContain('test');
        expect(src).not.toMatch(/\.ts$|tsconfig|\.env/);
      }
    }
    const nodeModules = copies.find((c) => c.sources.some((s) => s.endsWith('node_modules')));
    expect(nodeModules?.flags.from, 'node_modules come from the deps stage (npm ci --omit=dev)').toBe('deps');
    const dist = copies.find((c) => c.sources.some((s) => s.endsWith('/dist') || s === 'dist'));
    expect(dist?.flags.from).toBe('build');
    expect(copies.some((c) => c.sources.includes('package.json')), 'package.json ("type": "module", version)').toBe(true);
    // No package manager runs in the final stage.
    for (const run of ins(finalStage, 'RUN')) expect(run.args).not.toMatch(/\bnpm (ci|install|i)\b|apt-get install/);
  });

  it('sets the runtime environment, volume, port and working directory', () => {
    const env = Object.assign({}, ...lineage(finalStage).flatMap((s) => ins(s, 'ENV').map((i) => envPairs(i.args)))) as Record<string, string>;
    expect(env).toMatchObject({ NODE_ENV: 'production', STATE_DIR: '/data', METRICS_PORT: '8479' });
    expect(ins(finalStage, 'VOLUME').map((i) => execForm(i.args))).toContainEqual(['/data']);
    expect(ins(finalStage, 'EXPOSE').map((i) => i.args)).toContain('8479');
    const workdir = lineage(finalStage).flatMap((s) => ins(s, 'WORKDIR')).at(-1);
    expect(workdir?.args).toMatch(/^\//);
    // /data must belong to the runtime user, so that a fresh named volume does too.
    expect(ins(finalStage, 'RUN').some((r) => /chown\s+(node|1000)(:\S+)?\s+\/data\b/.test(r.args))).toBe(true);
  });

  it('has an exec-form healthcheck script in src/', () => {
    expect(existsSync(join(ROOT, 'src/healthcheck.ts'))).toBe(true);
  });
});

describe('.dockerignore', () => {
  const ignore = read('.dockerignore');
  it('keeps secrets, VCS data, dependencies, build output and tests out of the context', () => {
    for (const path of ['.env', '.env.example', '.env.production', 'sub/.env', '.git/HEAD', 'node_modules/x/index.js', 'dist/main.js', 'data/ledger.jsonl', 'test/a.test.ts', 'coverage/index.html', 'npm-debug.log', 'README.md', 'deploy/kubernetes/secret.yaml']) {
      expect(dockerignoreExcludes(ignore, path), path).toBe(true);
    }
    expect(ignore.split(/\r?\n/).map((l) => l.trim())).toContain('.env');
  });

  it('sends what the build stage copies', () => {
    const build = stageByName('build') as Stage;
    const contextSources = lineage(build)
      .flatMap((s) => ins(s, 'COPY'))
      .map((i) => copyParts(i.args))
      .filter((c) => c.flags.from === undefined)
      .flatMap((c) => c.sources);
    expect(contextSources).toEqual(expect.arrayContaining(['package.json', 'package-lock.json', 'tsconfig.json']));
    for (const src of contextSources) {
      const probe = src.replace(/\/$/, '') === 'src' ? 'src/main.ts' : src;
      expect(dockerignoreExcludes(ignore, probe), probe).toBe(false);
    }
  });
});

// ---- docker-compose.yml -------------------------------------------------------------------------

describe('docker-compose.yml', () => {
  it('has the five services', () => {
    expect(Object.keys(services).sort()).toEqual(['alertmanager', 'grafana', 'prometheus', 'simulator', 'watchdog']);
  });

  it('pins every image tag', () => {
    for (const [name, svc] of Object.entries(services)) {
      expect(svc.image, `${name}: image`).toBeDefined();
      const image = svc.image ?? '';
      expect(image, name).not.toMatch(/:latest$/);
      if (svc.build) {
        expect(image, `${name}: locally built image has an explicit tag`).toMatch(/:[\w.-]+$/);
      } else {
        expect(image, `${name}: pinned to x.y.z or a digest`).toMatch(/:v?\d+\.\d+\.\d+$|@sha256:[0-9a-f]{64}$/);
      }
    }
  });

  it('hardens the watchdog: read-only root, no capabilities, no new privileges, /data volume', () => {
    expect(watchdog.build?.target).toBe('runtime');
    expect(stageByName('runtime')).toBe(finalStage);
    expect(watchdog.read_only).toBe(true);
    expect(watchdog.tmpfs).toContain('/tmp');
    expect(watchdog.cap_drop).toContain('ALL');
    expect(watchdog.security_opt).toContain('no-new-privileges:true');
    const dataVolume = (watchdog.volumes ?? []).find((v) => v.split(':')[1] === '/data');
    expect(dataVolume, 'a volume at /data').toBeDefined();
    const volumeName = dataVolume?.split(':')[0] ?? '';
    expect(volumeName.startsWith('.') || volumeName.startsWith('/'), 'a named volume, not a bind mount').toBe(false);
    expect(Object.keys(compose.volumes ?? {})).toContain(volumeName);
    expect(watchdog.environment?.STATE_DIR).toBe('/data');
  });

  it('publishes every port on 127.0.0.1 only', () => {
    let published = 0;
    for (const [name, svc] of Object.entries(services)) {
      for (const port of svc.ports ?? []) {
        published++;
        if (typeof port === 'string') expect(port, name).toMatch(/^127\.0\.0\.1:\d+:\d+$/);
        else expect(port.host_ip, name).toBe('127.0.0.1');
      }
    }
    expect(published).toBe(4);
  });

  it('reads an optional .env', () => {
    expect(watchdog.env_file).toContainEqual({ path: '.env', required: false });
  });

  it('defaults to the simulator, reached on loopback in the watchdog network namespace', () => {
    expect(simulator.network_mode).toBe('service:watchdog');
    expect(simulator.command).toEqual(['node', 'dist/simulator/main.js']);
    expect(simulator.image).toBe(watchdog.image);
    expect(simulator.read_only).toBe(true);
    expect(simulator.cap_drop).toContain('ALL');
    const env = watchdog.environment ?? {};
    const simEnv = simulator.environment ?? {};
    const baseUrl = new URL(interpolation(env.VONAGE_BASE_URL).default);
    expect(baseUrl.protocol).toBe('http:');
    expect(baseUrl.hostname).toBe('127.0.0.1'); // the daemon allows http on loopback only
    expect(String(simEnv.SIM_HOST)).toBe('127.0.0.1');
    expect(baseUrl.port).toBe(String(simEnv.SIM_PORT));
    expect(interpolation(env.VONAGE_ALLOW_CUSTOM_BASE_URL).default).toBe('true');
    expect(interpolation(env.VONAGE_API_KEY).default).toBe(String(simEnv.SIM_API_KEY));
    expect(interpolation(env.VONAGE_API_SECRET).default).toBe(String(simEnv.SIM_API_SECRET));
    expect(interpolation(env.VONAGE_TOPUP_TRX).default).toBe(String(simEnv.SIM_TRX));
    expect(Number(interpolation(env.TOPUP_THRESHOLD).default)).toBeGreaterThan(0);
  });

  it('mounts config files that exist, where the services look for them', () => {
    for (const [name, svc] of Object.entries(services)) {
      for (const v of svc.volumes ?? []) {
        const source = v.split(':')[0] ?? '';
        if (source.startsWith('.')) expect(existsSync(join(ROOT, source)), `${name}: ${source}`).toBe(true);
      }
    }
    const prom = services.prometheus as ComposeService;
    expect(prom.volumes).toContain('./config/prometheus:/etc/prometheus:ro');
    expect(prom.command).toContain('--config.file=/etc/prometheus/prometheus.yml');
    const am = services.alertmanager as ComposeService;
    expect(am.volumes).toContain('./config/alertmanager:/etc/alertmanager:ro');
    expect(am.command).toContain('--config.file=/etc/alertmanager/alertmanager.yml');
    const grafana = services.grafana as ComposeService;
    const provider = readYaml<{ providers: { options: { path: string } }[] }>('config/grafana/provisioning/dashboards/dashboard.yml');
    expect(grafana.volumes).toContain(`./config/grafana/dashboards:${provider.providers[0]?.options.path}:ro`);
    expect(grafana.volumes).toContain('./config/grafana/provisioning:/etc/grafana/provisioning:ro');
  });

  it('wires Prometheus to the watchdog and Alertmanager, and Grafana to Prometheus, by service name', () => {
    const prom = readYaml<{ scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[]; alerting: { alertmanagers: { static_configs: { targets: string[] }[] }[] } }>('config/prometheus/prometheus.yml');
    const job = prom.scrape_configs.find((j) => j.job_name === JOB);
    expect(job, `scrape job ${JOB}`).toBeDefined();
    expect(job?.static_configs[0]?.targets).toEqual([`watchdog:${watchdog.environment?.METRICS_PORT}`]);
    expect(prom.alerting.alertmanagers[0]?.static_configs[0]?.targets).toEqual(['alertmanager:9093']);
    const sources = readYaml<{ datasources: { type: string; url: string; uid: string }[] }>('config/grafana/provisioning/datasources/datasource.yml');
    expect(sources.datasources.find((d) => d.type === 'prometheus')?.url).toBe('http://prometheus:9090');
  });
});

// ---- Kubernetes ---------------------------------------------------------------------------------

describe('deploy/kubernetes', () => {
  it('runs exactly one replica and replaces it with Recreate', () => {
    expect(deployment.kind).toBe('Deployment');
    expect(deployment.spec.replicas).toBe(1);
    expect(deployment.spec.strategy.type).toBe('Recreate');
    expect(read(`${K8S}/deployment.yaml`)).toMatch(/#.*both (?:top up|.*top-up)|#.*two watchdogs/i);
  });

  it('is namespace-agnostic', () => {
    for (const file of ['deployment', 'secret', 'service', 'servicemonitor', 'pvc', 'prometheusrule']) {
      const doc = readYaml<{ metadata: { namespace?: string } }>(`${K8S}/${file}.yaml`);
      expect(doc.metadata.namespace, file).toBeUndefined();
    }
  });

  it('meets the restricted Pod Security Standard, with a read-only root filesystem', () => {
    const podSc = pod.securityContext;
    const sc = container.securityContext ?? {};
    const merged = { ...podSc, ...sc } as Dict & { seccompProfile?: { type?: string } };
    expect(merged.runAsNonRoot).toBe(true);
    expect(merged.runAsUser).toBe(1000);
    expect(merged.seccompProfile?.type).toBe('RuntimeDefault');
    expect(sc.allowPrivilegeEscalation).toBe(false);
    expect(sc.readOnlyRootFilesystem).toBe(true);
    expect(sc.capabilities?.drop).toContain('ALL');
    expect(sc.capabilities?.add ?? []).toEqual([]);
    expect(sc.privileged ?? false).toBe(false);
    expect(pod.automountServiceAccountToken).toBe(false);
  });

  it('probes /healthz for liveness and /readyz for readiness on the metrics port', () => {
    const portNames = (container.ports ?? []).map((p) => p.name);
    expect(container.livenessProbe?.httpGet?.path).toBe('/healthz');
    expect(container.readinessProbe?.httpGet?.path).toBe('/readyz');
    for (const probe of [container.livenessProbe, container.readinessProbe, container.startupProbe]) {
      if (probe) expect(portNames).toContain(probe.httpGet?.port);
    }
    expect(container.ports?.find((p) => p.name === 'metrics')?.containerPort).toBe(8479);
  });

  it('reads credentials from files in the mounted Secret, never from plain env values', () => {
    const env = container.env ?? [];
    const mount = container.volumeMounts?.find((m) => m.mountPath === '/run/secrets/vonage');
    expect(mount?.readOnly).toBe(true);
    const secretVolume = pod.volumes.find((v) => v.name === mount?.name);
    expect(secretVolume?.secret?.secretName).toBe(secret.metadata.name);
    for (const name of ['VONAGE_API_KEY', 'VONAGE_API_SECRET', 'VONAGE_TOPUP_TRX']) {
      expect(env.find((e) => e.name === name), `${name} must not be set directly`).toBeUndefined();
      const file = env.find((e) => e.name === `${name}_FILE`)?.value ?? '';
      expect(file.startsWith('/run/secrets/vonage/'), `${name}_FILE`).toBe(true);
      expect(Object.keys(secret.stringData)).toContain(file.slice('/run/secrets/vonage/'.length));
    }
    expect(env.find((e) => e.name === 'METRICS_AUTH_TOKEN')).toBeUndefined();
    // Placeholders only.
    for (const value of Object.values(secret.stringData)) expect(value).toMatch(/^REPLACE_/);
  });

  it('keeps the ledger on the PersistentVolumeClaim at STATE_DIR', () => {
    const env = Object.fromEntries((container.env ?? []).map((e) => [e.name, e.value]));
    expect(env.STATE_DIR).toBe('/data');
    const mount = container.volumeMounts?.find((m) => m.mountPath === '/data');
    const volume = pod.volumes.find((v) => v.name === mount?.name);
    expect(volume?.persistentVolumeClaim?.claimName).toBe(pvc.metadata.name);
    expect(pvc.spec.accessModes).toEqual(['ReadWriteOnce']);
    expect(container.volumeMounts?.some((m) => m.mountPath === '/tmp')).toBe(true);
  });

  it('pins the image', () => {
    expect(container.image).toMatch(/:[\w.-]+$|@sha256:/);
    expect(container.image).not.toMatch(/:latest$/);
  });

  it('connects Deployment, Service, ServiceMonitor and the alerts by labels, port names and job', () => {
    const podLabels = deployment.spec.template.metadata.labels;
    expect(deployment.spec.selector.matchLabels).toEqual(expect.objectContaining(podLabels));
    for (const [k, v] of Object.entries(service.spec.selector)) expect(podLabels[k]).toBe(v);
    const port = service.spec.ports.find((p) => p.name === 'metrics');
    expect(port?.targetPort).toBe('metrics');
    for (const [k, v] of Object.entries(serviceMonitor.spec.selector.matchLabels)) expect(service.metadata.labels[k]).toBe(v);
    expect(serviceMonitor.spec.endpoints[0]?.port).toBe('metrics');
    expect(serviceMonitor.spec.endpoints[0]?.path).toBe('/metrics');
    // A ServiceMonitor target's job label is the Service name.
    expect(service.metadata.name).toBe(JOB);
  });

  it('ships the PrometheusRule generated from config/prometheus/alerts.yml', () => {
    const generated = execFileSync(process.execPath, [join(ROOT, 'scripts/gen-prometheusrule.mjs'), '--stdout'], { encoding: 'utf8' });
    expect(read(`${K8S}/prometheusrule.yaml`), 'run: node scripts/gen-prometheusrule.mjs').toBe(generated);
    const rule = readYaml<{ kind: string; spec: { groups: unknown } }>(`${K8S}/prometheusrule.yaml`);
    expect(rule.kind).toBe('PrometheusRule');
    expect(rule.spec.groups).toEqual(alertRules.groups);
  });
});

// ---- Prometheus rules and Grafana ---------------------------------------------------------------

describe('alert rules', () => {
  it('define every alert, with a severity and annotations', () => {
    expect(rules.map((r) => r.alert).sort()).toEqual([...ALERTS].sort());
    for (const r of rules) {
      expect(['info', 'warning', 'critical'], r.alert).toContain(r.labels?.severity);
      expect(r.annotations?.summary, r.alert).toBeTruthy();
      expect(r.annotations?.description, r.alert).toBeTruthy();
      if (r.alert !== 'VonageWatchdogDown') {
        expect(`${r.annotations?.summary} ${r.annotations?.description}`, r.alert).toContain('{{ $labels.account }}');
      }
    }
  });

  it('every severity has an Alertmanager route; info repeats once a day, critical every hour', () => {
    type Route = { matchers?: string[]; repeat_interval?: string };
    const am = readYaml<{ route: Route & { routes: Route[] } }>('config/alertmanager/alertmanager.yml');
    const repeat = (severity: string) => am.route.routes.find((r) => r.matchers?.includes(`severity="${severity}"`))?.repeat_interval ?? am.route.repeat_interval;
    expect(repeat('info')).toBe('24h');
    expect(repeat('critical')).toBe('1h');
    expect(repeat('warning')).toBe('4h');
    for (const r of rules) expect(['info', 'warning', 'critical']).toContain(r.labels?.severity);
  });

  it('each link to their runbook section in README.md', () => {
    const anchors = githubAnchors(read('README.md'));
    for (const r of rules) {
      const url = r.annotations?.runbook_url ?? '';
      expect(url.startsWith(RUNBOOK_BASE), `${r.alert}: runbook_url ${url}`).toBe(true);
      const anchor = url.slice(RUNBOOK_BASE.length);
      expect(anchor, `${r.alert} links to its own section`).toBe((r.alert ?? '').toLowerCase());
      expect(anchors.has(anchor), `README.md has no heading for #${anchor}`).toBe(true);
    }
  });

  it('page on a failed top-up only when Vonage answered and refused, never on a lost answer', () => {
    const expr = rules.find((r) => r.alert === 'VonageTopUpFailed')?.expr ?? '';
    const paged = (/reason=~"([^"]+)"/.exec(expr)?.[1] ?? '').split('|');
    // May have been applied (the client records them as `unknown`), or never left at all; and
    // `unprovisioned`, which only the Subaccounts API's list call answers, never a top-up.
    const notPaged = ['timeout', 'network', 'server_error', 'bad_response', 'connection_refused', 'unprovisioned'];
    // Every reason the daemon can export is sorted into exactly one side.
    expect([...paged, ...notPaged].sort()).toEqual([...FAILURE_REASONS, ...TOPUP_ONLY_FAILURE_REASONS].sort());
    // The transfer-only refusals are not top-up outcomes: they have no place in this rule.
    for (const reason of TRANSFER_ONLY_FAILURE_REASONS) {
      if (!(TOPUP_ONLY_FAILURE_REASONS as readonly string[]).includes(reason)) expect(paged, reason).not.toContain(reason);
    }
    // And the parser agrees: each paged reason is one Vonage answers with, and it is final.
    const json = (body: object) => JSON.stringify(body);
    const answers: [number, string][] = [
      [401, json({ 'error-code': '401', 'error-code-label': 'authentication failed' })],
      [401, json({ 'error-code': '401', 'error-code-label': 'not auto-reload enabled' })],
      [401, json({ 'error-code': '420', 'error-code-label': 'topup failed' })],
      [400, json({ type: 'BAD_REQUEST' })],
      [404, ''],
      [302, ''],
      [429, ''],
      [500, ''],
      [200, '<html>'],
    ];
    const outcomes = new Map<string, string>();
    for (const [status, body] of answers) {
      const parsed = parseTopUp(status, 'application/json', body);
      if (!parsed.ok) outcomes.set(parsed.reason, parsed.outcome);
    }
    for (const reason of paged) expect(outcomes.get(reason), reason).toBe('failed');
    expect(outcomes.get('server_error')).toBe('unknown');
    expect(outcomes.get('bad_response')).toBe('unknown');
  });

  it('use only metrics the daemon exports', () => {
    for (const r of rules) {
      const names = promqlMetricNames(r.expr);
      expect(names.length, r.alert).toBeGreaterThan(0);
      for (const n of names) expect(allowedMetricName(n), `${r.alert}: ${n}`).toBe(true);
    }
    expect(rules.find((r) => r.alert === 'VonageWatchdogDown')?.expr).toContain(`up{job="${JOB}"}`);
    expect(rules.find((r) => r.alert === 'VonageWatchdogDown')?.expr).toContain('absent(');
  });

  it('have a firing and a not-firing unit test each', () => {
    const tests = readYaml<{ rule_files: string[]; tests: { alert_rule_test?: { alertname: string; exp_alerts?: unknown[] }[] }[] }>('config/prometheus/alerts.test.yml');
    expect(tests.rule_files).toEqual(['alerts.yml']);
    const cases = tests.tests.flatMap((t) => t.alert_rule_test ?? []);
    for (const alert of ALERTS) {
      const mine = cases.filter((c) => c.alertname === alert);
      expect(mine.some((c) => (c.exp_alerts ?? []).length > 0), `${alert} fires somewhere`).toBe(true);
      expect(mine.some((c) => (c.exp_alerts ?? []).length === 0), `${alert} stays quiet somewhere`).toBe(true);
    }
  });
});

describe('references in comments and docs', () => {
  const files = (dir: string, keep: (name: string) => boolean) =>
    (readdirSync(join(ROOT, dir), { recursive: true, withFileTypes: true }) as Dirent[])
      .filter((e) => e.isFile() && keep(e.name))
      .map((e) => join(e.parentPath, e.name).slice(ROOT.length + 1));
  const yamls = [...files('deploy', (n) => /\.ya?ml$/.test(n)), ...files('config', (n) => /\.ya?ml$/.test(n))];
  const docs = files('docs', (n) => n.endsWith('.md'));
  const texts = [...yamls.map((f) => ({ file: f, text: hashComments(read(f)) })), ...docs.map((f) => ({ file: f, text: read(f) }))];

  it('finds the files to check', () => {
    expect(yamls).toContain('deploy/kubernetes/deployment.yaml');
    expect(yamls).toContain('config/prometheus/alerts.yml');
    expect(docs).toContain('docs/ARCHITECTURE.md');
    expect(repositoryPaths('see docs/deploy.md, src/simulator/ and src/**/*.ts or https://x/src/a.ts')).toEqual(['docs/deploy.md', 'src/simulator']);
    expect(hashComments("a: 'b#c' # see src/x.ts\n# d\n")).toBe(' see src/x.ts\n d');
  });

  it('name only repository paths that exist', () => {
    // Files the user creates and git ignores (config/prometheus/metrics-token) are named on purpose.
    const ignored = new Set(read('.gitignore').split(/\r?\n/).map((l) => l.trim().replace(/^\//, '')));
    const missing = texts.flatMap(({ file, text }) =>
      repositoryPaths(text)
        .filter((p) => !existsSync(join(ROOT, p)) && !ignored.has(p))
        .map((p) => `${file}: ${p}`),
    );
    expect(missing).toEqual([]);
  });

  it('link only to README sections that exist', () => {
    const anchors = githubAnchors(read('README.md'));
    const all = [...texts, ...yamls.map((f) => ({ file: f, text: read(f) }))];
    const broken = all.flatMap(({ file, text }) => readmeAnchorRefs(text).filter((a) => !anchors.has(a)).map((a) => `${file}: README.md#${a}`));
    expect(broken).toEqual([]);
  });
});

describe('Grafana', () => {
  it('provisions the dashboard and a Prometheus data source', () => {
    const provider = readYaml<{ apiVersion: number; providers: { type: string; options: { path: string } }[] }>('config/grafana/provisioning/dashboards/dashboard.yml');
    expect(provider.apiVersion).toBe(1);
    expect(provider.providers[0]?.type).toBe('file');
    const sources = readYaml<{ apiVersion: number; datasources: { type: string; isDefault?: boolean }[] }>('config/grafana/provisioning/datasources/datasource.yml');
    expect(sources.datasources.filter((d) => d.type === 'prometheus' && d.isDefault)).toHaveLength(1);
  });

  it('has a dashboard with the promised panels, laid out without overlaps', () => {
    expect(dashboard.uid).toBe('vonage-reload-watchdog');
    const panels = allPanels(dashboard.panels);
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const cells = new Set<string>();
    for (const p of panels) {
      const { x, y, w, h } = p.gridPos;
      expect(x + w, p.title).toBeLessThanOrEqual(24);
      for (let i = x; i < x + w; i++) {
        for (let j = y; j < y + h; j++) {
          const key = `${i},${j}`;
          expect(cells.has(key), `${p.title} overlaps at ${key}`).toBe(false);
          cells.add(key);
        }
      }
    }
    const exprs = dashboardExprs().map((e) => e.expr).join('\n');
    expect(exprs).toContain('vonage_balance_euros');
    expect(exprs).toContain('vonage_topup_threshold_euros');
    expect(exprs).toMatch(/increase\(vonage_topups_total/);
    expect(exprs).toMatch(/vonage_topup_failures_total/);
    expect(exprs).toMatch(/vonage_topups_skipped_total/);
    expect(exprs).toMatch(/vonage_balance_poll_success/);
    expect(exprs).toMatch(/time\(\) - vonage_balance_last_success_timestamp_seconds/);
    expect(exprs).toMatch(/histogram_quantile\(.*vonage_api_request_duration_seconds_bucket/);
    expect(exprs).toMatch(/vonage_auto_reload_enabled/);
    expect(exprs).toMatch(/vonage_watchdog_build_info/);
    expect(exprs).toMatch(/vonage_balance_runway_seconds/);
    expect(exprs).toMatch(/vonage_balance_next_poll_timestamp_seconds/);
    expect(dashboard.annotations.list.some((a) => a.expr?.includes('vonage_topups_total'))).toBe(true);
  });

  it('queries only metrics the daemon exports, through the data source variable', () => {
    for (const { where, expr } of dashboardExprs()) {
      for (const n of promqlMetricNames(expr)) expect(allowedMetricName(n), `${where}: ${n}`).toBe(true);
    }
    for (const v of dashboard.templating.list.filter((t) => t.type === 'query')) {
      const m = /label_values\(\s*([a-zA-Z_:][\w:]*)/.exec(v.definition ?? '');
      expect(m && allowedMetricName(m[1] ?? ''), `variable ${v.name}`).toBe(true);
    }
    for (const p of allPanels(dashboard.panels)) {
      if (p.type === 'row') continue;
      expect(p.datasource?.uid, p.title).toBe('${datasource}');
      for (const t of p.targets ?? []) expect(t.datasource?.uid, p.title).toBe('${datasource}');
    }
  });
});

describe('the metric contract', () => {
  it('matches what createMetrics registers', async () => {
    const registry = new Registry();
    createMetrics(registry, [{ name: 'a', threshold: 10, maxPerDay: 3, topupEnabled: true, dryRun: false }], 'test');
    const names = (await registry.getMetricsAsJSON()).map((m) => m.name);
    expect(names.filter((n) => n.startsWith('vonage_')).sort()).toEqual([...CONTRACT_METRICS].sort());
    // The dashboard's process panel relies on these default metrics.
    expect(names).toEqual(expect.arrayContaining(['process_resident_memory_bytes', 'nodejs_eventloop_lag_p99_seconds']));
  });
});

// ---- .env.example -------------------------------------------------------------------------------

describe('.env.example', () => {
  const text = read('.env.example');
  const mentioned = (name: string) => new RegExp(`^#?\\s*${name}=`, 'm').test(text);

  it('documents every variable of the contract', () => {
    for (const name of CONTRACT_ENV) expect(mentioned(name), name).toBe(true);
  });

  it('documents every variable the daemon reads (src/config/config.ts)', () => {
    for (const v of CONFIG_VARIABLES) {
      expect(mentioned(v.name), v.name).toBe(true);
      if (v.fileVariant) expect(mentioned(`${v.name}_FILE`), `${v.name}_FILE`).toBe(true);
    }
  });

  it('has a comment above every variable and no real secrets', () => {
    const lines = text.split(/\r?\n/);
    lines.forEach((line, i) => {
      if (/^[A-Z_]+=/.test(line)) {
        const above = lines.slice(Math.max(0, i - 3), i).join('\n');
        expect(above, `comment above ${line}`).toMatch(/^#/m);
      }
    });
    for (const name of ['VONAGE_API_KEY', 'VONAGE_API_SECRET', 'VONAGE_TOPUP_TRX']) {
      expect(new RegExp(`^${name}=$`, 'm').test(text), `${name} is left empty`).toBe(true);
    }
  });
});
