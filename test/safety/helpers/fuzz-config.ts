/**
 * Generated configurations for the config fuzz, and an independent oracle of the environment
 * contract (src/config/config.ts header and messages, docs/ARCHITECTURE.md, --help): which variables a
 * ConfigError must name, and, for a valid environment, the effective settings.
 *
 * The contract as the oracle reads it:
 *  - "" counts as unset (docker compose passes empty variables); parsed values are trimmed.
 *  - NAME_FILE (key, secret, trx, metrics token): the file's content minus exactly one trailing
 *    "\n" or "\r\n". Both NAME and NAME_FILE set → NAME is named and the file is not read;
 *    unreadable (missing, a directory) or empty → NAME_FILE is named; content problems name NAME_FILE.
 *  - API key: required; no whitespace/control characters, no ":", at most 64 characters.
 *  - API secret: required; not blank, no control characters, at most 1024 characters.
 *  - TOPUP_ENABLED, DRY_RUN, VONAGE_ALLOW_CUSTOM_BASE_URL: true/false/1/0/yes/no, any case.
 *  - trx: required when TOPUP_ENABLED is true (not when it is invalid: its own problem says enough);
 *    when set, not blank, no whitespace/control characters, at most 128 characters.
 *  - METRICS_AUTH_TOKEN: optional; printable ASCII without spaces, at most 1024 characters.
 *  - VONAGE_ACCOUNT_NAME: optional (default the key); no control characters, no surrounding
 *    whitespace, at most 64 characters.
 *  - VONAGE_BASE_URL: absolute URL; https, or http only on loopback (127/8, ::1, localhost); no
 *    user info, query or fragment; unless VONAGE_ALLOW_CUSTOM_BASE_URL=true also a Vonage host
 *    (rest.nexmo.com, api.nexmo.com), the default port and no path. An invalid allow flag
 *    suppresses the host/port/path judgement. Normalised to scheme://host[:port][/path] without a
 *    trailing slash.
 *  - VONAGE_AUTH basic|query, LOG_LEVEL fatal…silent, LOG_FORMAT json|pretty: any case.
 *  - TOPUP_THRESHOLD: required plain decimal (digits, optional .digits) > 0 and ≤ 1e6.
 *  - TOPUP_COOLDOWN 1s..7d, HTTP_TIMEOUT 100ms..2m: durations of d/h/m/s/ms, largest unit first,
 *    each at most once, case-sensitive.
 *  - TOPUP_MAX_PER_DAY 1..1000, METRICS_PORT 0..65535: whole numbers.
 *  - POLL_SCHEDULE: a node-cron expression of 5 or 6 fields (labelled here by hand).
 *  - STATE_DIR: not blank, no control characters (used verbatim). METRICS_HOST: no whitespace or
 *    control characters.
 *  - Published settings (API key, account name, base URL as given, normalised and percent-decoded,
 *    POLL_SCHEDULE, STATE_DIR, METRICS_HOST), once otherwise valid, are refused when they contain
 *    a known secret of 4+ characters or share a run of 8 characters with one, case-blind. Known
 *    secrets: the secret, trx and token as set directly (even when invalid, or also set as
 *    _FILE), else the content of a _FILE that could be read, minus one line ending. (loadConfig
 *    also holds every printed value to this rule; generated secrets carry the marker, so only
 *    the settings above can ever match one.)
 * "Control characters" are the Unicode categories Cc, Cf, Cs, Zl and Zp.
 */
import fc from 'fast-check';

export const VARIABLES = [
  'VONAGE_API_KEY',
  'VONAGE_API_SECRET',
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
  'POLL_SCHEDULE',
  'HTTP_TIMEOUT',
  'STATE_DIR',
  'METRICS_HOST',
  'METRICS_PORT',
  'METRICS_AUTH_TOKEN',
  'LOG_LEVEL',
  'LOG_FORMAT',
] as const;
export type Variable = (typeof VARIABLES)[number];
export const FILE_VARIABLES = ['VONAGE_API_KEY', 'VONAGE_API_SECRET', 'VONAGE_TOPUP_TRX', 'METRICS_AUTH_TOKEN'] as const;
type FileVariable = (typeof FILE_VARIABLES)[number];

// Placeholders filled in per configuration (the canary marker, the secret pasted elsewhere, paths).
export const MARK = '@@MARK@@';
export const PASTE = '@@PASTE@@';
export const DIR = '@@DIR@@';
export const FILE = '@@FILE@@';

const CONTROL = /[\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}]/u;
const BLANK_OR_CONTROL = /[\s\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}]/u;
const codePoints = (s: string) => [...s].length;

// ---- generators ------------------------------------------------------------------------------

