/**
 * ACCOUNTS_FILE: the YAML file that describes a fleet of accounts. `parseFleetFile` is pure (the
 * environment and the file reader are passed in) and, like loadConfig, reports every problem at
 * once, each named by its YAML path (`accounts[1].subaccounts.transferAmount`).
 *
 * Every scalar is read as text (the YAML failsafe schema) and then held to the same rules as its
 * environment twin: `threshold: 12.50` reads as TOPUP_THRESHOLD=12.50 would, an API key such as
 * 00123456 keeps its zeros, and `yes`/`no` mean what they mean in the environment. `${env:NAME}`
 * is expanded inside values (never keys); `$${` stands for a literal `${`.
 *
 * Secrets (apiSecret, trx) never sit in the file, which may be a ConfigMap: they come from a
 * `*File` path or a `${env:NAME}` reference. No text of the file reaches a message unless it is
 * a value we checked and quoted (withheld when it matches a secret); YAML syntax errors say only
 * where and what, never the line.
 */
import { parseDocument } from 'yaml';
import type { SubaccountSettings, SubaccountsConfig } from '../accounts/types.js';
import { accountsElsewhere } from '../accounts/subaccount-selection.js';
import { formatDuration, parseDuration } from './duration.js';
import {
  ConfigError,
  DEFAULT_BASE_URL,
  DEFAULT_SUBACCOUNTS_BASE_URL,
  LIMITS,
  Reporter,
  apiKeyProblem,
  apiSecretProblem,
  checkedAccountName,
  checkedBaseUrl,
  parseBoolean,
  readErrorCode,
  sanitize,
  stripLineEnding,
  suggestName,
  trxProblem,
  type AccountConfig,
  type Env,
  type ReadFile,
} from './config.js';

/** Larger files are refused unread by the YAML parser. */
export const FLEET_FILE_MAX_BYTES = 1024 * 1024;
/** Aliases (`*name`) the file may use: a few for convenience, never a "billion laughs". */
export const FLEET_MAX_ALIASES = 100;
/** Nesting of flow collections (`[[[…]]]`) the parser is asked to follow. */
export const FLEET_MAX_FLOW_DEPTH = 32;
export const FLEET_MAX_ACCOUNTS = 1000;
/** YAML errors listed before "and N more". */
const MAX_SYNTAX_PROBLEMS = 10;

export interface FleetFileContext {
  /** The file's path, for messages only. */
  path: string;
  /** What `${env:NAME}` reads. */
  env: Env;
  /** Reads apiKeyFile, apiSecretFile and trxFile. */
  readFile: ReadFile;
  /** Secrets known already (METRICS_AUTH_TOKEN, say): withheld from messages too. */
  knownSecrets?: readonly string[];
  /** POLL_ADAPTIVE and POLL_MAX_INTERVAL from the environment: for accounts that neither they nor the defaults set. */
  poll?: { adaptive: boolean; maxIntervalMs: number };
}

export interface FleetFile {
  accounts: AccountConfig[];
  warnings: string[];
}

const TOP_KEYS = ['defaults', 'accounts'] as const;
const DEFAULT_KEYS = ['threshold', 'cooldown', 'maxPerDay', 'leadTime', 'pollAdaptive', 'pollMaxInterval', 'topupEnabled', 'dryRun'] as const;
const ACCOUNT_KEYS = [
  'name',
  'apiKey',
  'apiKeyFile',
  'apiSecret',
  'apiSecretFile',
  'trx',
  'trxFile',
  'threshold',
  'cooldown',
  'maxPerDay',
  'leadTime',
  'pollAdaptive',
  'pollMaxInterval',
  'topupEnabled',
  'dryRun',
  'baseUrl',
  'allowCustomBaseUrl',
  'auth',
  'subaccountsBaseUrl',
  'subaccounts',
] as const;
const SUBACCOUNT_KEYS = [
  'watch',
  'threshold',
  'refill',
  'transferAmount',
  'primaryReserve',
  'maxTransferredPerDay',
  'cooldown',
  'maxPerDay',
  'leadTime',
  'topupEnabled',
  'dryRun',
  'overrides',
] as const;
const OVERRIDE_KEYS = ['threshold', 'transferAmount', 'cooldown', 'maxPerDay', 'leadTime'] as const;

const DEFAULT_COOLDOWN_MS = 15 * 60_000;
const DEFAULT_MAX_PER_DAY = 3;

type Value = string | Value[] | { [key: string]: Value };
type Mapping = { [key: string]: Value };

const ENV_REF = /^\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}$/;

