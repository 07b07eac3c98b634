// A small, faithful stand-in for rest.nexmo.com's balance and top-up endpoints, with fault
// injection. Wire shapes follow Vonage's Account API OpenAPI description (1.0.3) and, where that is
// silent (400, 420, XML selection), the official SDKs' test fixtures.
//
// It also serves three calls of the Subaccounts API (api.nexmo.com in production; here the same
// server): GET /accounts/{key}/subaccounts, POST and GET /accounts/{key}/balance-transfers, with
// RFC 7807 errors as in Vonage's Subaccounts OpenAPI description (1.0.8). The primary is the
// account of apiKey/apiSecret: its balance is the one get-balance reports, and a transfer moves
// money between it and one of its subaccounts.
import { randomUUID } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type SimEndpoint = 'balance' | 'topup' | 'list_subaccounts' | 'transfer' | 'list_transfers';
export const SIM_ENDPOINTS: readonly SimEndpoint[] = ['balance', 'topup', 'list_subaccounts', 'transfer', 'list_transfers'];
/**
 * Every fault kind, the endpoints it applies to unless a fault says otherwise, and what it does.
 * The one list: the type, the control API's validation and error, and the CLI's --help all come
 * from it, so a kind cannot be added to one and missed by another.
 */
export const SIM_FAULTS = {
  server_error: { endpoint: 'both', does: 'answers 500 (or `status`) with a plain-text body (Subaccounts API: its JSON InternalError)' },
  rate_limit: { endpoint: 'both', does: 'answers 429, with Retry-After when `retryAfterSeconds` is set' },
  slow: { endpoint: 'both', does: 'answers normally after `delayMs`' },
  hang: { endpoint: 'both', does: 'never answers' },
  reset: { endpoint: 'both', does: 'resets the connection before answering; nothing is applied' },
  garbage: { endpoint: 'both', does: 'answers 200 with bytes that are neither JSON nor XML' },
  html: { endpoint: 'both', does: 'answers 200 with an HTML error page' },
  huge: { endpoint: 'both', does: 'answers 200 with a 10 MB body' },
  truncated: { endpoint: 'both', does: 'answers 200 with the first half of a success body; nothing is applied' },
  slow_drip: { endpoint: 'both', does: 'answers normally, one byte every `delayMs` (default 500)' },
  redirect: { endpoint: 'both', does: 'answers 302 to `location` (default: the same path)' },
  auth_failure: { endpoint: 'both', does: 'answers 401 "authentication failed" (Subaccounts API: its JSON 401)' },
  auto_reload_off: { endpoint: 'both', does: 'reports autoReload false; top-ups answer 401 "not auto-reload enabled"' },
  topup_failed: { endpoint: 'topup', does: 'answers 401 with Vonage\'s 420 "topup failed"' },
  bad_request: { endpoint: 'topup', also: ['transfer'], does: 'answers 400 BAD_REQUEST (a transfer: 422 validation)' },
  lost_answer: { endpoint: 'topup', also: ['transfer'], does: 'applies the top-up (or transfer), then loses the answer (`lostMode`: reset, hang or truncated)' },
  lag: { endpoint: 'topup', does: 'applies the top-up, but the balance hides it for `lagPolls` reads (default 1)' },
} as const satisfies Record<string, { endpoint: 'both' | 'topup'; also?: readonly SimEndpoint[]; does: string }>;

export type SimFaultKind = keyof typeof SIM_FAULTS;
export const SIM_FAULT_KINDS = Object.keys(SIM_FAULTS) as SimFaultKind[];

/** The fault kinds as `--help` lists them: one per line, with what each does. */
export function describeFaultKinds(indent = '  '): string {
  const width = Math.max(...SIM_FAULT_KINDS.map((k) => k.length));
  return SIM_FAULT_KINDS.map((k) => {
    const also: readonly string[] = faultTargets(k).slice(1);
    const where = SIM_FAULTS[k].endpoint === 'topup' ? (also.length > 0 ? `top-up or ${also.join(', ')} only: ` : 'top-up only: ') : '';
    return `${indent}${k.padEnd(width)}  ${where}${SIM_FAULTS[k].does}`;
  }).join('\n');
}

export interface SimFault {
  kind: SimFaultKind;
  endpoint?: SimEndpoint | 'both';
  /** Apply to the next N matching requests, then clear; undefined = until cleared. */
  count?: number;
  status?: number;
  delayMs?: number;
  retryAfterSeconds?: number;
  location?: string;
  lostMode?: 'reset' | 'hang' | 'truncated';
  lagPolls?: number;
}

/** A subaccount of the primary (apiKey) as the simulator starts with it. */
export interface SimSubaccountInit {
  apiKey: string;
  name?: string;
  /** EUR; null: spends the primary's balance (use_primary_account_balance). Default 0. */
  balance?: number | null;
  /** Default 0 for an own balance; always null for a shared one. */
  creditLimit?: number;
  suspended?: boolean;
  /** ISO 8601; default the simulator's start, in whole seconds. */
  createdAt?: string;
}

/** A subaccount as the simulator holds it (and the list call reports it). */
export interface SimSubaccount {
  apiKey: string;
  name: string;
  balance: number | null;
  creditLimit: number | null;
  usePrimaryBalance: boolean;
  suspended: boolean;
  createdAt: string;
}

/** One applied balance transfer: the history the API serves and the ground truth in one. */
export interface AppliedTransfer {
  at: number;
  id: string;
  amount: number;
  from: string;
  to: string;
  reference: string;
  /** ISO 8601 in whole seconds, as Vonage writes it. */
  createdAt: string;
  requestId: string;
  primaryBalanceAfter: number;
  subaccountBalanceAfter: number;
}

export interface SimulatorOptions {
  apiKey?: string;
  apiSecret?: string;
  trx?: string;
  balance?: number;
  autoReload?: boolean;
  drainPerSecond?: number;
  topUpAmount?: number;
  now?: () => number;
  host?: string;
  port?: number;
  /** One JSON line per applied top-up, appended synchronously: ground truth that survives crashes. */
  appliedLogPath?: string;
  /** Subaccounts of the primary at start. */
  subaccounts?: SimSubaccountInit[];
  /** false: the Subaccounts API answers 403 #unprovisioned (default true). */
  subaccountsProvisioned?: boolean;
  /** The primary's name in the subaccount list (default "Primary account"). */
  primaryName?: string;
  /** One JSON line per applied balance transfer, appended synchronously (like appliedLogPath). */
  appliedTransfersLogPath?: string;
  /** Called once per Vonage API request when its exchange ends (answered, reset, or abandoned). */
  onRequest?: (record: SimRequestRecord) => void;
}