type Raw = string | undefined;
interface Pool {
  good: fc.Arbitrary<Raw>;
  bad: fc.Arbitrary<Raw>;
}
const pool = (good: fc.Arbitrary<Raw>, bad: fc.Arbitrary<Raw>): Pool => ({ good, bad });
const unsetOrEmpty = fc.constantFrom<Raw>(undefined, '');
const pad = (arb: fc.Arbitrary<string>) =>
  fc.tuple(fc.constantFrom('', '', '', ' ', '\t', '  ', '\u00a0', '\n'), arb, fc.constantFrom('', '', '', ' ', '\t', '\r\n', '\u2003')).map(([a, s, b]) => `${a}${s}${b}`);
const anyCase = (arb: fc.Arbitrary<string>) =>
  fc.tuple(arb, fc.constantFrom('lower', 'upper', 'title', 'mixed')).map(([s, c]) =>
    c === 'upper' ? s.toUpperCase() : c === 'title' ? s.charAt(0).toUpperCase() + s.slice(1) : c === 'mixed' ? [...s].map((ch, i) => (i % 2 ? ch.toUpperCase() : ch)).join('') : s,
  );
const randomText = fc.oneof(fc.string({ maxLength: 12 }), fc.string({ unit: 'grapheme', maxLength: 8 }), fc.string({ unit: 'binary', maxLength: 8 }));

const booleanPool = pool(
  fc.oneof(unsetOrEmpty, pad(anyCase(fc.constantFrom('true', 'false', '1', '0', 'yes', 'no')))),
  fc.oneof(fc.constantFrom('on', 'off', 'y', 'n', '2', 'truee', 'enabled', 'maybe', 't', '✓', 'tru e', '-1', 'yes!', 'nope', PASTE), randomText),
);

function choicePool(options: string[], bad: string[]): Pool {
  return pool(fc.oneof(unsetOrEmpty, pad(anyCase(fc.constantFrom(...options)))), fc.oneof(fc.constantFrom(...bad, PASTE), randomText));
}

/** Whole numbers around the edges of [min, max], and things that are not whole numbers. */
function integerPool(min: number, max: number): Pool {
  return pool(
    fc.oneof(unsetOrEmpty, pad(fc.oneof(fc.integer({ min, max }).map(String), fc.constantFrom(String(min), String(max), `00${min}`)))),
    fc.oneof(
      fc.constantFrom(String(min - 1), String(max + 1), `${min}.5`, '1.0', '-1', '3e0', '0x3', '+3', '１', '1 000', '99999999999999999999', 'three', PASTE),
      fc.integer({ min: max + 1, max: max * 100 + 10 }).map(String),
      randomText,
    ),
  );
}

/** Durations, composed from units in the right or the wrong order, and common mistakes. */
function durationPool(good: string[]): Pool {
  const unitPair = fc.tuple(fc.nat({ max: 200 }), fc.constantFrom('d', 'h', 'm', 's', 'ms', 'M', 'H', 'sec', 'min', ''));
  const composed = fc.array(unitPair, { minLength: 1, maxLength: 3 }).map((pairs) => pairs.map(([n, u]) => `${n}${u}`).join(''));
  return pool(
    fc.oneof(unsetOrEmpty, pad(fc.constantFrom(...good))),
    fc.oneof(
      fc.constantFrom('15', '0s', '999ms', '7d1ms', '8d', '15 minutes', '1.5h', '-1m', '15M', '30m1h', '1m1m', 'm', '', '1h 30m', '99999999999999999999ms', PASTE),
      composed,
      randomText,
    ),
  );
}

const thresholdPool = pool(
  pad(
    fc.oneof(
      fc.integer({ min: 1, max: 1_000_000 }).map(String),
      fc.tuple(fc.integer({ min: 0, max: 999_999 }), fc.integer({ min: 1, max: 99 })).map(([a, b]) => `${a}.${String(b).padStart(2, '0')}`),
      fc.constantFrom('10', '12.50', '0.01', '1000000', '1000000.000', '007', '0.0000001'),
    ),
  ),
  fc.oneof(
    fc.constantFrom(undefined, '', '   ', '0', '0.0', '0.000', '-5', '+5', '1e3', '0x10', 'NaN', 'Infinity', '10.', '.5', '10,5', '10 EUR', '€10', '１０', '1000000.01', '9'.repeat(400), '1e309', '-0', PASTE),
    fc.double({ noNaN: true }).map(String),
    fc.integer({ min: 1_000_001, max: 2_000_000_000 }).map(String),
    randomText,
  ),
);