/** What each YAML error code means, so that no message has to quote the file's line. */
const SYNTAX: Readonly<Record<string, string>> = {
  ALIAS_PROPS: 'an alias cannot have an anchor or a tag',
  BAD_ALIAS: 'an alias refers to no anchor defined before it',
  BAD_COLLECTION_TYPE: 'a collection of the wrong kind',
  BAD_DIRECTIVE: 'a bad % directive',
  BAD_DQ_ESCAPE: 'a bad escape in a double-quoted string',
  BAD_INDENT: 'bad indentation',
  BAD_PROP_ORDER: 'anchor and tag in the wrong order',
  BAD_SCALAR_START: 'a plain value cannot start with this character (quote it)',
  BLOCK_AS_IMPLICIT_KEY: 'a nested mapping where a single key was expected (a missing space or quote around ":"?)',
  BLOCK_IN_FLOW: 'a block collection inside a flow ([…] or {…}) collection',
  DUPLICATE_KEY: 'a key appears twice in the same mapping',
  IMPOSSIBLE: 'unparseable YAML',
  KEY_OVER_1024_CHARS: 'a key longer than 1024 characters',
  MISSING_CHAR: 'a missing character (an unclosed quote, bracket or brace?)',
  MULTILINE_IMPLICIT_KEY: 'a key must be on one line',
  MULTIPLE_ANCHORS: 'more than one anchor on a value',
  MULTIPLE_DOCS: 'more than one YAML document (---); the file must hold one',
  MULTIPLE_TAGS: 'more than one tag on a value',
  NON_STRING_KEY: 'a key that is not a plain string',
  TAB_AS_INDENT: 'a tab used for indentation (use spaces)',
  TAG_RESOLVE_FAILED: 'a YAML tag (!…); tags are not used in this file',
  UNEXPECTED_TOKEN: 'unexpected text',
};

/**
 * The accounts of a fleet file, or a ConfigError with every problem in it. Secret files are read
 * through `ctx.readFile`, with one trailing line ending dropped as for VAR_FILE.
 */
export function parseFleetFile(text: string, ctx: FleetFileContext): FleetFile {
  const p = new FleetParser(ctx);
  const accounts = p.parse(text);
  if (p.r.problems.length > 0 || accounts === undefined) {
    throw new ConfigError(p.r.problems.map((x) => Object.freeze({ ...x })), [...p.r.warnings]);
  }
  return { accounts, warnings: p.r.warnings };
}

/** Account-wide values that `defaults` may give. */
interface Defaults {
  threshold?: number;
  cooldownMs?: number;
  maxPerDay?: number;
  leadTimeMs?: number;
  pollAdaptive?: boolean;
  pollMaxIntervalMs?: number;
  topupEnabled?: boolean;
  dryRun?: boolean;
}

class FleetParser {
  readonly r = new Reporter();

  constructor(private readonly ctx: FleetFileContext) {
    for (const s of ctx.knownSecrets ?? []) this.r.rememberSecret(s);
  }

  private file(): string {
    return this.r.quote(this.ctx.path);
  }

  parse(text: string): AccountConfig[] | undefined {
    const root = this.load(text);
    if (root === undefined) return undefined;
    const top = this.mapping('', root, TOP_KEYS, 'the file');
    if (top === undefined) return undefined;
    const defaults = top.defaults === undefined ? {} : this.defaults(top.defaults);
    if (top.accounts === undefined) return this.problemAt('accounts', 'required: a list of accounts');
    if (!Array.isArray(top.accounts)) return this.problemAt('accounts', `must be a list of accounts (got ${kind(top.accounts)})`);
    const list = top.accounts;
    if (list.length === 0) return this.problemAt('accounts', 'must list at least one account');
    if (list.length > FLEET_MAX_ACCOUNTS) return this.problemAt('accounts', `must list at most ${FLEET_MAX_ACCOUNTS} accounts`);

    // Secrets first, for every account, so quote() knows them all before any value is quoted.
    const secrets = list.map((a, i) => (isMapping(a) ? this.secrets(`accounts[${i}]`, a) : undefined));
    const accounts = list.map((a, i) => this.account(`accounts[${i}]`, a, defaults, secrets[i]));
    this.unique(accounts, 'name');
    this.unique(accounts, 'apiKey');
    this.subaccountsElsewhere(accounts);
    if (accounts.some((a) => a === undefined)) return undefined;
    return accounts as AccountConfig[];
  }

  private problemAt(path: string, message: string): undefined {
    return this.r.problem(path, message);
  }

  private load(text: string): Value | undefined {
    const bytes = Buffer.byteLength(text, 'utf8');
    if (bytes > FLEET_FILE_MAX_BYTES) {
      return this.problemAt('ACCOUNTS_FILE', `${this.file()} is ${bytes} bytes; at most ${FLEET_FILE_MAX_BYTES} (1 MiB) are read`);
    }
    if (text.trim() === '') return this.problemAt('ACCOUNTS_FILE', `${this.file()} is empty`);
    const depth = flowDepth(text);
    if (depth > FLEET_MAX_FLOW_DEPTH) {
      return this.problemAt('ACCOUNTS_FILE', `${this.file()} nests [ ] or { } ${depth} deep; at most ${FLEET_MAX_FLOW_DEPTH}`);
    }
    // prettyErrors only for linePos: the messages (which quote the line) are never used.
    let doc: ReturnType<typeof parseDocument>;
    try {
      doc = parseDocument(text, { schema: 'failsafe', prettyErrors: true, uniqueKeys: true, strict: true });
    } catch {
      return this.problemAt('ACCOUNTS_FILE', `${this.file()} is not YAML this program can read`);
    }
    const issues = [...doc.errors, ...doc.warnings];
    if (issues.length > 0) {
      for (const e of issues.slice(0, MAX_SYNTAX_PROBLEMS)) {
        const at = e.linePos?.[0];
        const where = at === undefined ? '' : ` line ${at.line}, column ${at.col}:`;
        const code = /^[A-Z0-9_]{1,40}$/.test(e.code) ? e.code : 'ERROR';
        this.problemAt('ACCOUNTS_FILE', `${this.file()}${where} invalid YAML: ${SYNTAX[code] ?? 'unparseable YAML'} (${code})`);
      }
      if (issues.length > MAX_SYNTAX_PROBLEMS) {
        this.problemAt('ACCOUNTS_FILE', `${this.file()}: and ${issues.length - MAX_SYNTAX_PROBLEMS} more YAML errors`);
      }
      return undefined;
    }
    try {
      const value = doc.toJS({ maxAliasCount: FLEET_MAX_ALIASES }) as Value | null;
      if (value === null || value === undefined) return this.problemAt('ACCOUNTS_FILE', `${this.file()} holds no settings`);
      return value;
    } catch (err) {
      const bomb = err instanceof ReferenceError && /alias/i.test(err.message);
      return this.problemAt(
        'ACCOUNTS_FILE',
        bomb
          ? `${this.file()} expands aliases (*name) more than ${FLEET_MAX_ALIASES} times; refused (a "billion laughs" file?)`
          : `${this.file()} is not YAML this program can read`,
      );
    }
  }

