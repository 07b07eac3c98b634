/**
 * The two calls to Vonage's Account API, over axios.
 *
 * Every request is bounded twice: axios' `timeout` (socket idle) and an AbortSignal deadline that
 * also covers connect and a body dripped byte by byte. Redirects are never followed: the
 * credential would go wherever the Location points. Every failure leaves this module as a
 * VonageError; no axios object escapes, because its config holds the secret.
 */
import { createVonageHttp } from './http.js';
import { AxiosError } from 'axios';
import type { AccountConfig } from '../config/config.js';
import { VonageError, type Delivery, type Endpoint, type FailureReason } from './errors.js';
import { parseBalance, parseTopUp, type ParseFailure } from './account-parse.js';
import { VERSION } from '../version.js';

export interface BalanceReading {
  value: number;
  autoReload: boolean;
  /** ms since the epoch, from the injected clock, when the answer arrived. */
  at: number;
  /** Monotonic ms when the answer arrived: its age must survive wall-clock steps. */
  mono?: number;
  requestId?: string;
}

export interface TopUpReceipt {
  requestId?: string;
}

export interface VonageClient {
  getBalance(signal?: AbortSignal): Promise<BalanceReading>;
  topUp(trx: string, signal?: AbortSignal): Promise<TopUpReceipt>;
}

export interface ClientOptions {
  account: Pick<AccountConfig, 'apiKey' | 'apiSecret' | 'baseUrl' | 'auth'>;
  timeoutMs: number;
  now?: () => number;
  /** Monotonic clock for `mono` on readings; performance.now unless a test drives time itself. */
  monoNow?: () => number;
  /** Called after every request with its wall duration, for the latency histogram. */
  observe?: (endpoint: Endpoint, seconds: number) => void;
}

/** A balance answer is a few dozen bytes; anything far larger is hostile or broken. */
export const MAX_BODY_BYTES = 64 * 1024;

/** The Account API's two calls; the Subaccounts API's are in subaccounts-client.ts. */
type AccountEndpoint = 'get_balance' | 'top_up';

const PATHS: Record<AccountEndpoint, string> = {
  get_balance: '/account/get-balance',
  top_up: '/account/top-up',
};

export function createVonageClient(options: ClientOptions): VonageClient {
  const { account, timeoutMs } = options;
  const now = options.now ?? Date.now;
  const monoNow = options.monoNow ?? (() => performance.now());
  const http = createVonageHttp(account.baseUrl, timeoutMs, MAX_BODY_BYTES);

  const authHeaders: Record<string, string> =
    account.auth === 'basic'
      ? { Authorization: `Basic ${Buffer.from(`${account.apiKey}:${account.apiSecret}`).toString('base64')}` }
      : {};
  const authParams: Record<string, string> | undefined =
    account.auth === 'query' ? { api_key: account.apiKey, api_secret: account.apiSecret } : undefined;

  async function send(endpoint: AccountEndpoint, body: string | undefined, outer?: AbortSignal) {
    // One controller per request, linked to the caller's signal by a listener removed in
    // `finally`. (AbortSignal.any would do, but on Node 20 it leaks a reference on the
    // long-lived outer signal for every request: nodejs/node#55351.)
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, timeoutMs);
    const onOuterAbort = () => controller.abort();
    if (outer?.aborted) controller.abort();
    else outer?.addEventListener('abort', onOuterAbort, { once: true });
    const signal = controller.signal;
    const started = performance.now();
    try {
      const response = await http.request<string>({
        url: PATHS[endpoint],
        method: endpoint === 'top_up' ? 'POST' : 'GET',
        params: authParams,
        data: body,
        headers: {
          ...authHeaders,
          Accept: 'application/json',
          'User-Agent': `vonage-reload-watchdog/${VERSION}`,
          ...(body === undefined ? {} : { 'Content-Type': 'application/x-www-form-urlencoded' }),
        },
        signal,
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
      throw mapTransportError(endpoint, err, timedOut, outer?.aborted ?? false);
    } finally {
      clearTimeout(timer);
      outer?.removeEventListener('abort', onOuterAbort);
      options.observe?.(endpoint, (performance.now() - started) / 1000);
    }
  }

  function fail(endpoint: Endpoint, f: ParseFailure, delivery: Delivery, status: number, retryAfter?: string, requestId?: string) {
    return new VonageError(endpoint, f.reason, f.message, delivery, status, parseRetryAfter(retryAfter, now()), requestId);
  }

  return {
    async getBalance(signal) {
      const r = await send('get_balance', undefined, signal);
      const parsed = parseBalance(r.status, r.contentType, r.body);
      if (!parsed.ok) throw fail('get_balance', parsed, 'yes', r.status, r.retryAfter, r.requestId);
      return { value: parsed.value, autoReload: parsed.autoReload, at: now(), mono: monoNow(), requestId: r.requestId };
    },
    async topUp(trx, signal) {
      const r = await send('top_up', new URLSearchParams({ trx }).toString(), signal);
      const parsed = parseTopUp(r.status, r.contentType, r.body);
      if (!parsed.ok) {
        throw fail('top_up', parsed, parsed.outcome === 'unknown' ? 'unknown' : 'yes', r.status, r.retryAfter, r.requestId);
      }
      return { requestId: r.requestId };
    },
  };
}

/** Retry-After is seconds or an HTTP date; anything else, or more than an hour, is ignored. */
export function parseRetryAfter(value: string | undefined, nowMs: number): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  let seconds: number;
  if (/^\d+$/.test(text)) seconds = Number(text);
  else {
    const date = Date.parse(text);
    if (Number.isNaN(date)) return undefined;
    seconds = Math.max(0, (date - nowMs) / 1000);
  }
  return seconds <= 3600 ? seconds : undefined;
}

