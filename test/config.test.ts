import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, test, vi } from 'vitest';
import {
  CONFIG_VARIABLES,
  ConfigError,
  SECRET_VARIABLES,
  describeConfig,
  loadConfig,
  type Config,
  type ReadFile,
} from '../src/config/config.js';

// Canaries: if any of these shows up in an error, a secret leaked.
const SECRET = 'CANARY-s3cr3t-9f2';
const TRX = 'CANARY-trx-41c7';
const TOKEN = 'CANARY-token-0a1b2c3d4e5f';
const CANARIES = [SECRET, TRX, TOKEN];

const MINIMAL = {
  VONAGE_API_KEY: 'abcd1234',
  VONAGE_API_SECRET: SECRET,
  VONAGE_TOPUP_TRX: TRX,
  TOPUP_THRESHOLD: '10',
} as const;

type Env = Record<string, string | undefined>;

/** A readFile over an in-memory map; a missing path fails as the OS would. */
function fakeFiles(files: Record<string, string | { code: string }>): ReadFile & { calls: string[] } {
  const calls: string[] = [];
  const read = (path: string): string => {
    calls.push(path);
    const entry = files[path];
    if (typeof entry === 'string') return entry;
    const code = entry === undefined ? 'ENOENT' : entry.code;
    // The message quotes the content, as a careless reader might; it must not reach the user.
    throw Object.assign(new Error(`${code}: cannot open ${path}: content was ${SECRET}`), { code });
  };
  return Object.assign(read, { calls });
}

const noFiles = fakeFiles({});

function load(env: Env, readFile: ReadFile = noFiles): Config {
  return loadConfig(env, readFile);
}