  /** A mapping with only `known` keys; unknown ones are problems, with the closest known key. */
  private mapping(path: string, value: Value, known: readonly string[], what: string): Mapping | undefined {
    if (!isMapping(value)) {
      return this.problemAt(path || 'ACCOUNTS_FILE', `${path === '' ? `${this.file()} ` : ''}must be a mapping of ${what}'s settings (got ${kind(value)})`);
    }
    for (const key of Object.keys(value)) {
      if (known.includes(key)) continue;
      const near = suggestName(key, known);
      const hint = near === undefined ? `known keys: ${known.join(', ')}` : `did you mean ${near}?`;
      this.problemAt(this.join(path, key), `unknown key; ${hint}`);
    }
    return value;
  }

  /** `a.b`, or `a["odd key"]` for a key that is not a plain name; withheld if it holds a secret. */
  private join(path: string, key: string): string {
    const seg = /^[A-Za-z_][A-Za-z0-9_-]{0,63}$/.test(key) && !this.r.holdsSecret(key)
      ? key
      : `[${this.r.holdsSecret(key) ? '<a key that matches a secret>' : JSON.stringify(sanitize(key, 40))}]`;
    if (seg.startsWith('[')) return `${path}${seg}`;
    return path === '' ? seg : `${path}.${seg}`;
  }

  /** A single value, with ${env:NAME} expanded; undefined after a problem. */
  private text(path: string, value: Value): string | undefined {
    if (typeof value !== 'string') return this.problemAt(path, `must be a single value (got ${kind(value)})`);
    const expanded = this.expand(path, value);
    if (expanded === undefined) return undefined;
    if (expanded.trim() === '') return this.problemAt(path, 'must not be empty (leave the key out for its default)');
    return expanded;
  }

  /** `${env:NAME}` → the variable's value; `$${` → `${`. Unset or empty variables are problems. */
  private expand(path: string, text: string): string | undefined {
    let out = '';
    let ok = true;
    let i = 0;
    while (i < text.length) {
      if (text.startsWith('$${', i)) {
        out += '${';
        i += 3;
        continue;
      }
      if (!text.startsWith('${', i)) {
        out += text[i];
        i++;
        continue;
      }
      const end = text.indexOf('}', i);
      const ref = end === -1 ? undefined : ENV_REF.exec(text.slice(i, end + 1));
      if (ref === undefined || ref === null) {
        this.problemAt(path, 'has a "${" that does not start a ${env:NAME} reference (write $${ for a literal "${")');
        return undefined;
      }
      const name = ref[1]!;
      const value = this.ctx.env[name];
      if (value === undefined || value === '') {
        this.problemAt(path, `\${env:${this.r.quoteName(name)}} is not set (or is empty)`);
        ok = false;
      } else {
        out += value;
      }
      i = end + 1;
    }
    return ok ? out : undefined;
  }

  private bool(path: string, value: Value | undefined): boolean | undefined {
    if (value === undefined) return undefined;
    const t = this.text(path, value);
    if (t === undefined) return undefined;
    const b = parseBoolean(t);
    return b ?? this.problemAt(path, `must be one of true/false/1/0/yes/no (got ${this.r.quote(t)})`);
  }

  /** EUR as in the environment: a plain decimal (no sign, exponent or hex), within bounds. */
  private money(path: string, value: Value | undefined, opts: { zero?: boolean } = {}): number | undefined {
    if (value === undefined) return undefined;
    const t = this.text(path, value)?.trim();
    if (t === undefined) return undefined;
    if (!/^\d+(\.\d+)?$/.test(t)) {
      return this.problemAt(path, `must be a plain decimal number of EUR such as 10 or 12.50 (got ${this.r.quote(t)})`);
    }
    const n = Number(t);
    if (opts.zero ? !(n >= 0) : !(n > 0)) return this.problemAt(path, `must be ${opts.zero ? 'at least 0' : 'a positive number'} (got ${this.r.quote(t)})`);
    if (!(n <= LIMITS.THRESHOLD_MAX)) return this.problemAt(path, `must be at most ${LIMITS.THRESHOLD_MAX} (got ${this.r.quote(t)})`);
    return n;
  }

