// A small, faithful stand-in for rest.nexmo.com's balance and top-up endpoints, with fault
// injection. Wire shapes follow Vonage's Account API OpenAPI description (1.0.3) and, where that is
// silent (400, 420, XML selection), the official SDKs' test fixtures.
import { randomUUID } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type SimEndpoint = 'balance' | 'topup';
/**
 * Every fault kind, the endpoints it applies to unless a fault says otherwise, and what it does.
 * The one list: the type, the control API's validation and error, and the CLI's --help all come
 * from it, so a kind cannot be added to one and missed by another.
 */
export const SIM_FAULTS = {
  server_error: { endpoint: 'both', does: 'answers 500 (or `status`) with a plain-text body' },
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
  auth_failure: { endpoint: 'both', does: 'answers 401 "authentication failed"' },
  auto_reload_off: { endpoint: 'both', does: 'reports autoReload false; top-ups answer 401 "not auto-reload enabled"' },
  topup_failed: { endpoint: 'topup', does: 'answers 401 with Vonage\'s 420 "topup failed"' },
  bad_request: { endpoint: 'topup', does: 'answers 400 BAD_REQUEST' },
  lost_answer: { endpoint: 'topup', does: 'applies the top-up, then loses the answer (`lostMode`: reset, hang or truncated)' },
  lag: { endpoint: 'topup', does: 'applies the top-up, but the balance hides it for `lagPolls` reads (default 1)' },
} as const satisfies Record<string, { endpoint: 'both' | 'topup'; does: string }>;

export type SimFaultKind = keyof typeof SIM_FAULTS;
export const SIM_FAULT_KINDS = Object.keys(SIM_FAULTS) as SimFaultKind[];

/** The fault kinds as `--help` lists them: one per line, with what each does. */
export function describeFaultKinds(indent = '  '): string {
  const width = Math.max(...SIM_FAULT_KINDS.map((k) => k.length));
  return SIM_FAULT_KINDS.map((k) => {
    const where = SIM_FAULTS[k].endpoint === 'topup' ? 'top-up only: ' : '';
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
  close(): Promise<void>;
}

const BALANCE_PATH = '/account/get-balance';
const TOPUP_PATH = '/account/top-up';
const CONTROL_PREFIX = '/_sim/';
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
      endpoint: classify(url.pathname),
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
    const allowed = endpoint === 'balance' ? 'GET' : 'POST';
    if (req.method !== allowed) {
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
        const location = fault.location ?? `${this.url}${endpoint === 'balance' ? BALANCE_PATH : TOPUP_PATH}`;
        send(ex, { status: 302, headers: { Location: location, 'Content-Length': 0 }, body: '' });
        return;
      }
      case 'auth_failure':
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
    return endpoint === 'balance'
      ? renderBalance(this.shownBalance(), this.autoReload, 'json')
      : vonageReply(200, 'response', TOPUP_OK, 'json');
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
    if (endpoint !== 'balance' && endpoint !== 'topup' && endpoint !== 'both') {
      throw new TypeError(`fault endpoint must be balance, topup or both, not ${JSON.stringify(endpoint)}`);
    }
    if (fault.endpoint === 'topup' && endpoint === 'balance') {
      throw new TypeError(`fault ${faultKind} only applies to the top-up endpoint`);
    }
    if (fault.endpoint === 'both') fault.endpoint = endpoint;
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

function covers(outer: SimEndpoint | 'both', inner: SimEndpoint | 'both'): boolean {
  return outer === 'both' || outer === inner;
}

function classify(path: string): SimRequestRecord['endpoint'] {
  if (path === BALANCE_PATH) return 'balance';
  if (path === TOPUP_PATH) return 'topup';
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
