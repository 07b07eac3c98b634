/**
 * The three calls of Vonage's Subaccounts API the watchdog uses (api.nexmo.com, Basic auth with
 * the primary's key and secret): list the subaccounts with their balances, move balance from the
 * primary to a subaccount, and read the transfer history (to settle a transfer whose answer was
 * lost: the `reference` we sent is the ledger's attempt id).
 *
 * Same safety as account-client.ts: a deadline per request covering connect to last byte, no
 * redirects, a body cap (larger for the lists: 1,000 subaccounts are ~250 KB), and every failure
 * leaves as a VonageError that holds neither the secret nor any axios object.
 */
import { createVonageHttp } from './http.js';
import type { SubaccountList, TransferReceipt, TransferRequest } from '../accounts/types.js';
import { VERSION } from '../version.js';
import { mapTransportError, parseRetryAfter } from './account-client.js';
import { VonageError, type Delivery, type Endpoint, type FailureReason } from './errors.js';
import { parseProblem, parseSubaccountList, parseTransferList, parseTransferReceipt, problemKind, type Problem } from './subaccounts-parse.js';

export interface TransferQuery {
  /** ISO 8601, e.g. 2026-12-01T00:00:00Z. */
  startDate: string;
  endDate?: string;
  /** Only transfers to or from this subaccount. */
  subaccount?: string;
}

export interface SubaccountsClient {
  listSubaccounts(signal?: AbortSignal): Promise<SubaccountList>;
  /** Never retried here: a lost answer is settled through listTransfers and the reference. */
  transfer(req: TransferRequest, signal?: AbortSignal): Promise<TransferReceipt>;
  listTransfers(q: TransferQuery, signal?: AbortSignal): Promise<TransferReceipt[]>;
}

export interface SubaccountsClientOptions {
  primaryApiKey: string;
  apiSecret: string;
  /** https://api.nexmo.com in production (not rest.nexmo.com); the paths start with /accounts. */
  baseUrl: string;
  timeoutMs: number;
  now?: () => number;
  monoNow?: () => number;
  observe?: (endpoint: Endpoint, seconds: number) => void;
}

/** The two lists can be long; 8 MiB is ~30,000 subaccounts. */
export const MAX_LIST_BODY_BYTES = 8 * 1024 * 1024;
/** One transfer receipt is a few hundred bytes. */
export const MAX_TRANSFER_BODY_BYTES = 64 * 1024;
const MAX_REFERENCE = 1024;
const MAX_QUOTED = 200;

interface Answer {
  status: number;
  contentType: string | undefined;
  body: string;
  requestId: string | undefined;
  retryAfter: string | undefined;
}