/** Keys: the value stands for itself (never a canary). */
const keyValue = {
  good: fc.oneof(fc.stringMatching(/^[A-Za-z0-9]{1,64}$/), fc.constantFrom('abcd1234', 'k'.repeat(64), '🔑'.repeat(64), 'key-with.dots_and-dashes')),
  bad: fc.constantFrom('', 'ab cd', 'ab\tcd', 'ab:cd', 'k'.repeat(65), '🔑'.repeat(65), ' abcd', 'abcd\u00a0', 'ab\u200bcd', 'ab\u2028cd', '  '),
};
/** Secrets carry the canary marker so a leak of any part of them is found. */
const secretValue = {
  good: fc.constantFrom(`S${MARK}/+=%&`, ` S${MARK} `, `S ${MARK} x`, `${MARK}${'s'.repeat(900)}`, `s3cr3t-${MARK}-ÿ€`),
  bad: fc.constantFrom('', '   ', `S${MARK}\nS${MARK}`, `S${MARK}\u0007`, `S${MARK}\u200b`, `${MARK}`.repeat(1) + 'x'.repeat(1030), `S${MARK}\r`),
};
const trxValue = {
  good: fc.constantFrom(`T${MARK}`, `T${MARK}${'t'.repeat(60)}`, `T${MARK}/+=%&`),
  bad: fc.constantFrom('', '  ', `T${MARK} 2`, `T${MARK}${'t'.repeat(130)}`, `T${MARK}\t`, `T${MARK}\u200b`),
};
const tokenValue = {
  good: fc.constantFrom(`K${MARK}-0123456789abcdef`, `K${MARK}`, `K${MARK}!~#$%^*()`),
  bad: fc.constantFrom('', `K${MARK} x`, `K${MARK}ø`, `K${MARK}${'k'.repeat(1030)}`, `K${MARK}\u0001`),
};

export type Source =
  | { kind: 'unset' }
  | { kind: 'empty' }
  | { kind: 'direct'; value: string }
  | { kind: 'file'; content: string }
  | { kind: 'file-var-empty' }
  | { kind: 'file-missing' }
  | { kind: 'file-dir' }
  | { kind: 'both'; value: string; content: string };

const ENDINGS = ['', '\n', '\n', '\r\n', '\r\n', '\n\n', '\r\n\r\n', '\r', ' \n', '\n\r\n'];

function sourceArb(values: { good: fc.Arbitrary<string>; bad: fc.Arbitrary<string> }, badPct: number, optional: boolean): fc.Arbitrary<Source> {
  const value = fc.oneof({ weight: 100 - badPct, arbitrary: values.good }, { weight: badPct, arbitrary: values.bad });
  const goodFile = fc.tuple(values.good, fc.constantFrom('', '\n', '\r\n')).map(([v, e]): Source => ({ kind: 'file', content: v + e }));
  const anyFile = fc.tuple(value, fc.constantFrom(...ENDINGS)).map(([v, e]): Source => ({ kind: 'file', content: v + e }));
  const goodOnes = fc.oneof(
    { weight: 6, arbitrary: values.good.map((v): Source => ({ kind: 'direct', value: v })) },
    { weight: 3, arbitrary: goodFile },
    ...(optional ? [{ weight: 2, arbitrary: fc.constantFrom<Source>({ kind: 'unset' }, { kind: 'empty' }, { kind: 'file-var-empty' }) }] : []),
  );
  const anyOnes = fc.oneof(
    { weight: 4, arbitrary: value.map((v): Source => ({ kind: 'direct', value: v })) },
    { weight: 4, arbitrary: anyFile },
    { weight: 1, arbitrary: fc.constantFrom<Source>({ kind: 'unset' }, { kind: 'empty' }, { kind: 'file-var-empty' }) },
    { weight: 2, arbitrary: fc.constantFrom<Source>({ kind: 'file-missing' }, { kind: 'file-dir' }) },
    { weight: 1, arbitrary: fc.constantFrom('\n', '\r\n', '').map((e): Source => ({ kind: 'file', content: e })) },
    { weight: 2, arbitrary: fc.tuple(value, value).map(([v, c]): Source => ({ kind: 'both', value: v, content: `${c}\n` })) },
  );
  return fc.oneof({ weight: 100 - badPct, arbitrary: goodOnes }, { weight: badPct, arbitrary: anyOnes });
}

