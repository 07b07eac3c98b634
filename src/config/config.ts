/**
 * The environment contract. `loadConfig` is pure (the env object and file reader are passed in)
 * so every rule can be tested with plain objects, and it reports every bad variable at once:
 * fixing a container's env one restart at a time is the slow path we want to avoid.
 *
 * Secret values never reach a message. Non-secret values pass through `quote()`, which is the only
 * way a user-supplied value gets into a problem, so it is also where a secret pasted into the
 * wrong variable is caught. A setting that is published (--check-config, /status, labels, file
 * names, logs) is refused outright when it carries a secret: `refusePublishedSecret`.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import cron from 'node-cron';
import { scheduleIntervalMs } from '../cycle/scheduler.js';
import { z } from 'zod';
import { formatDuration, parseDuration } from './duration.js';
// A cycle: fleet-file.ts uses this module's helpers, and loadConfig calls it. Neither module
// uses the other's exports while it is being evaluated, only when a function runs.
import { parseFleetFile } from './fleet-file.js';
import type { SubaccountSettings, SubaccountsConfig } from '../accounts/types.js';

export interface AccountConfig {
  name: string;
  apiKey: string;
  apiSecret: string;
  trx: string | undefined;
  baseUrl: string;
  /** Kept although its effect is already in baseUrl, so --check-config can show every setting. */
  allowCustomBaseUrl: boolean;
  auth: 'basic' | 'query';
  threshold: number;
  cooldownMs: number;
  maxPerDay: number;
  topupEnabled: boolean;
  dryRun: boolean;
  /** TOPUP_LEAD_TIME: top up when the forecast says the threshold is this close (0: reactive only). */
  leadTimeMs: number;
  /** POLL_ADAPTIVE: polled only when due by its forecast (POLL_SCHEDULE is the fastest tick). */
  pollAdaptive: boolean;
  /** POLL_MAX_INTERVAL: the longest an adaptive account goes unpolled. */
  pollMaxIntervalMs: number;
  /** Root of the Subaccounts API (https://api.nexmo.com unless the fleet file says otherwise). */
  subaccountsBaseUrl: string;
  /** Only from ACCOUNTS_FILE: the primary's subaccounts to watch and refill. */
  subaccounts?: SubaccountsConfig;
}

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface Config {
  accounts: AccountConfig[];
  /** The fleet file the accounts came from; undefined when the environment describes one account. */
  accountsFile: string | undefined;
  pollSchedule: string;
  /** How many accounts are polled at once. */
  pollConcurrency: number;
  httpTimeoutMs: number;
  stateDir: string;
  /** Where refill attempts are kept: STATE_DIR (one replica), or PostgreSQL shared by replicas. */
  ledger: LedgerConfig;
  /** INSTANCE_ID: this replica's name in leases, logs, metrics and database sessions. */
  instanceId: string;
  metrics: { host: string; port: number; authToken: string | undefined };
  log: { level: LogLevel; format: 'json' | 'pretty' };
  warnings: string[];
}

export type LedgerConfig =
  | { kind: 'file'; schema: string; leaseMs: number }
  | { kind: 'postgres'; url: string; schema: string; leaseMs: number };

export interface ConfigProblem {
  variable: string;
  message: string;
}

export class ConfigError extends Error {
  readonly problems: ConfigProblem[];
  /** What a valid configuration would also have warned about (a misspelt name, say). */
  readonly warnings: readonly string[];

  constructor(problems: ConfigProblem[], warnings: readonly string[] = []) {
    super(problems.map((p) => `${p.variable}: ${p.message}`).join('\n'));
    this.name = 'ConfigError';
    this.problems = problems;
    this.warnings = warnings;
  }
}

export type ReadFile = (path: string) => string;

export const SECRET_VARIABLES: readonly string[] = Object.freeze([
  'VONAGE_API_SECRET',
  'VONAGE_TOPUP_TRX',
  'DATABASE_URL',
  'METRICS_AUTH_TOKEN',
]);

export interface ConfigVariable {
  name: string;
  /** A literal default, or a parenthesised note such as "(required)" when there is none. */
  default: string;
  description: string;
  secret: boolean;
  fileVariant: boolean;
}

function variable(
  name: string,
  defaultText: string,
  description: string,
  flags: { secret?: boolean; fileVariant?: boolean } = {},
): ConfigVariable {
  return Object.freeze({
    name,
    default: defaultText,
    description,
    secret: flags.secret ?? false,
    fileVariant: flags.fileVariant ?? false,
  });
}

// The order here is the order of --help, the README table and of problems in a ConfigError.
export const CONFIG_VARIABLES: readonly ConfigVariable[] = Object.freeze([
  variable(
    'ACCOUNTS_FILE',
    '(unset)',
    'YAML file describing a fleet of accounts; when set, the VONAGE_* account, TOPUP_* and DRY_RUN variables must not be',
  ),
  variable('VONAGE_API_KEY', '(required)', 'Vonage API key', { fileVariant: true }),
  variable('VONAGE_API_SECRET', '(required)', 'Vonage API secret', { secret: true, fileVariant: true }),
  variable(
    'VONAGE_TOPUP_TRX',
    '(required unless TOPUP_ENABLED=false)',
    'reference (trx) of the payment with which auto-reload was enabled',
    { secret: true, fileVariant: true },
  ),
  variable('VONAGE_ACCOUNT_NAME', '(the API key)', 'value of the `account` metric label'),
  variable('VONAGE_BASE_URL', 'https://rest.nexmo.com', 'Vonage REST API root'),
  variable(
    'VONAGE_ALLOW_CUSTOM_BASE_URL',
    'false',
    'allow a host other than rest.nexmo.com / api.nexmo.com (the credentials are sent to it)',
  ),
  variable('VONAGE_AUTH', 'basic', '`basic` (Authorization header) or `query` (api_key/api_secret in the URL)'),
  variable('TOPUP_THRESHOLD', '(required)', 'EUR; top up when the balance is below it'),
  variable('TOPUP_COOLDOWN', '15m', 'least time between two top-up attempts (e.g. 90s, 15m, 1h)'),
  variable('TOPUP_MAX_PER_DAY', '3', 'most top-up attempts in any rolling 24 h'),
  variable('TOPUP_LEAD_TIME', '0s', 'top up when the forecast says the threshold will be crossed within this time (0s-24h; 0s = only below the threshold)'),
  variable('TOPUP_ENABLED', 'true', 'false = watch and report only'),
  variable('DRY_RUN', 'false', 'decide and report, never send a top-up'),
  variable('POLL_SCHEDULE', '* * * * *', 'node-cron expression (5 or 6 fields) for balance polls'),
  variable('POLL_ADAPTIVE', 'false', 'poll only as often as the forecast needs: POLL_SCHEDULE is then the fastest tick, POLL_MAX_INTERVAL the slowest'),
  variable('POLL_MAX_INTERVAL', '10m', 'with POLL_ADAPTIVE, the longest time between two polls of the account (1s-24h)'),
  variable('POLL_CONCURRENCY', '8', 'how many accounts are polled at once (1-64)'),
  variable('HTTP_TIMEOUT', '10s', 'bound on each request to Vonage'),
  variable('STATE_DIR', './data', 'where the top-up ledger is kept (LEDGER=file)'),
  variable('LEDGER', 'file', '`file` (STATE_DIR, one replica) or `postgres` (shared by several replicas: high availability)'),
  variable('DATABASE_URL', '(required with LEDGER=postgres)', 'postgres:// URL of the shared ledger; its password is never shown', { secret: true, fileVariant: true }),
  variable('DATABASE_SCHEMA', 'vonage_reload_watchdog', 'schema of the shared ledger, created and migrated at start-up'),
  variable('INSTANCE_ID', '(the host name)', "this replica's name in leases, logs, metrics and database sessions"),
  variable('LEADER_LEASE', '15s', 'how long a silent replica keeps an account before another takes it (1s-5m)'),
  variable('METRICS_HOST', '0.0.0.0', 'address the HTTP endpoints listen on'),
  variable('METRICS_PORT', '8479', 'port of the HTTP endpoints (0 = any free port)'),
  variable('METRICS_AUTH_TOKEN', '(unset)', 'bearer token required on /metrics and /status', {
    secret: true,
    fileVariant: true,
  }),
  variable('LOG_LEVEL', 'info', 'fatal, error, warn, info, debug, trace or silent'),
  variable('LOG_FORMAT', 'json', '`json` or `pretty`'),
]);