  private count(path: string, value: Value | undefined): number | undefined {
    if (value === undefined) return undefined;
    const t = this.text(path, value)?.trim();
    if (t === undefined) return undefined;
    const n = /^\d+$/.test(t) ? Number(t) : NaN;
    if (Number.isSafeInteger(n) && n >= 1 && n <= LIMITS.MAX_PER_DAY_MAX) return n;
    return this.problemAt(path, `must be a whole number from 1 to ${LIMITS.MAX_PER_DAY_MAX} (got ${this.r.quote(t)})`);
  }

  private cooldown(path: string, value: Value | undefined, advise: 'topup' | 'transfer' | false): number | undefined {
    if (value === undefined) return undefined;
    const t = this.text(path, value)?.trim();
    if (t === undefined) return undefined;
    const ms = parseDuration(t);
    if (ms === undefined) return this.problemAt(path, `must be a duration such as 90s, 15m or 1h30m (got ${this.r.quote(t)})`);
    if (ms < LIMITS.COOLDOWN_MIN_MS || ms > LIMITS.COOLDOWN_MAX_MS) {
      return this.problemAt(path, `must be between ${formatDuration(LIMITS.COOLDOWN_MIN_MS)} and ${formatDuration(LIMITS.COOLDOWN_MAX_MS)} (got ${this.r.quote(t)})`);
    }
    if (advise !== false && ms < LIMITS.COOLDOWN_ADVISED_MS) {
      this.r.warnings.push(
        advise === 'topup'
          ? `${path}: ${formatDuration(ms)} is below ${formatDuration(LIMITS.COOLDOWN_ADVISED_MS)}: Vonage's own auto-reload checks ` +
              'the balance every 5-10 minutes, so a shorter cooldown can stack a second top-up on top of it'
          : `${path}: ${formatDuration(ms)} is below ${formatDuration(LIMITS.COOLDOWN_ADVISED_MS)}: the cooldown is what stands between ` +
              'a transfer and a second one on a subaccount list that does not show the first yet; a shorter one trusts that list to be current',
      );
    }
    return ms;
  }

  /** As TOPUP_LEAD_TIME: a duration from 0s to 24h. */
  private leadTime(path: string, value: Value | undefined): number | undefined {
    return this.duration(path, value, 0, LIMITS.LEAD_TIME_MAX_MS, 'from 0s to 24h such as 0s, 90s or 5m');
  }

  /** As POLL_MAX_INTERVAL: a duration from 1s to 24h. */
  private pollMaxInterval(path: string, value: Value | undefined): number | undefined {
    return this.duration(path, value, LIMITS.POLL_MAX_INTERVAL_MIN_MS, LIMITS.POLL_MAX_INTERVAL_MAX_MS, 'from 1s to 24h such as 30s, 10m or 1h');
  }

  private duration(path: string, value: Value | undefined, min: number, max: number, range: string): number | undefined {
    if (value === undefined) return undefined;
    const t = this.text(path, value)?.trim();
    if (t === undefined) return undefined;
    const ms = parseDuration(t);
    if (ms === undefined || ms < min || ms > max) return this.problemAt(path, `must be a duration ${range} (got ${this.r.quote(t)})`);
    return ms;
  }

  private choice<T extends string>(path: string, value: Value | undefined, options: readonly T[]): T | undefined {
    if (value === undefined) return undefined;
    const t = this.text(path, value);
    if (t === undefined) return undefined;
    const found = options.find((o) => o === t.trim().toLowerCase());
    return found ?? this.problemAt(path, `must be ${options.join(' or ')} (got ${this.r.quote(t)})`);
  }

  private defaults(value: Value): Defaults {
    const m = this.mapping('defaults', value, DEFAULT_KEYS, 'the defaults');
    if (m === undefined) return {};
    return {
      threshold: this.money('defaults.threshold', m.threshold),
      cooldownMs: this.cooldown('defaults.cooldown', m.cooldown, 'topup'),
      maxPerDay: this.count('defaults.maxPerDay', m.maxPerDay),
      leadTimeMs: this.leadTime('defaults.leadTime', m.leadTime),
      pollAdaptive: this.bool('defaults.pollAdaptive', m.pollAdaptive),
      pollMaxIntervalMs: this.pollMaxInterval('defaults.pollMaxInterval', m.pollMaxInterval),
      topupEnabled: this.bool('defaults.topupEnabled', m.topupEnabled),
      dryRun: this.bool('defaults.dryRun', m.dryRun),
    };
  }

  /** apiSecret and trx of one account: `failed` after a problem, undefined when not given. */
  private secrets(path: string, a: Mapping): { apiSecret: string | 'failed'; trx: string | 'failed' | undefined } {
    const apiSecret = this.secret(path, a, 'apiSecret', (v) => apiSecretProblem(this.r, `${path}.apiSecret`, v)) ?? this.missingSecret(path);
    const trx = this.secret(path, a, 'trx', trxProblem);
    return { apiSecret, trx };
  }