function failure(env: Env, readFile: ReadFile = noFiles): ConfigError {
  try {
    loadConfig(env, readFile);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

function expectNoSecrets(text: string, extra: readonly string[] = []): void {
  for (const secret of [...CANARIES, ...extra]) expect(text).not.toContain(secret);
  expect(text).not.toContain('CANARY');
}

describe('good configurations', () => {
  test('defaults', () => {
    expect(load(MINIMAL)).toEqual({
      accounts: [
        {
          name: 'abcd1234',
          apiKey: 'abcd1234',
          apiSecret: SECRET,
          trx: TRX,
          baseUrl: 'https://rest.nexmo.com',
          allowCustomBaseUrl: false,
          auth: 'basic',
          threshold: 10,
          cooldownMs: 900_000,
          maxPerDay: 3,
          topupEnabled: true,
          dryRun: false,
          leadTimeMs: 0,
          pollAdaptive: false,
          pollMaxIntervalMs: 600_000,
          subaccountsBaseUrl: 'https://api.nexmo.com',
        },
      ],
      accountsFile: undefined,
      pollSchedule: '* * * * *',
      pollConcurrency: 8,
      httpTimeoutMs: 10_000,
      stateDir: './data',
      ledger: { kind: 'file', schema: 'vonage_reload_watchdog', leaseMs: 15_000 },
      instanceId: hostname(),
      metrics: { host: '0.0.0.0', port: 8479, authToken: undefined },
      log: { level: 'info', format: 'json' },
      warnings: [],
    });
  });

  test('empty optional variables mean unset, as docker compose passes them', () => {
    const empty = Object.fromEntries(
      CONFIG_VARIABLES.filter((v) => !v.default.startsWith('(required')).flatMap((v) =>
        v.fileVariant ? [[v.name, ''], [`${v.name}_FILE`, '']] : [[v.name, '']],
      ),
    );
    const reader = fakeFiles({});
    expect(load({ ...empty, ...MINIMAL }, reader)).toEqual(load(MINIMAL));
    expect(reader.calls).toEqual([]);
  });

  test('unknown variables change no setting (misspelt ones only draw a warning)', () => {
    const { warnings, ...settings } = load({ ...MINIMAL, PATH: '/usr/bin', TOPUP_THRESHOLDS: 'x', VONAGE_FOO: '1' });
    const { warnings: none, ...expected } = load(MINIMAL);
    expect(settings).toEqual(expected);
    expect(none).toEqual([]);
    expect(warnings).toHaveLength(2);
  });

  test('never reads process.env', () => {
    vi.stubEnv('LOG_LEVEL', 'debug');
    vi.stubEnv('TOPUP_THRESHOLD', '99');
    try {
      expect(load(MINIMAL).log.level).toBe('info');
      expect(failure({ ...MINIMAL, TOPUP_THRESHOLD: undefined }).problems.map((p) => p.variable)).toEqual([
        'TOPUP_THRESHOLD',
      ]);
    } finally {
      vi.unstubAllEnvs();
    }
  });

  type Good = [label: string, env: Env, pick: (c: Config) => unknown, expected: unknown];
  const account = (c: Config) => c.accounts[0]!;
  const GOOD: Good[] = [
    ['topup disabled, no trx', { ...MINIMAL, VONAGE_TOPUP_TRX: undefined, TOPUP_ENABLED: 'false' }, (c) => [account(c).topupEnabled, account(c).trx], [false, undefined]],
    ['topup disabled, trx kept', { ...MINIMAL, TOPUP_ENABLED: 'no' }, (c) => account(c).trx, TRX],
    ['account name', { ...MINIMAL, VONAGE_ACCOUNT_NAME: 'Acme Prod (EU) ✓' }, (c) => account(c).name, 'Acme Prod (EU) ✓'],
    ['account name, 64 chars', { ...MINIMAL, VONAGE_ACCOUNT_NAME: 'n'.repeat(64) }, (c) => account(c).name.length, 64],
    ['api key, 64 chars', { ...MINIMAL, VONAGE_API_KEY: 'k'.repeat(64) }, (c) => account(c).apiKey.length, 64],
    ['trx, 128 chars', { ...MINIMAL, VONAGE_TOPUP_TRX: 't'.repeat(128) }, (c) => account(c).trx?.length, 128],
    ['secret with inner space', { ...MINIMAL, VONAGE_API_SECRET: 'a b c d' }, (c) => account(c).apiSecret, 'a b c d'],
    ['api.nexmo.com', { ...MINIMAL, VONAGE_BASE_URL: 'https://api.nexmo.com' }, (c) => account(c).baseUrl, 'https://api.nexmo.com'],
    ['trailing slash stripped', { ...MINIMAL, VONAGE_BASE_URL: 'https://rest.nexmo.com/' }, (c) => account(c).baseUrl, 'https://rest.nexmo.com'],
    ['case and default port normalised', { ...MINIMAL, VONAGE_BASE_URL: ' HTTPS://REST.Nexmo.com:443 ' }, (c) => account(c).baseUrl, 'https://rest.nexmo.com'],
    ['custom https host with path', { ...MINIMAL, VONAGE_ALLOW_CUSTOM_BASE_URL: 'true', VONAGE_BASE_URL: 'https://proxy.internal:8443/vonage/' }, (c) => account(c).baseUrl, 'https://proxy.internal:8443/vonage'],
    ['allow flag kept in the config', { ...MINIMAL, VONAGE_ALLOW_CUSTOM_BASE_URL: ' Yes ' }, (c) => account(c).allowCustomBaseUrl, true],
    ['loopback http, IPv4', { ...MINIMAL, VONAGE_ALLOW_CUSTOM_BASE_URL: '1', VONAGE_BASE_URL: 'http://127.0.0.1:8080' }, (c) => account(c).baseUrl, 'http://127.0.0.1:8080'],
    ['loopback http, 127/8', { ...MINIMAL, VONAGE_ALLOW_CUSTOM_BASE_URL: 'yes', VONAGE_BASE_URL: 'http://127.4.5.6:1/' }, (c) => account(c).baseUrl, 'http://127.4.5.6:1'],
    ['loopback http, IPv6', { ...MINIMAL, VONAGE_ALLOW_CUSTOM_BASE_URL: 'TRUE', VONAGE_BASE_URL: 'http://[::1]:9000' }, (c) => account(c).baseUrl, 'http://[::1]:9000'],
    ['loopback http, localhost', { ...MINIMAL, VONAGE_ALLOW_CUSTOM_BASE_URL: 'true', VONAGE_BASE_URL: 'http://localhost:9000/sim//' }, (c) => account(c).baseUrl, 'http://localhost:9000/sim'],
    ['auth basic, any case', { ...MINIMAL, VONAGE_AUTH: 'Basic' }, (c) => account(c).auth, 'basic'],
    ['auth query', { ...MINIMAL, VONAGE_AUTH: 'query' }, (c) => account(c).auth, 'query'],
    ['threshold with cents', { ...MINIMAL, TOPUP_THRESHOLD: '12.50' }, (c) => account(c).threshold, 12.5],
    ['threshold, smallest', { ...MINIMAL, TOPUP_THRESHOLD: '0.01' }, (c) => account(c).threshold, 0.01],
    ['threshold, largest', { ...MINIMAL, TOPUP_THRESHOLD: '1000000' }, (c) => account(c).threshold, 1_000_000],
    ['threshold, trimmed', { ...MINIMAL, TOPUP_THRESHOLD: ' 7 ' }, (c) => account(c).threshold, 7],
    ['threshold, leading zeros', { ...MINIMAL, TOPUP_THRESHOLD: '007' }, (c) => account(c).threshold, 7],
    ['cooldown 1h30m', { ...MINIMAL, TOPUP_COOLDOWN: '1h30m' }, (c) => account(c).cooldownMs, 5_400_000],
    ['cooldown 7d', { ...MINIMAL, TOPUP_COOLDOWN: '7d' }, (c) => account(c).cooldownMs, 604_800_000],
    ['cooldown 168h', { ...MINIMAL, TOPUP_COOLDOWN: '168h' }, (c) => account(c).cooldownMs, 604_800_000],
    ['cooldown 1s', { ...MINIMAL, TOPUP_COOLDOWN: '1s' }, (c) => account(c).cooldownMs, 1_000],
    ['max per day 1', { ...MINIMAL, TOPUP_MAX_PER_DAY: '1' }, (c) => account(c).maxPerDay, 1],
    ['max per day 1000', { ...MINIMAL, TOPUP_MAX_PER_DAY: '1000' }, (c) => account(c).maxPerDay, 1000],
    ['dry run', { ...MINIMAL, DRY_RUN: ' Yes ' }, (c) => account(c).dryRun, true],
    ['schedule, 6 fields', { ...MINIMAL, POLL_SCHEDULE: '*/30 * * * * *' }, (c) => c.pollSchedule, '*/30 * * * * *'],
    ['schedule, every 5 min', { ...MINIMAL, POLL_SCHEDULE: '*/5 * * * *' }, (c) => c.pollSchedule, '*/5 * * * *'],
    ['timeout 100ms', { ...MINIMAL, HTTP_TIMEOUT: '100ms' }, (c) => c.httpTimeoutMs, 100],
    ['timeout 120s', { ...MINIMAL, HTTP_TIMEOUT: '120s' }, (c) => c.httpTimeoutMs, 120_000],
    ['timeout 2m', { ...MINIMAL, HTTP_TIMEOUT: '2m' }, (c) => c.httpTimeoutMs, 120_000],
    ['state dir', { ...MINIMAL, STATE_DIR: '/var/lib/watchdog' }, (c) => c.stateDir, '/var/lib/watchdog'],
    ['metrics host IPv6', { ...MINIMAL, METRICS_HOST: '::' }, (c) => c.metrics.host, '::'],
    ['metrics port 0', { ...MINIMAL, METRICS_PORT: '0' }, (c) => c.metrics.port, 0],
    ['metrics port 65535', { ...MINIMAL, METRICS_PORT: '65535' }, (c) => c.metrics.port, 65535],
    ['metrics token', { ...MINIMAL, METRICS_AUTH_TOKEN: TOKEN }, (c) => c.metrics.authToken, TOKEN],
    ['log level, any case', { ...MINIMAL, LOG_LEVEL: 'DEBUG' }, (c) => c.log.level, 'debug'],
    ['log level silent', { ...MINIMAL, LOG_LEVEL: 'silent' }, (c) => c.log.level, 'silent'],
    ['log format pretty', { ...MINIMAL, LOG_FORMAT: 'pretty' }, (c) => c.log.format, 'pretty'],
  ];
  test.each(GOOD)('%s', (_label, env, pick, expected) => {
    expect(pick(load(env))).toEqual(expected);
  });

  test.each([
    ['true', true],
    ['TRUE', true],
    [' yes ', true],
    ['1', true],
    ['false', false],
    ['False', false],
    ['nO', false],
    ['0', false],
  ])('boolean %j → %s in every boolean variable', (text, value) => {
    const c = load({ ...MINIMAL, TOPUP_ENABLED: text, DRY_RUN: text });
    expect([c.accounts[0]!.topupEnabled, c.accounts[0]!.dryRun]).toEqual([value, value]);
    const url = 'https://proxy.internal';
    if (value) expect(load({ ...MINIMAL, VONAGE_ALLOW_CUSTOM_BASE_URL: text, VONAGE_BASE_URL: url }).accounts[0]!.baseUrl).toBe(url);
    else expect(failure({ ...MINIMAL, VONAGE_ALLOW_CUSTOM_BASE_URL: text, VONAGE_BASE_URL: url }).problems).toHaveLength(1);
  });

  test.each(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])('log level %s', (level) => {
    expect(load({ ...MINIMAL, LOG_LEVEL: level }).log.level).toBe(level);
  });
});

describe('warnings', () => {
  test.each([
    ['1s', true],
    ['5m', true],
    ['9m59s', true],
    ['10m', false],
    ['15m', false],
  ])('cooldown %s warns: %s', (cooldown, warns) => {
    const { warnings } = load({ ...MINIMAL, TOPUP_COOLDOWN: cooldown });
    expect(warnings.some((w) => w.startsWith('TOPUP_COOLDOWN') && w.includes('Vonage'))).toBe(warns);
  });

  test('query auth warns that the secret goes into URLs', () => {
    expect(load({ ...MINIMAL, VONAGE_AUTH: 'query' }).warnings).toEqual([expect.stringMatching(/^VONAGE_AUTH=query .*URL/)]);
  });

  test('a short metrics token warns', () => {
    expect(load({ ...MINIMAL, METRICS_AUTH_TOKEN: 'CANARY-x' }).warnings).toEqual([expect.stringContaining('METRICS_AUTH_TOKEN')]);
    expect(load({ ...MINIMAL, METRICS_AUTH_TOKEN: TOKEN }).warnings).toEqual([]);
  });

  test('a secret with surrounding spaces is kept as is, with a warning that does not show it', () => {
    const c = load({ ...MINIMAL, VONAGE_API_SECRET_FILE: '/s', VONAGE_API_SECRET: undefined }, fakeFiles({ '/s': ` ${SECRET} \n` }));
    expect(c.accounts[0]!.apiSecret).toBe(` ${SECRET} `);
    expect(c.warnings).toEqual([expect.stringMatching(/^VONAGE_API_SECRET_FILE: .*whitespace/)]);
    expectNoSecrets(JSON.stringify(c.warnings));
  });
});

type Bad = { label: string; env: Env; files?: Record<string, string | { code: string }>; variables: string[]; message?: RegExp };

const bad = (label: string, env: Env, variables: string[], message?: RegExp, files?: Bad['files']): Bad => ({
  label,
  env,
  variables,
  ...(message === undefined ? {} : { message }),
  ...(files === undefined ? {} : { files }),
});
const custom = { VONAGE_ALLOW_CUSTOM_BASE_URL: 'true' };

const BAD: Bad[] = [
  // Required variables
  bad('nothing set', {}, ['VONAGE_API_KEY', 'VONAGE_API_SECRET', 'VONAGE_TOPUP_TRX', 'TOPUP_THRESHOLD']),
  bad('threshold missing', { ...MINIMAL, TOPUP_THRESHOLD: undefined }, ['TOPUP_THRESHOLD'], /^TOPUP_THRESHOLD: required \(EUR; top up when the balance is below it\)$/),
  bad('threshold empty', { ...MINIMAL, TOPUP_THRESHOLD: '' }, ['TOPUP_THRESHOLD'], /required/),
  bad('threshold blank', { ...MINIMAL, TOPUP_THRESHOLD: '   ' }, ['TOPUP_THRESHOLD'], /required/),
  bad('api key empty', { ...MINIMAL, VONAGE_API_KEY: '' }, ['VONAGE_API_KEY'], /required .*VONAGE_API_KEY_FILE/),
  bad('api secret empty', { ...MINIMAL, VONAGE_API_SECRET: '' }, ['VONAGE_API_SECRET'], /required .*VONAGE_API_SECRET_FILE/),
  bad('trx missing while enabled', { ...MINIMAL, VONAGE_TOPUP_TRX: undefined }, ['VONAGE_TOPUP_TRX'], /required/),
  bad('trx missing, enabled explicitly', { ...MINIMAL, VONAGE_TOPUP_TRX: '', TOPUP_ENABLED: 'yes' }, ['VONAGE_TOPUP_TRX']),
  bad('trx missing, enabled invalid: one problem only', { ...MINIMAL, VONAGE_TOPUP_TRX: undefined, TOPUP_ENABLED: 'maybe' }, ['TOPUP_ENABLED']),

  // Credentials and names
  bad('api key with space', { ...MINIMAL, VONAGE_API_KEY: 'ab cd' }, ['VONAGE_API_KEY'], /whitespace/),
  bad('api key with tab', { ...MINIMAL, VONAGE_API_KEY: 'ab\tcd' }, ['VONAGE_API_KEY']),
  bad('api key with colon', { ...MINIMAL, VONAGE_API_KEY: 'ab:cd' }, ['VONAGE_API_KEY'], /":"/),
  bad('api key too long', { ...MINIMAL, VONAGE_API_KEY: 'k'.repeat(65) }, ['VONAGE_API_KEY'], /64/),
  bad('api key is never quoted (a swapped secret would leak)', { ...MINIMAL, VONAGE_API_KEY: `${SECRET} x` }, ['VONAGE_API_KEY']),
  bad('api secret blank', { ...MINIMAL, VONAGE_API_SECRET: '   ' }, ['VONAGE_API_SECRET'], /blank/),
  bad('api secret with newline', { ...MINIMAL, VONAGE_API_SECRET: `${SECRET}\n${SECRET}` }, ['VONAGE_API_SECRET'], /control/),
  bad('api secret too long', { ...MINIMAL, VONAGE_API_SECRET: SECRET.repeat(100) }, ['VONAGE_API_SECRET'], /1024/),
  bad('trx blank', { ...MINIMAL, VONAGE_TOPUP_TRX: '  ' }, ['VONAGE_TOPUP_TRX'], /blank/),
  bad('trx with space', { ...MINIMAL, VONAGE_TOPUP_TRX: `${TRX} 2` }, ['VONAGE_TOPUP_TRX'], /whitespace/),
  bad('trx too long', { ...MINIMAL, VONAGE_TOPUP_TRX: `${TRX}${'t'.repeat(128)}` }, ['VONAGE_TOPUP_TRX'], /128/),
  bad('trx invalid even when disabled', { ...MINIMAL, TOPUP_ENABLED: 'false', VONAGE_TOPUP_TRX: `${TRX} x` }, ['VONAGE_TOPUP_TRX']),
  bad('account name too long', { ...MINIMAL, VONAGE_ACCOUNT_NAME: 'n'.repeat(65) }, ['VONAGE_ACCOUNT_NAME'], /64/),
  bad('account name with control char', { ...MINIMAL, VONAGE_ACCOUNT_NAME: 'a\x07b' }, ['VONAGE_ACCOUNT_NAME'], /control/),
  bad('account name with newline', { ...MINIMAL, VONAGE_ACCOUNT_NAME: 'a\nb' }, ['VONAGE_ACCOUNT_NAME']),
  bad('account name padded', { ...MINIMAL, VONAGE_ACCOUNT_NAME: ' acme' }, ['VONAGE_ACCOUNT_NAME'], /whitespace/),
  bad('metrics token with space', { ...MINIMAL, METRICS_AUTH_TOKEN: `${TOKEN} x` }, ['METRICS_AUTH_TOKEN'], /ASCII/),
  bad('metrics token non-ASCII', { ...MINIMAL, METRICS_AUTH_TOKEN: `${TOKEN}ø` }, ['METRICS_AUTH_TOKEN']),
  bad('metrics token too long', { ...MINIMAL, METRICS_AUTH_TOKEN: TOKEN.repeat(60) }, ['METRICS_AUTH_TOKEN'], /1024/),

  // Base URL (the credential goes wherever this points)
  bad('base url not a URL', { ...MINIMAL, VONAGE_BASE_URL: 'not a url' }, ['VONAGE_BASE_URL'], /absolute URL/),
  bad('base url without scheme', { ...MINIMAL, VONAGE_BASE_URL: 'rest.nexmo.com' }, ['VONAGE_BASE_URL']),
  bad('base url http to Vonage', { ...MINIMAL, VONAGE_BASE_URL: 'http://rest.nexmo.com' }, ['VONAGE_BASE_URL'], /^VONAGE_BASE_URL: http is allowed only on loopback/),
  bad('base url http to a custom host', { ...MINIMAL, ...custom, VONAGE_BASE_URL: 'http://10.0.0.1:8080' }, ['VONAGE_BASE_URL'], /loopback/),
  bad('base url http, loopback look-alike', { ...MINIMAL, ...custom, VONAGE_BASE_URL: 'http://127.0.0.1.nip.io' }, ['VONAGE_BASE_URL'], /loopback/),
  bad('base url ftp', { ...MINIMAL, VONAGE_BASE_URL: 'ftp://rest.nexmo.com' }, ['VONAGE_BASE_URL'], /https/),
  bad('base url file', { ...MINIMAL, ...custom, VONAGE_BASE_URL: 'file:///etc/passwd' }, ['VONAGE_BASE_URL'], /https/),
  bad('base url with userinfo', { ...MINIMAL, VONAGE_BASE_URL: 'https://user:CANARY-pw@rest.nexmo.com' }, ['VONAGE_BASE_URL'], /user name or password/),
  bad('base url with userinfo, custom allowed', { ...MINIMAL, ...custom, VONAGE_BASE_URL: 'https://CANARY-user@proxy.internal' }, ['VONAGE_BASE_URL']),
  bad('base url with query', { ...MINIMAL, VONAGE_BASE_URL: 'https://rest.nexmo.com?api_key=x' }, ['VONAGE_BASE_URL'], /query/),
  bad('base url with empty query', { ...MINIMAL, VONAGE_BASE_URL: 'https://rest.nexmo.com/?' }, ['VONAGE_BASE_URL'], /query/),
  bad('base url with fragment', { ...MINIMAL, VONAGE_BASE_URL: 'https://rest.nexmo.com#x' }, ['VONAGE_BASE_URL'], /fragment/),
  bad('base url other host', { ...MINIMAL, VONAGE_BASE_URL: 'https://evil.example' }, ['VONAGE_BASE_URL'], /"evil\.example" is not a Vonage API host.*whoever answers.*VONAGE_ALLOW_CUSTOM_BASE_URL=true/),
  bad('base url suffix trick', { ...MINIMAL, VONAGE_BASE_URL: 'https://rest.nexmo.com.evil.example' }, ['VONAGE_BASE_URL'], /not a Vonage API host/),
  bad('base url non-default port', { ...MINIMAL, VONAGE_BASE_URL: 'https://rest.nexmo.com:8443' }, ['VONAGE_BASE_URL'], /port 8443/),
  bad('base url with a path on Vonage', { ...MINIMAL, VONAGE_BASE_URL: 'https://rest.nexmo.com/account/get-balance' }, ['VONAGE_BASE_URL'], /without a path/),
  bad('base url, every problem at once', { ...MINIMAL, VONAGE_BASE_URL: 'http://u:p@evil.example:81/x?y#z' }, Array<string>(6).fill('VONAGE_BASE_URL')),
  bad('allow flag invalid: the url is not judged against a guess', { ...MINIMAL, VONAGE_ALLOW_CUSTOM_BASE_URL: 'sure', VONAGE_BASE_URL: 'https://proxy.internal' }, ['VONAGE_ALLOW_CUSTOM_BASE_URL']),
  bad('allow flag on', { ...MINIMAL, VONAGE_ALLOW_CUSTOM_BASE_URL: 'on' }, ['VONAGE_ALLOW_CUSTOM_BASE_URL'], /true\/false\/1\/0\/yes\/no/),
  bad('auth mode', { ...MINIMAL, VONAGE_AUTH: 'oauth' }, ['VONAGE_AUTH'], /basic or query \(got "oauth"\)/),

  // Money and limits
  ...['0', '0.0', '0.000'].map((t) => bad(`threshold ${t}`, { ...MINIMAL, TOPUP_THRESHOLD: t }, ['TOPUP_THRESHOLD'], /greater than 0/)),
  ...['-5', '+5', '1e3', '0x10', 'NaN', 'Infinity', '10.', '.5', '10,5', '10 EUR', '€10', '１０'].map((t) =>
    bad(`threshold ${JSON.stringify(t)}`, { ...MINIMAL, TOPUP_THRESHOLD: t }, ['TOPUP_THRESHOLD'], /plain decimal/),
  ),
  bad('threshold above a million', { ...MINIMAL, TOPUP_THRESHOLD: '1000000.01' }, ['TOPUP_THRESHOLD'], /at most 1000000/),
  bad('threshold huge', { ...MINIMAL, TOPUP_THRESHOLD: '9'.repeat(400) }, ['TOPUP_THRESHOLD'], /at most/),
  ...['15', '0s', '999ms', '7d1ms', '8d', '15 minutes', '1.5h', '-1m', '15M'].map((t) =>
    bad(`cooldown ${JSON.stringify(t)}`, { ...MINIMAL, TOPUP_COOLDOWN: t }, ['TOPUP_COOLDOWN']),
  ),
  bad('cooldown range message', { ...MINIMAL, TOPUP_COOLDOWN: '8d' }, ['TOPUP_COOLDOWN'], /between 1s and 7d \(got "8d"\)/),
  ...['24h1s', '2d', '-1s', '5', 'soon'].map((t) =>
    bad(`lead time ${JSON.stringify(t)}`, { ...MINIMAL, TOPUP_LEAD_TIME: t }, ['TOPUP_LEAD_TIME']),
  ),
  ...['0s', '999ms', '24h1s', '2d', '-1s', '10', 'often'].map((t) =>
    bad(`poll max interval ${JSON.stringify(t)}`, { ...MINIMAL, POLL_MAX_INTERVAL: t }, ['POLL_MAX_INTERVAL']),
  ),
  bad('poll adaptive', { ...MINIMAL, POLL_ADAPTIVE: 'sometimes' }, ['POLL_ADAPTIVE'], /true\/false/),
  ...['0', '1001', '1.5', '-1', 'three', '3e0', '0x3'].map((t) =>
    bad(`max per day ${JSON.stringify(t)}`, { ...MINIMAL, TOPUP_MAX_PER_DAY: t }, ['TOPUP_MAX_PER_DAY'], /whole number from 1 to 1000/),
  ),
  ...['maybe', 'on', 'off', 'y', '2', 'truee', 'enabled'].map((t) =>
    bad(`enabled ${JSON.stringify(t)}`, { ...MINIMAL, TOPUP_ENABLED: t }, ['TOPUP_ENABLED'], /^TOPUP_ENABLED: must be one of true\/false\/1\/0\/yes\/no/),
  ),
  bad('dry run', { ...MINIMAL, DRY_RUN: 'nah' }, ['DRY_RUN'], /true\/false/),

  // Scheduling, HTTP, state, metrics, logs
  bad('schedule out of range', { ...MINIMAL, POLL_SCHEDULE: '61 * * * *' }, ['POLL_SCHEDULE'], /minute/),
  bad('schedule 4 fields', { ...MINIMAL, POLL_SCHEDULE: '* * * *' }, ['POLL_SCHEDULE'], /5 or 6 fields/),
  bad('schedule 7 fields', { ...MINIMAL, POLL_SCHEDULE: '* * * * * * *' }, ['POLL_SCHEDULE']),
  bad('schedule prose', { ...MINIMAL, POLL_SCHEDULE: 'every minute' }, ['POLL_SCHEDULE']),
  bad('schedule impossible date', { ...MINIMAL, POLL_SCHEDULE: '0 0 30 2 *' }, ['POLL_SCHEDULE']),
  bad('schedule with control chars is shown clean', { ...MINIMAL, POLL_SCHEDULE: '61 * * * *\x1b[2J' }, ['POLL_SCHEDULE']),
  ...['99ms', '121s', '10', '0s', '1h'].map((t) =>
    bad(`timeout ${JSON.stringify(t)}`, { ...MINIMAL, HTTP_TIMEOUT: t }, ['HTTP_TIMEOUT']),
  ),
  bad('timeout range message', { ...MINIMAL, HTTP_TIMEOUT: '99ms' }, ['HTTP_TIMEOUT'], /between 100ms and 2m/),
  bad('state dir blank', { ...MINIMAL, STATE_DIR: '   ' }, ['STATE_DIR'], /blank/),
  bad('state dir with NUL', { ...MINIMAL, STATE_DIR: 'data\0x' }, ['STATE_DIR'], /control/),
  bad('metrics host with space', { ...MINIMAL, METRICS_HOST: 'a b' }, ['METRICS_HOST']),
  ...['65536', '-1', 'http', '80.5', '8e3', '0x50'].map((t) =>
    bad(`metrics port ${JSON.stringify(t)}`, { ...MINIMAL, METRICS_PORT: t }, ['METRICS_PORT'], /whole number from 0 to 65535/),
  ),
  bad('log level', { ...MINIMAL, LOG_LEVEL: 'verbose' }, ['LOG_LEVEL'], /fatal\/error\/warn\/info\/debug\/trace\/silent \(got "verbose"\)/),
  bad('log format', { ...MINIMAL, LOG_FORMAT: 'text' }, ['LOG_FORMAT'], /json or pretty/),
  bad('poll concurrency 0', { ...MINIMAL, POLL_CONCURRENCY: '0' }, ['POLL_CONCURRENCY'], /whole number from 1 to 64 \(got "0"\)/),
  bad('poll concurrency 65', { ...MINIMAL, POLL_CONCURRENCY: '65' }, ['POLL_CONCURRENCY'], /from 1 to 64/),
  // ACCOUNTS_FILE: the fleet file itself is tested in test/fleet-file.test.ts
  bad('accounts file missing, with per-account variables set too', { ...MINIMAL, ACCOUNTS_FILE: '/fleet.yaml' }, ['ACCOUNTS_FILE', 'VONAGE_API_KEY', 'VONAGE_API_SECRET', 'VONAGE_TOPUP_TRX', 'TOPUP_THRESHOLD'], /^ACCOUNTS_FILE: cannot read "\/fleet.yaml" \(ENOENT\)$/),

  // _FILE variants (fake reader)
  bad('secret and secret file both set', { ...MINIMAL, VONAGE_API_SECRET_FILE: '/run/secrets/s' }, ['VONAGE_API_SECRET'], /VONAGE_API_SECRET_FILE; use one/, { '/run/secrets/s': `${SECRET}\n` }),
  bad('trx and trx file both set', { ...MINIMAL, VONAGE_TOPUP_TRX_FILE: '/t' }, ['VONAGE_TOPUP_TRX'], /use one/),
  bad('key and key file both set', { ...MINIMAL, VONAGE_API_KEY_FILE: '/k' }, ['VONAGE_API_KEY'], /use one/),
  bad('token and token file both set', { ...MINIMAL, METRICS_AUTH_TOKEN: TOKEN, METRICS_AUTH_TOKEN_FILE: '/m' }, ['METRICS_AUTH_TOKEN'], /use one/),
  bad('secret file missing', { ...MINIMAL, VONAGE_API_SECRET: undefined, VONAGE_API_SECRET_FILE: '/run/secrets/nope' }, ['VONAGE_API_SECRET_FILE'], /^VONAGE_API_SECRET_FILE: cannot read "\/run\/secrets\/nope" \(ENOENT\)$/),
  bad('secret file not permitted', { ...MINIMAL, VONAGE_API_SECRET: undefined, VONAGE_API_SECRET_FILE: '/p' }, ['VONAGE_API_SECRET_FILE'], /\(EACCES\)/, { '/p': { code: 'EACCES' } }),
  bad('secret file empty', { ...MINIMAL, VONAGE_API_SECRET: undefined, VONAGE_API_SECRET_FILE: '/e' }, ['VONAGE_API_SECRET_FILE'], /"\/e" is empty/, { '/e': '' }),
  bad('secret file only a newline', { ...MINIMAL, VONAGE_API_SECRET: undefined, VONAGE_API_SECRET_FILE: '/e' }, ['VONAGE_API_SECRET_FILE'], /empty/, { '/e': '\n' }),
  bad('secret file only CRLF', { ...MINIMAL, VONAGE_API_SECRET: undefined, VONAGE_API_SECRET_FILE: '/e' }, ['VONAGE_API_SECRET_FILE'], /empty/, { '/e': '\r\n' }),
  bad('secret file with two newlines', { ...MINIMAL, VONAGE_API_SECRET: undefined, VONAGE_API_SECRET_FILE: '/s' }, ['VONAGE_API_SECRET_FILE'], /second line ending/, { '/s': `${SECRET}\n\n` }),
  bad('trx file with trailing space', { ...MINIMAL, VONAGE_TOPUP_TRX: undefined, VONAGE_TOPUP_TRX_FILE: '/t' }, ['VONAGE_TOPUP_TRX_FILE'], /whitespace/, { '/t': `${TRX} \n` }),
  bad('trx file empty', { ...MINIMAL, VONAGE_TOPUP_TRX: undefined, VONAGE_TOPUP_TRX_FILE: '/t' }, ['VONAGE_TOPUP_TRX_FILE'], /empty/, { '/t': '' }),
  bad('key file missing', { ...MINIMAL, VONAGE_API_KEY: undefined, VONAGE_API_KEY_FILE: '/k' }, ['VONAGE_API_KEY_FILE'], /ENOENT/),
  // The shared ledger (LEDGER=postgres)
  bad('ledger kind unknown', { ...MINIMAL, LEDGER: 'sqlite' }, ['LEDGER'], /file or postgres/),
  bad('postgres without a URL', { ...MINIMAL, LEDGER: 'postgres' }, ['DATABASE_URL'], /required with LEDGER=postgres/),
  bad('database URL not a URL: the value is never shown', { ...MINIMAL, LEDGER: 'postgres', DATABASE_URL: `not a url ${SECRET}` }, ['DATABASE_URL'], /could not be parsed; its value is not shown/),
  bad('database URL of another scheme', { ...MINIMAL, LEDGER: 'postgres', DATABASE_URL: `mysql://u:${SECRET}@db/x` }, ['DATABASE_URL'], /postgres:\/\//),
  bad('database URL file missing', { ...MINIMAL, LEDGER: 'postgres', DATABASE_URL_FILE: '/d' }, ['DATABASE_URL_FILE'], /ENOENT/),
  bad('database URL file not a URL', { ...MINIMAL, LEDGER: 'postgres', DATABASE_URL_FILE: '/d' }, ['DATABASE_URL_FILE'], /could not be parsed/, { '/d': `${SECRET}\n` }),
  bad('schema with a quote (it becomes an SQL identifier)', { ...MINIMAL, DATABASE_SCHEMA: 'x"; DROP TABLE y; --' }, ['DATABASE_SCHEMA'], /identifier/),
  bad('schema upper case', { ...MINIMAL, DATABASE_SCHEMA: 'Watchdog' }, ['DATABASE_SCHEMA'], /lower-case/),
  bad('instance id with a space', { ...MINIMAL, INSTANCE_ID: 'pod a' }, ['INSTANCE_ID'], /printable ASCII/),
  bad('instance id too long', { ...MINIMAL, INSTANCE_ID: 'p'.repeat(64) }, ['INSTANCE_ID'], /1-63/),
  bad('lease too short', { ...MINIMAL, LEADER_LEASE: '500ms' }, ['LEADER_LEASE']),
  bad('lease too long', { ...MINIMAL, LEADER_LEASE: '6m' }, ['LEADER_LEASE']),
  bad('token file missing', { ...MINIMAL, METRICS_AUTH_TOKEN_FILE: '/m' }, ['METRICS_AUTH_TOKEN_FILE'], /ENOENT/),
  bad('token file empty', { ...MINIMAL, METRICS_AUTH_TOKEN_FILE: '/m' }, ['METRICS_AUTH_TOKEN_FILE'], /empty/, { '/m': '\n' }),
  bad('reader error without a code', { ...MINIMAL, METRICS_AUTH_TOKEN_FILE: '/m' }, ['METRICS_AUTH_TOKEN_FILE'], /\(unreadable\)$/, { '/m': { code: undefined as unknown as string } }),

  // A secret pasted into a non-secret variable is withheld, not quoted
  bad('secret pasted as threshold', { ...MINIMAL, TOPUP_THRESHOLD: SECRET }, ['TOPUP_THRESHOLD'], /withheld/),
  bad('trx pasted as log level', { ...MINIMAL, LOG_LEVEL: TRX }, ['LOG_LEVEL'], /withheld/),
  bad('token from a file pasted as schedule', { ...MINIMAL, METRICS_AUTH_TOKEN_FILE: '/m', POLL_SCHEDULE: `${TOKEN} * * * *` }, ['POLL_SCHEDULE'], /withheld/, { '/m': TOKEN }),
  bad('secret pasted as base url host', { ...MINIMAL, VONAGE_API_SECRET: 'CANARY-host.example', VONAGE_BASE_URL: 'https://CANARY-host.example' }, ['VONAGE_BASE_URL'], /withheld/),
  bad('long secret pasted as account name', { ...MINIMAL, VONAGE_ACCOUNT_NAME: `${SECRET}${'x'.repeat(60)}` }, ['VONAGE_ACCOUNT_NAME'], /withheld/),

  // Many problems in one error
  bad(
    'many problems at once',
    {
      VONAGE_API_KEY: 'a b',
      VONAGE_API_SECRET: SECRET,
      VONAGE_API_SECRET_FILE: '/s',
      VONAGE_TOPUP_TRX: TRX,
      TOPUP_THRESHOLD: '-1',
      TOPUP_COOLDOWN: 'soon',
      LOG_LEVEL: 'loud',
      METRICS_AUTH_TOKEN_FILE: '/m',
      METRICS_PORT: '99999',
    },
    ['VONAGE_API_KEY', 'VONAGE_API_SECRET', 'TOPUP_THRESHOLD', 'TOPUP_COOLDOWN', 'METRICS_PORT', 'METRICS_AUTH_TOKEN_FILE', 'LOG_LEVEL'],
  ),
];

describe('bad configurations', () => {
  test.each(BAD)('$label', ({ env, files, variables, message }) => {
    const error = failure(env, fakeFiles(files ?? {}));
    expect(error.problems.map((p) => p.variable)).toEqual(variables);
    if (message !== undefined) expect(error.message).toMatch(new RegExp(message.source, `${message.flags}m`));
    expectNoSecrets(error.message);
    expectNoSecrets(JSON.stringify(error.problems));
    expect(error.message).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f]/);
  });

  test('every variable has at least one bad case naming it', () => {
    const named = new Set(BAD.flatMap((b) => b.variables.flatMap((v) => [v, v.replace(/_FILE$/, '')])));
    expect(CONFIG_VARIABLES.map((v) => v.name).filter((n) => !named.has(n))).toEqual([]);
    const fileNamed = new Set(BAD.flatMap((b) => b.variables).filter((v) => v.endsWith('_FILE')));
    for (const v of CONFIG_VARIABLES.filter((x) => x.fileVariant)) expect(fileNamed).toContain(`${v.name}_FILE`);
  });

  test('ConfigError has one "VAR: why" line per problem', () => {
    const error = failure({});
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe('ConfigError');
    expect(error.message.split('\n')).toEqual(error.problems.map((p) => `${p.variable}: ${p.message}`));
    expect(error.message).toContain('TOPUP_THRESHOLD: required (EUR; top up when the balance is below it)');
  });

  test('non-secret values are quoted, cleaned and cut to 40 characters', () => {
    const error = failure({ ...MINIMAL, LOG_FORMAT: `\x1b[31m${'x'.repeat(100)}` });
    expect(error.message).toBe(`LOG_FORMAT: must be json or pretty (got "[31m${'x'.repeat(36)}…")`);
  });

  test('a failing file read is not retried and the reader message is not shown', () => {
    const reader = fakeFiles({});
    const error = failure({ ...MINIMAL, VONAGE_API_SECRET: undefined, VONAGE_API_SECRET_FILE: '/x' }, reader);
    expect(reader.calls).toEqual(['/x']);
    expect(error.message).not.toContain('content was');
  });

  test('with both set, the file is not read at all', () => {
    const reader = fakeFiles({ '/s': 'whatever' });
    failure({ ...MINIMAL, VONAGE_API_SECRET_FILE: '/s' }, reader);
    expect(reader.calls).toEqual([]);
  });
});

