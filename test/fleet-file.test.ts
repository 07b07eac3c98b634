/** ACCOUNTS_FILE: the fleet file's rules, every problem at once by YAML path, and no secret in any message. */
import { describe, expect, test } from 'vitest';
import { ConfigError, describeConfig, loadConfig, type ReadFile } from '../src/config/config.js';
import { FLEET_FILE_MAX_BYTES, parseFleetFile } from '../src/config/fleet-file.js';

const SECRET = 'CANARY-s3cr3t-eu-9f2';
const SECRET_US = 'CANARY-s3cr3t-us-77a';
const TRX = 'CANARY-trx-41c7aa';
const ENV_SECRET = 'CANARY-env-secret-5d';
const CANARY = /canary/i;

const FILES: Record<string, string> = {
  '/run/secrets/eu_prod_secret': `${SECRET}\n`,
  '/run/secrets/eu_prod_trx': `${TRX}\r\n`,
  '/run/secrets/us_secret': SECRET_US,
};

function reader(files: Record<string, string> = FILES): ReadFile & { calls: string[] } {
  const calls: string[] = [];
  const read = (path: string): string => {
    calls.push(path);
    const f = files[path];
    if (f === undefined) throw Object.assign(new Error(`ENOENT ${path}: ${SECRET}`), { code: 'ENOENT' });
    return f;
  };
  return Object.assign(read, { calls });
}

const ENV = { EU_PROD_SECRET: ENV_SECRET, EU_PROD_TRX: 'CANARY-env-trx-6e' };

function parse(text: string, env: Record<string, string | undefined> = ENV, files = FILES) {
  return parseFleetFile(text, { path: '/etc/fleet.yaml', env, readFile: reader(files) });
}

function failure(text: string, env: Record<string, string | undefined> = ENV, files = FILES): ConfigError {
  try {
    parse(text, env, files);
  } catch (err) {
    if (err instanceof ConfigError) {
      const all = `${err.message}\n${JSON.stringify(err.problems)}\n${JSON.stringify(err.warnings)}`;
      expect(all).not.toMatch(CANARY);
      expect(err.message.split('\n')).toEqual(err.problems.map((p) => `${p.variable}: ${p.message}`));
      return err;
    }
    throw err;
  }
  throw new Error('expected a ConfigError');
}

const MINIMAL = `
accounts:
  - apiKey: abcd1234
    apiSecretFile: /run/secrets/us_secret
    threshold: 10
`;

const FULL = `
defaults: {threshold: 25, cooldown: 15m, maxPerDay: 3, topupEnabled: true, dryRun: false}
accounts:
  - name: eu-prod                       # value of the \`account\` label
    apiKey: abcd1234
    apiSecretFile: /run/secrets/eu_prod_secret
    trxFile: /run/secrets/eu_prod_trx
    threshold: 50
    baseUrl: https://rest.nexmo.com
    allowCustomBaseUrl: false
    subaccountsBaseUrl: https://api.nexmo.com
    subaccounts:
      watch: all
      threshold: 10
      refill: transfer
      transferAmount: 20
      primaryReserve: 100
      maxTransferredPerDay: 200
      cooldown: 15m
      maxPerDay: 5
      overrides: {sub0001: {threshold: 5, transferAmount: 50}}
  - name: us-marketing
    apiKey: efgh5678
    apiSecretFile: /run/secrets/us_secret
`;