// Schedules: whole expressions labelled by hand, and expressions composed from fields whose every
// token is labelled (days of month stay ≤ 28 so that no combination is an impossible date).
const SCHEDULE_LABELS = new Map<string, boolean>([
  ['* * * * *', true],
  ['*/30 * * * * *', true],
  ['0 */2 * * *', true],
  ['* * * *', false],
  ['* * * * * * *', false],
  ['every minute', false],
  ['0 0 30 2 *', false],
  ['0 0 31 4 *', false],
  ['61 * * * *\x1b[2J', false],
  [`${PASTE} * * * *`, false],
]);
const FIELD_TOKENS: [string[], string[]][] = [
  [['*', '0', '59', '*/10'], ['60', '99']], // seconds (6-field form only)
  [['*', '0', '59', '*/5', '0-30', '1,2,3', '10-20/5', '*/15'], ['60', '-1', 'x', '5-', '*/', '61', '1-60']], // minute
  [['*', '0', '23', '*/2', '9-17'], ['24', '25', '-3']], // hour
  [['*', '1', '15', '28', '1-10'], ['0', '32']], // day of month
  [['*', '1', '12', '1-6', '*/3'], ['0', '13']], // month
  [['*', '0', '6', '1-5'], ['8', '9']], // day of week
];
export const scheduleLabel = (text: string): boolean | undefined => SCHEDULE_LABELS.get(text);
const composedSchedule = (badChance: number) =>
  fc.tuple(fc.boolean(), fc.array(fc.tuple(fc.double({ min: 0, max: 1, noNaN: true }), fc.nat()), { minLength: 6, maxLength: 6 })).map(([six, picks]) => {
    const fields = FIELD_TOKENS.slice(six ? 0 : 1).map(([good, bad], i) => {
      const [roll, n] = picks[i]!;
      return roll < badChance ? bad[n % bad.length]! : good[n % good.length]!;
    });
    const text = fields.join(' ');
    const valid = fields.every((f, i) => FIELD_TOKENS.slice(six ? 0 : 1)[i]![0].includes(f));
    SCHEDULE_LABELS.set(text, valid);
    return text;
  });
const schedulePool = pool(
  fc.oneof(unsetOrEmpty, pad(fc.constantFrom('* * * * *', '*/30 * * * * *', '0 */2 * * *')), composedSchedule(0)),
  fc.oneof(fc.constantFrom(...[...SCHEDULE_LABELS.keys()].filter((k) => SCHEDULE_LABELS.get(k) === false)), composedSchedule(0.3)),
);

// Base URLs: composed from parts, judged by the oracle via WHATWG URL (the platform, not our code).
const urlParts = fc.record({
  lead: fc.constantFrom('', '', ' ', '\t'),
  scheme: fc.oneof({ weight: 6, arbitrary: fc.constantFrom('https://', 'http://') }, { weight: 1, arbitrary: fc.constantFrom('HTTPS://', 'HTTP://', 'ftp://', 'file://', '', 'https:/', 'javascript:', 'https:') }),
  user: fc.oneof({ weight: 8, arbitrary: fc.constant('') }, { weight: 1, arbitrary: fc.constantFrom('user@', 'u:p@', ':@', `u:${PASTE}@`) }),
  host: fc.constantFrom(
    'rest.nexmo.com', 'rest.nexmo.com', 'api.nexmo.com', 'REST.Nexmo.com', '127.0.0.1', '127.9.9.9', 'localhost', 'LOCALHOST', '[::1]', 'evil.example',
    'rest.nexmo.com.evil.example', '10.0.0.1', '2130706433', '0x7f.1', '[::ffff:127.0.0.1]', 'localhost.', 'rest.nexmo.com.', 'proxy.internal', 'xn--nxasmq6b.example', 'ünicode.example', '', '127.0.0.1.nip.io',
  ),
  port: fc.oneof({ weight: 5, arbitrary: fc.constant('') }, { weight: 2, arbitrary: fc.constantFrom(':443', ':80', ':8443', ':0', ':65535', ':65536', ':x', ':') }),
  path: fc.oneof({ weight: 4, arbitrary: fc.constant('') }, { weight: 2, arbitrary: fc.constantFrom('/', '//', '/vonage', '/vonage/', '/account/get-balance', '/a b') }),
  tail: fc.oneof({ weight: 8, arbitrary: fc.constant('') }, { weight: 1, arbitrary: fc.constantFrom('?', '?a=1', '#', '#x', `?api_secret=${PASTE}`) }),
  trail: fc.constantFrom('', '', ' ', '\n'),
});
const baseUrlPool = pool(
  fc.oneof(unsetOrEmpty, fc.constantFrom('https://rest.nexmo.com', 'https://api.nexmo.com/', ' HTTPS://REST.Nexmo.com:443 ')),
  fc.oneof(
    urlParts.map((p) => `${p.lead}${p.scheme}${p.user}${p.host}${p.port}${p.path}${p.tail}${p.trail}`),
    fc.constantFrom('not a url', 'rest.nexmo.com', 'https://', '://x', PASTE),
    randomText,
  ),
);