export interface SimRequestRecord {
  at: number;
  method: string;
  path: string;
  query: Record<string, string>;
  headers: Record<string, string>;
  body: string;
  endpoint: SimEndpoint | 'control' | 'unknown';
  status: number | null;
  requestId: string;
}

export interface AppliedTopUp {
  at: number;
  amount: number;
  balanceAfter: number;
  requestId: string;
}

export interface Simulator {
  url: string;
  port: number;
  balance(): number;
  setBalance(v: number): void;
  setAutoReload(v: boolean): void;
  setDrainPerSecond(v: number): void;
  setFault(f: SimFault): void;
  clearFaults(): void;
  requests(): SimRequestRecord[];
  appliedTopUps(): AppliedTopUp[];
  /** Snapshots of the subaccounts, in creation order. */
  subaccounts(): SimSubaccount[];
  subaccount(apiKey: string): SimSubaccount | undefined;
  /** Adds a subaccount (or replaces the one with that key). */
  addSubaccount(init: SimSubaccountInit): void;
  /** Sets an own-balance subaccount's balance (finite, >= -1e6). */
  setSubaccountBalance(apiKey: string, value: number): void;
  /** Spends `amount` EUR of an own-balance subaccount (not below 0); returns the new balance. */
  drainSubaccount(apiKey: string, amount: number): number;
  setSubaccountSuspended(apiKey: string, suspended: boolean): void;
  setSubaccountsProvisioned(v: boolean): void;
  /** Fields that overwrite this subaccount's entry in list answers (a malformed entry); undefined clears. */
  patchSubaccountEntry(apiKey: string, fields: Record<string, unknown> | undefined): void;
  /** Every applied balance transfer, oldest first: what the history serves, and ground truth. */
  appliedTransfers(): AppliedTransfer[];
  close(): Promise<void>;
}

const BALANCE_PATH = '/account/get-balance';
const TOPUP_PATH = '/account/top-up';
const CONTROL_PREFIX = '/_sim/';
const SUBACCOUNTS_PATH = /^\/accounts\/([^/]+)\/(subaccounts|balance-transfers)$/;
const SUB_ENDPOINTS: ReadonlySet<SimEndpoint> = new Set<SimEndpoint>(['list_subaccounts', 'transfer', 'list_transfers']);
const MAX_SUB_NAME = 80;
const MAX_REQUEST_BODY = 64 * 1024;
const HUGE_BODY_BYTES = 10 * 1024 * 1024;
const HUGE_CHUNK_BYTES = 64 * 1024;
const DEFAULT_DRIP_MS = 500;
// A long-running demo or compose simulator must not grow without bound; appliedTopUps is never trimmed.
const MAX_RECORDS = 50_000;

type VonageFields = Record<string, string>;
const AUTH_FAILED: VonageFields = { 'error-code': '401', 'error-code-label': 'authentication failed' };
const NOT_AUTO_RELOAD: VonageFields = { 'error-code': '401', 'error-code-label': 'not auto-reload enabled' };
const TOPUP_FAILED: VonageFields = { 'error-code': '420', 'error-code-label': 'topup failed' };
const TOPUP_OK: VonageFields = { 'error-code': '200', 'error-code-label': 'success' };
// Known only from a PHP SDK JSON fixture, so it is always served as JSON.
const BAD_REQUEST = {
  type: 'BAD_REQUEST',
  error_title: 'Bad Request',
  invalid_parameters: { trx: 'Is required.' },
};

// Transport faults fire before authentication, like a proxy or load balancer would, and apply
// nothing, except 'slow' and 'slow_drip' which process the request normally and only delay the
// answer. The others are business outcomes and fire only for an authenticated request.
const TRANSPORT_KINDS: ReadonlySet<SimFaultKind> = new Set<SimFaultKind>([
  'server_error', 'rate_limit', 'slow', 'hang', 'reset', 'garbage', 'html', 'huge', 'truncated',
  'slow_drip', 'redirect', 'auth_failure',
]);
// The Subaccounts API's RFC 7807 bodies, as its OpenAPI description gives them.
const ERRORS_BASE = 'https://developer.nexmo.com/api-errors';
const problem = (type: string, title: string, detail: string, extra: Record<string, unknown> = {}) =>
  ({ type: `${ERRORS_BASE}${type}`, title, detail, instance: randomUUID().replace(/-/g, ''), ...extra });
const UNAUTHORIZED = () => problem('#unauthorized', 'Invalid credentials supplied', 'You did not provide correct credentials');
const INTERNAL_ERROR = () => problem('#internal-error', 'Internal Error', 'An internal error occurred. Please try again shortly');

const FAULT_FIELDS: ReadonlySet<string> = new Set([
  'kind', 'endpoint', 'count', 'status', 'delayMs', 'retryAfterSeconds', 'location', 'lostMode', 'lagPolls',
]);

type ActiveFault = SimFault & { endpoint: SimEndpoint | 'both' };
type Format = 'json' | 'xml';
type Delivery = 'normal' | 'drip' | 'truncated' | 'reset' | 'hang';

interface Reply {
  status: number;
  headers: Record<string, string | number>;
  body: string | Buffer;
}

/** One request/response pair; the record's status is set whenever headers go out. */
interface Exchange {
  req: IncomingMessage;
  res: ServerResponse;
  record: SimRequestRecord;
  url: URL;
}

interface LaggedTopUp {
  amount: number;
  readsLeft: number;
}

export async function startSimulator(opts: SimulatorOptions = {}): Promise<Simulator> {
  const sim = new VonageSimulator(opts);
  await sim.listen(opts.host ?? '127.0.0.1', opts.port ?? 0);
  return sim;
}

class VonageSimulator implements Simulator {
  url = '';
  port = 0;

  private readonly apiKey: string;
  private readonly apiSecret: string;
  private readonly trx: string;
  private readonly topUpAmount: number;
  private readonly now: () => number;
  private readonly appliedLogPath: string | undefined;
  private readonly onRequest: ((record: SimRequestRecord) => void) | undefined;

  // The balance drains lazily: value = max(0, base - drain * seconds since baseAt).
  private base: number;
  private baseAt: number;
  private drainPerSecond: number;
  private autoReload: boolean;
  private faults: ActiveFault[] = [];
  private lagged: LaggedTopUp[] = [];
  private records: SimRequestRecord[] = [];
  private vonageRequestCount = 0;
  private applied: AppliedTopUp[] = [];
  private readonly subs = new Map<string, SimSubaccount>();
  private transfersApplied: AppliedTransfer[] = [];
  private provisioned: boolean;
  private readonly entryPatches = new Map<string, Record<string, unknown>>();
  private readonly primaryName: string;
  private readonly startedAt: string;
  private readonly appliedTransfersLogPath: string | undefined;

