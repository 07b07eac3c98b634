/**
 * Pure parsing of the Subaccounts API's JSON answers (api.nexmo.com/accounts/...). Nothing here
 * trusts a body: every field that matters is checked for type, range and length, and anything
 * else is a VonageError with reason `bad_response`, never a guess. A bad answer is a failed poll;
 * it must never read as a zero (or missing, or shared) balance.
 *
 * Rules worth knowing:
 * - `balance` is a finite number in [-1e6, 1e7] or null; null only with
 *   `use_primary_account_balance: true` (the documented shared case). A null balance on a
 *   subaccount with its own balance is `bad_response`: it would otherwise look like "nothing to
 *   watch" instead of a failed read. A shared subaccount that reports a number keeps the number.
 * - `credit_limit` is a finite number or null, for any subaccount (the watchdog does not act on it).
 * - The primary's `balance` must be a number (the primary always has its own balance).
 * - At most MAX_SUBACCOUNTS entries; strings bounded. An entry that breaks a rule (api keys are
 *   unique, 1..64 printable characters) is `unreadable`, alone; the rest of the answer stands.
 * - A transfer's id is `balance_transfer_id` (SPEC) or `id` (the Python SDK's fixture); a missing
 *   or null `reference` reads as '' (transfers made in the dashboard have none).
 */
import type { SubaccountEntry, SubaccountList, TransferReceipt, UnreadableEntry } from '../accounts/types.js';
import { VonageError, type Delivery, type Endpoint } from './errors.js';

/** A primary has at most a few thousand subaccounts; more is a bug or a hostile answer. */
export const MAX_SUBACCOUNTS = 100_000;
export const MAX_TRANSFERS = 100_000;
/**
 * One odd entry fails alone; this many mean the answer itself is broken (or hostile: every bad
 * entry costs an error object, and each would be logged and shown in /status), so it fails whole.
 */
export const MAX_UNREADABLE = 100;
/** Same plausibility range as the Account API's balance (account-parse.ts). */
const MIN_BALANCE = -1_000_000;
const MAX_BALANCE = 10_000_000;
const MAX_KEY = 64;
const MAX_NAME = 256;
const MAX_TEXT = 1024;
const MAX_DATE = 64;

type Fields = Record<string, unknown>;

/** An RFC 7807 problem as the Subaccounts API sends it. */
export interface Problem {
  type: string;
  title?: string;
  detail?: string;
  instance?: string;
  /** 422 only: which parameters failed validation. */
  invalidParameters?: { name?: string; reason?: string }[];
}

class Checker {
  constructor(
    private readonly endpoint: Endpoint,
    private readonly delivery: Delivery,
  ) {}

  fail(message: string): never {
    throw new VonageError(this.endpoint, 'bad_response', message, this.delivery);
  }

  object(value: unknown, what: string): Fields {
    if (!isObject(value)) this.fail(`${what} is not an object`);
    return value;
  }

  array(value: unknown, what: string, max: number): unknown[] {
    if (!Array.isArray(value)) this.fail(`${what} is not an array`);
    if (value.length > max) this.fail(`${what} has more than ${max} entries`);
    return value;
  }

  string(value: unknown, what: string, max: number, min = 0): string {
    if (typeof value !== 'string') this.fail(`${what} is not a string`);
    if (value.length > max) this.fail(`${what} is longer than ${max} characters`);
    if (value.length < min) this.fail(`${what} is empty`);
    return value;
  }

  key(value: unknown, what: string): string {
    const key = this.string(value, what, MAX_KEY, 1);
    // Printable ASCII without spaces: a key goes into paths, logs and metric labels.
    if (!/^[\x21-\x7e]+$/.test(key)) this.fail(`${what} has characters an api key cannot have`);
    return key;
  }

  boolean(value: unknown, what: string): boolean {
    if (typeof value !== 'boolean') this.fail(`${what} is not a boolean`);
    return value;
  }