describe('good files', () => {
  test('minimal: the environment defaults apply', () => {
    expect(parse(MINIMAL)).toEqual({
      accounts: [
        {
          name: 'abcd1234',
          apiKey: 'abcd1234',
          apiSecret: SECRET_US,
          trx: undefined,
          baseUrl: 'https://rest.nexmo.com',
          allowCustomBaseUrl: false,
          auth: 'basic',
          threshold: 10,
          cooldownMs: 900_000,
          maxPerDay: 3,
          topupEnabled: false,
          dryRun: false,
          leadTimeMs: 0,
          pollAdaptive: false,
          pollMaxIntervalMs: 600_000,
          subaccountsBaseUrl: 'https://api.nexmo.com',
        },
      ],
      warnings: [],
    });
  });

  test('the full example', () => {
    const { accounts, warnings } = parse(FULL);
    expect(warnings).toEqual([]);
    expect(accounts).toHaveLength(2);
    expect(accounts[0]).toEqual({
      name: 'eu-prod',
      apiKey: 'abcd1234',
      apiSecret: SECRET,
      trx: TRX,
      baseUrl: 'https://rest.nexmo.com',
      allowCustomBaseUrl: false,
      auth: 'basic',
      threshold: 50,
      cooldownMs: 900_000,
      maxPerDay: 3,
      topupEnabled: true,
      dryRun: false,
      leadTimeMs: 0,
      pollAdaptive: false,
      pollMaxIntervalMs: 600_000,
      subaccountsBaseUrl: 'https://api.nexmo.com',
      subaccounts: {
        watch: 'all',
        refill: 'transfer',
        settings: { threshold: 10, transferAmount: 20, cooldownMs: 900_000, maxPerDay: 5 },
        overrides: { sub0001: { threshold: 5, transferAmount: 50 } },
        primaryReserve: 100,
        maxTransferredPerDay: 200,
        transfersEnabled: true,
        dryRun: false,
      },
    });
    // No trx: never a card top-up, although the defaults say topupEnabled: true.
    expect(accounts[1]).toMatchObject({ name: 'us-marketing', threshold: 25, trx: undefined, topupEnabled: false });
  });

  test('defaults reach every account and its subaccounts, unless they set their own', () => {
    const { accounts } = parse(`
defaults: {threshold: 30, cooldown: 20m, maxPerDay: 4, topupEnabled: false, dryRun: true}
accounts:
  - apiKey: k1
    apiSecret: \${env:EU_PROD_SECRET}
    trx: \${env:EU_PROD_TRX}
    subaccounts: {watch: [s1, s2]}
  - apiKey: k2
    apiSecret: \${env:EU_PROD_SECRET}
    trx: \${env:EU_PROD_TRX}
    threshold: 5
    cooldown: 1h
    maxPerDay: 1
    topupEnabled: yes
    dryRun: "no"
    subaccounts: {watch: all, threshold: 2, cooldown: 1m, maxPerDay: 9, topupEnabled: true}
`);
    expect(accounts[0]).toMatchObject({ threshold: 30, cooldownMs: 1_200_000, maxPerDay: 4, topupEnabled: false, dryRun: true, apiSecret: ENV_SECRET });
    expect(accounts[0]!.subaccounts).toEqual({
      watch: ['s1', 's2'],
      refill: 'none',
      settings: { threshold: 30, transferAmount: 0, cooldownMs: 1_200_000, maxPerDay: 4 },
      overrides: {},
      primaryReserve: 30,
      maxTransferredPerDay: 0,
      transfersEnabled: false,
      dryRun: true,
    });
    expect(accounts[1]).toMatchObject({ threshold: 5, cooldownMs: 3_600_000, maxPerDay: 1, topupEnabled: true, dryRun: false });
    // The block's own values; dryRun follows the primary's (false here), primaryReserve its threshold.
    expect(accounts[1]!.subaccounts).toMatchObject({
      settings: { threshold: 2, cooldownMs: 60_000, maxPerDay: 9, transferAmount: 0 },
      primaryReserve: 5,
      transfersEnabled: true,
      dryRun: false,
    });
  });

  test('overrides keep only what they set; a watch list may hold keys that look like numbers', () => {
    const { accounts } = parse(`
accounts:
  - apiKey: 00123456
    apiSecretFile: /run/secrets/us_secret
    threshold: 12.50
    subaccounts:
      watch: [00000001, sub0002]
      threshold: 3
      refill: transfer
      transferAmount: 10
      maxTransferredPerDay: 100
      overrides:
        "00000001": {maxPerDay: 2, cooldown: 1h}
        sub0002: {transferAmount: 100}
`);
    const s = accounts[0]!.subaccounts!;
    expect(accounts[0]!.apiKey).toBe('00123456');
    expect(accounts[0]!.threshold).toBe(12.5);
    expect(s.watch).toEqual(['00000001', 'sub0002']);
    expect(s.overrides).toEqual({ '00000001': { maxPerDay: 2, cooldownMs: 3_600_000 }, sub0002: { transferAmount: 100 } });
    expect(s.primaryReserve).toBe(12.5);
  });

  test('${env:NAME} inside values, $${ for a literal ${; custom URLs with allowCustomBaseUrl', () => {
    const { accounts } = parse(
      `
accounts:
  - name: "team $\${x} \${env:TEAM}"
    apiKey: \${env:KEY}
    apiSecret: \${env:EU_PROD_SECRET}
    threshold: \${env:LIMIT}
    allowCustomBaseUrl: true
    baseUrl: http://127.0.0.1:8480/
    subaccountsBaseUrl: https://proxy.internal:8443/subs
    auth: query
`,
      { ...ENV, TEAM: 'blue', KEY: 'key-9', LIMIT: '7' },
    );
    expect(accounts[0]).toMatchObject({ name: 'team ${x} blue', apiKey: 'key-9', threshold: 7, baseUrl: 'http://127.0.0.1:8480', subaccountsBaseUrl: 'https://proxy.internal:8443/subs', auth: 'query' });
  });

  test('a short cooldown warns, as TOPUP_COOLDOWN does; ignored transfer settings warn', () => {
    const { warnings } = parse(`
accounts:
  - apiKey: k1
    apiSecretFile: /run/secrets/us_secret
    threshold: 1
    cooldown: 5m
    subaccounts: {watch: all, threshold: 1, refill: none, transferAmount: 5}
`);
    expect(warnings).toEqual([
      expect.stringMatching(/^accounts\[0\]\.cooldown: 5m is below 10m/),
      'accounts[0].subaccounts.transferAmount: ignored, since refill is none (watch and report only)',
    ]);
  });

  test('pollAdaptive and pollMaxInterval per account: the account, else the defaults, else POLL_ADAPTIVE / POLL_MAX_INTERVAL from the environment', () => {
    const text = `
defaults: {pollAdaptive: true}
accounts:
  - {apiKey: k1, apiSecretFile: /run/secrets/us_secret, threshold: 1, pollMaxInterval: 30s}
  - {apiKey: k2, apiSecretFile: /run/secrets/us_secret, threshold: 1, pollAdaptive: false}
`;
    const fromEnv = parseFleetFile(text, { path: '/etc/fleet.yaml', env: ENV, readFile: reader(FILES), poll: { adaptive: false, maxIntervalMs: 120_000 } }).accounts;
    expect(fromEnv.map((a) => [a.pollAdaptive, a.pollMaxIntervalMs])).toEqual([[true, 30_000], [false, 120_000]]);
    const none = parse(`accounts:\n  - {apiKey: k1, apiSecretFile: /run/secrets/us_secret, threshold: 1}\n`).accounts[0]!;
    expect([none.pollAdaptive, none.pollMaxIntervalMs]).toEqual([false, 600_000]);
  });

  test('subaccounts.leadTime and an override of it; never defaults.leadTime (the card top-ups\')', () => {
    const text = `
defaults: {leadTime: 5m}
accounts:
  - apiKey: k1
    apiSecretFile: /run/secrets/us_secret
    threshold: 1
    subaccounts: {watch: [s1, s2], threshold: 2, leadTime: 2m, overrides: {s2: {leadTime: 90s}}}
  - apiKey: k2
    apiSecretFile: /run/secrets/us_secret
    threshold: 1
    subaccounts: {watch: all, threshold: 2}
`;
    const [a, b] = parse(text).accounts;
    expect(a!.subaccounts!.settings.leadTimeMs).toBe(120_000);
    expect(a!.leadTimeMs).toBe(300_000);
    expect(a!.subaccounts!.overrides.s2).toEqual({ leadTimeMs: 90_000 });
    expect(b!.subaccounts!.settings.leadTimeMs).toBeUndefined();
    expect(() => parse(`accounts:\n  - {apiKey: k1, apiSecretFile: /run/secrets/us_secret, threshold: 1, subaccounts: {watch: all, threshold: 2, leadTime: 3d}}\n`)).toThrow(/accounts\[0\]\.subaccounts\.leadTime: must be a duration from 0s to 24h/);
  });

  test('leadTime (TOPUP_LEAD_TIME) per account, from the defaults unless the account sets its own; 0s by default', () => {
    const { accounts } = parse(`
defaults: {leadTime: 5m}
accounts:
  - {apiKey: k1, apiSecretFile: /run/secrets/us_secret, threshold: 1}
  - {apiKey: k2, apiSecretFile: /run/secrets/us_secret, threshold: 1, leadTime: 90s}
`);
    expect(accounts.map((a) => a.leadTimeMs)).toEqual([300_000, 90_000]);
    expect(parse(`accounts:\n  - {apiKey: k1, apiSecretFile: /run/secrets/us_secret, threshold: 1}\n`).accounts[0]!.leadTimeMs).toBe(0);
  });

  test('a short subaccount cooldown warns when transfers are made (it alone guards against a list that lags a transfer), not with refill: none', () => {
    const block = (refill: string) => `
accounts:
  - apiKey: k1
    apiSecretFile: /run/secrets/us_secret
    threshold: 1
    subaccounts: {watch: [s1], threshold: 1, refill: ${refill}, cooldown: 1m${refill === 'transfer' ? ', transferAmount: 5, maxTransferredPerDay: 50, overrides: {s1: {cooldown: 30s}}' : ''}}
`;
    expect(parse(block('transfer')).warnings).toEqual([
      expect.stringMatching(/^accounts\[0\]\.subaccounts\.cooldown: 1m is below 10m: the cooldown is what stands between a transfer and a second one/),
      expect.stringMatching(/^accounts\[0\]\.subaccounts\.overrides\.s1\.cooldown: 30s is below 10m/),
    ]);
    expect(parse(block('none')).warnings).toEqual([]);
  });
});