const BY_NAME: ReadonlyMap<string, ConfigVariable> = new Map(CONFIG_VARIABLES.map((v) => [v.name, v]));

/** Every name loadConfig reads: what a misspelt name is compared with. */
const SETTING_NAMES: readonly string[] = CONFIG_VARIABLES.flatMap((v) => (v.fileVariant ? [v.name, `${v.name}_FILE`] : [v.name]));
/** Read elsewhere (src/cycle/failpoints.ts, by the safety suite): known, but never suggested. */
const INTERNAL_NAMES: readonly string[] = ['WATCHDOG_FAILPOINTS'];
const KNOWN_NAMES: ReadonlySet<string> = new Set([...SETTING_NAMES, ...INTERNAL_NAMES]);
// Names under these prefixes are ours, so an unknown one is almost surely a typo. Other names are
// judged only by their closeness to one of ours: the environment is shared with everything else
// in the container (HTTP_PROXY, NODE_OPTIONS, LOG), which must never draw a warning.
const OUR_PREFIXES: readonly string[] = ['VONAGE_', 'TOPUP_', 'POLL_', 'METRICS_', 'LOG_', 'LEADER_'];
const NEAR_MISS_MAX_DISTANCE = 2;
const NEAR_MISS_MIN_CHARS = 6;

function literalDefault(name: string): string {
  const text = BY_NAME.get(name)?.default;
  if (text === undefined || text.startsWith('(')) throw new Error(`config: ${name} has no literal default`);
  return text;
}

const VONAGE_HOSTS: readonly string[] = ['rest.nexmo.com', 'api.nexmo.com'];
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
const LOG_FORMATS = ['json', 'pretty'] as const;
const AUTH_MODES = ['basic', 'query'] as const;

/** Per-account settings: refused in the environment when ACCOUNTS_FILE is set. */
export const ACCOUNT_VARIABLES: readonly string[] = Object.freeze([
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
  'TOPUP_LEAD_TIME',
  'TOPUP_ENABLED',
  'DRY_RUN',
]);
/** Where each per-account variable goes in the fleet file. */
const FLEET_TWIN: Readonly<Record<string, string>> = {
  VONAGE_API_KEY: 'apiKey',
  VONAGE_API_KEY_FILE: 'apiKeyFile',
  VONAGE_API_SECRET: 'apiSecret: ${env:NAME}',
  VONAGE_API_SECRET_FILE: 'apiSecretFile',
  VONAGE_TOPUP_TRX: 'trx: ${env:NAME}',
  VONAGE_TOPUP_TRX_FILE: 'trxFile',
  VONAGE_ACCOUNT_NAME: 'name',
  VONAGE_BASE_URL: 'baseUrl',
  VONAGE_ALLOW_CUSTOM_BASE_URL: 'allowCustomBaseUrl',
  VONAGE_AUTH: 'auth',
  TOPUP_THRESHOLD: 'threshold',
  TOPUP_COOLDOWN: 'cooldown',
  TOPUP_MAX_PER_DAY: 'maxPerDay',
  TOPUP_LEAD_TIME: 'leadTime',
  TOPUP_ENABLED: 'topupEnabled',
  DRY_RUN: 'dryRun',
};

export const DEFAULT_BASE_URL = 'https://rest.nexmo.com';
export const DEFAULT_SUBACCOUNTS_BASE_URL = 'https://api.nexmo.com';

const COOLDOWN_MIN_MS = 1_000;
/** TOPUP_LEAD_TIME: up to a day ahead. */
export const LEAD_TIME_MAX_MS = 86_400_000;
/** POLL_MAX_INTERVAL: seconds must work (operators test on compressed time), up to a day. */
const POLL_MAX_INTERVAL_MIN_MS = 1_000;
const POLL_MAX_INTERVAL_MAX_MS = 86_400_000;
const POLL_MAX_INTERVAL_DEFAULT_MS = 600_000;
const COOLDOWN_MAX_MS = 7 * 86_400_000;
// Vonage's own auto-reload checks the balance every 5-10 minutes; below that, both can fire.
const COOLDOWN_ADVISED_MS = 10 * 60_000;
const TIMEOUT_MIN_MS = 100;
const TIMEOUT_MAX_MS = 120_000;
const THRESHOLD_MAX = 1_000_000;
const MAX_PER_DAY_MAX = 1000;
const SECRET_MAX_CHARS = 1024;
const TOKEN_ADVISED_CHARS = 16;
// Shorter strings turn up by chance in ordinary values ("true", "15m"); withholding those would
// only make messages less useful without protecting anything.
const SECRET_MATCH_MIN_CHARS = 4;
const POLL_CONCURRENCY_MAX = 64;

/** The bounds every setting is held to, shared with the fleet file so both read the same. */
export const LIMITS = Object.freeze({
  COOLDOWN_MIN_MS,
  COOLDOWN_MAX_MS,
  COOLDOWN_ADVISED_MS,
  THRESHOLD_MAX,
  MAX_PER_DAY_MAX,
  LEAD_TIME_MAX_MS,
  POLL_MAX_INTERVAL_MIN_MS,
  POLL_MAX_INTERVAL_MAX_MS,
  POLL_MAX_INTERVAL_DEFAULT_MS,
});

const WITHHELD = '<withheld: it matches a secret>';
/**
 * A published value may share no run of this many characters with a secret: a whole secret, a
 * long piece of one, or a value that is itself a long piece of one (a truncated paste).
 */
const PUBLISHED_SECRET_PART_CHARS = 8;

const BOOLEAN = z.stringbool({ truthy: ['true', '1', 'yes'], falsy: ['false', '0', 'no'] });

const CONTROL = /[\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}]/u;
const CONTROL_ALL = /[\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}]/gu;
const WHITESPACE_OR_CONTROL = /[\s\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}]/u;

export type Env = Record<string, string | undefined>;

export function defaultReadFile(path: string): string {
  return readFileSync(path, 'utf8');
}

/** Only the code of a read error: an error message from a custom reader could quote the file. */
export function readErrorCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[A-Z0-9_]{1,32}$/.test(code) ? code : 'unreadable';
}

/**
 * Exactly one line ending off: editors and `echo` add one, and it is the top cause of "wrong
 * password" reports for *_FILE secrets. Anything more is left for the checks of the value.
 */
export function stripLineEnding(content: string): string {
  return content.endsWith('\r\n') ? content.slice(0, -2) : content.endsWith('\n') ? content.slice(0, -1) : content;
}

/** true/false/1/0/yes/no in any case, as every boolean setting reads. */
export function parseBoolean(text: string): boolean | undefined {
  const parsed = BOOLEAN.safeParse(text.trim());
  return parsed.success ? parsed.data : undefined;
}