const accountNamePool = pool(
  fc.oneof(unsetOrEmpty, fc.constantFrom('acme', 'Acme Prod (EU) ✓', 'n'.repeat(64), '🦊'.repeat(64), 'a b', 'x')),
  fc.constantFrom(' acme', 'acme ', '\u00a0acme', 'n'.repeat(65), '🦊'.repeat(65), 'a\x07b', 'a\nb', 'a\u200bb', '   ', 'a\u2029b', `${PASTE}${'x'.repeat(64)}`),
);
const stateDirPool = pool(
  fc.oneof(unsetOrEmpty, fc.constantFrom(`${DIR}/state`, `${DIR}/state dir ✓`, `${DIR}/deep/er/state`, `${FILE}/under-a-file`, 'relative-state', ` ${DIR}/leading-space`)),
  fc.constantFrom('   ', '\t', 'data\u0000x', 'data\nx', 'a\u200bb', 'a\u2028b'),
);
const hostPool = pool(
  fc.oneof(unsetOrEmpty, pad(fc.constantFrom('0.0.0.0', '127.0.0.1', '::', '::1', 'localhost', 'host-name.example', '!!!'))),
  fc.constantFrom('a b', 'a\tb', 'a\u200bb', 'a\u00a0b', `${PASTE} x`, 'a\u3000b'),
);

export interface ConfigSpec {
  /** Percent chance, per variable, of a value from the bad pool. */
  badPct: number;
  sources: Record<FileVariable, Source>;
  plain: Record<Exclude<Variable, FileVariable>, Raw>;
  unknown: Record<string, string>;
}

function configArb(badPct: number): fc.Arbitrary<ConfigSpec> {
  const pick = (p: Pool) => fc.oneof({ weight: 100 - badPct, arbitrary: p.good }, { weight: badPct, arbitrary: p.bad });
  return fc.record({
    badPct: fc.constant(badPct),
    sources: fc.record({
      VONAGE_API_KEY: sourceArb(keyValue, badPct, false),
      VONAGE_API_SECRET: sourceArb(secretValue, badPct, false),
      VONAGE_TOPUP_TRX: sourceArb(trxValue, badPct, true),
      METRICS_AUTH_TOKEN: sourceArb(tokenValue, badPct, true),
    }),
    plain: fc.record({
      VONAGE_ACCOUNT_NAME: pick(accountNamePool),
      VONAGE_BASE_URL: pick(baseUrlPool),
      VONAGE_ALLOW_CUSTOM_BASE_URL: pick(booleanPool),
      VONAGE_AUTH: pick(choicePool(['basic', 'query'], ['oauth', 'jwt', 'header', 'basic query'])),
      TOPUP_THRESHOLD: pick(thresholdPool),
      TOPUP_COOLDOWN: pick(durationPool(['15m', '1s', '10m', '1h30m', '7d', '168h', '90s', '1h', '9m59s', '0d1s', '6d23h59m59s999ms'])),
      TOPUP_MAX_PER_DAY: pick(integerPool(1, 1000)),
      TOPUP_ENABLED: pick(booleanPool),
      DRY_RUN: pick(booleanPool),
      POLL_SCHEDULE: pick(schedulePool),
      HTTP_TIMEOUT: pick(durationPool(['10s', '100ms', '120s', '2m', '1m59s999ms', '500ms', '1s'])),
      STATE_DIR: pick(stateDirPool),
      METRICS_HOST: pick(hostPool),
      METRICS_PORT: pick(integerPool(0, 65535)),
      LOG_LEVEL: pick(choicePool(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], ['verbose', 'warning', 'err', 'all', 'none', '5'])),
      LOG_FORMAT: pick(choicePool(['json', 'pretty'], ['text', 'logfmt', 'JSONL'])),
    }),
    unknown: fc.dictionary(fc.constantFrom('TOPUP_THRESHOLD_FILE', 'VONAGE_ACCOUNT_NAME_FILE', 'LOG_LEVEL_FILE', 'VONAGE_API_KEY_PATH', 'NODE_ENV', 'VONAGE_SECRET'), fc.constantFrom('x', '/nope', ''), { maxKeys: 2 }),
  });
}

/** Valid-leaning and mixed configurations, so both outcomes are well represented. */
export const configSpecs: fc.Arbitrary<ConfigSpec> = fc.oneof(
  { weight: 5, arbitrary: configArb(1) },
  { weight: 2, arbitrary: configArb(8) },
  { weight: 3, arbitrary: configArb(30) },
);

// ---- materialising a spec --------------------------------------------------------------------

export type FileEntry = { kind: 'file'; content: string } | { kind: 'missing' } | { kind: 'dir' };

export interface Materialised {
  env: Record<string, string | undefined>;
  /** What the oracle knows about each path it may meet (written to disk by the caller). */
  files: Map<string, FileEntry>;
  /** Every canary marker used in this configuration. */
  markers: string[];
}