type Bad = [label: string, text: string, problems: (string | RegExp)[], env?: Record<string, string | undefined>];
const acct = (extra: string, base = 'apiKey: k1\n    apiSecretFile: /run/secrets/us_secret\n    threshold: 10') => `accounts:\n  - ${base}\n    ${extra}\n`;
const subs = (block: string, threshold = 'threshold: 2\n') => acct(`subaccounts:\n      ${`${threshold}${block.trim()}`.split('\n').join('\n      ')}`);

const BAD: Bad[] = [
  ['no accounts', 'defaults: {threshold: 1}\n', ['accounts: required: a list of accounts']],
  ['accounts not a list', 'accounts: {a: b}\n', ['accounts: must be a list of accounts (got a mapping)']],
  ['empty accounts', 'accounts: []\n', ['accounts: must list at least one account']],
  ['not a mapping', '- a\n- b\n', [/^ACCOUNTS_FILE: "\/etc\/fleet.yaml" must be a mapping/]],
  ['empty file', '  \n', ['ACCOUNTS_FILE: "/etc/fleet.yaml" is empty']],
  ['only a comment', '# nothing\n', ['ACCOUNTS_FILE: "/etc/fleet.yaml" holds no settings']],
  ['top-level typo', `accounts:\n  - apiKey: k\n    apiSecretFile: /run/secrets/us_secret\n    threshold: 1\ndefualts: {}\n`, ['defualts: unknown key; did you mean defaults?']],
  ['account key typos, with suggestions', acct('treshold: 5\n    apiSecert: x\n    DryRun: true'), [
    'accounts[0].treshold: unknown key; did you mean threshold?',
    'accounts[0].apiSecert: unknown key; did you mean apiSecret?',
    'accounts[0].DryRun: unknown key; did you mean dryRun?',
  ]],
  ['far-off key lists the known ones', acct('colour: red'), [/^accounts\[0\]\.colour: unknown key; known keys: name, apiKey, /]],
  ['defaults key not allowed there', 'defaults: {baseUrl: x}\n' + acct(''), [/^defaults\.baseUrl: unknown key; known keys: threshold, cooldown, maxPerDay, leadTime, pollAdaptive, pollMaxInterval, topupEnabled, dryRun$/]],
  ['missing api key, secret and threshold', 'accounts:\n  - name: x\n', [
    'accounts[0].apiSecret: required: apiSecretFile: /path/to/file, or apiSecret: ${env:NAME}',
    'accounts[0].apiKey: required (the Vonage API key), or apiKeyFile: /path/to/file',
    'accounts[0].threshold: required (EUR; top up when the balance is below it), here or in defaults',
  ]],
  ['inline api secret refused', acct('apiSecret: CANARY-inline-s3cr3t', 'apiKey: k1\n    threshold: 10'), [/^accounts\[0\]\.apiSecret: must not be written in the file .*apiSecretFile: \/path\/to\/file, or apiSecret: \$\{env:NAME\}$/]],
  ['inline trx refused, even mixed with a reference', acct('trx: "CANARY-x${env:EU_PROD_TRX}"'), [/^accounts\[0\]\.trx: must not be written in the file/]],
  ['secret both ways', acct('apiSecret: ${env:EU_PROD_SECRET}'), ['accounts[0].apiSecret: also set as apiSecretFile; use one or the other']],
  ['trx both ways', acct('trx: ${env:EU_PROD_TRX}\n    trxFile: /t'), ['accounts[0].trx: also set as trxFile; use one or the other']],
  ['env reference unset', acct('trx: ${env:NOPE_TRX}'), ['accounts[0].trx: ${env:NOPE_TRX} is not set (or is empty)']],
  ['env reference empty, in a plain value', acct('name: ${env:EMPTY}'), ['accounts[0].name: ${env:EMPTY} is not set (or is empty)'], { ...ENV, EMPTY: '' }],
  ['not a reference', acct('name: "${HOME}"'), [/^accounts\[0\]\.name: has a "\$\{" that does not start a \$\{env:NAME\} reference/]],
  ['secret file missing', acct('trxFile: /nope'), ['accounts[0].trxFile: cannot read "/nope" (ENOENT)']],
  ['secret file empty', acct('trxFile: /empty'), ['accounts[0].trxFile: "/empty" is empty']],
  ['bad trx in its file', acct('trxFile: /two-lines'), ['accounts[0].trxFile: must not contain whitespace or control characters']],
  ['topupEnabled true without trx', acct('topupEnabled: true'), [/^accounts\[0\]\.topupEnabled: is true, but the account has no trx/]],
  ['bad numbers and durations, with today\'s bounds', acct('threshold: 1e3\n    maxPerDay: 1001\n    cooldown: 8d', 'apiKey: k1\n    apiSecretFile: /run/secrets/us_secret'), [
    'accounts[0].threshold: must be a plain decimal number of EUR such as 10 or 12.50 (got "1e3")',
    'accounts[0].cooldown: must be between 1s and 7d (got "8d")',
    'accounts[0].maxPerDay: must be a whole number from 1 to 1000 (got "1001")',
  ]],
  ['zero threshold, bad boolean, bad auth, list for a value', acct('threshold: 0\n    dryRun: maybe\n    auth: digest\n    name: [a]', 'apiKey: k1\n    apiSecretFile: /run/secrets/us_secret'), [
    'accounts[0].name: must be a single value (got a list)',
    'accounts[0].auth: must be basic or query (got "digest")',
    'accounts[0].threshold: must be a positive number (got "0")',
    'accounts[0].dryRun: must be one of true/false/1/0/yes/no (got "maybe")',
  ]],
  ['base url rules', acct('baseUrl: https://evil.example\n    subaccountsBaseUrl: http://api.nexmo.com'), [
    /^accounts\[0\]\.baseUrl: "evil.example" is not a Vonage API host .*Set allowCustomBaseUrl: true only for a host you trust$/,
    'accounts[0].subaccountsBaseUrl: http is allowed only on loopback (127.0.0.0/8, ::1, localhost)',
  ]],
  ['bad api key and account name', acct('name: " padded"', 'apiKey: "a:b"\n    apiSecretFile: /run/secrets/us_secret\n    threshold: 1'), [
    'accounts[0].apiKey: must not contain ":" (it is the Basic auth user name)',
    'accounts[0].name: must not start or end with whitespace (got " padded")',
  ]],
  ['duplicate names and api keys', `accounts:
  - {name: a, apiKey: k1, apiSecretFile: /run/secrets/us_secret, threshold: 1}
  - {name: a, apiKey: k2, apiSecretFile: /run/secrets/us_secret, threshold: 1}
  - {name: c, apiKey: k1, apiSecretFile: /run/secrets/us_secret, threshold: 1}
  - {apiKey: c, apiSecretFile: /run/secrets/us_secret, threshold: 1}
`, [
    'accounts[1].name: is the same as accounts[0].name; every account needs its own',
    'accounts[3].name: is the same as accounts[2].name; every account needs its own',
    'accounts[2].apiKey: is the same as accounts[0].apiKey; every account needs its own',
  ]],
  ['subaccounts: watch required, unknown key', subs('transferAmmount: 5', ''), [
    'accounts[0].subaccounts.transferAmmount: unknown key; did you mean transferAmount?',
    'accounts[0].subaccounts.watch: required: all, or a list of subaccount API keys',
    'accounts[0].subaccounts.threshold: required (EUR; a subaccount is refilled below it), here or in defaults',
  ]],
  ['subaccounts: transfer needs amount and cap', subs('watch: all\nrefill: transfer'), [
    'accounts[0].subaccounts.transferAmount: required with refill: transfer (EUR per transfer)',
    /^accounts\[0\]\.subaccounts\.maxTransferredPerDay: required with refill: transfer/,
  ]],
  ['subaccounts: amount above the cap, negative reserve, bad refill value', subs('watch: all\nrefill: transfer\ntransferAmount: 50\nmaxTransferredPerDay: 20\nprimaryReserve: -1'), [
    'accounts[0].subaccounts.transferAmount: must be at most maxTransferredPerDay (20)',
    'accounts[0].subaccounts.primaryReserve: must be a plain decimal number of EUR such as 10 or 12.50 (got "-1")',
  ]],
  ['subaccounts: the example message', subs('watch: all\nrefill: transfer\ntransferAmount: 0\nmaxTransferredPerDay: 20'), ['accounts[0].subaccounts.transferAmount: must be a positive number (got "0")']],
  ['subaccounts: refill value, watch value', subs('watch: some\nrefill: move'), [
    'accounts[0].subaccounts.watch: must be all, or a list of subaccount API keys (got "some")',
    'accounts[0].subaccounts.refill: must be transfer or none (got "move")',
  ]],
  ['poll settings out of range, in an account and in the defaults', 'defaults: {pollMaxInterval: 500ms, pollAdaptive: often}\n' + acct('pollMaxInterval: 25h'), [
    /^defaults\.pollAdaptive: /,
    'defaults.pollMaxInterval: must be a duration from 1s to 24h such as 30s, 10m or 1h (got "500ms")',
    'accounts[0].pollMaxInterval: must be a duration from 1s to 24h such as 30s, 10m or 1h (got "25h")',
  ]],
  ['lead time out of range, in an account and in the defaults', 'defaults: {leadTime: 2d}\n' + acct('leadTime: soon'), [
    'defaults.leadTime: must be a duration from 0s to 24h such as 0s, 90s or 5m (got "2d")',
    'accounts[0].leadTime: must be a duration from 0s to 24h such as 0s, 90s or 5m (got "soon")',
  ]],
  ['watch list: empty', subs('watch: []'), ['accounts[0].subaccounts.watch: must list at least one subaccount API key (or be all)']],
  ['watch list: duplicate, bad shape, the primary itself', subs('watch: [s1, s1, "a b", k1]'), [
    'accounts[0].subaccounts.watch[1]: lists s1 a second time',
    'accounts[0].subaccounts.watch[2]: must be a subaccount API key: must not contain whitespace or control characters',
    "accounts[0].subaccounts.watch[3]: is the primary's own API key, not one of its subaccounts",
  ]],
  ['watch list and overrides: a key that is another account of the file, by API key or by name', `accounts:
  - name: eu-prod
    apiKey: k1
    apiSecretFile: /run/secrets/us_secret
    threshold: 1
    subaccounts: {watch: [s1, k2, us-ops], threshold: 2, refill: none, overrides: {k2: {threshold: 1}}}
  - {name: twin, apiKey: k2, apiSecretFile: /run/secrets/us_secret, threshold: 1}
  - {name: us-ops, apiKey: k3, apiSecretFile: /run/secrets/us_secret, threshold: 1}
`, [
    'accounts[0].subaccounts.watch[1]: is the API key of accounts[1] (twin): that account would be refilled both by its own card top-up and by balance transfers; watch it in one place',
    "accounts[0].subaccounts.watch[2]: is the name of accounts[2]: a subaccount's account label is its API key, so both would write the same series; rename accounts[2]",
    'accounts[0].subaccounts.overrides.k2: is the API key of accounts[1] (twin): that account would be refilled both by its own card top-up and by balance transfers; watch it in one place',
  ]],
  ['overrides: not in the watch list, bad key shape, unknown setting, amount above cap', subs(`watch: [s1]
refill: transfer
transferAmount: 5
maxTransferredPerDay: 10
overrides:
  s2: {threshold: 1}
  "a b": {threshold: 1}
  s1: {refill: none, transferAmount: 11}`), [
    'accounts[0].subaccounts.overrides.s2: is not in the watch list, so this override would never apply',
    'accounts[0].subaccounts.overrides["a b"]: the key must be a subaccount API key: must not contain whitespace or control characters',
    'accounts[0].subaccounts.overrides.s1.refill: unknown key; known keys: threshold, transferAmount, cooldown, maxPerDay, leadTime',
    'accounts[0].subaccounts.overrides.s1.transferAmount: must be at most maxTransferredPerDay (10)',
  ]],
  ['overrides: bad values', subs('watch: all\noverrides: {s1: {threshold: x, cooldown: 0s, maxPerDay: 0}}'), [
    'accounts[0].subaccounts.overrides.s1.threshold: must be a plain decimal number of EUR such as 10 or 12.50 (got "x")',
    'accounts[0].subaccounts.overrides.s1.cooldown: must be between 1s and 7d (got "0s")',
    'accounts[0].subaccounts.overrides.s1.maxPerDay: must be a whole number from 1 to 1000 (got "0")',
  ]],
  ['YAML syntax error, with line and column', 'accounts:\n  - apiKey: k1\n    name: a: b\n', [/^ACCOUNTS_FILE: "\/etc\/fleet.yaml" line 3, column 11: invalid YAML: .* \(BLOCK_AS_IMPLICIT_KEY\)$/]],
  ['duplicate YAML key', 'accounts: []\naccounts: []\n', [/^ACCOUNTS_FILE: "\/etc\/fleet.yaml" line 2, column 1: invalid YAML: a key appears twice in the same mapping \(DUPLICATE_KEY\)$/]],
  ['two documents', 'accounts: []\n---\naccounts: []\n', [/invalid YAML: more than one YAML document/]],
  ['a YAML tag', 'accounts: !!int 3\n', [/invalid YAML: a YAML tag/]],
  ['alias bomb', `a: &a [x, x, x, x, x, x, x, x, x, x]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
accounts: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
`, [/^ACCOUNTS_FILE: "\/etc\/fleet.yaml" expands aliases \(\*name\) more than 100 times; refused/]],
  ['deep flow nesting', `accounts: ${'['.repeat(40)}${']'.repeat(40)}\n`, [/nests \[ \] or \{ \} 40 deep; at most 32$/]],
];