describe('_FILE variants', () => {
  const fromFiles = {
    VONAGE_API_KEY_FILE: '/k',
    VONAGE_API_SECRET_FILE: '/s',
    VONAGE_TOPUP_TRX_FILE: '/t',
    METRICS_AUTH_TOKEN_FILE: '/m',
    TOPUP_THRESHOLD: '10',
  };

  test.each([
    ['no line ending', ''],
    ['LF', '\n'],
    ['CRLF', '\r\n'],
  ])('%s: exactly one trailing line ending is stripped', (_label, ending) => {
    const files = fakeFiles({ '/k': `key9${ending}`, '/s': `${SECRET}${ending}`, '/t': `${TRX}${ending}`, '/m': `${TOKEN}${ending}` });
    const c = load(fromFiles, files);
    expect(c.accounts[0]).toMatchObject({ apiKey: 'key9', name: 'key9', apiSecret: SECRET, trx: TRX });
    expect(c.metrics.authToken).toBe(TOKEN);
    expect(files.calls.sort()).toEqual(['/k', '/m', '/s', '/t']);
  });

  describe('with a real file and the default reader', () => {
    const dir = mkdtempSync(join(tmpdir(), 'config-test-'));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    test('reads, strips CRLF, and reports OS errors by code', () => {
      const secretPath = join(dir, 'secret');
      writeFileSync(secretPath, `${SECRET}\r\n`, { mode: 0o600 });
      const c = loadConfig({ ...MINIMAL, VONAGE_API_SECRET: undefined, VONAGE_API_SECRET_FILE: secretPath });
      expect(c.accounts[0]!.apiSecret).toBe(SECRET);

      const missing = join(dir, 'missing');
      const subdir = join(dir, 'subdir');
      mkdirSync(subdir);
      let error: unknown;
      try {
        loadConfig({ ...MINIMAL, VONAGE_API_SECRET: undefined, VONAGE_API_SECRET_FILE: missing, VONAGE_TOPUP_TRX: undefined, VONAGE_TOPUP_TRX_FILE: subdir });
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(ConfigError);
      const { problems } = error as ConfigError;
      expect(problems.map((p) => p.variable)).toEqual(['VONAGE_API_SECRET_FILE', 'VONAGE_TOPUP_TRX_FILE']);
      expect(problems[0]!.message).toContain('(ENOENT)');
      expect(problems[1]!.message).toContain('(EISDIR)');
    });
  });
});

describe('the result', () => {
  test('is deeply frozen', () => {
    const c = load({ ...MINIMAL, TOPUP_COOLDOWN: '1m' });
    for (const part of [c, c.accounts, c.accounts[0], c.metrics, c.log, c.warnings]) expect(Object.isFrozen(part)).toBe(true);
    expect(() => {
      (c.accounts[0] as { threshold: number }).threshold = 1e9;
    }).toThrow(TypeError);
    expect(() => (c.warnings as string[]).push('x')).toThrow(TypeError);
    expect(c.accounts[0]!.threshold).toBe(10);
  });

  test('problems are frozen too', () => {
    expect(Object.isFrozen(failure({}).problems)).toBe(true);
  });
});

describe('describeConfig', () => {
  test('shows the effective settings with secrets reduced to their length', () => {
    const c = load({ ...MINIMAL, METRICS_AUTH_TOKEN: TOKEN, TOPUP_COOLDOWN: '1h30m', HTTP_TIMEOUT: '500ms', TOPUP_THRESHOLD: '12.50' });
    const d = describeConfig(c);
    expect(d).toMatchObject({
      VONAGE_API_KEY: 'abcd1234',
      VONAGE_API_SECRET: `(set, ${SECRET.length} chars)`,
      VONAGE_TOPUP_TRX: `(set, ${TRX.length} chars)`,
      METRICS_AUTH_TOKEN: `(set, ${TOKEN.length} chars)`,
      TOPUP_COOLDOWN: '1h30m',
      HTTP_TIMEOUT: '500ms',
      TOPUP_THRESHOLD: '12.5',
    });
    expectNoSecrets(JSON.stringify(d));
  });

  test('unset secrets read "(unset)"', () => {
    const d = describeConfig(load({ ...MINIMAL, VONAGE_TOPUP_TRX: undefined, TOPUP_ENABLED: 'false' }));
    expect([d.VONAGE_TOPUP_TRX, d.METRICS_AUTH_TOKEN]).toEqual(['(unset)', '(unset)']);
  });

  test('for the defaults, matches the documented defaults, keyed by every variable in table order', () => {
    const d = describeConfig(load(MINIMAL));
    expect(Object.keys(d)).toEqual(CONFIG_VARIABLES.map((v) => v.name));
    for (const v of CONFIG_VARIABLES.filter((x) => !x.default.startsWith('('))) {
      expect([v.name, d[v.name]]).toEqual([v.name, v.default]);
    }
  });

  test('shows the effective VONAGE_ALLOW_CUSTOM_BASE_URL, as set in any spelling', () => {
    expect(describeConfig(load({ ...MINIMAL, VONAGE_ALLOW_CUSTOM_BASE_URL: 'YES', VONAGE_BASE_URL: 'https://proxy.internal' })).VONAGE_ALLOW_CUSTOM_BASE_URL).toBe('true');
    expect(describeConfig(load({ ...MINIMAL, VONAGE_ALLOW_CUSTOM_BASE_URL: '0' })).VONAGE_ALLOW_CUSTOM_BASE_URL).toBe('false');
  });
});

describe('CONFIG_VARIABLES', () => {
  test('names are unique and the secret and _FILE flags match the contract', () => {
    const names = CONFIG_VARIABLES.map((v) => v.name);
    expect(new Set(names).size).toBe(names.length);
    expect(CONFIG_VARIABLES.filter((v) => v.secret).map((v) => v.name)).toEqual([...SECRET_VARIABLES]);
    expect(SECRET_VARIABLES).toEqual(['VONAGE_API_SECRET', 'VONAGE_TOPUP_TRX', 'DATABASE_URL', 'METRICS_AUTH_TOKEN']);
    expect(CONFIG_VARIABLES.filter((v) => v.fileVariant).map((v) => v.name)).toEqual([
      'VONAGE_API_KEY',
      'VONAGE_API_SECRET',
      'VONAGE_TOPUP_TRX',
      'DATABASE_URL',
      'METRICS_AUTH_TOKEN',
    ]);
    for (const v of CONFIG_VARIABLES) expect(v.description.length).toBeGreaterThan(0);
    expect(Object.isFrozen(CONFIG_VARIABLES)).toBe(true);
    expect(Object.isFrozen(CONFIG_VARIABLES[0])).toBe(true);
  });
});

describe('properties', () => {
  const anyText = fc.oneof(
    fc.string({ unit: 'binary' }),
    fc.string({ unit: 'grapheme' }),
    fc.stringMatching(/^\s?\d{1,8}(\.\d{1,4})?\s?$/),
    fc.double().map(String),
    fc.constantFrom('', ' ', '0', '1e6', '1000000', '1000000.0', '1000000.0001', '-0', 'NaN', 'Infinity', '0x1'),
  );

  test('TOPUP_THRESHOLD is a finite positive number ≤ 1e6 or a ConfigError naming only it', () => {
    fc.assert(
      fc.property(anyText, (text) => {
        let threshold: number | undefined;
        try {
          threshold = load({ ...MINIMAL, TOPUP_THRESHOLD: text }).accounts[0]!.threshold;
        } catch (err) {
          expect(err).toBeInstanceOf(ConfigError);
          expect((err as ConfigError).problems.map((p) => p.variable)).toEqual(['TOPUP_THRESHOLD']);
          return;
        }
        expect(Number.isFinite(threshold)).toBe(true);
        expect(threshold).toBeGreaterThan(0);
        expect(threshold).toBeLessThanOrEqual(1_000_000);
        expect(threshold).toBe(Number(text.trim()));
      }),
      { numRuns: 500 },
    );
  });

  test('a secret never appears in the error, whatever it is and wherever else it is pasted', () => {
    const secretText = fc.string({ unit: 'binary' }).map((s) => `CANARY~${s}`);
    const elsewhere = fc.subarray(['TOPUP_THRESHOLD', 'LOG_LEVEL', 'POLL_SCHEDULE', 'VONAGE_ACCOUNT_NAME', 'VONAGE_API_KEY', 'STATE_DIR', 'METRICS_HOST']);
    fc.assert(
      fc.property(
        secretText,
        fc.constantFrom(...SECRET_VARIABLES),
        fc.boolean(),
        fc.constantFrom('', '\n', '\r\n', '\n\n'),
        elsewhere,
        (secret, variable, viaFile, ending, pasted) => {
          const env: Env = { ...MINIMAL, TOPUP_MAX_PER_DAY: 'lots', [variable]: undefined };
          const files: Record<string, string> = {};
          if (viaFile) {
            env[`${variable}_FILE`] = '/secret';
            files['/secret'] = `${secret}${ending}`;
          } else {
            env[variable] = secret;
          }
          for (const name of pasted) env[name] = secret;
          const error = failure(env, fakeFiles(files));
          expect(error.problems.map((p) => p.variable)).toContain('TOPUP_MAX_PER_DAY');
          for (const text of [error.message, JSON.stringify(error.problems)]) {
            expect(text).not.toContain(secret);
            expect(text).not.toContain('CANARY');
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('published values never carry a secret', () => {
  const SECRET = 'CANARY-s3cr3t-9f2-published';
  const good = { VONAGE_API_KEY: 'abcd1234', VONAGE_API_SECRET: SECRET, VONAGE_TOPUP_TRX: '8ef2447e69604f642ae59363aa5f781b', TOPUP_THRESHOLD: '10' };
  for (const [variable, value] of [
    ['VONAGE_ACCOUNT_NAME', SECRET],
    ['VONAGE_ACCOUNT_NAME', `prod-${SECRET}`],
    ['STATE_DIR', `/data/${SECRET}`],
  ] as const) {
    test(`refuses a secret pasted into ${variable}, without echoing it`, () => {
      let err: unknown;
      try {
        loadConfig({ ...good, [variable]: value }, () => '');
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      const e = err as ConfigError;
      expect(e.problems.map((p) => p.variable)).toEqual([variable]);
      expect(e.message).toMatch(/contains a secret/);
      expect(e.message).not.toContain(SECRET);
    });
  }

  test('a short account name that merely occurs inside the secret is not refused', () => {
    expect(loadConfig({ ...good, VONAGE_ACCOUNT_NAME: 'canary' }, () => '').accounts[0]!.name).toBe('canary');
  });
});

describe('defect 10: every published setting refuses a secret pasted into it', () => {
  // Published: --check-config prints it, and it reaches /status, metric labels, file names or log
  // lines (METRICS_HOST also a fatal `getaddrinfo ENOTFOUND <host>`).
  const PASTED = 'CANARY-s3cr3t-9f2-published';
  const PART = PASTED.slice(0, 14); // a truncated paste: a long piece, not the whole
  const base = { VONAGE_API_KEY: 'abcd1234', VONAGE_API_SECRET: PASTED, VONAGE_TOPUP_TRX: '8ef2447e69604f642ae59363aa5f781b', TOPUP_THRESHOLD: '10' };
  const allow = { VONAGE_ALLOW_CUSTOM_BASE_URL: 'true' };
  type Row = [label: string, variable: string, env: Env, forms: string[]];
  const forms = (secret: string) => [secret, secret.toLowerCase(), secret.slice(0, 8), encodeURIComponent(secret), Buffer.from(secret).toString('base64')];
  const ROWS: Row[] = [
    ['api key, whole', 'VONAGE_API_KEY', { ...base, VONAGE_API_KEY: PASTED }, forms(PASTED)],
    ['api key, a long part', 'VONAGE_API_KEY', { ...base, VONAGE_API_KEY: `key-${PART}` }, forms(PART)],
    ['account name, whole', 'VONAGE_ACCOUNT_NAME', { ...base, VONAGE_ACCOUNT_NAME: `prod ${PASTED}` }, forms(PASTED)],
    ['account name, a long part', 'VONAGE_ACCOUNT_NAME', { ...base, VONAGE_ACCOUNT_NAME: `prod ${PART}` }, forms(PART)],
    ['base url host, whole', 'VONAGE_BASE_URL', { ...base, ...allow, VONAGE_BASE_URL: `https://${PASTED}.example` }, forms(PASTED)],
    ['base url path, whole', 'VONAGE_BASE_URL', { ...base, ...allow, VONAGE_BASE_URL: `https://proxy.internal/${PASTED}/` }, forms(PASTED)],
    ['base url path, a long part', 'VONAGE_BASE_URL', { ...base, ...allow, VONAGE_BASE_URL: `https://proxy.internal:8443/v/${PART}` }, forms(PART)],
    ['base url path, percent-encoded', 'VONAGE_BASE_URL', { ...base, ...allow, VONAGE_API_SECRET: 'CANARY/s3cr3t+pub=lished', VONAGE_BASE_URL: `https://proxy.internal/${encodeURIComponent('CANARY/s3cr3t+pub=lished')}` }, forms('CANARY/s3cr3t+pub=lished')],
    ['base url path, encoded by the parser', 'VONAGE_BASE_URL', { ...base, ...allow, VONAGE_API_SECRET: 'CANARY s3cr3t published', VONAGE_BASE_URL: 'https://proxy.internal/CANARY s3cr3t published' }, forms('CANARY s3cr3t published')],
    ['base url, trx in the host', 'VONAGE_BASE_URL', { ...base, ...allow, VONAGE_BASE_URL: 'https://8ef2447e69604f642ae59363aa5f781b.example:8080' }, forms('8ef2447e69604f642ae59363aa5f781b')],
    ['metrics host, whole', 'METRICS_HOST', { ...base, METRICS_HOST: PASTED }, forms(PASTED)],
    ['metrics host, a long part', 'METRICS_HOST', { ...base, METRICS_HOST: `${PART}.internal` }, forms(PART)],
    ['metrics host, the token', 'METRICS_HOST', { ...base, METRICS_AUTH_TOKEN: 'CANARY-token-0a1b2c3d4e5f', METRICS_HOST: 'CANARY-token-0a1b2c3d4e5f' }, forms('CANARY-token-0a1b2c3d4e5f')],
    ['state dir, whole', 'STATE_DIR', { ...base, STATE_DIR: `/data/${PASTED}` }, forms(PASTED)],
    ['state dir, a long part', 'STATE_DIR', { ...base, STATE_DIR: `/data/${PART}/x` }, forms(PART)],
    // A schedule is only valid cron, so the secret here is one that is valid cron too.
    ['schedule, whole', 'POLL_SCHEDULE', { ...base, VONAGE_API_SECRET: '*/17 3 * * 1-5', POLL_SCHEDULE: '*/17 3 * * 1-5' }, forms('*/17 3 * * 1-5')],
    ['schedule, a long part', 'POLL_SCHEDULE', { ...base, VONAGE_API_SECRET: 'x*/17 3 * * 1-5y', POLL_SCHEDULE: '0 */17 3 * * 1-5' }, forms('x*/17 3 * * 1-5y')],
    // Settings whose printed value is ours (a choice, a number): refused only if a secret is that word.
    ['log format', 'LOG_FORMAT', { ...base, VONAGE_API_SECRET: 'pretty', LOG_FORMAT: 'PRETTY' }, ['pretty']],
    ['metrics port, even as the default', 'METRICS_PORT', { ...base, METRICS_AUTH_TOKEN: '8479' }, ['8479']],
    ['threshold', 'TOPUP_THRESHOLD', { ...base, VONAGE_TOPUP_TRX: '1234.5', TOPUP_THRESHOLD: '1234.50' }, ['1234.5']],
  ];

  test.each(ROWS)('%s: refused, naming %s, never showing the secret', (_label, variable, env, secretForms) => {
    const error = failure(env);
    expect(error.problems.map((p) => p.variable)).toEqual([variable]);
    expect(error.problems[0]!.message).toMatch(/^contains a secret \(pasted into the wrong variable\?\); it would be published /);
    const text = `${error.message}\n${JSON.stringify(error.problems)}\n${JSON.stringify(error.warnings)}`;
    for (const form of secretForms) expect(text.toLowerCase()).not.toContain(form.toLowerCase());
  });

  test.each([
    ['a short host that merely occurs inside a secret', { METRICS_HOST: 'canary' }],
    ['a base url sharing under 8 characters with the secret', { ...allow, VONAGE_BASE_URL: 'https://canary.example/s3cr3t' }],
    ['a state dir sharing under 8 characters', { STATE_DIR: '/data/CANARY-x/s3cr3t' }],
  ])('not refused: %s', (_label, extra) => {
    expect(() => load({ ...base, ...extra })).not.toThrow();
  });

  test('so describeConfig never prints a secret or a long piece of one, wherever it is pasted', () => {
    const secretChars = fc.stringMatching(/^[A-Za-z0-9._~-]{8,40}$/);
    const placements = fc.subarray(['VONAGE_API_KEY', 'VONAGE_ACCOUNT_NAME', 'VONAGE_BASE_URL', 'METRICS_HOST', 'STATE_DIR'] as const, { minLength: 1 });
    fc.assert(
      fc.property(secretChars, fc.constantFrom(...SECRET_VARIABLES), placements, fc.nat(), fc.nat(), (secret, where, targets, from, len) => {
        const start = from % (secret.length - 7);
        const piece = secret.slice(start, start + 8 + (len % (secret.length - start - 7)));
        const env: Env = { ...base, VONAGE_API_SECRET: 'CANARY-other-s3cr3t', [where]: secret, ...allow };
        for (const t of targets) {
          env[t] = { VONAGE_BASE_URL: `https://proxy.internal/${piece}`, STATE_DIR: `/data/${piece}` }[t as string] ?? piece;
        }
        let printed: string;
        try {
          printed = JSON.stringify(describeConfig(loadConfig(env, noFiles)));
        } catch (err) {
          if (!(err instanceof ConfigError)) throw err;
          expect(err.problems.map((p) => p.variable)).toEqual(expect.arrayContaining([...targets]));
          printed = `${err.message}\n${JSON.stringify(err.problems)}`;
        }
        expect(printed.toLowerCase()).not.toContain(piece.toLowerCase());
        expect(printed.toLowerCase()).not.toContain(secret.toLowerCase());
      }),
      { numRuns: 300 },
    );
  });
});

describe('misspelt variables', () => {
  // The value of an unknown variable may be a secret put under a wrong name: it is never shown.
  const VALUE = 'CANARY-unknown-value-77';
  const warningsFor = (extra: Env) => load({ ...MINIMAL, ...extra }).warnings;

  test.each([
    ['TOPUP_THRESHHOLD', 'TOPUP_THRESHOLD'],
    ['TOPUP_TRESHOLD', 'TOPUP_THRESHOLD'],
    ['TOPUPTHRESHOLD', 'TOPUP_THRESHOLD'],
    ['TOPUP_COOLDOWN_MS', 'TOPUP_COOLDOWN'],
    ['TOPUP_MAX_PER_DAYS', 'TOPUP_MAX_PER_DAY'],
    ['VONAGE_APIKEY', 'VONAGE_API_KEY'],
    ['VONAGE_API_SECRETFILE', 'VONAGE_API_SECRET_FILE'],
    ['VONAGE_API_SECERT', 'VONAGE_API_SECRET'],
    ['VONAGE_ALLOW_CUSTOM_URL', 'VONAGE_ALLOW_CUSTOM_BASE_URL'],
    ['POLL_SCHEDUEL', 'POLL_SCHEDULE'],
    ['METRICS_PORTS', 'METRICS_PORT'],
    ['METRICS_TOKEN', 'METRICS_AUTH_TOKEN'],
    ['VONAGE_SECRET', 'VONAGE_API_SECRET'],
    ['VONAGE_TRX_FILE', 'VONAGE_TOPUP_TRX_FILE'],
    ['LOG_LEVLE', 'LOG_LEVEL'],
    ['log_level', 'LOG_LEVEL'],
    ['DRYRUN', 'DRY_RUN'],
    ['DRY_RUNS', 'DRY_RUN'],
    ['dry_run', 'DRY_RUN'],
    ['STATEDIR', 'STATE_DIR'],
    ['STATE_DIRS', 'STATE_DIR'],
    ['HTTP_TIMOUT', 'HTTP_TIMEOUT'],
    ['HTTP_TIMEOUT_MS', 'HTTP_TIMEOUT'],
  ])('%s warns: did you mean %s?', (name, meant) => {
    const warnings = warningsFor({ [name]: VALUE });
    expect(warnings).toEqual([`${name} is not a variable this program reads, so it is ignored: did you mean ${meant}?`]);
  });

  test.each([
    ['VONAGE_FOO', 'VONAGE_AUTH'],
    ['LOG_LEVEL_FILE', 'LOG_LEVEL'],
    ['METRICS_PATH', 'METRICS_PORT'],
  ])('any unknown name under our prefixes warns, naming the closest known name: %s', (name, closest) => {
    const [warning, ...rest] = warningsFor({ [name]: VALUE });
    expect(rest).toEqual([]);
    expect(warning).toMatch(new RegExp(`^${name} is not a variable this program reads, so it is ignored: .*\\b${closest}\\b`));
  });

  test('names that are not ours draw no warning, however common', () => {
    const unrelated = [
      'HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'ALL_PROXY', 'http_proxy', 'https_proxy', 'no_proxy', 'LOG', 'LOGNAME', 'PATH',
      'HOME', 'HOSTNAME', 'USER', 'PWD', 'OLDPWD', 'SHLVL', 'TERM', 'LANG', 'LC_ALL', 'TZ', 'TMPDIR', 'PORT', 'HOST', 'CI',
      'DEBUG', 'NODE_ENV', 'NODE_OPTIONS', 'NODE_EXTRA_CA_CERTS', 'NODE_VERSION', 'YARN_VERSION', 'STATE_DIRECTORY',
      'RUNTIME_DIRECTORY', 'CACHE_DIR', 'DATA_DIR', 'XDG_STATE_HOME', 'XDG_RUNTIME_DIR', 'SIM_API_SECRET', 'SIM_PORT',
      'SIM_BALANCE', 'GRAFANA_ADMIN_PASSWORD', 'GF_SECURITY_ADMIN_USER', 'KUBERNETES_SERVICE_HOST', 'KUBERNETES_PORT_443_TCP_ADDR',
      'WATCHDOG_FAILPOINTS', 'DEMO_SECONDS', 'TIMEOUT', 'DRY', 'STATE', 'HTTP_TIMEOUT_', 'npm_config_cache', 'npm_lifecycle_event',
    ];
    expect(warningsFor(Object.fromEntries(unrelated.map((n) => [n, VALUE])))).toEqual(
      // HTTP_TIMEOUT_ is a near miss (one character off) and is the one expected warning.
      [expect.stringMatching(/^HTTP_TIMEOUT_ .*did you mean HTTP_TIMEOUT\?$/)],
    );
  });

  test('Kubernetes service links for a service named like us are not misspellings', () => {
    const links = {
      VONAGE_RELOAD_WATCHDOG_SERVICE_HOST: '10.0.0.7',
      VONAGE_RELOAD_WATCHDOG_SERVICE_PORT: '8479',
      VONAGE_RELOAD_WATCHDOG_SERVICE_PORT_METRICS: '8479',
      VONAGE_RELOAD_WATCHDOG_PORT: 'tcp://10.0.0.7:8479',
      VONAGE_RELOAD_WATCHDOG_PORT_8479_TCP: 'tcp://10.0.0.7:8479',
      VONAGE_RELOAD_WATCHDOG_PORT_8479_TCP_PROTO: 'tcp',
      VONAGE_RELOAD_WATCHDOG_PORT_8479_TCP_PORT: '8479',
      VONAGE_RELOAD_WATCHDOG_PORT_8479_TCP_ADDR: '10.0.0.7',
    };
    expect(warningsFor(links)).toEqual([]);
    // Without the _SERVICE_HOST that Kubernetes always sets with them, they are just unknown names.
    const { VONAGE_RELOAD_WATCHDOG_SERVICE_HOST: _host, ...orphans } = links;
    expect(warningsFor(orphans)).toHaveLength(Object.keys(orphans).length);
  });

  test('empty variables count as unset here too; known and internal names never warn', () => {
    expect(warningsFor({ TOPUP_THRESHHOLD: '', VONAGE_FOO: '' })).toEqual([]);
    const everyKnown = Object.fromEntries(CONFIG_VARIABLES.filter((v) => !v.default.startsWith('(')).map((v) => [v.name, v.default]));
    expect(warningsFor({ ...everyKnown, WATCHDOG_FAILPOINTS: 'x' })).toEqual([]);
  });

  test('the value of an unknown variable is never shown, and a name holding a secret is withheld', () => {
    const warnings = warningsFor({ VONAGE_SECRET: SECRET, TOPUP_THRESHHOLD: VALUE, [`VONAGE_${SECRET.toUpperCase()}`]: 'x' });
    expect(warnings).toHaveLength(3);
    expectNoSecrets(JSON.stringify(warnings), [VALUE, SECRET.toUpperCase()]);
    expect(warnings).toContain('<a variable whose name matches a secret> is not a variable this program reads, so it is ignored: the closest known name is VONAGE_API_SECRET');
  });

  test('TOPUP_THRESHHOLD=30 with TOPUP_THRESHOLD also set: valid, with the warning', () => {
    const c = load({ ...MINIMAL, TOPUP_THRESHHOLD: '30' });
    expect(c.accounts[0]!.threshold).toBe(10);
    expect(c.warnings).toEqual(['TOPUP_THRESHHOLD is not a variable this program reads, so it is ignored: did you mean TOPUP_THRESHOLD?']);
  });

  test.each([
    ['TOPUP_THRESHOLD', 'TOPUP_THRESHHOLD', 'TOPUP_THRESHOLD'],
    ['VONAGE_API_KEY', 'VONAGE_APIKEY', 'VONAGE_API_KEY'],
    ['VONAGE_API_SECRET', 'VONAGE_API_SECRET_FIEL', 'VONAGE_API_SECRET_FILE'],
    ['VONAGE_TOPUP_TRX', 'VONAGE_TOPUP_TXR', 'VONAGE_TOPUP_TRX'],
  ])('a missing %s says which misspelling is set (%s), and warns no second time', (missing, misspelt, meant) => {
    const error = failure({ ...MINIMAL, [missing]: undefined, [misspelt]: VALUE });
    expect(error.problems.map((p) => p.variable)).toEqual([missing]);
    expect(error.problems[0]!.message).toMatch(/^required \(/);
    expect(error.problems[0]!.message.endsWith(`; ${misspelt} is set: did you mean ${meant}?`)).toBe(true);
    expect(error.warnings).toEqual([]);
    expectNoSecrets(error.message, [VALUE]);
  });

  test('a far-off unknown name is not offered as the missing one', () => {
    const error = failure({ ...MINIMAL, TOPUP_THRESHOLD: undefined, TOPUP_AMOUNT: '30' });
    expect(error.problems[0]!.message).toBe('required (EUR; top up when the balance is below it)');
    expect(error.warnings).toEqual([expect.stringMatching(/^TOPUP_AMOUNT is not a variable/)]);
  });

  test('loadConfig stays pure: the same env gives the same warnings, in name order', () => {
    const env = { ...MINIMAL, STATEDIR: 'a', DRYRUN: 'b', LOG_LEVLE: 'c' };
    expect(load(env).warnings).toEqual(load({ ...env }).warnings);
    expect(load(env).warnings.map((w) => w.split(' ')[0])).toEqual(['DRYRUN', 'LOG_LEVLE', 'STATEDIR']);
  });
});