export function createSubaccountsClient(options: SubaccountsClientOptions): SubaccountsClient {
  const { primaryApiKey, apiSecret, timeoutMs } = options;
  const now = options.now ?? Date.now;
  const monoNow = options.monoNow ?? (() => performance.now());
  const http = createVonageHttp(options.baseUrl, timeoutMs, MAX_TRANSFER_BODY_BYTES);
  const authorization = `Basic ${Buffer.from(`${primaryApiKey}:${apiSecret}`).toString('base64')}`;
  const base = `/accounts/${encodeURIComponent(primaryApiKey)}`;

  /** Vonage's own words, bounded, one line, and never the secret (should anything echo it). */
  function quote(text: string | undefined): string {
    if (!text) return '';
    let clean = text.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
    if (apiSecret.length > 0) clean = clean.split(apiSecret).join('***');
    return clean.length > MAX_QUOTED ? `${clean.slice(0, MAX_QUOTED)}…` : clean;
  }

  async function send(endpoint: Endpoint, method: 'GET' | 'POST', url: string, cap: number, body: string | undefined, outer?: AbortSignal): Promise<Answer> {
    // As in account-client.ts: one controller per request, linked to the caller's signal by a
    // listener removed in `finally` (AbortSignal.any leaks on Node 20: nodejs/node#55351).
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, timeoutMs);
    const onOuterAbort = () => controller.abort();
    if (outer?.aborted) controller.abort();
    else outer?.addEventListener('abort', onOuterAbort, { once: true });
    const started = performance.now();
    try {
      const response = await http.request<string>({
        url,
        method,
        data: body,
        maxContentLength: cap,
        maxBodyLength: cap,
        headers: {
          Authorization: authorization,
          Accept: 'application/json',
          'User-Agent': `vonage-reload-watchdog/${VERSION}`,
          ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
        },
        signal: controller.signal,
      });
      const header = (name: string): string | undefined => {
        const v: unknown = response.headers[name];
        return typeof v === 'string' ? v : undefined;
      };
      return {
        status: response.status,
        contentType: header('content-type'),
        body: typeof response.data === 'string' ? response.data : '',
        requestId: header('x-request-id'),
        retryAfter: header('retry-after'),
      };
    } catch (err) {
      throw mapTransportError(endpoint, err, timedOut, outer?.aborted ?? false, cap);
    } finally {
      clearTimeout(timer);
      outer?.removeEventListener('abort', onOuterAbort);
      options.observe?.(endpoint, (performance.now() - started) / 1000);
    }
  }

  /** The parsed JSON of a 2xx answer, or bad_response (HTML page, not JSON). */
  function successBody(endpoint: Endpoint, r: Answer, delivery: Delivery): unknown {
    if (looksLikeHtml(r.contentType, r.body)) {
      throw new VonageError(endpoint, 'bad_response', `answer is an HTML page (HTTP ${r.status}), not JSON: a proxy, captive portal or wrong base URL?`, delivery, r.status, undefined, r.requestId);
    }
    const parsed = parseJson(r.body);
    if (parsed === undefined) throw new VonageError(endpoint, 'bad_response', `answer is not valid JSON (HTTP ${r.status})`, delivery, r.status, undefined, r.requestId);
    return parsed;
  }

  /** Re-raises a parser's VonageError with the status and request id of the answer. */
  function withAnswer<T>(r: Answer, parse: () => T): T {
    try {
      return parse();
    } catch (err) {
      if (err instanceof VonageError) throw new VonageError(err.endpoint, err.reason, err.message, err.delivery, r.status, undefined, r.requestId);
      throw err;
    }
  }

  /** Any non-2xx answer. Reads never report the transfer-only reasons. */
  function statusError(endpoint: Endpoint, r: Answer): VonageError {
    const isTransfer = endpoint === 'balance_transfer';
    const problem: Problem | undefined = parseProblem(parseJson(r.body));
    const kind = problemKind(problem);
    const said = problem ? quote([problem.title, problem.detail].filter(Boolean).join(': ')) : '';
    const suffix = said ? `: ${said}` : '';
    const make = (reason: FailureReason, message: string, delivery: Delivery = 'yes') =>
      new VonageError(endpoint, reason, message, delivery, r.status, reason === 'rate_limited' ? parseRetryAfter(r.retryAfter, now()) : undefined, r.requestId);
    const { status } = r;
    if (status >= 300 && status < 400) return make('redirect', `unexpected redirect (HTTP ${status}), not followed`);
    if (status === 401) return make('auth_failed', `authentication failed (HTTP 401)${suffix}`);
    if (status === 403 && kind === 'unprovisioned') return make('unprovisioned', `the primary account is not provisioned for the Subaccounts API (HTTP 403)${suffix}`);
    if (status === 429) return make('rate_limited', 'rate limited (HTTP 429)');
    if (status >= 500) return make('server_error', `Vonage server error (HTTP ${status})`, isTransfer ? 'unknown' : 'yes');
    if (isTransfer && status === 422 && kind === 'valid-transfers') {
      return make('insufficient_funds', `Vonage refused the transfer: not enough balance available (HTTP 422)${suffix}`);
    }
    if (isTransfer && status >= 400) return make('bad_request', `Vonage refused the transfer (HTTP ${status})${suffix}`);
    const page = looksLikeHtml(r.contentType, r.body) ? ' (an HTML page: a proxy, captive portal or wrong base URL?)' : '';
    return make('http_error', `unexpected HTTP status ${status}${page}${suffix}`);
  }

  function ok(status: number): boolean {
    return status >= 200 && status < 300;
  }

  return {
    async listSubaccounts(signal) {
      const r = await send('list_subaccounts', 'GET', `${base}/subaccounts`, MAX_LIST_BODY_BYTES, undefined, signal);
      if (!ok(r.status)) throw statusError('list_subaccounts', r);
      const body = successBody('list_subaccounts', r, 'yes');
      const list = withAnswer(r, () => parseSubaccountList(body, now(), monoNow()));
      if (list.primary.apiKey !== primaryApiKey) {
        throw new VonageError('list_subaccounts', 'bad_response', 'the answer describes another primary account', 'yes', r.status, undefined, r.requestId);
      }
      if (r.requestId !== undefined) list.requestId = r.requestId;
      return list;
    },

    async transfer(req, signal) {
      // A request we would not send on purpose never leaves: nothing can have moved.
      const invalid = checkTransfer(req);
      if (invalid) throw new VonageError('balance_transfer', 'bad_request', `transfer not sent: ${invalid}`, 'no');
      const payload = JSON.stringify({ from: req.from, to: req.to, amount: req.amount, reference: req.reference });
      const r = await send('balance_transfer', 'POST', `${base}/balance-transfers`, MAX_TRANSFER_BODY_BYTES, payload, signal);
      if (!ok(r.status)) throw statusError('balance_transfer', r);
      const body = successBody('balance_transfer', r, 'unknown');
      const receipt = withAnswer(r, () => parseTransferReceipt(body));
      if (receipt.from !== req.from || receipt.to !== req.to || Math.abs(receipt.amount - req.amount) > 1e-6) {
        throw new VonageError('balance_transfer', 'bad_response', 'the receipt does not match the transfer that was sent', 'unknown', r.status, undefined, r.requestId);
      }
      return receipt;
    },

    async listTransfers(q, signal) {
      const params = new URLSearchParams({ start_date: q.startDate });
      if (q.endDate !== undefined) params.set('end_date', q.endDate);
      if (q.subaccount !== undefined) params.set('subaccount', q.subaccount);
      const r = await send('list_balance_transfers', 'GET', `${base}/balance-transfers?${params.toString()}`, MAX_LIST_BODY_BYTES, undefined, signal);
      if (!ok(r.status)) throw statusError('list_balance_transfers', r);
      const body = successBody('list_balance_transfers', r, 'yes');
      return withAnswer(r, () => parseTransferList(body));
    },
  };
}

function checkTransfer(req: TransferRequest): string | undefined {
  if (typeof req.from !== 'string' || req.from === '') return 'from is empty';
  if (typeof req.to !== 'string' || req.to === '') return 'to is empty';
  if (req.from === req.to) return 'from and to are the same account';
  if (typeof req.amount !== 'number' || !Number.isFinite(req.amount) || req.amount <= 0) return 'amount is not a positive number';
  if (typeof req.reference !== 'string' || req.reference === '' || req.reference.length > MAX_REFERENCE) return `reference must be 1..${MAX_REFERENCE} characters`;
  return undefined;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function looksLikeHtml(contentType: string | undefined, body: string): boolean {
  return /^\s*text\/html\b/i.test(contentType ?? '') || /^\s*<(!doctype\s+html|html)[\s>]/i.test(body);
}