  private missingSecret(path: string): 'failed' {
    this.problemAt(`${path}.apiSecret`, 'required: apiSecretFile: /path/to/file, or apiSecret: ${env:NAME}');
    return 'failed';
  }

  /** `key` (a ${env:NAME} reference only) or `keyFile` (a path), never both, never inline. */
  private secret(path: string, a: Mapping, key: 'apiSecret' | 'trx', check: (v: string) => string | undefined): string | 'failed' | undefined {
    const direct = a[key];
    const file = a[`${key}File`];
    // An inline value is a secret too, whatever else is wrong with it: never shown anywhere.
    if (direct !== undefined) for (const s of strings(direct)) if (!ENV_REF.test(s)) this.r.rememberSecret(s);
    if (direct !== undefined && file !== undefined) {
      this.problemAt(`${path}.${key}`, `also set as ${key}File; use one or the other`);
      return 'failed';
    }
    let value: string;
    let from: string;
    if (direct !== undefined) {
      from = `${path}.${key}`;
      const ref = typeof direct === 'string' ? ENV_REF.exec(direct) : null;
      if (ref === null) {
        this.problemAt(from, `must not be written in the file (it may be readable by many, as a ConfigMap is): use ${key}File: /path/to/file, or ${key}: \${env:NAME}`);
        return 'failed';
      }
      const v = this.ctx.env[ref[1]!];
      if (v === undefined || v === '') {
        this.problemAt(from, `\${env:${this.r.quoteName(ref[1]!)}} is not set (or is empty)`);
        return 'failed';
      }
      value = v;
    } else if (file !== undefined) {
      from = `${path}.${key}File`;
      const filePath = this.text(from, file);
      if (filePath === undefined) return 'failed';
      let content: unknown;
      try {
        content = this.ctx.readFile(filePath);
      } catch (err) {
        this.problemAt(from, `cannot read ${this.r.quote(filePath)} (${readErrorCode(err)})`);
        return 'failed';
      }
      if (typeof content !== 'string') {
        this.problemAt(from, `cannot read ${this.r.quote(filePath)} (reader returned no text)`);
        return 'failed';
      }
      value = stripLineEnding(content);
      if (value === '') {
        this.problemAt(from, `${this.r.quote(filePath)} is empty`);
        return 'failed';
      }
    } else {
      return undefined;
    }
    this.r.rememberSecret(value);
    const why = check(value);
    if (why !== undefined) {
      this.problemAt(from, why);
      return 'failed';
    }
    return value;
  }

  private apiKey(path: string, a: Mapping): string | undefined {
    if (a.apiKey !== undefined && a.apiKeyFile !== undefined) return this.problemAt(`${path}.apiKey`, 'also set as apiKeyFile; use one or the other');
    let key: string | undefined;
    let from = `${path}.apiKey`;
    if (a.apiKey !== undefined) {
      key = this.text(from, a.apiKey);
    } else if (a.apiKeyFile !== undefined) {
      from = `${path}.apiKeyFile`;
      const filePath = this.text(from, a.apiKeyFile);
      if (filePath === undefined) return undefined;
      try {
        const content: unknown = this.ctx.readFile(filePath);
        if (typeof content !== 'string') return this.problemAt(from, `cannot read ${this.r.quote(filePath)} (reader returned no text)`);
        key = stripLineEnding(content);
      } catch (err) {
        return this.problemAt(from, `cannot read ${this.r.quote(filePath)} (${readErrorCode(err)})`);
      }
    } else {
      return this.problemAt(from, 'required (the Vonage API key), or apiKeyFile: /path/to/file');
    }
    if (key === undefined) return undefined;
    const why = apiKeyProblem(key);
    if (why !== undefined) return this.problemAt(from, why);
    if (this.r.refusePublishedSecret(from, key, 'as the account label')) return undefined;
    return key;
  }

  private url(path: string, value: Value | undefined, fallback: string, allowCustom: boolean | undefined): string | undefined {
    const t = value === undefined ? fallback : this.text(path, value);
    if (t === undefined) return undefined;
    return checkedBaseUrl(this.r, path, t, allowCustom, { allowSetting: 'allowCustomBaseUrl: true', example: fallback });
  }