describe('bad files: every problem at once, each by its YAML path, never a secret', () => {
  const files = { ...FILES, '/empty': '', '/two-lines': `${TRX}\n\n` };
  test.each(BAD)('%s', (_label, text, problems, env) => {
    const error = failure(text, env ?? ENV, files);
    const lines = error.problems.map((p) => `${p.variable}: ${p.message}`);
    expect(lines).toHaveLength(problems.length);
    problems.forEach((want, i) => {
      if (typeof want === 'string') expect(lines[i]).toBe(want);
      else expect(lines[i]).toMatch(want);
    });
  });

  test('a huge file is refused unparsed', () => {
    const error = failure(`accounts: []\n# ${'x'.repeat(FLEET_FILE_MAX_BYTES)}\n`);
    expect(error.problems.map((p) => p.message)).toEqual([expect.stringMatching(/is \d+ bytes; at most 1048576 \(1 MiB\) are read$/)]);
  });

  test('a secret on a malformed line never reaches a message', () => {
    for (const text of [
      `accounts:\n  - apiKey: k1\n    apiSecret: CANARY-s3cr3t: oops\n`,
      `accounts:\n  - apiKey: k1\n    apiSecret: "CANARY-s3cr3t\n`,
      `accounts:\n  - apiKey: k1\n\tapiSecret: CANARY-s3cr3t\n`,
      `accounts:\n  - {apiKey: k1, apiSecret: CANARY-s3cr3t\n`,
      `accounts:\n  - apiKey: k1\n    trx: *CANARY-s3cr3t\n`,
    ]) {
      const error = failure(text);
      expect(error.problems.length).toBeGreaterThan(0);
      expect(error.problems.every((p) => p.variable === 'ACCOUNTS_FILE')).toBe(true);
    }
  });

  test('an inline secret is withheld wherever else it is pasted, and the secrets read are too', () => {
    const error = failure(acct(`name: ${SECRET}-x\n    trx: CANARY-inline-trx-value\n    maxPerDay: CANARY-inline-trx-value`));
    expect(error.problems.map((p) => p.variable)).toEqual(['accounts[0].trx', 'accounts[0].name', 'accounts[0].maxPerDay']);
    expect(error.message).toMatch(/name: contains a secret/);
    expect(error.message).toMatch(/maxPerDay: must be a whole number from 1 to 1000 \(got <withheld: it matches a secret>\)/);
  });

  test('reader error messages are never shown, only their code', () => {
    const error = failure(acct('trxFile: /nope'));
    expect(error.message).not.toContain('ENOENT /nope');
  });
});