/**
 * Fills in placeholders: MARK → this configuration's canary marker, PASTE → the API secret as the
 * program will see it (only when it is known to be one; otherwise a harmless word), DIR/FILE → temp
 * paths. `paths(name)` gives the temp file path for a variable's _FILE.
 */
export function materialise(spec: ConfigSpec, marker: string, paths: { file(name: string): string; dir: string; aFile: string; stateBase: string }): Materialised {
  const files = new Map<string, FileEntry>();
  const env: Record<string, string | undefined> = {};
  const fill = (s: string) => s.split(MARK).join(marker);
  for (const name of FILE_VARIABLES) {
    const src = spec.sources[name];
    const path = paths.file(name);
    switch (src.kind) {
      case 'unset':
        break;
      case 'empty':
        env[name] = '';
        break;
      case 'direct':
        env[name] = fill(src.value);
        break;
      case 'file':
        env[`${name}_FILE`] = path;
        files.set(path, { kind: 'file', content: fill(src.content) });
        break;
      case 'file-var-empty':
        env[`${name}_FILE`] = '';
        break;
      case 'file-missing':
        env[`${name}_FILE`] = `${path}.missing`;
        files.set(`${path}.missing`, { kind: 'missing' });
        break;
      case 'file-dir':
        env[`${name}_FILE`] = paths.dir;
        files.set(paths.dir, { kind: 'dir' });
        break;
      case 'both':
        env[name] = fill(src.value);
        env[`${name}_FILE`] = path;
        files.set(path, { kind: 'file', content: fill(src.content) });
        break;
    }
  }
  const known = knownSecret(env, files);
  const paste = known !== undefined && known.includes(marker) && !/[\s\p{C}]/u.test(known) ? known : 'pasted';
  for (const [name, value] of Object.entries(spec.plain)) {
    if (value === undefined) continue;
    env[name] = value.split(PASTE).join(paste).split(DIR).join(paths.stateBase).split(FILE).join(paths.aFile);
    // A pasted schedule is as wrong as its template.
    if (name === 'POLL_SCHEDULE' && value.includes(PASTE)) SCHEDULE_LABELS.set(env[name].trim(), false);
  }
  for (const [name, value] of Object.entries(spec.unknown)) env[name] = value;
  return { env, files, markers: [marker] };
}

/** The API secret's value as loadConfig will know it (direct wins; a file only when readable). */
function knownSecret(env: Record<string, string | undefined>, files: Map<string, FileEntry>): string | undefined {
  const direct = env.VONAGE_API_SECRET;
  if (direct !== undefined && direct !== '') return direct;
  const path = env.VONAGE_API_SECRET_FILE;
  if (path === undefined || path === '') return undefined;
  const f = files.get(path);
  return f?.kind === 'file' ? stripOneEnding(f.content) : undefined;
}

function stripOneEnding(content: string): string {
  return content.endsWith('\r\n') ? content.slice(0, -2) : content.endsWith('\n') ? content.slice(0, -1) : content;
}

// ---- the oracle ------------------------------------------------------------------------------

export interface Expected {
  apiKey: string;
  apiSecret: string;
  trx: string | undefined;
  name: string;
  baseUrl: string;
  auth: string;
  threshold: number;
  cooldownMs: number;
  maxPerDay: number;
  topupEnabled: boolean;
  dryRun: boolean;
  pollSchedule: string;
  httpTimeoutMs: number;
  stateDir: string;
  host: string;
  port: number;
  authToken: string | undefined;
  level: string;
  format: string;
}

export type Verdict = { valid: true; expected: Expected } | { valid: false; bad: Set<string> };

const DURATION = /^(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m(?!s))?(?:([0-9]+)s)?(?:([0-9]+)ms)?$/;
const UNIT_MS = [86_400_000n, 3_600_000n, 60_000n, 1_000n, 1n];

export function durationMs(text: string): number | undefined {
  const m = text === '' ? null : DURATION.exec(text);
  if (!m) return undefined;
  let total = 0n;
  for (let i = 0; i < 5; i++) if (m[i + 1] !== undefined) total += BigInt(m[i + 1]!) * UNIT_MS[i]!;
  return total <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(total) : undefined;
}

