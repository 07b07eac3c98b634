/**
 * Pure parsing of Vonage's answers. Nothing here trusts a body: a balance counts only when the
 * status is 2xx and `value` is a finite number, because old clients read the 401 body
 * `{"error-code":"401"}` as "value missing → zero balance" and topped up on it.
 */
import type { FailureReason } from './errors.js';

export interface BalanceOk {
  ok: true;
  value: number;
  autoReload: boolean;
}
export interface ParseFailure {
  ok: false;
  reason: FailureReason;
  message: string;
  /** For top-up only: `unknown` when Vonage may have applied it despite the answer we got. */
  outcome: 'failed' | 'unknown';
}
export type BalanceParse = BalanceOk | ParseFailure;
export type TopUpParse = { ok: true } | ParseFailure;

/** Beyond these the number is not a balance but a bug or a hostile answer (research S4). */
const MIN_BALANCE = -1_000_000;
const MAX_BALANCE = 10_000_000;

type Fields = Record<string, unknown>;

function failure(reason: FailureReason, message: string, outcome: 'failed' | 'unknown' = 'failed'): ParseFailure {
  return { ok: false, reason, message, outcome };
}

/**
 * A proxy, a captive portal or a wrong VONAGE_BASE_URL answers with a web page; saying so names
 * the likely cause, where "not a valid XML document" would send the operator after Vonage.
 */
function looksLikeHtml(contentType: string | undefined, body: string): boolean {
  return /^\s*text\/html\b/i.test(contentType ?? '') || /^\s*<(!doctype\s+html|html)[\s>]/i.test(body);
}

function htmlFailure(what: 'balance' | 'top-up', status: number, outcome: 'failed' | 'unknown'): ParseFailure {
  const not = what === 'balance' ? 'a balance' : 'a top-up result';
  return failure('bad_response', `${what} answer is an HTML page (HTTP ${status}), not ${not}: a proxy, captive portal or wrong VONAGE_BASE_URL?`, outcome);
}

function looksLikeXml(contentType: string | undefined, body: string): boolean {
  return /xml/i.test(contentType ?? '') || body.trimStart().startsWith('<');
}

/**
 * A deliberately tiny reader for the two flat documents Vonage sends (`<accountBalance>` and
 * `<response>` with text-only children). Anything nested, repeated or unexpected is rejected
 * rather than guessed at.
 */
function parseFlatXml(body: string, roots: readonly string[]): Fields | undefined {
  const doc = body.replace(/^\s*<\?xml[^?]*\?>/, '').trim();
  const root = /^<([A-Za-z][\w-]*)>([\s\S]*)<\/\1>$/.exec(doc);
  if (!root || !roots.includes(root[1]!)) return undefined;
  // No prototype: a child named <constructor> or <toString> must not look like a repeat.
  const fields: Fields = Object.create(null) as Fields;
  let rest = root[2]!.trim();
  while (rest.length > 0) {
    const child = /^<([A-Za-z][\w-]*)>([^<]*)<\/\1>\s*/.exec(rest);
    if (!child) return undefined;
    const name = child[1]!;
    if (Object.hasOwn(fields, name)) return undefined;
    fields[name] = child[2]!.trim();
    rest = rest.slice(child[0].length);
  }
  return fields;
}

function parseJsonObject(body: string): Fields | undefined {
  try {
    const parsed: unknown = JSON.parse(body);
    return parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Fields) : undefined;
  } catch {
    return undefined;
  }
}

function readBody(contentType: string | undefined, body: string, xmlRoots: readonly string[]) {
  if (looksLikeXml(contentType, body)) return { format: 'xml' as const, fields: parseFlatXml(body, xmlRoots) };
  return { format: 'json' as const, fields: parseJsonObject(body) };
}

function label(fields: Fields | undefined): string | undefined {
  const value = fields?.['error-code-label'];
  return typeof value === 'string' ? value.trim().toLowerCase() : undefined;
}

function code(fields: Fields | undefined): string | undefined {
  const value = fields?.['error-code'];
  if (typeof value === 'string') return value.trim();
  if (typeof value === 'number') return String(value);
  return undefined;
}