/** axios' wording for its own size cap: the only ERR_BAD_RESPONSE that is about size. */
const SIZE_CAP = /^maxContentLength size of \d+ exceeded$/;
/** axios' wording (ERR_BAD_RESPONSE) when the body ended early, and Node's own. */
const CUT_SHORT = /^(stream has been aborted|aborted)$/;

const NEVER_CONNECTED = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH', 'EADDRNOTAVAIL']);

/**
 * Classifies a transport failure, keeping only the code. The one question that matters for money:
 * could the request have reached Vonage? Only failures before a connection existed say no.
 * Shared with subaccounts-client.ts, whose list answers have a larger cap (`maxBodyBytes`).
 */
export function mapTransportError(endpoint: Endpoint, err: unknown, timedOut: boolean, cancelled: boolean, maxBodyBytes = MAX_BODY_BYTES): VonageError {
  const code = err instanceof AxiosError ? err.code : undefined;
  const cause = err instanceof AxiosError && err.cause && typeof err.cause === 'object' ? (err.cause as { code?: unknown }).code : undefined;
  const sysCode = typeof cause === 'string' ? cause : code;
  const text = err instanceof Error ? err.message : '';
  const make = (reason: FailureReason, message: string, delivery: Delivery) =>
    new VonageError(endpoint, reason, message, delivery);

  if (sysCode && NEVER_CONNECTED.has(sysCode)) {
    return sysCode === 'ECONNREFUSED'
      ? make('connection_refused', 'connection refused', 'no')
      : make('network', `could not reach Vonage (${sysCode})`, 'no');
  }
  if (code === AxiosError.ERR_BAD_RESPONSE && SIZE_CAP.test(text)) {
    return make('bad_response', `answer larger than ${maxBodyBytes} bytes`, 'unknown');
  }
  if (timedOut || code === 'ECONNABORTED' || code === 'ETIMEDOUT') {
    return make('timeout', 'no complete answer within HTTP_TIMEOUT', 'unknown');
  }
  if (cancelled) return make('network', 'request abandoned at shutdown', 'unknown');
  // The connection closed before the body was whole (fewer bytes than Content-Length, a chunked
  // body cut off): the same loss as a reset, so transient for the read and unknown for a top-up.
  // axios says "stream has been aborted" (ERR_BAD_RESPONSE) or passes on Node's "aborted".
  if (CUT_SHORT.test(text)) {
    return make('network', 'answer cut short: the connection closed before the whole body arrived', 'unknown');
  }
  return make('network', `connection failed${sysCode ? ` (${sysCode})` : ''}`, 'unknown');
}

export interface RetryOptions {
  /** Total tries, first included. */
  attempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
  sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  random?: () => number;
  signal?: AbortSignal;
  onRetry?: (err: VonageError, delayMs: number, attempt: number) => void;
}

const TRANSIENT: ReadonlySet<FailureReason> = new Set(['timeout', 'connection_refused', 'network', 'server_error', 'rate_limited']);

/**
 * The balance read, retried with jittered exponential backoff inside one cycle. Reads are
 * idempotent, so this is safe; the top-up has no such helper on purpose.
 */
export async function getBalanceWithRetry(client: VonageClient, options: RetryOptions): Promise<BalanceReading> {
  const random = options.random ?? Math.random;
  for (let attempt = 1; ; attempt++) {
    try {
      return await client.getBalance(options.signal);
    } catch (err) {
      if (!(err instanceof VonageError) || !TRANSIENT.has(err.reason) || attempt >= options.attempts || options.signal?.aborted) throw err;
      const backoff = Math.min(options.maxDelayMs, options.baseDelayMs * 2 ** (attempt - 1)) * (0.5 + random() / 2);
      // Honouring Retry-After means not asking sooner; if it is longer than this cycle may wait,
      // the next scheduled poll is the retry.
      if (err.retryAfterSeconds !== undefined && err.retryAfterSeconds * 1000 > options.maxDelayMs) throw err;
      const delay = err.retryAfterSeconds !== undefined ? err.retryAfterSeconds * 1000 : backoff;
      options.onRetry?.(err, delay, attempt);
      await options.sleep(delay, options.signal);
    }
  }
}