  private account(
    path: string,
    value: Value,
    defaults: Defaults,
    secrets: { apiSecret: string | 'failed'; trx: string | 'failed' | undefined } | undefined,
  ): AccountConfig | undefined {
    const a = this.mapping(path, value, ACCOUNT_KEYS, 'an account');
    if (a === undefined || secrets === undefined) return undefined;
    const before = this.r.problems.length;
    const apiKey = this.apiKey(path, a);
    let name: string | undefined = apiKey;
    if (a.name !== undefined) {
      const t = typeof a.name === 'string' ? this.expand(`${path}.name`, a.name) : this.problemAt(`${path}.name`, `must be a single value (got ${kind(a.name)})`);
      name = t === undefined ? undefined : t === '' ? this.problemAt(`${path}.name`, 'must not be empty (leave the key out to use the API key)') : checkedAccountName(this.r, `${path}.name`, t);
    }
    const allowCustom = this.bool(`${path}.allowCustomBaseUrl`, a.allowCustomBaseUrl) ?? (a.allowCustomBaseUrl === undefined ? false : undefined);
    const baseUrl = this.url(`${path}.baseUrl`, a.baseUrl, DEFAULT_BASE_URL, allowCustom);
    const subaccountsBaseUrl = this.url(`${path}.subaccountsBaseUrl`, a.subaccountsBaseUrl, DEFAULT_SUBACCOUNTS_BASE_URL, allowCustom);
    const auth = this.choice(`${path}.auth`, a.auth, ['basic', 'query'] as const) ?? (a.auth === undefined ? 'basic' : undefined);
    if (auth === 'query') {
      this.r.warnings.push(`${path}.auth: query puts the API secret in request URLs, where proxies and access logs may record it; basic is safer`);
    }
    const threshold = this.money(`${path}.threshold`, a.threshold) ?? (a.threshold === undefined ? defaults.threshold : undefined);
    if (a.threshold === undefined && defaults.threshold === undefined) {
      this.problemAt(`${path}.threshold`, 'required (EUR; top up when the balance is below it), here or in defaults');
    }
    const cooldownMs = this.cooldown(`${path}.cooldown`, a.cooldown, 'topup') ?? (a.cooldown === undefined ? (defaults.cooldownMs ?? DEFAULT_COOLDOWN_MS) : undefined);
    const maxPerDay = this.count(`${path}.maxPerDay`, a.maxPerDay) ?? (a.maxPerDay === undefined ? (defaults.maxPerDay ?? DEFAULT_MAX_PER_DAY) : undefined);
    const leadTimeMs = this.leadTime(`${path}.leadTime`, a.leadTime) ?? (a.leadTime === undefined ? (defaults.leadTimeMs ?? 0) : undefined);
    const pollAdaptive = this.bool(`${path}.pollAdaptive`, a.pollAdaptive) ?? (a.pollAdaptive === undefined ? (defaults.pollAdaptive ?? this.ctx.poll?.adaptive ?? false) : undefined);
    const pollMaxIntervalMs =
      this.pollMaxInterval(`${path}.pollMaxInterval`, a.pollMaxInterval) ?? (a.pollMaxInterval === undefined ? (defaults.pollMaxIntervalMs ?? this.ctx.poll?.maxIntervalMs ?? LIMITS.POLL_MAX_INTERVAL_DEFAULT_MS) : undefined);
    const ownTopup = this.bool(`${path}.topupEnabled`, a.topupEnabled);
    const ownDryRun = this.bool(`${path}.dryRun`, a.dryRun);
    const trx = secrets.trx === 'failed' ? undefined : secrets.trx;
    if (ownTopup === true && secrets.trx === undefined) {
      this.problemAt(`${path}.topupEnabled`, 'is true, but the account has no trx (trxFile: /path/to/file, or trx: ${env:NAME}); without one it never tops up by card');
    }
    // No trx: never a card top-up, whatever the defaults say; transfers still work.
    const topupEnabled = secrets.trx === undefined ? false : (ownTopup ?? defaults.topupEnabled ?? true);
    const dryRun = ownDryRun ?? defaults.dryRun ?? false;
    const subaccounts =
      a.subaccounts === undefined
        ? undefined
        : this.subaccounts(`${path}.subaccounts`, a.subaccounts, defaults, { apiKey, threshold, dryRun: ownDryRun ?? defaults.dryRun });
    if (this.r.problems.length > before || secrets.apiSecret === 'failed' || secrets.trx === 'failed') return undefined;
    const account: AccountConfig = {
      name: name!,
      apiKey: apiKey!,
      apiSecret: secrets.apiSecret,
      trx,
      baseUrl: baseUrl!,
      allowCustomBaseUrl: allowCustom!,
      auth: auth!,
      threshold: threshold!,
      cooldownMs: cooldownMs!,
      maxPerDay: maxPerDay!,
      topupEnabled,
      dryRun,
      leadTimeMs: leadTimeMs!,
      pollAdaptive: pollAdaptive!,
      pollMaxIntervalMs: pollMaxIntervalMs!,
      subaccountsBaseUrl: subaccountsBaseUrl!,
    };
    if (subaccounts !== undefined) account.subaccounts = subaccounts;
    return account;
  }