/** Non-2xx statuses mean the same thing on both endpoints, except what a 401's label says. */
function statusFailure(status: number, fields: Fields | undefined, contentType?: string, body = ''): ParseFailure {
  if (status >= 300 && status < 400) return failure('redirect', `unexpected redirect (HTTP ${status}), not followed`);
  if (status === 401 || status === 403) {
    const l = label(fields);
    if (l === 'not auto-reload enabled') return failure('auto_reload_disabled', 'auto-reload is not enabled on the account');
    if (code(fields) === '420' || l === 'topup failed') return failure('topup_failed', 'Vonage answered "topup failed" (420)');
    return failure('auth_failed', `authentication failed (HTTP ${status})`);
  }
  if (status === 429) return failure('rate_limited', 'rate limited (HTTP 429)');
  if (status === 400) return failure('bad_request', 'Vonage rejected the request as malformed (HTTP 400)');
  if (status >= 500) return failure('server_error', `Vonage server error (HTTP ${status})`, 'unknown');
  // A 404 page is the usual sign of a wrong VONAGE_BASE_URL; say so rather than only the number.
  const page = looksLikeHtml(contentType, body) ? ' (an HTML page: a proxy, captive portal or wrong VONAGE_BASE_URL?)' : '';
  return failure('http_error', `unexpected HTTP status ${status}${page}`);
}

function toBoolean(v: unknown): boolean | undefined {
  if (typeof v === 'boolean') return v;
  if (v === 'true') return true;
  if (v === 'false') return false;
  return undefined;
}

export function parseBalance(status: number, contentType: string | undefined, body: string): BalanceParse {
  const { format, fields } = readBody(contentType, body, ['accountBalance']);
  if (status < 200 || status >= 300) {
    const f = statusFailure(status, fields, contentType, body);
    // A 400 or 420 has no meaning for a read; keep the label set of the poll small and honest.
    return f.reason === 'bad_request' || f.reason === 'topup_failed' || f.reason === 'auto_reload_disabled'
      ? failure('http_error', f.message)
      : { ...f, outcome: 'failed' };
  }
  if (!fields) {
    // Only an unreadable answer is called a page: a balance behind a mislabelled content type still counts.
    if (looksLikeHtml(contentType, body)) return htmlFailure('balance', status, 'failed');
    return failure('bad_response', `balance answer is not a valid ${format.toUpperCase()} document`);
  }
  if ('error-code' in fields) {
    return label(fields) === 'authentication failed'
      ? failure('auth_failed', 'authentication failed (in a 2xx answer)')
      : failure('bad_response', 'balance answer carries an error code instead of a value');
  }
  const raw = fields['value'];
  // JSON must carry a number; XML carries text, which must be a plain decimal.
  const value =
    format === 'json'
      ? typeof raw === 'number' ? raw : Number.NaN
      : typeof raw === 'string' && /^-?\d+(\.\d+)?$/.test(raw) ? Number(raw) : Number.NaN;
  if (!Number.isFinite(value)) return failure('bad_response', 'balance answer has no numeric value');
  if (value < MIN_BALANCE || value > MAX_BALANCE) return failure('bad_response', 'balance value is outside any plausible range');
  const autoReload = toBoolean(fields['autoReload']);
  if (autoReload === undefined) return failure('bad_response', 'balance answer has no autoReload flag');
  return { ok: true, value, autoReload };
}

export function parseTopUp(status: number, contentType: string | undefined, body: string): TopUpParse {
  const { format, fields } = readBody(contentType, body, ['response']);
  if (status < 200 || status >= 300) return statusFailure(status, fields, contentType, body);
  if (!fields) {
    // Vonage accepted the request and said something we cannot read: it may have charged the card.
    // A page may come from a proxy that passed the request on, so it is unknown too.
    if (looksLikeHtml(contentType, body)) return htmlFailure('top-up', status, 'unknown');
    return failure('bad_response', `top-up answer is not a valid ${format.toUpperCase()} document`, 'unknown');
  }
  const c = code(fields);
  if (c === '200') return { ok: true };
  const f = statusFailure(c === '420' ? 401 : Number(c ?? 'NaN'), fields);
  if (c !== undefined && /^\d{3}$/.test(c) && f.reason !== 'http_error') return f;
  return failure('bad_response', 'top-up answer has no success code', 'unknown');
}
