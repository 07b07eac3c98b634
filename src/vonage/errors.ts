/**
 * The project's own error for anything that went wrong talking to Vonage.
 *
 * axios errors carry the request config (Authorization header, query string with api_secret),
 * and pino's serializer calls their toJSON(): logging one leaks the secret. So the client turns
 * every upstream failure into this small object at the boundary, and only this is ever logged.
 */
export type Endpoint = 'get_balance' | 'top_up' | 'list_subaccounts' | 'balance_transfer' | 'list_balance_transfers';

export const FAILURE_REASONS = [
  'timeout',
  'connection_refused',
  'network',
  'redirect',
  'auth_failed',
  'rate_limited',
  'server_error',
  'http_error',
  'bad_response',
  /** The Subaccounts API answered 403 `#unprovisioned`: the primary may not use it (list call). */
  'unprovisioned',
] as const;

export const TOPUP_ONLY_FAILURE_REASONS = ['auto_reload_disabled', 'topup_failed', 'bad_request'] as const;

/**
 * Outcomes only a balance transfer (Subaccounts API) has: Vonage answered and refused, nothing
 * moved. `insufficient_funds`: the 422 saying the source lacks the money; `bad_request`: any other
 * 4xx refusal of the transfer (validation, unknown subaccount, ...).
 */
export const TRANSFER_ONLY_FAILURE_REASONS = ['insufficient_funds', 'bad_request'] as const;

export type FailureReason =
  | (typeof FAILURE_REASONS)[number]
  | (typeof TOPUP_ONLY_FAILURE_REASONS)[number]
  | (typeof TRANSFER_ONLY_FAILURE_REASONS)[number];

/**
 * Whether the request may have reached Vonage. Decides if a failed top-up counts as an attempt:
 * `no` only when the connection was provably never made; `yes` when Vonage answered;
 * `unknown` when it may have been applied without us seeing the answer.
 */
export type Delivery = 'no' | 'yes' | 'unknown';

export class VonageError extends Error {
  override readonly name = 'VonageError';
  constructor(
    readonly endpoint: Endpoint,
    readonly reason: FailureReason,
    message: string,
    readonly delivery: Delivery,
    readonly status?: number,
    /** Seconds from a 429's Retry-After header, when it was a sane number. */
    readonly retryAfterSeconds?: number,
    readonly requestId?: string,
  ) {
    super(message);
  }

  /** What pino writes for `{ err }`: the fields above and nothing inherited. */
  toJSON(): Record<string, unknown> {
    return {
      type: this.name,
      endpoint: this.endpoint,
      reason: this.reason,
      message: this.message,
      delivery: this.delivery,
      status: this.status,
      requestId: this.requestId,
    };
  }
}