  private subaccounts(
    path: string,
    value: Value,
    defaults: Defaults,
    primary: { apiKey: string | undefined; threshold: number | undefined; dryRun: boolean | undefined },
  ): SubaccountsConfig | undefined {
    const s = this.mapping(path, value, SUBACCOUNT_KEYS, 'the subaccounts');
    if (s === undefined) return undefined;
    const before = this.r.problems.length;
    const watch = this.watch(`${path}.watch`, s.watch, primary.apiKey);
    const refill = this.choice(`${path}.refill`, s.refill, ['transfer', 'none'] as const) ?? (s.refill === undefined ? 'none' : undefined);
    const threshold = this.money(`${path}.threshold`, s.threshold) ?? (s.threshold === undefined ? defaults.threshold : undefined);
    if (s.threshold === undefined && defaults.threshold === undefined) {
      this.problemAt(`${path}.threshold`, "required (EUR; a subaccount is refilled below it), here or in defaults");
    }
    const cooldownMs = this.cooldown(`${path}.cooldown`, s.cooldown, refill === 'transfer' ? 'transfer' : false) ?? (s.cooldown === undefined ? (defaults.cooldownMs ?? DEFAULT_COOLDOWN_MS) : undefined);
    const maxPerDay = this.count(`${path}.maxPerDay`, s.maxPerDay) ?? (s.maxPerDay === undefined ? (defaults.maxPerDay ?? DEFAULT_MAX_PER_DAY) : undefined);
    // Not from defaults.leadTime: that one is the card top-ups'; predictive transfers are asked for here.
    const leadTimeMs = this.leadTime(`${path}.leadTime`, s.leadTime) ?? (s.leadTime === undefined ? 0 : undefined);
    let transferAmount = this.money(`${path}.transferAmount`, s.transferAmount);
    let maxTransferred = this.money(`${path}.maxTransferredPerDay`, s.maxTransferredPerDay);
    if (refill === 'transfer') {
      if (s.transferAmount === undefined) this.problemAt(`${path}.transferAmount`, 'required with refill: transfer (EUR per transfer)');
      if (s.maxTransferredPerDay === undefined) {
        this.problemAt(`${path}.maxTransferredPerDay`, 'required with refill: transfer (EUR moved to all subaccounts of this primary in any rolling 24 h)');
      }
      if (transferAmount !== undefined && maxTransferred !== undefined && transferAmount > maxTransferred) {
        this.problemAt(`${path}.transferAmount`, `must be at most maxTransferredPerDay (${maxTransferred})`);
      }
    } else if (refill === 'none') {
      for (const key of ['transferAmount', 'maxTransferredPerDay'] as const) {
        if (s[key] !== undefined) this.r.warnings.push(`${path}.${key}: ignored, since refill is none (watch and report only)`);
      }
      transferAmount = 0;
      maxTransferred = 0;
    }
    const primaryReserve = this.money(`${path}.primaryReserve`, s.primaryReserve, { zero: true }) ?? (s.primaryReserve === undefined ? primary.threshold : undefined);
    const transfersEnabled = this.bool(`${path}.topupEnabled`, s.topupEnabled) ?? (s.topupEnabled === undefined ? (defaults.topupEnabled ?? true) : undefined);
    // A dry run set for the primary holds for its transfers too, unless the block says otherwise.
    const dryRun = this.bool(`${path}.dryRun`, s.dryRun) ?? (s.dryRun === undefined ? (primary.dryRun ?? false) : undefined);
    const overrides = s.overrides === undefined ? {} : this.overrides(`${path}.overrides`, s.overrides, { watch, refill, maxTransferred, primaryKey: primary.apiKey });
    if (this.r.problems.length > before) return undefined;
    return {
      watch: watch!,
      refill: refill!,
      settings: { threshold: threshold!, transferAmount: transferAmount!, cooldownMs: cooldownMs!, maxPerDay: maxPerDay!, ...(leadTimeMs! > 0 ? { leadTimeMs: leadTimeMs! } : {}) },
      overrides: overrides!,
      primaryReserve: primaryReserve!,
      maxTransferredPerDay: maxTransferred!,
      transfersEnabled: transfersEnabled!,
      dryRun: dryRun!,
    };
  }

  private watch(path: string, value: Value | undefined, primaryKey: string | undefined): 'all' | string[] | undefined {
    if (value === undefined) return this.problemAt(path, 'required: all, or a list of subaccount API keys');
    if (typeof value === 'string') {
      const t = this.text(path, value);
      if (t === undefined) return undefined;
      return t.trim() === 'all' ? 'all' : this.problemAt(path, `must be all, or a list of subaccount API keys (got ${this.r.quote(t)})`);
    }
    if (!Array.isArray(value)) return this.problemAt(path, `must be all, or a list of subaccount API keys (got ${kind(value)})`);
    if (value.length === 0) return this.problemAt(path, 'must list at least one subaccount API key (or be all)');
    const keys: string[] = [];
    let ok = true;
    value.forEach((v, i) => {
      const at = `${path}[${i}]`;
      const key = this.subaccountKey(at, v, primaryKey);
      if (key === undefined) ok = false;
      else if (keys.includes(key)) {
        ok = false;
        this.problemAt(at, `lists ${key} a second time`);
      } else keys.push(key);
    });
    return ok ? keys : undefined;
  }

  private subaccountKey(path: string, value: Value, primaryKey: string | undefined): string | undefined {
    const key = typeof value === 'string' ? this.expand(path, value) : this.problemAt(path, `must be a subaccount API key (got ${kind(value)})`);
    if (key === undefined) return undefined;
    const why = apiKeyProblem(key);
    if (why !== undefined) return this.problemAt(path, `must be a subaccount API key: ${why}`);
    if (this.r.refusePublishedSecret(path, key, 'as the account label of the subaccount')) return undefined;
    if (key === primaryKey) return this.problemAt(path, "is the primary's own API key, not one of its subaccounts");
    return key;
  }