  amount(value: unknown, what: string): number {
    if (typeof value !== 'number' || !Number.isFinite(value)) this.fail(`${what} is not a finite number`);
    if (value < MIN_BALANCE || value > MAX_BALANCE) this.fail(`${what} is outside any plausible range`);
    return value;
  }

  amountOrNull(value: unknown, what: string): number | null {
    return value === null ? null : this.amount(value, what);
  }
}

function isObject(value: unknown): value is Fields {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function subaccount(c: Checker, raw: unknown, i: number): SubaccountEntry {
  const what = `subaccounts[${i}]`;
  const s = c.object(raw, what);
  const apiKey = c.key(s['api_key'], `${what}.api_key`);
  const usePrimaryBalance = c.boolean(s['use_primary_account_balance'], `${what}.use_primary_account_balance`);
  if (!Object.hasOwn(s, 'balance')) c.fail(`${what}.balance is missing`);
  const balance = c.amountOrNull(s['balance'], `${what}.balance`);
  if (balance === null && !usePrimaryBalance) c.fail(`${what}.balance is null but the subaccount has its own balance`);
  return {
    apiKey,
    name: c.string(s['name'], `${what}.name`, MAX_NAME),
    balance,
    creditLimit: c.amountOrNull(s['credit_limit'] ?? null, `${what}.credit_limit`),
    usePrimaryBalance,
    suspended: c.boolean(s['suspended'], `${what}.suspended`),
    createdAt: c.string(s['created_at'], `${what}.created_at`, MAX_DATE),
  };
}

/**
 * A 2xx `GET /accounts/{primary}/subaccounts` body (already JSON-parsed). The envelope and the
 * primary must be sound or the whole answer is a failed poll. One entry that is not (a field of
 * the wrong type, a repeated api key) fails only itself: it is listed in `unreadable`, under its
 * api key when that much can be read, so one odd subaccount cannot blind its primary's others.
 */
export function parseSubaccountList(body: unknown, at: number, mono: number): SubaccountList {
  const c = new Checker('list_subaccounts', 'yes');
  const embedded = c.object(c.object(body, 'subaccount list')['_embedded'], '_embedded');
  const p = c.object(embedded['primary_account'], 'primary_account');
  const primary = {
    apiKey: c.key(p['api_key'], 'primary_account.api_key'),
    name: c.string(p['name'], 'primary_account.name', MAX_NAME),
    balance: c.amount(p['balance'], 'primary_account.balance'),
    creditLimit: c.amountOrNull(p['credit_limit'] ?? null, 'primary_account.credit_limit'),
  };
  const list = c.array(embedded['subaccounts'], 'subaccounts', MAX_SUBACCOUNTS);
  // Keys are counted over every entry first, sound or not: a repeated key makes all its entries
  // unreadable whichever of them comes first and whichever is malformed.
  const keys = list.map(readableKey);
  const count = new Map<string, number>();
  for (const k of keys) if (k !== undefined) count.set(k, (count.get(k) ?? 0) + 1);
  const subaccounts: SubaccountEntry[] = [];
  const unreadable: UnreadableEntry[] = [];
  const flagged = new Set<string>();
  const unread = (u: UnreadableEntry) => {
    unreadable.push(u);
    if (unreadable.length > MAX_UNREADABLE) c.fail(`more than ${MAX_UNREADABLE} of the ${list.length} subaccount entries could not be read`);
  };
  list.forEach((raw, i) => {
    const key = keys[i];
    if (key === primary.apiKey) return unread({ index: i, problem: `subaccounts[${i}].api_key is the primary's own`, primaryKey: true });
    if (key !== undefined && (count.get(key) ?? 0) > 1) {
      if (!flagged.has(key)) unread({ index: i, apiKey: key, problem: `subaccounts[${i}].api_key is repeated: ${count.get(key)} entries have it` });
      flagged.add(key);
      return;
    }
    try {
      subaccounts.push(subaccount(c, raw, i));
    } catch (err) {
      if (!(err instanceof VonageError)) throw err;
      unread({ index: i, ...(key === undefined ? {} : { apiKey: key }), problem: err.message });
    }
  });
  return { primary, subaccounts, unreadable, at, mono };
}

/** The entry's api key if it is a plausible one, whatever else is wrong with the entry. */
function readableKey(raw: unknown): string | undefined {
  const key = isObject(raw) ? raw['api_key'] : undefined;
  return typeof key === 'string' && key.length >= 1 && key.length <= MAX_KEY && /^[\x21-\x7e]+$/.test(key) ? key : undefined;
}

function transfer(c: Checker, raw: unknown, what: string): TransferReceipt {
  const t = c.object(raw, what);
  const idField = t['balance_transfer_id'] ?? t['id'];
  const amount = c.amount(t['amount'], `${what}.amount`);
  if (amount <= 0) c.fail(`${what}.amount is not positive`);
  const reference = t['reference'] ?? '';
  return {
    id: c.string(idField, `${what}.balance_transfer_id`, MAX_TEXT, 1),
    amount,
    from: c.key(t['from'], `${what}.from`),
    to: c.key(t['to'], `${what}.to`),
    reference: c.string(reference, `${what}.reference`, MAX_TEXT),
    createdAt: c.string(t['created_at'], `${what}.created_at`, MAX_DATE, 1),
  };
}

/**
 * A 2xx `POST /accounts/{primary}/balance-transfers` body. Vonage said yes but we cannot read
 * what: the money may have moved, so its failures carry delivery `unknown`.
 */
export function parseTransferReceipt(body: unknown): TransferReceipt {
  return transfer(new Checker('balance_transfer', 'unknown'), body, 'transfer');
}

/** A 2xx `GET /accounts/{primary}/balance-transfers` body: `_embedded.balance_transfers[]`. */
export function parseTransferList(body: unknown): TransferReceipt[] {
  const c = new Checker('list_balance_transfers', 'yes');
  const embedded = c.object(c.object(body, 'transfer list')['_embedded'], '_embedded');
  const list = c.array(embedded['balance_transfers'], 'balance_transfers', MAX_TRANSFERS);
  return list.map((raw, i) => transfer(c, raw, `balance_transfers[${i}]`));
}

/**
 * An RFC 7807 body, or undefined when the body is not one (a proxy's page, an empty 429). Only
 * `type` is required; over-long or mistyped members are dropped rather than trusted.
 */
export function parseProblem(body: unknown): Problem | undefined {
  if (!isObject(body)) return undefined;
  const text = (v: unknown): string | undefined => (typeof v === 'string' && v.length <= MAX_TEXT ? v : undefined);
  const type = text(body['type']);
  if (type === undefined) return undefined;
  const problem: Problem = { type };
  const title = text(body['title']);
  const detail = text(body['detail']);
  const instance = text(body['instance']);
  if (title !== undefined) problem.title = title;
  if (detail !== undefined) problem.detail = detail;
  if (instance !== undefined) problem.instance = instance;
  const params = body['invalid_parameters'];
  if (Array.isArray(params)) {
    problem.invalidParameters = params.slice(0, 100).filter(isObject).map((p) => {
      const out: { name?: string; reason?: string } = {};
      const name = text(p['name']);
      const reason = text(p['reason']);
      if (name !== undefined) out.name = name;
      if (reason !== undefined) out.reason = reason;
      return out;
    });
  }
  return problem;
}

/** The fragment after '#' of a problem type (`unprovisioned`, `valid-transfers`, ...), lower case. */
export function problemKind(problem: Problem | undefined): string | undefined {
  if (!problem) return undefined;
  const hash = problem.type.lastIndexOf('#');
  return hash >= 0 ? problem.type.slice(hash + 1).trim().toLowerCase() : undefined;
}