  private readonly server: Server;
  private readonly timers = new Set<NodeJS.Timeout>();
  private closing: Promise<void> | undefined;

  constructor(opts: SimulatorOptions) {
    this.apiKey = opts.apiKey ?? 'demo-key';
    this.apiSecret = opts.apiSecret ?? 'demo-secret';
    this.trx = opts.trx ?? '8ef2447e69604f642ae59363aa5f781b';
    this.topUpAmount = checkAmount('topUpAmount', opts.topUpAmount ?? 20);
    this.now = opts.now ?? Date.now;
    this.appliedLogPath = opts.appliedLogPath;
    this.onRequest = opts.onRequest;
    this.base = checkAmount('balance', opts.balance ?? 12.5);
    this.baseAt = this.now();
    this.drainPerSecond = checkAmount('drainPerSecond', opts.drainPerSecond ?? 0);
    this.autoReload = opts.autoReload ?? true;
    this.provisioned = opts.subaccountsProvisioned ?? true;
    this.primaryName = opts.primaryName ?? 'Primary account';
    this.startedAt = wholeSeconds(this.now());
    this.appliedTransfersLogPath = opts.appliedTransfersLogPath;
    for (const init of opts.subaccounts ?? []) this.addSubaccount(init);
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => this.failInternally(res, err));
    });
  }

  listen(host: string, port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        const address = this.server.address() as AddressInfo;
        this.port = address.port;
        this.url = `http://${connectableHost(address.address)}:${address.port}`;
        resolve();
      });
    });
  }

  balance(): number {
    return Math.max(0, this.base - (this.drainPerSecond * (this.now() - this.baseAt)) / 1000);
  }

  setBalance(v: number): void {
    this.base = checkAmount('balance', v);
    this.baseAt = this.now();
  }

  setAutoReload(v: boolean): void {
    this.autoReload = v;
  }

  setDrainPerSecond(v: number): void {
    checkAmount('drainPerSecond', v);
    this.setBalance(this.balance());
    this.drainPerSecond = v;
  }

  setFault(f: SimFault): void {
    const fault = normalizeFault(f);
    // At most one fault is in force per endpoint: a new fault replaces those it fully covers,
    // and where it only partly overlaps an older one, the newer one wins (see faultFor).
    this.faults = this.faults.filter((old) => !covers(fault.endpoint, old.endpoint));
    this.faults.push(fault);
  }

  clearFaults(): void {
    this.faults = [];
  }

  requests(): SimRequestRecord[] {
    return this.records.filter((r) => r.endpoint !== 'control').map(copyRecord);
  }

  appliedTopUps(): AppliedTopUp[] {
    return this.applied.map((t) => ({ ...t }));
  }

  subaccounts(): SimSubaccount[] {
    return [...this.subs.values()].map((sub) => ({ ...sub }));
  }

  subaccount(apiKey: string): SimSubaccount | undefined {
    const sub = this.subs.get(apiKey);
    return sub ? { ...sub } : undefined;
  }

  addSubaccount(init: SimSubaccountInit): void {
    const sub = checkSubaccount(init, this.startedAt);
    if (sub.apiKey === this.apiKey) throw new TypeError('a subaccount cannot have the primary\'s api key');
    this.subs.set(sub.apiKey, sub);
  }

  setSubaccountBalance(apiKey: string, value: number): void {
    const sub = this.ownBalanceSub(apiKey);
    sub.balance = round8(checkSubBalance(`balance of ${apiKey}`, value));
  }

  drainSubaccount(apiKey: string, amount: number): number {
    const sub = this.ownBalanceSub(apiKey);
    checkAmount('amount', amount);
    sub.balance = round8(Math.max(0, (sub.balance ?? 0) - amount));
    return sub.balance;
  }

  setSubaccountSuspended(apiKey: string, suspended: boolean): void {
    const sub = this.subs.get(apiKey);
    if (!sub) throw new RangeError(`no subaccount ${apiKey}`);
    sub.suspended = suspended;
  }

  setSubaccountsProvisioned(v: boolean): void {
    this.provisioned = v;
  }

  /** Fields that overwrite this subaccount's entry in list answers (a malformed entry); undefined clears. */
  patchSubaccountEntry(apiKey: string, fields: Record<string, unknown> | undefined): void {
    if (!this.subs.has(apiKey)) throw new RangeError(`no subaccount ${apiKey}`);
    if (fields === undefined) this.entryPatches.delete(apiKey);
    else this.entryPatches.set(apiKey, { ...fields });
  }

  appliedTransfers(): AppliedTransfer[] {
    return this.transfersApplied.map((t) => ({ ...t }));
  }

  private ownBalanceSub(apiKey: string): SimSubaccount {
    const sub = this.subs.get(apiKey);
    if (!sub) throw new RangeError(`no subaccount ${apiKey}`);
    if (sub.usePrimaryBalance) throw new RangeError(`subaccount ${apiKey} spends the primary's balance`);
    return sub;
  }

  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      for (const timer of this.timers) clearTimeout(timer);
      this.timers.clear();
      this.server.close(() => resolve());
      // Hanging, dripping and keep-alive sockets would otherwise hold close() open.
      this.server.closeAllConnections();
    });
    return this.closing;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // A client that goes away mid-exchange makes these emit 'error'; unhandled, that would crash us.
    req.on('error', () => {});
    res.on('error', () => {});

    const requestId = randomUUID();
    res.setHeader('X-Request-Id', requestId);
    const body = await readBody(req);
    if (body === undefined) {
      if (!res.destroyed) writeReply(res, jsonReply(413, { error: 'request body too large' }));
      return;
    }

    const url = new URL(req.url ?? '/', 'http://simulator.invalid');
    const record: SimRequestRecord = {
      at: this.now(),
      method: req.method ?? '',
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      headers: flattenHeaders(req),
      body,
      endpoint: classify(url.pathname, req.method ?? ''),
      status: null,
      requestId,
    };
    this.remember(record);
    const ex: Exchange = { req, res, record, url };

    if (record.endpoint === 'control') {
      this.handleControl(ex);
      return;
    }
    this.vonageRequestCount += 1;
    if (this.onRequest) {
      const notify = this.onRequest;
      res.once('close', () => notify(copyRecord(record)));
    }
    await this.handleVonage(ex);
  }

  private async handleVonage(ex: Exchange): Promise<void> {
    const { req, record } = ex;
    if (record.endpoint === 'unknown') {
      send(ex, jsonReply(404, { 'error-code': '404', 'error-code-label': 'not found' }));
      return;
    }
    const endpoint = record.endpoint as SimEndpoint;
    const allowed = endpoint === 'topup' || endpoint === 'transfer' ? 'POST' : endpoint === 'list_transfers' ? 'GET, POST' : 'GET';
    if (!allowed.split(', ').includes(req.method ?? '')) {
      const reply = jsonReply(405, { 'error-code': '405', 'error-code-label': 'method not allowed' });
      send(ex, { ...reply, headers: { ...reply.headers, Allow: allowed } });
      return;
    }

    const format = responseFormat(req);
    let delivery: Delivery = 'normal';
    let dripMs = DEFAULT_DRIP_MS;
    const transport = this.faultFor(endpoint);
    if (transport && TRANSPORT_KINDS.has(transport.kind)) {
      this.consume(transport);
      switch (transport.kind) {
        case 'slow':
          await this.sleep(transport.delayMs ?? 0);
          break;
        case 'slow_drip':
          delivery = 'drip';
          dripMs = transport.delayMs ?? DEFAULT_DRIP_MS;
          break;
        default:
          await this.answerTransportFault(ex, transport, endpoint, format);
          return;
      }
    }

    if (SUB_ENDPOINTS.has(endpoint)) {
      const outcome = this.subaccountsAnswer(ex, endpoint);
      await this.deliver(ex, outcome.reply, outcome.delivery ?? delivery, dripMs);
      return;
    }
    const authenticated = this.isAuthenticated(ex);
    const root = endpoint === 'balance' ? 'accountBalance' : 'response';
    let outcome: { reply: Reply; delivery?: Delivery };
    if (!authenticated) outcome = { reply: vonageReply(401, root, AUTH_FAILED, format) };
    else if (endpoint === 'balance') outcome = { reply: this.balanceReply(format) };
    else outcome = this.topUp(record, format);
    await this.deliver(ex, outcome.reply, outcome.delivery ?? delivery, dripMs);
  }

  private async answerTransportFault(ex: Exchange, fault: ActiveFault, endpoint: SimEndpoint, format: Format): Promise<void> {
    switch (fault.kind) {
      case 'server_error': {
        const status = fault.status ?? 500;
        // The Subaccounts API documents its 500 as an RFC 7807 body.
        if (SUB_ENDPOINTS.has(endpoint)) return send(ex, jsonReply(status, INTERNAL_ERROR()));
        send(ex, textReply(status, 'text/plain; charset=utf-8', `${status} upstream error\n`));
        return;
      }
      case 'rate_limit': {
        const headers: Record<string, string | number> = { 'Content-Length': 0 };
        if (fault.retryAfterSeconds !== undefined) headers['Retry-After'] = String(fault.retryAfterSeconds);
        send(ex, { status: 429, headers, body: '' });
        return;
      }
      case 'hang':
        return;
      case 'reset':
        ex.req.socket.resetAndDestroy();
        return;
      case 'garbage':
        send(ex, {
          status: 200,
          headers: { 'Content-Type': 'application/json' },
          body: Buffer.concat([Buffer.from([0xff, 0xfe, 0x00, 0x1b]), Buffer.from('}{ not json <<< \u2603')]),
        });
        return;
      case 'html':
        send(
          ex,
          textReply(
            200,
            'text/html; charset=utf-8',
            '<!DOCTYPE html><html><head><title>Service Unavailable</title></head>' +
              '<body><h1>Service temporarily unavailable</h1><p>Please try again later.</p></body></html>\n',
          ),
        );
        return;
      case 'huge':
        await this.sendHuge(ex);
        return;
      case 'truncated':
        await this.deliver(ex, this.untouchedReply(endpoint), 'truncated', 0);
        return;
      case 'redirect': {
        const location = fault.location ?? `${this.url}${ex.url.pathname}`;
        send(ex, { status: 302, headers: { Location: location, 'Content-Length': 0 }, body: '' });
        return;
      }
      case 'auth_failure':
        if (SUB_ENDPOINTS.has(endpoint)) return send(ex, jsonReply(401, UNAUTHORIZED()));
        send(ex, vonageReply(401, endpoint === 'balance' ? 'accountBalance' : 'response', AUTH_FAILED, format));
        return;
      default:
        throw new Error(`not a transport fault: ${fault.kind}`);
    }
  }

  private balanceReply(format: Format): Reply {
    const fault = this.faultFor('balance');
    const forcedOff = fault?.kind === 'auto_reload_off';
    if (fault && forcedOff) this.consume(fault);
    const value = this.shownBalance();
    for (const lag of this.lagged) lag.readsLeft -= 1;
    this.lagged = this.lagged.filter((lag) => lag.readsLeft > 0);
    return renderBalance(value, this.autoReload && !forcedOff, format);
  }

  private topUp(record: SimRequestRecord, format: Format): { reply: Reply; delivery?: Delivery } {
    const fault = this.faultFor('topup');
    if (fault?.kind === 'bad_request') {
      this.consume(fault);
      return { reply: jsonReply(400, BAD_REQUEST) };
    }
    const trx = new URLSearchParams(record.body).get('trx') ?? record.query.trx;
    if (trx !== this.trx) return { reply: jsonReply(400, BAD_REQUEST) };
    const forcedOff = fault?.kind === 'auto_reload_off';
    if (fault && forcedOff) this.consume(fault);
    if (forcedOff || !this.autoReload) return { reply: vonageReply(401, 'response', NOT_AUTO_RELOAD, format) };
    if (fault?.kind === 'topup_failed') {
      this.consume(fault);
      return { reply: vonageReply(401, 'response', TOPUP_FAILED, format) };
    }

    this.applyTopUp(record.requestId);
    const reply = vonageReply(200, 'response', TOPUP_OK, format);
    if (fault?.kind === 'lost_answer') {
      this.consume(fault);
      return { reply, delivery: fault.lostMode ?? 'reset' };
    }
    if (fault?.kind === 'lag') {
      this.consume(fault);
      this.lagged.push({ amount: this.topUpAmount, readsLeft: fault.lagPolls ?? 1 });
    }
    return { reply };
  }

  private applyTopUp(requestId: string): void {
    const at = this.now();
    const balanceAfter = round8(this.balance() + this.topUpAmount);
    const entry: AppliedTopUp = { at, amount: this.topUpAmount, balanceAfter, requestId };
    // Written before the in-memory change: if the ground-truth log fails, nothing was applied.
    if (this.appliedLogPath) appendFileSync(this.appliedLogPath, `${JSON.stringify(entry)}\n`);
    this.setBalance(balanceAfter);
    this.applied.push(entry);
  }

  private shownBalance(): number {
    const hidden = this.lagged.reduce((sum, lag) => sum + lag.amount, 0);
    return Math.max(0, this.balance() - hidden);
  }

  // What a 'truncated' transport fault cuts: the normal success body, computed without side effects.
  private untouchedReply(endpoint: SimEndpoint): Reply {
    if (endpoint === 'list_subaccounts') return jsonReply(200, this.listBody());
    if (endpoint === 'list_transfers') return jsonReply(200, { _embedded: { balance_transfers: this.transfersApplied.map(transferBody) } });
    if (endpoint === 'transfer') {
      const first = [...this.subs.values()].find((sub) => !sub.usePrimaryBalance)?.apiKey ?? 'none';
      return jsonReply(200, { balance_transfer_id: randomUUID(), amount: 1, from: this.apiKey, to: first, reference: '', created_at: wholeSeconds(this.now()) });
    }
    return endpoint === 'balance'
      ? renderBalance(this.shownBalance(), this.autoReload, 'json')
      : vonageReply(200, 'response', TOPUP_OK, 'json');
  }

  // ---- Subaccounts API -------------------------------------------------------------------------

  private subaccountsAnswer(ex: Exchange, endpoint: SimEndpoint): { reply: Reply; delivery?: Delivery } {
    // Basic auth only, with the primary's key and secret (no query-string credentials here).
    if (!this.isBasicAuthenticated(ex)) return { reply: jsonReply(401, UNAUTHORIZED()) };
    const pathKey = safeDecode(SUBACCOUNTS_PATH.exec(ex.url.pathname)?.[1] ?? '');
    if (pathKey !== this.apiKey) {
      return { reply: jsonReply(404, problem('#invalid-api-key', 'Invalid API Key', `API key '${pathKey.slice(0, 64)}' does not exist, or you do not have access`)) };
    }
    if (!this.provisioned) {
      return { reply: jsonReply(403, problem('#unprovisioned', 'Authorisation error', `Account ${this.apiKey} is not provisioned to access Subaccount Provisioning API`)) };
    }
    if (endpoint === 'list_subaccounts') return { reply: jsonReply(200, this.listBody()) };
    if (endpoint === 'list_transfers') return { reply: this.historyReply(ex.url.searchParams) };
    return this.transfer(ex);
  }

  private listBody(): Record<string, unknown> {
    return {
      _embedded: {
        primary_account: {
          api_key: this.apiKey,
          name: this.primaryName,
          balance: round8(this.shownBalance()),
          credit_limit: 0,
          suspended: false,
          created_at: this.startedAt,
        },
        subaccounts: [...this.subs.values()].map((sub) => ({
          api_key: sub.apiKey,
          primary_account_api_key: this.apiKey,
          use_primary_account_balance: sub.usePrimaryBalance,
          name: sub.name,
          balance: sub.balance,
          credit_limit: sub.creditLimit,
          suspended: sub.suspended,
          created_at: sub.createdAt,
          ...this.entryPatches.get(sub.apiKey),
        })),
      },
    };
  }

  private historyReply(query: URLSearchParams): Reply {
    const start = query.get('start_date');
    const end = query.get('end_date');
    const startMs = start === null ? Number.NaN : Date.parse(start);
    const endMs = end === null ? Number.POSITIVE_INFINITY : Date.parse(end);
    const invalid: { name: string; reason: string }[] = [];
    if (start === null) invalid.push({ name: 'start_date', reason: 'Is required' });
    else if (Number.isNaN(startMs)) invalid.push({ name: 'start_date', reason: 'Must be an ISO 8601 date' });
    if (Number.isNaN(endMs)) invalid.push({ name: 'end_date', reason: 'Must be an ISO 8601 date' });
    if (invalid.length > 0) return jsonReply(422, validationProblem(invalid));
    const only = query.getAll('subaccount');
    const matching = this.transfersApplied.filter((t) => {
      const at = Date.parse(t.createdAt);
      return at >= startMs && at <= endMs && (only.length === 0 || only.includes(t.from) || only.includes(t.to));
    });
    return jsonReply(200, { _embedded: { balance_transfers: matching.map(transferBody) } });
  }

  private transfer(ex: Exchange): { reply: Reply; delivery?: Delivery } {
    const fault = this.faultFor('transfer');
    if (fault?.kind === 'bad_request') {
      this.consume(fault);
      return { reply: jsonReply(422, validationProblem([{ name: 'amount', reason: 'Rejected by a simulator fault' }])) };
    }
    let input: unknown;
    try {
      input = JSON.parse(ex.record.body) as unknown;
    } catch {
      input = undefined;
    }
    const fields = isObject(input) ? input : {};
    const invalid: { name: string; reason: string }[] = [];
    const { from, to, amount, reference } = fields;
    if (typeof from !== 'string' || from === '') invalid.push({ name: 'from', reason: 'Is required' });
    if (typeof to !== 'string' || to === '') invalid.push({ name: 'to', reason: 'Is required' });
    if (typeof amount !== 'number' || !Number.isFinite(amount) || amount <= 0) invalid.push({ name: 'amount', reason: 'Must be a positive number' });
    if (reference !== undefined && (typeof reference !== 'string' || reference.length > 1024)) invalid.push({ name: 'reference', reason: 'Must be a string of at most 1024 characters' });
    if (invalid.length > 0) return { reply: jsonReply(422, validationProblem(invalid)) };
    const [src, dst, amt] = [from as string, to as string, amount as number];

    // Between the primary and one of its own-balance subaccounts, either way.
    const subKey = src === this.apiKey ? dst : dst === this.apiKey ? src : undefined;
    const sub = subKey === undefined ? undefined : this.subs.get(subKey);
    if (!sub || src === dst) {
      return { reply: jsonReply(422, validationProblem([{ name: 'to', reason: `${dst} and ${src} are not a primary and one of its subaccounts` }])) };
    }
    if (sub.usePrimaryBalance) {
      return { reply: jsonReply(422, validationProblem([{ name: 'to', reason: `subaccount ${sub.apiKey} uses the primary account balance` }])) };
    }
    // balance_available_for_transfer = |account_balance - credit_limit| of the source (the spec).
    const available = src === this.apiKey ? this.balance() : (sub.balance ?? 0) - (sub.creditLimit ?? 0);
    if (amt > available + 1e-9) {
      return { reply: jsonReply(422, transferProblem(`Failed to transfer ${amt} from ${src} to ${dst} - insufficient balance: ${round8(Math.max(0, available))} available`)) };
    }

    const applied = this.applyTransfer(ex.record.requestId, src, dst, amt, typeof reference === 'string' ? reference : '', sub);
    const reply = jsonReply(200, transferBody(applied));
    if (fault?.kind === 'lost_answer') {
      this.consume(fault);
      return { reply, delivery: fault.lostMode ?? 'reset' };
    }
    return { reply };
  }

  private applyTransfer(requestId: string, from: string, to: string, amount: number, reference: string, sub: SimSubaccount): AppliedTransfer {
    const at = this.now();
    const toSub = to === sub.apiKey;
    const primaryAfter = round8(this.balance() + (toSub ? -amount : amount));
    const subAfter = round8((sub.balance ?? 0) + (toSub ? amount : -amount));
    const entry: AppliedTransfer = {
      at,
      id: randomUUID(),
      amount,
      from,
      to,
      reference,
      createdAt: wholeSeconds(at),
      requestId,
      primaryBalanceAfter: primaryAfter,
      subaccountBalanceAfter: subAfter,
    };
    // Ground truth first: if the log cannot be written, nothing was applied.
    if (this.appliedTransfersLogPath) appendFileSync(this.appliedTransfersLogPath, `${JSON.stringify(entry)}\n`);
    this.setBalance(Math.max(0, primaryAfter));
    sub.balance = subAfter;
    this.transfersApplied.push(entry);
    return entry;
  }

  private isBasicAuthenticated({ req }: Exchange): boolean {
    const header = req.headers.authorization;
    const match = header ? /^basic\s+(\S+)\s*$/i.exec(header) : null;
    if (!match?.[1]) return false;
    const decoded = Buffer.from(match[1], 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    return colon >= 0 && decoded.slice(0, colon) === this.apiKey && decoded.slice(colon + 1) === this.apiSecret;
  }

  private isAuthenticated({ req, url }: Exchange): boolean {
    const header = req.headers.authorization;
    const match = header ? /^basic\s+(\S+)\s*$/i.exec(header) : null;
    if (match?.[1]) {
      const decoded = Buffer.from(match[1], 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon >= 0 && decoded.slice(0, colon) === this.apiKey && decoded.slice(colon + 1) === this.apiSecret) {
        return true;
      }
    }
    return url.searchParams.get('api_key') === this.apiKey && url.searchParams.get('api_secret') === this.apiSecret;
  }

  private async deliver(ex: Exchange, reply: Reply, delivery: Delivery, dripMs: number): Promise<void> {
    switch (delivery) {
      case 'normal':
        send(ex, reply);
        return;
      case 'reset':
        ex.req.socket.resetAndDestroy();
        return;
      case 'hang':
        return;
      case 'truncated': {
        const full = Buffer.from(reply.body);
        const cut = full.subarray(0, Math.max(1, Math.floor(full.length / 2)));
        send(ex, { status: reply.status, headers: { ...reply.headers, 'Content-Length': cut.length }, body: cut });
        return;
      }
      case 'drip':
        await this.drip(ex, reply, dripMs);
        return;
    }
  }

  private drip(ex: Exchange, reply: Reply, everyMs: number): Promise<void> {
    const { res } = ex;
    const body = Buffer.from(reply.body);
    writeHead(ex, reply.status, { ...reply.headers, 'Content-Length': body.length });
    res.flushHeaders();
    return new Promise((resolve) => {
      let sent = 0;
      const tick = (): void => {
        this.timers.delete(timer);
        if (res.destroyed) return resolve();
        sent += 1;
        if (sent >= body.length) {
          res.end(body.subarray(sent - 1, sent));
          return resolve();
        }
        res.write(body.subarray(sent - 1, sent));
        timer = setTimeout(tick, everyMs);
        this.timers.add(timer);
      };
      let timer = setTimeout(tick, everyMs);
      this.timers.add(timer);
      res.once('close', () => {
        clearTimeout(timer);
        this.timers.delete(timer);
        resolve();
      });
    });
  }

  // Chunked (no Content-Length) so that a client can only protect itself by capping while streaming.
  private async sendHuge(ex: Exchange): Promise<void> {
    const { res } = ex;
    writeHead(ex, 200, { 'Content-Type': 'application/json' });
    const head = '{"padding":"';
    const tail = '"}';
    res.write(head);
    let remaining = HUGE_BODY_BYTES - head.length - tail.length;
    const chunk = 'x'.repeat(HUGE_CHUNK_BYTES);
    while (remaining > 0) {
      if (res.destroyed) return;
      const piece = remaining >= chunk.length ? chunk : chunk.slice(0, remaining);
      remaining -= piece.length;
      if (!res.write(piece)) await drainedOrClosed(res);
    }
    if (!res.destroyed) res.end(tail);
  }

  private handleControl(ex: Exchange): void {
    const { req, record } = ex;
    if (!isLoopback(req.socket.remoteAddress)) {
      send(ex, jsonReply(403, { error: 'the control API is only served to loopback clients' }));
      return;
    }
    const route = `${record.method} ${record.path}`;
    try {
      switch (route) {
        case 'GET /_sim/state':
          send(ex, jsonReply(200, this.state()));
          return;
        case 'POST /_sim/state':
          this.updateState(parseJson(record.body));
          send(ex, jsonReply(200, this.state()));
          return;
        case 'POST /_sim/faults':
          this.setFault(parseJson(record.body) as SimFault);
          send(ex, jsonReply(200, { faults: this.faults }));
          return;
        case 'DELETE /_sim/faults':
          this.clearFaults();
          send(ex, jsonReply(200, { faults: this.faults }));
          return;
        case 'GET /_sim/requests':
          send(ex, jsonReply(200, this.requests()));
          return;
        case 'GET /_sim/topups':
          send(ex, jsonReply(200, this.appliedTopUps()));
          return;
        case 'GET /_sim/subaccounts':
          send(ex, jsonReply(200, { provisioned: this.provisioned, subaccounts: this.subaccounts() }));
          return;
        case 'POST /_sim/subaccounts':
          this.updateSubaccounts(parseJson(record.body));
          send(ex, jsonReply(200, { provisioned: this.provisioned, subaccounts: this.subaccounts() }));
          return;
        case 'GET /_sim/transfers':
          send(ex, jsonReply(200, this.appliedTransfers()));
          return;
        default:
          send(ex, jsonReply(404, { error: `no control route ${route}` }));
      }
    } catch (err) {
      send(ex, jsonReply(400, { error: err instanceof Error ? err.message : String(err) }));
    }
  }

  private state(): Record<string, unknown> {
    return {
      balance: round8(this.balance()),
      autoReload: this.autoReload,
      drainPerSecond: this.drainPerSecond,
      topUpAmount: this.topUpAmount,
      faults: this.faults,
      appliedTopUps: this.appliedTopUps(),
      requestCount: this.vonageRequestCount,
    };
  }

  // Validates everything before changing anything, so a bad request leaves the state as it was.
  private updateState(input: unknown): void {
    if (!isObject(input)) throw new TypeError('state update must be a JSON object');
    for (const key of Object.keys(input)) {
      if (!['balance', 'autoReload', 'drainPerSecond'].includes(key)) throw new TypeError(`unknown state field "${key}"`);
    }
    const { balance, autoReload, drainPerSecond } = input;
    if (balance !== undefined) checkAmount('balance', balance);
    if (drainPerSecond !== undefined) checkAmount('drainPerSecond', drainPerSecond);
    if (autoReload !== undefined && typeof autoReload !== 'boolean') throw new TypeError('autoReload must be a boolean');
    if (drainPerSecond !== undefined) this.setDrainPerSecond(drainPerSecond as number);
    if (balance !== undefined) this.setBalance(balance as number);
    if (autoReload !== undefined) this.setAutoReload(autoReload as boolean);
  }

  // {"provisioned"?: boolean, "subaccount"?: SimSubaccountInit}: validated before anything changes.
  private updateSubaccounts(input: unknown): void {
    if (!isObject(input)) throw new TypeError('subaccounts update must be a JSON object');
    for (const key of Object.keys(input)) {
      if (!['provisioned', 'subaccount'].includes(key)) throw new TypeError(`unknown subaccounts field "${key}"`);
    }
    if (input.provisioned !== undefined && typeof input.provisioned !== 'boolean') throw new TypeError('provisioned must be a boolean');
    if (input.subaccount !== undefined) {
      const sub = checkSubaccount(input.subaccount as SimSubaccountInit, this.startedAt);
      if (sub.apiKey === this.apiKey) throw new TypeError('a subaccount cannot have the primary\'s api key');
    }
    if (input.subaccount !== undefined) this.addSubaccount(input.subaccount as SimSubaccountInit);
    if (input.provisioned !== undefined) this.setSubaccountsProvisioned(input.provisioned);
  }

  private faultFor(endpoint: SimEndpoint): ActiveFault | undefined {
    for (let i = this.faults.length - 1; i >= 0; i -= 1) {
      const fault = this.faults[i];
      if (fault && covers(fault.endpoint, endpoint)) return fault;
    }
    return undefined;
  }

  private consume(fault: ActiveFault): void {
    if (fault.count === undefined) return;
    fault.count -= 1;
    if (fault.count <= 0) this.faults = this.faults.filter((f) => f !== fault);
  }

  private remember(record: SimRequestRecord): void {
    this.records.push(record);
    if (this.records.length > MAX_RECORDS * 1.1) this.records.splice(0, this.records.length - MAX_RECORDS);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        resolve();
      }, ms);
      this.timers.add(timer);
    });
  }

  private failInternally(res: ServerResponse, err: unknown): void {
    if (res.headersSent || res.destroyed) {
      res.destroy();
      return;
    }
    writeReply(res, jsonReply(500, { error: `simulator failure: ${err instanceof Error ? err.message : String(err)}` }));
  }
}