/** Printable and bounded: values end up on terminals and in log aggregators. */
export function sanitize(text: string, maxChars: number): string {
  const clean = Array.from(text.replace(CONTROL_ALL, ''));
  return clean.length > maxChars ? `${clean.slice(0, maxChars).join('')}…` : clean.join('');
}

function codePoints(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

/**
 * Collects problems and warnings, and knows every secret seen so far so that no message or
 * published value carries one. Shared with the fleet file (src/config/fleet-file.ts).
 */
export class Reporter {
  readonly problems: ConfigProblem[] = [];
  readonly warnings: string[] = [];
  private readonly secrets: string[] = [];
  /** As given, for handing on to another Reporter (the fleet file's). */
  readonly secretValues: string[] = [];

  problem(variable: string, message: string): undefined {
    this.problems.push({ variable, message });
    return undefined;
  }

  rememberSecret(value: string): void {
    if (value.length >= SECRET_MATCH_MIN_CHARS) {
      this.secrets.push(value.toLowerCase());
      this.secretValues.push(value);
    }
  }

  /** A non-secret value for a message: sanitised, shortened, and withheld if it holds a secret. */
  quote(value: string): string {
    if (this.holdsSecret(value)) return WITHHELD;
    return JSON.stringify(sanitize(value, 40));
  }

  /** Whether a non-secret value contains (or is part of) a secret: pasted into the wrong variable. */
  holdsSecret(value: string): boolean {
    // Case-blind because URL parsing lowercases host names taken from the value.
    const lower = value.toLowerCase();
    return this.secrets.some((s) => lower.includes(s) || (lower.length >= SECRET_MATCH_MIN_CHARS && s.includes(lower)));
  }

  /**
   * Whether publishing `value` would publish a secret or a long piece of one: it contains a
   * whole secret, or shares a run of PUBLISHED_SECRET_PART_CHARS characters with one. A short
   * name that merely occurs inside a secret (`prod`) is not enough; refusing it would protect
   * nothing and confuse.
   */
  publishesSecret(value: string): boolean {
    const lower = value.toLowerCase();
    return this.secrets.some((s) => lower.includes(s) || sharesRun(lower, s, PUBLISHED_SECRET_PART_CHARS));
  }

  /**
   * Values that are published (metric labels, /status, file names, --check-config, log lines)
   * must not carry a secret. Refusing is stricter than withholding from a message.
   */
  refusePublishedSecret(name: string, value: string | readonly string[], where: string): boolean {
    const forms = typeof value === 'string' ? [value] : value;
    if (!forms.some((v) => this.publishesSecret(v))) return false;
    this.problem(name, `contains a secret (pasted into the wrong variable?); it would be published ${where}`);
    return true;
  }

  /** A name (a variable, a YAML key) for a message: printable, bounded, withheld if it holds a secret. */
  quoteName(name: string): string {
    return this.holdsSecret(name) ? '<a variable whose name matches a secret>' : sanitize(name, 64);
  }
}

/** Collects problems and warnings for one loadConfig call. */
class Checker extends Reporter {
  private readonly misspelt: readonly Misspelling[];
  /** Misspelt names a problem already mentions, so they are not warned about twice. */
  private readonly cited = new Set<string>();

  constructor(
    private readonly env: Env,
    private readonly readFile: ReadFile,
  ) {
    super();
    for (const name of SECRET_VARIABLES) {
      const value = this.raw(name);
      if (value !== undefined) for (const v of secretPartsOf(name, value)) this.rememberSecret(v);
    }
    this.misspelt = misspellings(env);
  }

  /** The variable's value; `""` counts as unset because docker compose passes empty variables. */
  raw(name: string): string | undefined {
    const value = this.env[name];
    return value === undefined || value === '' ? undefined : value;
  }

  /** Trimmed, for values that are parsed rather than used verbatim; blank counts as unset. */
  trimmed(name: string): string | undefined {
    const value = this.raw(name)?.trim();
    return value === '' ? undefined : value;
  }

  required(name: string): string {
    const entry = BY_NAME.get(name);
    const fileHint = entry?.fileVariant ? `, or set ${name}_FILE to a file holding it` : '';
    // A misspelling of the missing name is the likeliest reason it is missing.
    const hints = this.misspelt
      .filter((m) => m.close && (m.closest === name || m.closest === `${name}_FILE`))
      .map((m) => {
        this.cited.add(m.name);
        return `; ${this.quoteName(m.name)} is set: did you mean ${m.closest}?`;
      });
    return `required (${entry?.description ?? name}${fileHint})${hints.join('')}`;
  }

  /** Warnings for the misspelt names no problem has already pointed out. */
  warnMisspelt(): void {
    for (const m of this.misspelt) {
      if (this.cited.has(m.name)) continue;
      const name = this.quoteName(m.name);
      const hint = m.close ? `did you mean ${m.closest}?` : `the closest known name is ${m.closest}`;
      this.warnings.push(`${name} is not a variable this program reads, so it is ignored: ${hint}`);
    }
  }

  /**
   * NAME or the contents of NAME_FILE. `failed` means a problem was already reported, so the
   * caller must not add "required" on top of it.
   */
  sourced(name: string): { value: string; from: string } | 'unset' | 'failed' {
    const fileName = `${name}_FILE`;
    const direct = this.raw(name);
    const path = this.raw(fileName);
    const secret = SECRET_VARIABLES.includes(name);
    if (direct !== undefined && path !== undefined) {
      this.problem(name, `also set as ${fileName}; use one or the other`);
      return 'failed';
    }
    if (direct !== undefined) return { value: direct, from: name };
    if (path === undefined) return 'unset';

    let content: string;
    try {
      content = this.readFile(path);
    } catch (err) {
      this.problem(fileName, `cannot read ${this.quote(path)} (${readErrorCode(err)})`);
      return 'failed';
    }
    if (typeof content !== 'string') {
      this.problem(fileName, `cannot read ${this.quote(path)} (reader returned no text)`);
      return 'failed';
    }
    const value = stripLineEnding(content);
    if (secret) for (const v of secretPartsOf(name, value)) this.rememberSecret(v);
    if (value === '') {
      this.problem(fileName, `${this.quote(path)} is empty`);
      return 'failed';
    }
    return { value, from: fileName };
  }

  boolean(name: string): boolean | undefined {
    const text = this.trimmed(name) ?? literalDefault(name);
    const parsed = BOOLEAN.safeParse(text);
    if (parsed.success) return parsed.data;
    return this.problem(name, `must be one of true/false/1/0/yes/no (got ${this.quote(text)})`);
  }

  choice<T extends string>(name: string, options: readonly T[], wording: string): T | undefined {
    const text = this.trimmed(name) ?? literalDefault(name);
    const lower = text.toLowerCase();
    const found = options.find((o) => o === lower);
    if (found !== undefined) return found;
    return this.problem(name, `must be ${wording} (got ${this.quote(text)})`);
  }

  integer(name: string, min: number, max: number): number | undefined {
    const text = this.trimmed(name) ?? literalDefault(name);
    const n = /^\d+$/.test(text) ? Number(text) : NaN;
    if (Number.isSafeInteger(n) && n >= min && n <= max) return n;
    return this.problem(name, `must be a whole number from ${min} to ${max} (got ${this.quote(text)})`);
  }

  duration(name: string, minMs: number, maxMs: number): number | undefined {
    const text = this.trimmed(name) ?? literalDefault(name);
    const ms = parseDuration(text);
    if (ms === undefined) {
      return this.problem(name, `must be a duration such as 500ms, 90s, 15m or 1h30m (got ${this.quote(text)})`);
    }
    if (ms < minMs || ms > maxMs) {
      return this.problem(
        name,
        `must be between ${formatDuration(minMs)} and ${formatDuration(maxMs)} (got ${this.quote(text)})`,
      );
    }
    return ms;
  }
}

/** What is wrong with an API key (a primary's or a subaccount's), never quoting it. */
export function apiKeyProblem(key: string): string | undefined {
  if (key === '') return 'must not be empty';
  if (WHITESPACE_OR_CONTROL.test(key)) return 'must not contain whitespace or control characters';
  if (key.includes(':')) return 'must not contain ":" (it is the Basic auth user name)';
  if (codePoints(key) > 64) return 'must be at most 64 characters (it becomes a metric label)';
  return undefined;
}

function checkApiKey(c: Checker): string | undefined {
  const name = 'VONAGE_API_KEY';
  const src = c.sourced(name);
  if (src === 'failed') return undefined;
  if (src === 'unset') return c.problem(name, c.required(name));
  // Never quoted: a key and secret swapped by mistake would otherwise print the secret.
  const key = src.value;
  const why = apiKeyProblem(key);
  if (why !== undefined) return c.problem(src.from, why);
  if (c.refusePublishedSecret(src.from, key, 'as the account label')) return undefined;
  return key;
}

/** What is wrong with an API secret, never quoting it; a warning goes to `r`. */
export function apiSecretProblem(r: Reporter, from: string, secret: string): string | undefined {
  if (secret.trim() === '') return 'must not be blank';
  if (CONTROL.test(secret)) return 'must not contain control characters (a second line ending in the file?)';
  if (secret.length > SECRET_MAX_CHARS) return `must be at most ${SECRET_MAX_CHARS} characters`;
  if (secret !== secret.trim()) {
    // Not an error: a secret may legitimately contain spaces, and we do not alter secrets.
    r.warnings.push(`${from}: the value starts or ends with whitespace; it is used as is`);
  }
  return undefined;
}

/** What is wrong with a trx, never quoting it. */
export function trxProblem(trx: string): string | undefined {
  if (trx.trim() === '') return 'must not be blank';
  if (WHITESPACE_OR_CONTROL.test(trx)) return 'must not contain whitespace or control characters';
  if (trx.length > 128) return 'must be at most 128 characters';
  return undefined;
}

type Sourced = ReturnType<Checker['sourced']>;

function checkApiSecret(c: Checker, src: Sourced): string | undefined {
  const name = 'VONAGE_API_SECRET';
  if (src === 'failed') return undefined;
  if (src === 'unset') return c.problem(name, c.required(name));
  const secret = src.value;
  const why = apiSecretProblem(c, src.from, secret);
  return why === undefined ? secret : c.problem(src.from, why);
}

function checkTrx(c: Checker, src: Sourced, topupEnabled: boolean | undefined): string | undefined {
  const name = 'VONAGE_TOPUP_TRX';
  if (src === 'failed') return undefined;
  if (src === 'unset') {
    // When TOPUP_ENABLED is itself invalid, its own problem says enough.
    if (topupEnabled === true) c.problem(name, c.required(name));
    return undefined;
  }
  const trx = src.value;
  const why = trxProblem(trx);
  return why === undefined ? trx : c.problem(src.from, why);
}

function checkAuthToken(c: Checker, src: Sourced): string | undefined {
  if (src === 'failed' || src === 'unset') return undefined;
  const token = src.value;
  // Scrapers send it verbatim in `Authorization: Bearer …`, and HTTP trims and restricts header
  // values, so a token outside visible ASCII could never match.
  if (!/^[\x21-\x7e]+$/.test(token)) {
    return c.problem(src.from, 'must be printable ASCII without spaces (it is sent in an HTTP header)');
  }
  if (token.length > SECRET_MAX_CHARS) return c.problem(src.from, `must be at most ${SECRET_MAX_CHARS} characters`);
  if (token.length < TOKEN_ADVISED_CHARS) {
    c.warnings.push(`${src.from}: shorter than ${TOKEN_ADVISED_CHARS} characters; a long random token is harder to guess`);
  }
  return token;
}

/** An account name as VONAGE_ACCOUNT_NAME or a fleet file's `name` may be, or undefined after a problem. */
export function checkedAccountName(r: Reporter, where: string, text: string): string | undefined {
  if (CONTROL.test(text)) return r.problem(where, 'must not contain control characters');
  if (text.trim() !== text) return r.problem(where, `must not start or end with whitespace (got ${r.quote(text)})`);
  if (codePoints(text) > 64) return r.problem(where, `must be at most 64 characters (got ${r.quote(text)})`);
  if (r.refusePublishedSecret(where, text, 'as the account label on every metric and in /status')) return undefined;
  return text;
}

function checkAccountName(c: Checker, apiKey: string | undefined): string | undefined {
  const name = 'VONAGE_ACCOUNT_NAME';
  const text = c.raw(name);
  if (text === undefined) return apiKey;
  return checkedAccountName(c, name, text);
}

function isLoopback(hostname: string): boolean {
  // WHATWG URL has already normalised `2130706433`, `0x7f.1` and the like to dotted IPv4.
  return hostname === 'localhost' || hostname === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

function checkBaseUrl(c: Checker, allowCustom: boolean | undefined): string | undefined {
  const name = 'VONAGE_BASE_URL';
  const text = c.trimmed(name) ?? literalDefault(name);
  return checkedBaseUrl(c, name, text, allowCustom, { allowSetting: 'VONAGE_ALLOW_CUSTOM_BASE_URL=true', example: DEFAULT_BASE_URL });
}

/**
 * A Vonage API root (VONAGE_BASE_URL, a fleet file's baseUrl or subaccountsBaseUrl), normalised,
 * or undefined after reporting every problem with it under `name`.
 */
export function checkedBaseUrl(
  c: Reporter,
  name: string,
  rawText: string,
  allowCustom: boolean | undefined,
  wording: { allowSetting: string; example: string },
): string | undefined {
  // The URL is never quoted whole: it may carry user:password@.
  const text = rawText.trim();
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return c.problem(name, `must be an absolute URL such as ${wording.example}`);
  }
  const before = c.problems.length;
  if (url.protocol === 'http:') {
    if (!isLoopback(url.hostname)) c.problem(name, 'http is allowed only on loopback (127.0.0.0/8, ::1, localhost)');
  } else if (url.protocol !== 'https:') {
    return c.problem(name, `scheme must be https (got ${c.quote(url.protocol)})`);
  }
  if (url.username !== '' || url.password !== '') c.problem(name, 'must not contain a user name or password');
  // `https://host/?` parses to an empty search, so look at the text as well.
  if (url.search !== '' || text.includes('?')) c.problem(name, 'must not contain a query (?…)');
  if (url.hash !== '' || text.includes('#')) c.problem(name, 'must not contain a fragment (#…)');

  const path = url.pathname.replace(/\/+$/, '');
  const vonageHost = VONAGE_HOSTS.includes(url.hostname);
  // An invalid allow flag has its own problem; judging the host against a guess would add noise.
  if (allowCustom === false) {
    if (!vonageHost) {
      c.problem(
        name,
        `${c.quote(url.hostname)} is not a Vonage API host (${VONAGE_HOSTS.join(', ')}); the API key and ` +
          `secret are sent to whoever answers there. Set ${wording.allowSetting} only for a host you trust`,
      );
    }
    if (url.port !== '') {
      c.problem(name, `port ${url.port} is not the default; set ${wording.allowSetting} to use it`);
    }
    if (vonageHost && path !== '') {
      c.problem(name, `must be the API root, without a path (got path ${c.quote(url.pathname)})`);
    }
  }
  if (c.problems.length > before) return undefined;
  const normalised = `${url.protocol}//${url.host}${path}`;
  // The whole URL is published (the start-up log, --check-config, a DNS error's message). The
  // parser may have percent-encoded a pasted secret, so the decoded form is looked at too.
  const forms = [text, normalised, safeDecode(normalised)];
  if (c.refusePublishedSecret(name, forms, 'in --check-config, the start-up log and network errors')) return undefined;
  return normalised;
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

function checkThreshold(c: Checker): number | undefined {
  const name = 'TOPUP_THRESHOLD';
  const text = c.trimmed(name);
  if (text === undefined) return c.problem(name, c.required(name));
  // Money: no exponents, signs, hex, Infinity or NaN, which Number() would all accept.
  if (!/^\d+(\.\d+)?$/.test(text)) {
    return c.problem(name, `must be a plain decimal number of EUR such as 10 or 12.50 (got ${c.quote(text)})`);
  }
  const value = Number(text);
  if (!(value > 0)) return c.problem(name, `must be greater than 0 (got ${c.quote(text)})`);
  if (!(value <= THRESHOLD_MAX)) return c.problem(name, `must be at most ${THRESHOLD_MAX} (got ${c.quote(text)})`);
  return value;
}

function checkCooldown(c: Checker): number | undefined {
  const ms = c.duration('TOPUP_COOLDOWN', COOLDOWN_MIN_MS, COOLDOWN_MAX_MS);
  if (ms !== undefined && ms < COOLDOWN_ADVISED_MS) {
    c.warnings.push(
      `TOPUP_COOLDOWN=${formatDuration(ms)} is below ${formatDuration(COOLDOWN_ADVISED_MS)}: Vonage's own ` +
        'auto-reload checks the balance every 5-10 minutes, so a shorter cooldown can stack a second top-up on top of it',
    );
  }
  return ms;
}

function checkSchedule(c: Checker): string | undefined {
  const name = 'POLL_SCHEDULE';
  const text = c.trimmed(name) ?? literalDefault(name);
  let detail = '';
  try {
    if (cron.validate(text)) {
      if (c.refusePublishedSecret(name, text, 'in --check-config, /status and the start-up log')) return undefined;
      return text;
    }
    detail = cron
      .validateDetailed(text)
      .errors.map((e) => `${e.field}: ${e.message}`)
      .join('; ');
  } catch {
    // validateDetailed is only for a better message; its failure must not hide the problem.
  }
  const quoted = c.quote(text);
  // node-cron echoes the expression in its messages, so they get the same treatment as a value.
  const why = detail === '' || quoted === WITHHELD ? '' : `: ${sanitize(detail, 160)}`;
  return c.problem(name, `must be a node-cron expression with 5 or 6 fields${why} (got ${quoted})`);
}

/** POLL_MAX_INTERVAL below the schedule's own interval cannot be honoured: the tick is the fastest poll. */
function warnSlowSchedule(c: Checker, accounts: readonly AccountConfig[], pollSchedule: string): void {
  const tickMs = scheduleIntervalMs(pollSchedule);
  const where = (a: AccountConfig, i: number) => (c.raw('ACCOUNTS_FILE') === undefined ? 'POLL_MAX_INTERVAL' : `accounts[${i}].pollMaxInterval (${a.name})`);
  accounts.forEach((a, i) => {
    if (a.pollAdaptive && a.pollMaxIntervalMs < tickMs) {
      c.warnings.push(`${where(a, i)} is ${formatDuration(a.pollMaxIntervalMs)}, shorter than POLL_SCHEDULE's interval (${formatDuration(tickMs)}): the account is polled at every tick, as without POLL_ADAPTIVE`);
    }
  });
}

function checkStateDir(c: Checker): string | undefined {
  const name = 'STATE_DIR';
  const text = c.raw(name) ?? literalDefault(name);
  if (text.trim() === '') return c.problem(name, 'must not be blank');
  if (CONTROL.test(text)) return c.problem(name, 'must not contain control characters');
  if (c.refusePublishedSecret(name, text, 'in /status and --check-config')) return undefined;
  return text;
}

const LEADER_LEASE_MIN_MS = 1_000;
const LEADER_LEASE_MAX_MS = 300_000;
export const SCHEMA_NAME_PATTERN = /^[a-z_][a-z0-9_]{0,62}$/;

/** LEDGER, and with `postgres` its URL (a secret: never quoted), schema and lease. */
function checkLedger(c: Checker, url: Sourced): LedgerConfig | undefined {
  const kind = c.choice('LEDGER', ['file', 'postgres'] as const, 'file or postgres');
  const leaseMs = c.duration('LEADER_LEASE', LEADER_LEASE_MIN_MS, LEADER_LEASE_MAX_MS);
  const schemaText = c.trimmed('DATABASE_SCHEMA') ?? literalDefault('DATABASE_SCHEMA');
  let schema: string | undefined = schemaText;
  if (!SCHEMA_NAME_PATTERN.test(schemaText)) schema = c.problem('DATABASE_SCHEMA', `must be a plain lower-case SQL identifier: letters a-z, digits and _, not starting with a digit, at most 63 characters (got ${c.quote(schemaText)})`);
  if (kind !== 'postgres') {
    for (const n of ['DATABASE_URL', 'DATABASE_URL_FILE']) if (c.raw(n) !== undefined && kind === 'file') c.warnings.push(`${n} is set but LEDGER is file: the ledger stays in STATE_DIR (set LEDGER=postgres to share it between replicas)`);
    return kind === undefined || schema === undefined || leaseMs === undefined ? undefined : { kind: 'file', schema, leaseMs };
  }
  if (url === 'failed') return undefined;
  if (url === 'unset') return c.problem('DATABASE_URL', 'is required with LEDGER=postgres (or DATABASE_URL_FILE): a postgres://user:password@host:5432/database URL');
  const problem = databaseUrlProblem(url.value);
  if (problem !== undefined) return c.problem(url.from, problem);
  if (schema === undefined || leaseMs === undefined) return undefined;
  return { kind: 'postgres', url: url.value, schema, leaseMs };
}

/** URL parameters that carry a credential (libpq's `password`, `sslpassword`, a token). */
const SECRET_PARAM = /pass|secret|key|token/i;

/** What is wrong with a database URL, in words that never repeat it (it holds the password). */
export function databaseUrlProblem(text: string): string | undefined {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    return 'must be a URL such as postgres://user:password@host:5432/database (it could not be parsed; its value is not shown)';
  }
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') return `must start with postgres:// or postgresql:// (got ${JSON.stringify(u.protocol.slice(0, 20))}; the rest is not shown)`;
  if (u.hostname === '' && !u.searchParams.has('host')) return 'must name a host (postgres://user:password@host:5432/database); its value is not shown';
  return undefined;
}

/**
 * What of a secret variable's value is the secret. A database URL's host, port and user are
 * published (--check-config shows them, and they match VONAGE_BASE_URL's 127.0.0.1 or a port);
 * its password and any password-like parameter are not. An unparsable URL is all secret.
 */
function secretPartsOf(name: string, value: string): string[] {
  if (name !== 'DATABASE_URL') return [value];
  try {
    const u = new URL(value);
    const parts = [u.password, safeDecode(u.password)];
    for (const [k, v] of u.searchParams) if (SECRET_PARAM.test(k)) parts.push(v);
    return parts.filter((p) => p !== '');
  } catch {
    return [value];
  }
}

/** The shared ledger's password, for the scrubbers of logs and messages (never shown). */
export function databasePassword(config: Pick<Config, 'ledger'>): string | undefined {
  if (config.ledger.kind !== 'postgres') return undefined;
  try {
    const p = decodeURIComponent(new URL(config.ledger.url).password);
    return p === '' ? undefined : p;
  } catch {
    return undefined;
  }
}

/** The URL as --check-config and logs may show it: without the password. */
export function redactedDatabaseUrl(text: string): string {
  try {
    const u = new URL(text);
    if (u.password !== '') u.password = '***';
    for (const k of [...u.searchParams.keys()]) if (SECRET_PARAM.test(k)) u.searchParams.set(k, '***');
    return u.toString();
  } catch {
    return '(unparsable)';
  }
}

/** INSTANCE_ID, or the host name (a pod's name in Kubernetes, a container's id in compose). */
function checkInstanceId(c: Checker, env: Env): string | undefined {
  const name = 'INSTANCE_ID';
  const text = c.trimmed(name) ?? (env.HOSTNAME?.trim() || hostname());
  if (text === '' || text.length > 63 || !/^[\x21-\x7e]+$/.test(text)) return c.problem(name, `must be 1-63 printable ASCII characters without spaces (got ${c.quote(text)})`);
  if (c.refusePublishedSecret(name, text, 'in logs, metrics and database sessions')) return undefined;
  return text;
}

function checkMetricsHost(c: Checker): string | undefined {
  const name = 'METRICS_HOST';
  const text = c.trimmed(name) ?? literalDefault(name);
  if (WHITESPACE_OR_CONTROL.test(text)) {
    return c.problem(name, `must be a host name or address without spaces (got ${c.quote(text)})`);
  }
  // A host that does not resolve ends up in a fatal `getaddrinfo ENOTFOUND <host>`.
  if (c.refusePublishedSecret(name, text, 'in --check-config, the start-up log and listen errors')) return undefined;
  return text;
}

/**
 * Reads the configuration from `env` (normally process.env after dotenv). Throws one ConfigError
 * listing every problem; the result is deeply frozen so no component can change another's view.
 */
export function loadConfig(env: Env, readFile: ReadFile = defaultReadFile): Config {
  const c = new Checker(env, readFile);
  const accountsFile = checkAccountsFile(c);

  // Secret files are read first, so quote() knows their contents before any value is quoted.
  const envSecrets = accountsFile === undefined ? ([c.sourced('VONAGE_API_SECRET'), c.sourced('VONAGE_TOPUP_TRX')] as const) : undefined;
  const tokenSource = c.sourced('METRICS_AUTH_TOKEN');
  const databaseSource = c.sourced('DATABASE_URL');

  const poll: PollDefaults = {
    pollAdaptive: c.boolean('POLL_ADAPTIVE'),
    pollMaxIntervalMs: c.duration('POLL_MAX_INTERVAL', POLL_MAX_INTERVAL_MIN_MS, POLL_MAX_INTERVAL_MAX_MS),
  };
  let accounts: AccountConfig[] | undefined;
  if (envSecrets !== undefined) {
    accounts = accountFromEnv(c, ...envSecrets, poll);
  } else if (accountsFile !== 'failed' && accountsFile !== undefined) {
    accounts = accountsFromFile(c, accountsFile, env, readFile, poll);
  }
  const authToken = checkAuthToken(c, tokenSource);

  const pollSchedule = checkSchedule(c);
  const pollConcurrency = c.integer('POLL_CONCURRENCY', 1, POLL_CONCURRENCY_MAX);
  const httpTimeoutMs = c.duration('HTTP_TIMEOUT', TIMEOUT_MIN_MS, TIMEOUT_MAX_MS);
  const stateDir = checkStateDir(c);
  const ledger = checkLedger(c, databaseSource);
  const instanceId = checkInstanceId(c, env);
  const host = checkMetricsHost(c);
  const port = c.integer('METRICS_PORT', 0, 65535);
  const level = c.choice('LOG_LEVEL', LOG_LEVELS, `one of ${LOG_LEVELS.join('/')}`);
  const format = c.choice('LOG_FORMAT', LOG_FORMATS, 'json or pretty');
  c.warnMisspelt();

  if (c.problems.length > 0) throw configError(c);
  warnSlowSchedule(c, accounts!, pollSchedule!);

  // Every check above either returned a value or recorded a problem, so none is undefined here.
  const config: Config = {
    accounts: accounts!,
    accountsFile: accountsFile === undefined ? undefined : (accountsFile as string),
    pollSchedule: pollSchedule!,
    pollConcurrency: pollConcurrency!,
    httpTimeoutMs: httpTimeoutMs!,
    stateDir: stateDir!,
    ledger: ledger!,
    instanceId: instanceId!,
    metrics: { host: host!, port: port!, authToken },
    log: { level: level!, format: format! },
    warnings: c.warnings,
  };
  // The net under the checks above: whatever --check-config would print is held to the same
  // rule, so a setting added to describeConfig later cannot publish a secret either. Only
  // values that are ours rather than the user's (a default, a formatted number) reach here
  // unchecked, and they match a secret only if the secret is a word like "json".
  for (const [name, value] of Object.entries(describeConfig(config))) {
    if (SECRET_VARIABLES.includes(name) || isMaskedFleetKey(name)) continue;
    c.refusePublishedSecret(name, value, 'by --check-config (its effective value matches a secret)');
  }
  if (c.problems.length > 0) throw configError(c);
  return deepFreeze(config);
}

/** ACCOUNTS_FILE, checked; `failed` after a problem. With it set, no per-account variable may be. */
function checkAccountsFile(c: Checker): string | 'failed' | undefined {
  const name = 'ACCOUNTS_FILE';
  const path = c.raw(name);
  if (path === undefined) return undefined;
  for (const v of ACCOUNT_VARIABLES) {
    for (const n of BY_NAME.get(v)?.fileVariant ? [v, `${v}_FILE`] : [v]) {
      if (c.raw(n) === undefined) continue;
      c.problem(n, `must not be set with ACCOUNTS_FILE: every account's settings come from that file (there: \`${FLEET_TWIN[n] ?? n}\`)`);
    }
  }
  if (path.trim() === '') return c.problem(name, 'must not be blank') ?? 'failed';
  if (CONTROL.test(path)) return c.problem(name, 'must not contain control characters') ?? 'failed';
  return path;
}

/** POLL_ADAPTIVE and POLL_MAX_INTERVAL: the account's, or with ACCOUNTS_FILE every account's unless the file says. */
interface PollDefaults {
  pollAdaptive: boolean | undefined;
  pollMaxIntervalMs: number | undefined;
}

function accountFromEnv(c: Checker, secretSource: Sourced, trxSource: Sourced, poll: PollDefaults): AccountConfig[] | undefined {
  const apiKey = checkApiKey(c);
  const apiSecret = checkApiSecret(c, secretSource);
  const topupEnabled = c.boolean('TOPUP_ENABLED');
  const trx = checkTrx(c, trxSource, topupEnabled);

  const accountName = checkAccountName(c, apiKey);
  const allowCustom = c.boolean('VONAGE_ALLOW_CUSTOM_BASE_URL');
  const baseUrl = checkBaseUrl(c, allowCustom);
  const auth = c.choice('VONAGE_AUTH', AUTH_MODES, 'basic or query');
  if (auth === 'query') {
    c.warnings.push(
      'VONAGE_AUTH=query puts the API secret in request URLs, where proxies and access logs may record it; basic is safer',
    );
  }
  const threshold = checkThreshold(c);
  const cooldownMs = checkCooldown(c);
  const maxPerDay = c.integer('TOPUP_MAX_PER_DAY', 1, MAX_PER_DAY_MAX);
  const leadTimeMs = c.duration('TOPUP_LEAD_TIME', 0, LEAD_TIME_MAX_MS);
  const dryRun = c.boolean('DRY_RUN');
  return [
    {
      name: accountName!,
      apiKey: apiKey!,
      apiSecret: apiSecret!,
      trx,
      baseUrl: baseUrl!,
      allowCustomBaseUrl: allowCustom!,
      auth: auth!,
      threshold: threshold!,
      cooldownMs: cooldownMs!,
      maxPerDay: maxPerDay!,
      topupEnabled: topupEnabled!,
      dryRun: dryRun!,
      leadTimeMs: leadTimeMs!,
      pollAdaptive: poll.pollAdaptive!,
      pollMaxIntervalMs: poll.pollMaxIntervalMs!,
      subaccountsBaseUrl: DEFAULT_SUBACCOUNTS_BASE_URL,
    },
  ];
}

function accountsFromFile(c: Checker, path: string, env: Env, readFile: ReadFile, poll: PollDefaults): AccountConfig[] | undefined {
  const name = 'ACCOUNTS_FILE';
  let text: string;
  try {
    text = readFile(path);
  } catch (err) {
    return c.problem(name, `cannot read ${c.quote(path)} (${readErrorCode(err)})`);
  }
  if (typeof text !== 'string') return c.problem(name, `cannot read ${c.quote(path)} (reader returned no text)`);
  try {
    const fleet = parseFleetFile(text, { path, env, readFile, knownSecrets: c.secretValues, poll: { adaptive: poll.pollAdaptive ?? false, maxIntervalMs: poll.pollMaxIntervalMs ?? POLL_MAX_INTERVAL_DEFAULT_MS } });
    for (const a of fleet.accounts) {
      c.rememberSecret(a.apiSecret);
      if (a.trx !== undefined) c.rememberSecret(a.trx);
    }
    c.warnings.push(...fleet.warnings);
    return fleet.accounts;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    c.problems.push(...err.problems);
    c.warnings.push(...err.warnings);
    return undefined;
  }
}

function configError(c: Checker): ConfigError {
  // Sorted into table order so the same mistakes always read the same way.
  const rank = (p: ConfigProblem): number => {
    // A fleet file's problems (named by their YAML path) go with ACCOUNTS_FILE, in file order.
    const variable = /^(accounts|defaults)\b/.test(p.variable) ? 'ACCOUNTS_FILE' : p.variable;
    const i = CONFIG_VARIABLES.findIndex((v) => variable === v.name || variable === `${v.name}_FILE`);
    return i === -1 ? CONFIG_VARIABLES.length : i;
  };
  const sorted = c.problems.map((p, i) => ({ p, i })).sort((a, b) => rank(a.p) - rank(b.p) || a.i - b.i);
  return new ConfigError(deepFreeze(sorted.map(({ p }) => p)), deepFreeze([...c.warnings]));
}

/** Whether `a` and `b` have a common run of `n` characters (both already lower-cased). */
function sharesRun(a: string, b: string, n: number): boolean {
  const [short, long] = a.length <= b.length ? [a, b] : [b, a];
  for (let i = 0; i + n <= short.length; i++) if (long.includes(short.slice(i, i + n))) return true;
  return false;
}

interface Misspelling {
  name: string;
  /** The known setting name closest to it. */
  closest: string;
  /** Close enough to say "did you mean"; otherwise the closest name is only mentioned. */
  close: boolean;
}

/**
 * Variables that look meant for this program but are not read by it: any unknown name under one
 * of our prefixes, and any other name within a couple of edits of one of ours once case and
 * underscores are ignored (DRYRUN, STATEDIR, dry_run). Only names are looked at, never values,
 * except that an empty variable counts as unset here too.
 */
function misspellings(env: Env): Misspelling[] {
  const serviceLinks = kubernetesServices(env);
  const found: Misspelling[] = [];
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined || value === '' || KNOWN_NAMES.has(name)) continue;
    // Bounded: the cost is quadratic in the name's length, and names come from outside.
    const upper = name.slice(0, 128).toUpperCase();
    if (serviceLinks.some((svc) => isServiceLink(upper, svc))) continue;
    const squeezed = squeeze(upper);
    const ours = OUR_PREFIXES.some((p) => upper.startsWith(p));
    const words = upper.split('_').filter((w) => w !== '');
    let best = { name: '', rank: [Infinity, Infinity, Infinity] };
    for (const known of SETTING_NAMES) {
      // A word left out (METRICS_TOKEN for METRICS_AUTH_TOKEN) is a long way off by edits but an
      // obvious slip; for names not under our prefixes it proves nothing (AUTH_TOKEN is common).
      const knownWords = known.split('_');
      const wordsLeftOut = ours && words.length >= 2 && words.every((w) => knownWords.includes(w)) ? 0 : 1;
      // Case and underscores ignored next: DRYRUN is DRY_RUN, whatever the plain distance says.
      const rank = [wordsLeftOut, editDistance(squeezed, squeeze(known)), editDistance(upper, known)];
      if (lexLess(rank, best.rank)) best = { name: known, rank };
    }
    const [wordsLeftOut, squeezedDistance, plainDistance] = best.rank as [number, number, number];
    const nearMiss = squeezed.length >= NEAR_MISS_MIN_CHARS && squeezedDistance <= NEAR_MISS_MAX_DISTANCE;
    if (!nearMiss && !ours) continue;
    const close =
      nearMiss || wordsLeftOut === 0 || plainDistance <= Math.max(NEAR_MISS_MAX_DISTANCE, Math.floor(best.name.length / 5));
    found.push({ name, closest: best.name, close });
  }
  return found.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