export function oracle(env: Record<string, string | undefined>, files: Map<string, FileEntry>): Verdict {
  const bad = new Set<string>();
  const set = (name: string): string | undefined => {
    const v = env[name];
    return v === undefined || v === '' ? undefined : v;
  };
  const secrets: string[] = [];
  for (const name of ['VONAGE_API_SECRET', 'VONAGE_TOPUP_TRX', 'METRICS_AUTH_TOKEN']) {
    const direct = set(name);
    const path = set(`${name}_FILE`);
    const f = path === undefined ? undefined : files.get(path);
    if (direct !== undefined) secrets.push(direct);
    else if (f?.kind === 'file') secrets.push(stripOneEnding(f.content));
  }
  const lowerSecrets = secrets.filter((x) => x.length >= 4).map((x) => x.toLowerCase());
  const publishes = (...forms: string[]): boolean =>
    forms.some((form) => {
      const v = form.toLowerCase();
      return lowerSecrets.some((sec) => {
        if (v.includes(sec)) return true;
        for (let i = 0; i + 8 <= sec.length; i++) if (v.includes(sec.slice(i, i + 8))) return true;
        return false;
      });
    });
  const trimmed = (name: string): string | undefined => {
    const v = set(name)?.trim();
    return v === '' ? undefined : v;
  };
  const source = (name: FileVariable): { value: string; from: string } | 'unset' | 'failed' => {
    const direct = set(name);
    const path = set(`${name}_FILE`);
    if (direct !== undefined && path !== undefined) {
      bad.add(name);
      return 'failed';
    }
    if (direct !== undefined) return { value: direct, from: name };
    if (path === undefined) return 'unset';
    const f = files.get(path);
    if (f?.kind !== 'file') {
      bad.add(`${name}_FILE`);
      return 'failed';
    }
    const value = stripOneEnding(f.content);
    if (value === '') {
      bad.add(`${name}_FILE`);
      return 'failed';
    }
    return { value, from: `${name}_FILE` };
  };
  const bool = (name: string, def: boolean): boolean | undefined => {
    const t = trimmed(name)?.toLowerCase();
    if (t === undefined) return def;
    if (['true', '1', 'yes'].includes(t)) return true;
    if (['false', '0', 'no'].includes(t)) return false;
    bad.add(name);
    return undefined;
  };
  const choice = (name: string, options: string[], def: string): string | undefined => {
    const t = (trimmed(name) ?? def).toLowerCase();
    if (options.includes(t)) return t;
    bad.add(name);
    return undefined;
  };
  const whole = (name: string, min: number, max: number, def: string): number | undefined => {
    const t = trimmed(name) ?? def;
    if (/^[0-9]+$/.test(t) && BigInt(t) >= BigInt(min) && BigInt(t) <= BigInt(max)) return Number(t);
    bad.add(name);
    return undefined;
  };
  const duration = (name: string, min: number, max: number, def: string): number | undefined => {
    const ms = durationMs(trimmed(name) ?? def);
    if (ms !== undefined && ms >= min && ms <= max) return ms;
    bad.add(name);
    return undefined;
  };

  // Credentials
  let apiKey: string | undefined;
  const key = source('VONAGE_API_KEY');
  if (key === 'unset') bad.add('VONAGE_API_KEY');
  else if (key !== 'failed') {
    if (BLANK_OR_CONTROL.test(key.value) || key.value.includes(':') || codePoints(key.value) > 64 || publishes(key.value)) bad.add(key.from);
    else apiKey = key.value;
  }
  let apiSecret: string | undefined;
  const secret = source('VONAGE_API_SECRET');
  if (secret === 'unset') bad.add('VONAGE_API_SECRET');
  else if (secret !== 'failed') {
    if (secret.value.trim() === '' || CONTROL.test(secret.value) || secret.value.length > 1024) bad.add(secret.from);
    else apiSecret = secret.value;
  }
  const topupEnabled = bool('TOPUP_ENABLED', true);
  let trx: string | undefined;
  const trxSrc = source('VONAGE_TOPUP_TRX');
  if (trxSrc === 'unset') {
    if (topupEnabled === true) bad.add('VONAGE_TOPUP_TRX');
  } else if (trxSrc !== 'failed') {
    if (trxSrc.value.trim() === '' || BLANK_OR_CONTROL.test(trxSrc.value) || trxSrc.value.length > 128) bad.add(trxSrc.from);
    else trx = trxSrc.value;
  }
  let authToken: string | undefined;
  const token = source('METRICS_AUTH_TOKEN');
  if (token !== 'unset' && token !== 'failed') {
    if (!/^[\x21-\x7e]+$/.test(token.value) || token.value.length > 1024) bad.add(token.from);
    else authToken = token.value;
  }

  // Account name
  let name: string | undefined = apiKey;
  const nameText = set('VONAGE_ACCOUNT_NAME');
  if (nameText !== undefined) {
    if (CONTROL.test(nameText) || nameText.trim() !== nameText || codePoints(nameText) > 64 || publishes(nameText)) bad.add('VONAGE_ACCOUNT_NAME');
    else name = nameText;
  }

  // Base URL
  const allow = bool('VONAGE_ALLOW_CUSTOM_BASE_URL', false);
  let baseUrl: string | undefined;
  {
    const text = trimmed('VONAGE_BASE_URL') ?? 'https://rest.nexmo.com';
    let url: URL | undefined;
    try {
      url = new URL(text);
    } catch {
      bad.add('VONAGE_BASE_URL');
    }
    if (url) {
      const problems: string[] = [];
      const loopback = url.hostname === 'localhost' || url.hostname === '[::1]' || /^127\.[0-9]+\.[0-9]+\.[0-9]+$/.test(url.hostname);
      if (url.protocol === 'http:') {
        if (!loopback) problems.push('http off loopback');
      } else if (url.protocol !== 'https:') problems.push('scheme');
      if (url.username !== '' || url.password !== '') problems.push('userinfo');
      if (url.search !== '' || text.includes('?')) problems.push('query');
      if (url.hash !== '' || text.includes('#')) problems.push('fragment');
      const path = url.pathname.replace(/\/+$/, '');
      const vonage = url.hostname === 'rest.nexmo.com' || url.hostname === 'api.nexmo.com';
      if (allow === false) {
        if (!vonage) problems.push('host');
        if (url.port !== '') problems.push('port');
        if (vonage && path !== '') problems.push('path');
      }
      const normalised = `${url.protocol}//${url.host}${path}`;
      let decoded = normalised;
      try {
        decoded = decodeURIComponent(normalised);
      } catch {
        // Not percent-encoding after all: judged as it is.
      }
      if (problems.length > 0 || publishes(text, normalised, decoded)) bad.add('VONAGE_BASE_URL');
      else baseUrl = normalised;
    }
  }
  const auth = choice('VONAGE_AUTH', ['basic', 'query'], 'basic');

  // Money and limits
  let threshold: number | undefined;
  {
    const t = trimmed('TOPUP_THRESHOLD');
    if (t === undefined || !/^[0-9]+(\.[0-9]+)?$/.test(t)) bad.add('TOPUP_THRESHOLD');
    else {
      const n = Number(t);
      if (n > 0 && n <= 1_000_000) threshold = n;
      else bad.add('TOPUP_THRESHOLD');
    }
  }
  const cooldownMs = duration('TOPUP_COOLDOWN', 1000, 7 * 86_400_000, '15m');
  const maxPerDay = whole('TOPUP_MAX_PER_DAY', 1, 1000, '3');
  const dryRun = bool('DRY_RUN', false);

  // Schedule, HTTP, state, endpoints, logs
  let pollSchedule: string | undefined;
  {
    const t = trimmed('POLL_SCHEDULE') ?? '* * * * *';
    const label = scheduleLabel(t);
    if (label === undefined) throw new Error(`fuzz-config: no label for schedule ${JSON.stringify(t)}`);
    if (label && !publishes(t)) pollSchedule = t;
    else bad.add('POLL_SCHEDULE');
  }
  const httpTimeoutMs = duration('HTTP_TIMEOUT', 100, 120_000, '10s');
  let stateDir: string | undefined;
  {
    const t = set('STATE_DIR') ?? './data';
    if (t.trim() === '' || CONTROL.test(t) || publishes(t)) bad.add('STATE_DIR');
    else stateDir = t;
  }
  let host: string | undefined;
  {
    const t = trimmed('METRICS_HOST') ?? '0.0.0.0';
    if (BLANK_OR_CONTROL.test(t) || publishes(t)) bad.add('METRICS_HOST');
    else host = t;
  }
  const port = whole('METRICS_PORT', 0, 65535, '8479');
  const level = choice('LOG_LEVEL', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], 'info');
  const format = choice('LOG_FORMAT', ['json', 'pretty'], 'json');

  if (bad.size > 0) return { valid: false, bad };
  return {
    valid: true,
    expected: {
      apiKey: apiKey!,
      apiSecret: apiSecret!,
      trx,
      name: name!,
      baseUrl: baseUrl!,
      auth: auth!,
      threshold: threshold!,
      cooldownMs: cooldownMs!,
      maxPerDay: maxPerDay!,
      topupEnabled: topupEnabled!,
      dryRun: dryRun!,
      pollSchedule: pollSchedule!,
      httpTimeoutMs: httpTimeoutMs!,
      stateDir: stateDir!,
      host: host!,
      port: port!,
      authToken,
      level: level!,
      format: format!,
    },
  };
}

/**
 * Whether --check-config must refuse a configuration that loadConfig accepts: its STATE_DIR
 * probe (src/config/state-dir-check.ts) fails where a regular file stands in the way, as for the
 * generated `${FILE}/under-a-file`. Such a configuration exits 78 naming only STATE_DIR.
 */
export function stateDirProbeFails(expected: Expected, aFile: string): boolean {
  return expected.stateDir === aFile || expected.stateDir.startsWith(`${aFile}/`);
}