  private overrides(
    path: string,
    value: Value,
    ctx: { watch: 'all' | string[] | undefined; refill: 'transfer' | 'none' | undefined; maxTransferred: number | undefined; primaryKey: string | undefined },
  ): Record<string, Partial<SubaccountSettings>> | undefined {
    if (!isMapping(value)) return this.problemAt(path, `must be a mapping of subaccount API key to settings (got ${kind(value)})`);
    const out: Record<string, Partial<SubaccountSettings>> = {};
    let ok = true;
    for (const [key, settings] of Object.entries(value)) {
      const at = this.join(path, key);
      const why = apiKeyProblem(key);
      if (why !== undefined || this.r.refusePublishedSecret(at, key, 'as the account label of the subaccount')) {
        if (why !== undefined) this.problemAt(at, `the key must be a subaccount API key: ${why}`);
        ok = false;
        continue;
      }
      if (key === ctx.primaryKey) {
        this.problemAt(at, "is the primary's own API key, not one of its subaccounts");
        ok = false;
      } else if (Array.isArray(ctx.watch) && !ctx.watch.includes(key)) {
        this.problemAt(at, 'is not in the watch list, so this override would never apply');
        ok = false;
      }
      const m = this.mapping(at, settings, OVERRIDE_KEYS, 'the override');
      if (m === undefined) {
        ok = false;
        continue;
      }
      const before = this.r.problems.length;
      const o: Partial<SubaccountSettings> = {};
      const threshold = this.money(`${at}.threshold`, m.threshold);
      const transferAmount = this.money(`${at}.transferAmount`, m.transferAmount);
      const cooldownMs = this.cooldown(`${at}.cooldown`, m.cooldown, ctx.refill === 'transfer' ? 'transfer' : false);
      const maxPerDay = this.count(`${at}.maxPerDay`, m.maxPerDay);
      const leadTimeMs = this.leadTime(`${at}.leadTime`, m.leadTime);
      if (leadTimeMs !== undefined) o.leadTimeMs = leadTimeMs;
      if (threshold !== undefined) o.threshold = threshold;
      if (transferAmount !== undefined) {
        if (ctx.refill === 'none') this.r.warnings.push(`${at}.transferAmount: ignored, since refill is none (watch and report only)`);
        else if (ctx.maxTransferred !== undefined && transferAmount > ctx.maxTransferred) {
          this.problemAt(`${at}.transferAmount`, `must be at most maxTransferredPerDay (${ctx.maxTransferred})`);
        } else o.transferAmount = transferAmount;
      }
      if (cooldownMs !== undefined) o.cooldownMs = cooldownMs;
      if (maxPerDay !== undefined) o.maxPerDay = maxPerDay;
      if (this.r.problems.length > before) ok = false;
      out[key] = o;
    }
    return ok ? out : undefined;
  }

  /**
   * A subaccount key that is another account of the file, by API key (one Vonage account refilled
   * two ways, by its own card top-up and by transfers, each with its own cooldown) or by name
   * (a subaccount's `account` label is its key: both would write the same series). With
   * `watch: all` the keys are known only at run time, where the same rule excludes them.
   */
  private subaccountsElsewhere(accounts: readonly (AccountConfig | undefined)[]): void {
    accounts.forEach((a, i) => {
      if (a?.subaccounts === undefined) return;
      const others = accountsElsewhere(accounts, a.name);
      const keys = [...(a.subaccounts.watch === 'all' ? [] : a.subaccounts.watch.map((k, j) => [k, `watch[${j}]`] as const)), ...Object.keys(a.subaccounts.overrides).map((k) => [k, `overrides.${k}`] as const)];
      for (const [key, where] of keys) {
        const other = others.get(key);
        if (other === undefined) continue;
        const k = `accounts[${other.index}]`;
        this.problemAt(
          `accounts[${i}].subaccounts.${where}`,
          other.by === 'apiKey'
            ? `is the API key of ${k} (${other.name}): that account would be refilled both by its own card top-up and by balance transfers; watch it in one place`
            : `is the name of ${k}: a subaccount's account label is its API key, so both would write the same series; rename ${k}`,
        );
      }
    });
  }

  private unique(accounts: readonly (AccountConfig | undefined)[], field: 'name' | 'apiKey'): void {
    const first = new Map<string, number>();
    accounts.forEach((a, i) => {
      if (a === undefined) return;
      const seen = first.get(a[field]);
      if (seen === undefined) first.set(a[field], i);
      else this.problemAt(`accounts[${i}].${field}`, `is the same as accounts[${seen}].${field}; every account needs its own`);
    });
  }
}

function isMapping(value: Value | undefined): value is Mapping {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function kind(value: Value): string {
  return typeof value === 'string' ? 'a single value' : Array.isArray(value) ? 'a list' : 'a mapping';
}

function strings(value: Value): string[] {
  if (typeof value === 'string') return [value];
  return (Array.isArray(value) ? value : Object.values(value)).flatMap(strings);
}

/** How deep `[` and `{` nest, counted over the whole text (an upper bound: quotes are not skipped). */
function flowDepth(text: string): number {
  let depth = 0;
  let max = 0;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (ch === 0x5b || ch === 0x7b) max = Math.max(max, ++depth);
    else if ((ch === 0x5d || ch === 0x7d) && depth > 0) depth--;
  }
  return max;
}