function lexLess(a: readonly number[], b: readonly number[]): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! < b[i]!;
  return false;
}

function squeeze(name: string): string {
  return name.replace(/[^A-Z0-9]/g, '');
}

/**
 * Kubernetes gives every pod <SERVICE>_SERVICE_HOST, <SERVICE>_PORT and the like for each service
 * in its namespace, so a service called vonage-reload-watchdog puts VONAGE_RELOAD_WATCHDOG_* into
 * the environment. They are recognised by the _SERVICE_HOST that always comes with them.
 */
function kubernetesServices(env: Env): string[] {
  return Object.keys(env)
    .map((n) => n.toUpperCase())
    .filter((n) => n.endsWith('_SERVICE_HOST') && n.length > '_SERVICE_HOST'.length)
    .map((n) => n.slice(0, -'_SERVICE_HOST'.length));
}

function isServiceLink(upper: string, service: string): boolean {
  if (!upper.startsWith(`${service}_`)) return false;
  const rest = upper.slice(service.length + 1);
  return /^(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_\d+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)?)$/.test(rest);
}

/** Optimal string alignment distance: insertions, deletions, substitutions and swaps of neighbours. */
function editDistance(a: string, b: string): number {
  const rows: number[][] = [];
  for (let i = 0; i <= a.length; i++) {
    const row: number[] = [i];
    for (let j = 1; j <= b.length; j++) {
      if (i === 0) {
        row.push(j);
        continue;
      }
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(rows[i - 1]![j]! + 1, row[j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, rows[i - 2]![j - 2]! + 1);
      row.push(d);
    }
    rows.push(row);
  }
  return rows[a.length]![b.length]!;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const inner of Object.values(value)) deepFreeze(inner);
  }
  return value;
}