function normalizeFault(input: unknown): ActiveFault {
  if (!isObject(input)) throw new TypeError('a fault must be an object');
  for (const key of Object.keys(input)) {
    if (!FAULT_FIELDS.has(key)) throw new TypeError(`unknown fault field "${key}"`);
  }
  const kind = input.kind;
  if (typeof kind !== 'string' || !Object.hasOwn(SIM_FAULTS, kind)) {
    throw new TypeError(`unknown fault kind ${JSON.stringify(kind)}; the kinds are ${SIM_FAULT_KINDS.join(', ')}`);
  }
  const faultKind = kind as SimFaultKind;
  const fault: ActiveFault = { kind: faultKind, endpoint: SIM_FAULTS[faultKind].endpoint };
  const endpoint = input.endpoint;
  if (endpoint !== undefined) {
    if (endpoint !== 'both' && !SIM_ENDPOINTS.includes(endpoint as SimEndpoint)) {
      throw new TypeError(`fault endpoint must be ${SIM_ENDPOINTS.join(', ')} or both, not ${JSON.stringify(endpoint)}`);
    }
    if (fault.endpoint === 'both') fault.endpoint = endpoint as SimEndpoint | 'both';
    // A kind bound to some endpoints: 'both' keeps its default (as it always did); another must be one of them.
    else if (endpoint !== 'both') {
      const targets = faultTargets(faultKind);
      if (!targets.includes(endpoint as SimEndpoint)) throw new TypeError(`fault ${faultKind} only applies to ${targets.join(' or ')}`);
      fault.endpoint = endpoint as SimEndpoint;
    }
  }
  const count = optionalInteger(input, 'count', 1, Number.MAX_SAFE_INTEGER);
  const status = optionalInteger(input, 'status', 100, 599);
  const delayMs = optionalInteger(input, 'delayMs', 0, 3_600_000);
  const retryAfterSeconds = optionalInteger(input, 'retryAfterSeconds', 0, 86_400);
  const lagPolls = optionalInteger(input, 'lagPolls', 1, 1_000_000);
  if (count !== undefined) fault.count = count;
  if (status !== undefined) fault.status = status;
  if (delayMs !== undefined) fault.delayMs = delayMs;
  if (retryAfterSeconds !== undefined) fault.retryAfterSeconds = retryAfterSeconds;
  if (lagPolls !== undefined) fault.lagPolls = lagPolls;
  if (input.location !== undefined) {
    if (typeof input.location !== 'string' || input.location === '') throw new TypeError('location must be a non-empty string');
    fault.location = input.location;
  }
  if (input.lostMode !== undefined) {
    if (input.lostMode !== 'reset' && input.lostMode !== 'hang' && input.lostMode !== 'truncated') {
      throw new TypeError('lostMode must be reset, hang or truncated');
    }
    fault.lostMode = input.lostMode;
  }
  return fault;
}