describe('loadConfig with ACCOUNTS_FILE', () => {
  const fleetFiles = { ...FILES, '/etc/fleet.yaml': FULL };

  test('reads the fleet, keeps process-wide settings from the environment', () => {
    const c = loadConfig({ ACCOUNTS_FILE: '/etc/fleet.yaml', POLL_CONCURRENCY: '3', LOG_LEVEL: 'debug' }, reader(fleetFiles));
    expect(c.accountsFile).toBe('/etc/fleet.yaml');
    expect(c.pollConcurrency).toBe(3);
    expect(c.log.level).toBe('debug');
    expect(c.accounts.map((a) => a.name)).toEqual(['eu-prod', 'us-marketing']);
    expect(Object.isFrozen(c.accounts[0]!.subaccounts!.overrides)).toBe(true);
  });

  test('--check-config output: every account and its subaccount settings, secrets masked', () => {
    const d = describeConfig(loadConfig({ ACCOUNTS_FILE: '/etc/fleet.yaml' }, reader(fleetFiles)));
    expect(d).toMatchObject({
      ACCOUNTS_FILE: '/etc/fleet.yaml',
      'accounts[0].name': 'eu-prod',
      'accounts[0].apiSecret': `(set, ${SECRET.length} chars)`,
      'accounts[0].trx': `(set, ${TRX.length} chars)`,
      'accounts[0].subaccounts.refill': 'transfer',
      'accounts[0].subaccounts.primaryReserve': '100',
      'accounts[0].subaccounts.overrides.sub0001': 'threshold 5, transferAmount 50',
      'accounts[1].trx': '(unset: never tops up by card)',
      'accounts[1].topupEnabled': 'false (no trx)',
      'accounts[1].subaccounts': '(none)',
      POLL_CONCURRENCY: '8',
    });
    expect(Object.keys(d)).not.toContain('VONAGE_API_KEY');
    const printed = JSON.stringify(d);
    for (const s of [SECRET, SECRET_US, TRX]) {
      for (const form of [s, encodeURIComponent(s), Buffer.from(s).toString('base64')]) expect(printed).not.toContain(form);
    }
    expect(printed).not.toMatch(CANARY);
  });

  test('per-account variables beside ACCOUNTS_FILE: exit-78 problems naming each one, with the file problems too', () => {
    let error: unknown;
    try {
      loadConfig(
        {
          ACCOUNTS_FILE: '/etc/fleet.yaml',
          VONAGE_API_KEY: 'abcd1234',
          VONAGE_API_SECRET_FILE: '/s',
          VONAGE_TOPUP_TRX: 'CANARY-trx-env',
          VONAGE_ACCOUNT_NAME: 'x',
          VONAGE_BASE_URL: 'https://rest.nexmo.com',
          VONAGE_ALLOW_CUSTOM_BASE_URL: 'false',
          VONAGE_AUTH: 'basic',
          TOPUP_THRESHOLD: '10',
          TOPUP_COOLDOWN: '15m',
          TOPUP_MAX_PER_DAY: '3',
          TOPUP_ENABLED: 'true',
          DRY_RUN: 'true',
          POLL_SCHEDULE: '*/5 * * * *',
          STATE_DIR: '/tmp/x',
        },
        reader({ ...FILES, '/etc/fleet.yaml': acct('treshold: 1') }),
      );
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const e = error as ConfigError;
    expect(e.problems.map((p) => p.variable)).toEqual([
      'accounts[0].treshold',
      'VONAGE_API_KEY',
      'VONAGE_API_SECRET_FILE',
      'VONAGE_TOPUP_TRX',
      'VONAGE_ACCOUNT_NAME',
      'VONAGE_BASE_URL',
      'VONAGE_ALLOW_CUSTOM_BASE_URL',
      'VONAGE_AUTH',
      'TOPUP_THRESHOLD',
      'TOPUP_COOLDOWN',
      'TOPUP_MAX_PER_DAY',
      'TOPUP_ENABLED',
      'DRY_RUN',
    ]);
    expect(e.problems[2]!.message).toBe("must not be set with ACCOUNTS_FILE: every account's settings come from that file (there: `apiSecretFile`)");
    expect(e.message).not.toMatch(CANARY);
  });

  test('the file cannot be read: its code only', () => {
    expect(() => loadConfig({ ACCOUNTS_FILE: '/missing.yaml' }, reader())).toThrow(/^ACCOUNTS_FILE: cannot read "\/missing.yaml" \(ENOENT\)$/);
  });

  test('an ACCOUNTS_FILE that is empty counts as unset: the environment describes one account as before', () => {
    const env = { VONAGE_API_KEY: 'abcd1234', VONAGE_API_SECRET: SECRET, VONAGE_TOPUP_TRX: TRX, TOPUP_THRESHOLD: '10' };
    const files = reader();
    const withEmpty = loadConfig({ ...env, ACCOUNTS_FILE: '' }, files);
    expect(withEmpty).toEqual(loadConfig(env, files));
    expect(files.calls).toEqual([]);
    expect(withEmpty.accountsFile).toBeUndefined();
    expect(withEmpty.accounts).toHaveLength(1);
    expect(withEmpty.accounts[0]!.subaccounts).toBeUndefined();
    expect(withEmpty.accounts[0]!.subaccountsBaseUrl).toBe('https://api.nexmo.com');
    expect(describeConfig(withEmpty).ACCOUNTS_FILE).toBe('(unset)');
  });

  test('a fleet secret pasted into a published setting is refused there too', () => {
    let error: unknown;
    try {
      loadConfig({ ACCOUNTS_FILE: '/etc/fleet.yaml', STATE_DIR: `/data/${SECRET}` }, reader(fleetFiles));
    } catch (err) {
      error = err;
    }
    expect((error as ConfigError).problems.map((p) => `${p.variable}: ${p.message.split(';')[0]}`)).toEqual([
      'STATE_DIR: contains a secret (pasted into the wrong variable?)',
    ]);
    expect((error as Error).message).not.toMatch(CANARY);
  });
});