function masked(secret: string | undefined): string {
  return secret === undefined ? '(unset)' : `(set, ${secret.length} chars)`;
}

/** describeConfig's keys whose values are masked secrets (never checked against the secrets). */
function isMaskedFleetKey(key: string): boolean {
  return /^accounts\[\d+\]\.(apiSecret|trx)$/.test(key);
}

/**
 * The closest of `known` to `name` when it is close enough to be a likely slip (case and `_`/`-`
 * ignored, a few edits), for "did you mean" in messages about a fleet file's keys.
 */
export function suggestName(name: string, known: readonly string[]): string | undefined {
  const norm = (t: string) => t.slice(0, 128).toLowerCase().replace(/[^a-z0-9]/g, '');
  const squeezed = norm(name);
  let best: { name: string; d: number } | undefined;
  for (const k of known) {
    const d = editDistance(squeezed, norm(k));
    if (best === undefined || d < best.d) best = { name: k, d };
  }
  if (best === undefined) return undefined;
  return best.d <= Math.max(2, Math.floor(norm(best.name).length / 4)) ? best.name : undefined;
}

/**
 * The effective settings for --check-config, with secrets reduced to their length. From the
 * environment: keyed by variable name (every one of CONFIG_VARIABLES). From ACCOUNTS_FILE: the
 * accounts are keyed by their YAML path (`accounts[0].threshold`, `accounts[0].subaccounts.refill`)
 * and the process-wide settings by variable name.
 */