function optionalInteger(input: Record<string, unknown>, key: string, min: number, max: number): number | undefined {
  const value = input[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new TypeError(`${key} must be an integer from ${min} to ${max}`);
  }
  return value;
}

function checkAmount(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new RangeError(`${name} must be a finite number >= 0`);
  }
  return value;
}

/** Where a fault kind may be aimed: every endpoint for 'both' kinds, else its endpoint and `also`. */
function faultTargets(kind: SimFaultKind): readonly SimEndpoint[] {
  const entry: { endpoint: 'both' | 'topup'; also?: readonly SimEndpoint[] } = SIM_FAULTS[kind];
  return entry.endpoint === 'both' ? SIM_ENDPOINTS : [entry.endpoint, ...(entry.also ?? [])];
}

function checkSubBalance(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < -1_000_000 || value > 10_000_000) {
    throw new RangeError(`${name} must be a finite number from -1000000 to 10000000`);
  }
  return value;
}

function checkSubaccount(init: SimSubaccountInit, defaultCreatedAt: string): SimSubaccount {
  if (!isObject(init)) throw new TypeError('a subaccount must be an object');
  for (const key of Object.keys(init)) {
    if (!['apiKey', 'name', 'balance', 'creditLimit', 'suspended', 'createdAt'].includes(key)) throw new TypeError(`unknown subaccount field "${key}"`);
  }
  const { apiKey, name, balance, creditLimit, suspended, createdAt } = init;
  if (typeof apiKey !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(apiKey)) throw new TypeError('subaccount apiKey must be 1-64 letters, digits, _ or -');
  if (name !== undefined && (typeof name !== 'string' || name.length > MAX_SUB_NAME)) throw new TypeError(`subaccount name must be a string of at most ${MAX_SUB_NAME} characters`);
  if (suspended !== undefined && typeof suspended !== 'boolean') throw new TypeError('subaccount suspended must be a boolean');
  if (createdAt !== undefined && (typeof createdAt !== 'string' || Number.isNaN(Date.parse(createdAt)))) throw new TypeError('subaccount createdAt must be an ISO 8601 date');
  const shared = balance === null;
  if (!shared && balance !== undefined) checkSubBalance(`balance of ${apiKey}`, balance);
  if (creditLimit !== undefined) {
    if (shared) throw new TypeError('a subaccount that spends the primary\'s balance has no credit limit');
    checkSubBalance(`creditLimit of ${apiKey}`, creditLimit);
    if (creditLimit > 0) throw new RangeError(`creditLimit of ${apiKey} must be <= 0`);
  }
  return {
    apiKey,
    name: name ?? `Subaccount ${apiKey}`,
    balance: shared ? null : round8(balance ?? 0),
    creditLimit: shared ? null : (creditLimit ?? 0),
    usePrimaryBalance: shared,
    suspended: suspended ?? false,
    createdAt: createdAt ?? defaultCreatedAt,
  };
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

function transferBody(t: AppliedTransfer): Record<string, unknown> {
  return { balance_transfer_id: t.id, amount: t.amount, from: t.from, to: t.to, reference: t.reference, created_at: t.createdAt };
}

function validationProblem(invalid: { name: string; reason: string }[]): Record<string, unknown> {
  return problem('/subaccounts#validation', 'Bad Request', 'The request failed due to validation errors', { invalid_parameters: invalid });
}

/**
 * The 422 of a transfer the source cannot pay for (x-errors `valid-transfers`, "Invalid transfer").
 * The simulator sends it for insufficient balance only; other refusals are `#validation`.
 */
function transferProblem(detail: string): Record<string, unknown> {
  return problem('/subaccounts#valid-transfers', 'Invalid Transfer', detail, { invalid_parameters: [{ name: 'amount', reason: 'Insufficient balance' }] });
}

/** ISO 8601 in whole seconds (2026-12-02T16:45:31Z), as the Subaccounts API writes dates. */
function wholeSeconds(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

function covers(outer: SimEndpoint | 'both', inner: SimEndpoint | 'both'): boolean {
  return outer === 'both' || outer === inner;
}

function classify(path: string, method: string): SimRequestRecord['endpoint'] {
  if (path === BALANCE_PATH) return 'balance';
  if (path === TOPUP_PATH) return 'topup';
  const sub = SUBACCOUNTS_PATH.exec(path);
  if (sub) return sub[2] === 'subaccounts' ? 'list_subaccounts' : method === 'POST' ? 'transfer' : 'list_transfers';
  if (path.startsWith(CONTROL_PREFIX)) return 'control';
  return 'unknown';
}

function responseFormat(req: IncomingMessage): Format {
  const accept = (req.headers.accept ?? '').toLowerCase();
  return accept.includes('application/xml') || accept.includes('text/xml') ? 'xml' : 'json';
}

function round8(value: number): number {
  return Math.round(value * 1e8) / 1e8;
}

function renderBalance(value: number, autoReload: boolean, format: Format): Reply {
  if (format === 'json') return jsonReply(200, { value: round8(value), autoReload });
  return xmlReply(200, 'accountBalance', { value: value.toFixed(8), autoReload: String(autoReload) });
}

function vonageReply(status: number, xmlRoot: string, fields: VonageFields, format: Format): Reply {
  return format === 'json' ? jsonReply(status, fields) : xmlReply(status, xmlRoot, fields);
}

function jsonReply(status: number, payload: unknown): Reply {
  return textReply(status, 'application/json', JSON.stringify(payload));
}

function xmlReply(status: number, root: string, fields: VonageFields): Reply {
  const children = Object.entries(fields)
    .map(([name, value]) => `  <${name}>${escapeXml(value)}</${name}>`)
    .join('\n');
  const body = `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<${root}>\n${children}\n</${root}>\n`;
  return textReply(status, 'application/xml', body);
}

function textReply(status: number, contentType: string, body: string): Reply {
  return { status, headers: { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(body) }, body };
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function send(ex: Exchange, reply: Reply): void {
  if (ex.res.destroyed) return;
  writeHead(ex, reply.status, reply.headers);
  ex.res.end(reply.body);
}

function writeHead(ex: Exchange, status: number, headers: Reply['headers']): void {
  ex.record.status = status;
  ex.res.writeHead(status, headers);
}

/** For answers sent before a request record exists. */
function writeReply(res: ServerResponse, reply: Reply): void {
  res.writeHead(reply.status, reply.headers);
  res.end(reply.body);
}

function drainedOrClosed(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.once('drain', done);
    res.once('close', done);
  });
}

/** The request body as text, or undefined when it exceeds MAX_REQUEST_BODY or the client went away. */
async function readBody(req: IncomingMessage): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of req) {
      const buffer = chunk as Buffer;
      size += buffer.length;
      if (size > MAX_REQUEST_BODY) return undefined;
      chunks.push(buffer);
    }
  } catch {
    return undefined;
  }
  return Buffer.concat(chunks).toString('utf8');
}

function flattenHeaders(req: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (value !== undefined) out[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return out;
}

function copyRecord(record: SimRequestRecord): SimRequestRecord {
  return { ...record, query: { ...record.query }, headers: { ...record.headers } };
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new TypeError('body must be JSON');
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
}

function connectableHost(address: string): string {
  if (address === '0.0.0.0') return '127.0.0.1';
  if (address === '::') return '[::1]';
  return address.includes(':') ? `[${address}]` : address;
}