export function describeConfig(config: Config): Record<string, string> {
  const out: Record<string, string> = {};
  out.ACCOUNTS_FILE = config.accountsFile ?? '(unset)';
  if (config.accountsFile === undefined) {
    config.accounts.forEach((a, i) => {
      const k = (name: string): string => (i === 0 ? name : `${name}[${i}]`);
      out[k('VONAGE_API_KEY')] = a.apiKey;
      out[k('VONAGE_API_SECRET')] = masked(a.apiSecret);
      out[k('VONAGE_TOPUP_TRX')] = masked(a.trx);
      out[k('VONAGE_ACCOUNT_NAME')] = a.name;
      out[k('VONAGE_BASE_URL')] = a.baseUrl;
      out[k('VONAGE_ALLOW_CUSTOM_BASE_URL')] = String(a.allowCustomBaseUrl);
      out[k('VONAGE_AUTH')] = a.auth;
      out[k('TOPUP_THRESHOLD')] = String(a.threshold);
      out[k('TOPUP_COOLDOWN')] = formatDuration(a.cooldownMs);
      out[k('TOPUP_MAX_PER_DAY')] = String(a.maxPerDay);
      out[k('TOPUP_LEAD_TIME')] = formatDuration(a.leadTimeMs);
      out[k('TOPUP_ENABLED')] = String(a.topupEnabled);
      out[k('DRY_RUN')] = String(a.dryRun);
    });
  } else {
    config.accounts.forEach((a, i) => Object.assign(out, describeFleetAccount(a, `accounts[${i}]`)));
  }
  out.POLL_SCHEDULE = config.pollSchedule;
  if (config.accountsFile === undefined) {
    out.POLL_ADAPTIVE = String(config.accounts[0]?.pollAdaptive ?? false);
    out.POLL_MAX_INTERVAL = formatDuration(config.accounts[0]?.pollMaxIntervalMs ?? POLL_MAX_INTERVAL_DEFAULT_MS);
  }
  out.POLL_CONCURRENCY = String(config.pollConcurrency);
  out.HTTP_TIMEOUT = formatDuration(config.httpTimeoutMs);
  out.STATE_DIR = config.stateDir;
  out.LEDGER = config.ledger.kind;
  out.DATABASE_URL = config.ledger.kind === 'postgres' ? redactedDatabaseUrl(config.ledger.url) : '(unset)';
  out.DATABASE_SCHEMA = config.ledger.schema;
  out.INSTANCE_ID = config.instanceId;
  out.LEADER_LEASE = formatDuration(config.ledger.leaseMs);
  out.METRICS_HOST = config.metrics.host;
  out.METRICS_PORT = String(config.metrics.port);
  out.METRICS_AUTH_TOKEN = masked(config.metrics.authToken);
  out.LOG_LEVEL = config.log.level;
  out.LOG_FORMAT = config.log.format;
  return out;
}

function describeFleetAccount(a: AccountConfig, p: string): Record<string, string> {
  const out: Record<string, string> = {
    [`${p}.name`]: a.name,
    [`${p}.apiKey`]: a.apiKey,
    [`${p}.apiSecret`]: masked(a.apiSecret),
    [`${p}.trx`]: a.trx === undefined ? '(unset: never tops up by card)' : masked(a.trx),
    [`${p}.threshold`]: String(a.threshold),
    [`${p}.cooldown`]: formatDuration(a.cooldownMs),
    [`${p}.maxPerDay`]: String(a.maxPerDay),
    [`${p}.leadTime`]: formatDuration(a.leadTimeMs),
    [`${p}.pollAdaptive`]: String(a.pollAdaptive),
    [`${p}.pollMaxInterval`]: formatDuration(a.pollMaxIntervalMs),
    [`${p}.topupEnabled`]: a.trx === undefined ? 'false (no trx)' : String(a.topupEnabled),
    [`${p}.dryRun`]: String(a.dryRun),
    [`${p}.baseUrl`]: a.baseUrl,
    [`${p}.allowCustomBaseUrl`]: String(a.allowCustomBaseUrl),
    [`${p}.auth`]: a.auth,
    [`${p}.subaccountsBaseUrl`]: a.subaccountsBaseUrl,
  };
  const s = a.subaccounts;
  if (s === undefined) {
    out[`${p}.subaccounts`] = '(none)';
    return out;
  }
  const q = `${p}.subaccounts`;
  const settings = (x: Partial<SubaccountSettings>): string =>
    [
      x.threshold === undefined ? '' : `threshold ${x.threshold}`,
      x.transferAmount === undefined ? '' : `transferAmount ${x.transferAmount}`,
      x.cooldownMs === undefined ? '' : `cooldown ${formatDuration(x.cooldownMs)}`,
      x.maxPerDay === undefined ? '' : `maxPerDay ${x.maxPerDay}`,
      x.leadTimeMs === undefined ? '' : `leadTime ${formatDuration(x.leadTimeMs)}`,
    ]
      .filter((t) => t !== '')
      .join(', ');
  Object.assign(out, {
    [`${q}.watch`]: s.watch === 'all' ? 'all' : s.watch.join(', '),
    [`${q}.refill`]: s.refill,
    [`${q}.threshold`]: String(s.settings.threshold),
    [`${q}.transferAmount`]: String(s.settings.transferAmount),
    [`${q}.cooldown`]: formatDuration(s.settings.cooldownMs),
    [`${q}.maxPerDay`]: String(s.settings.maxPerDay),
    [`${q}.leadTime`]: formatDuration(s.settings.leadTimeMs ?? 0),
    [`${q}.primaryReserve`]: String(s.primaryReserve),
    [`${q}.maxTransferredPerDay`]: String(s.maxTransferredPerDay),
    [`${q}.topupEnabled`]: String(s.transfersEnabled),
    [`${q}.dryRun`]: String(s.dryRun),
  });
  for (const [key, o] of Object.entries(s.overrides)) out[`${q}.overrides.${key}`] = settings(o);
  return out;
}
