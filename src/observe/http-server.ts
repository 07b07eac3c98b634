/**
 * The HTTP endpoints: /metrics and /status (optionally behind a bearer token), /healthz and
 * /readyz (always open: orchestrators probe them without credentials).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import { renderMetrics } from './exposition.js';
import type { Logger } from './log.js';

export interface Probe {
  ok: boolean;
  reason?: string;
}

export interface HttpHandlers {
  registry: Registry;
  health: () => Probe;
  ready: () => Probe;
  status: () => unknown;
  authToken?: string;
  log: Logger;
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/** Constant-time comparison; hashing first makes the lengths equal without leaking them. */
export function tokenMatches(header: string | undefined, token: string): boolean {
  const presented = /^Bearer (.+)$/i.exec(header ?? '')?.[1] ?? '';
  return timingSafeEqual(digest(presented), digest(token));
}

function send(res: ServerResponse, status: number, body: string | Buffer, contentType = 'text/plain; charset=utf-8', extra: Record<string, string> = {}) {
  res.writeHead(status, { 'Content-Type': contentType, 'Cache-Control': 'no-store', ...extra });
  res.end(body);
}

const LANDING = `<!doctype html><html><head><title>vonage-reload-watchdog</title></head><body>
<h1>vonage-reload-watchdog</h1><ul><li><a href="metrics">metrics</a></li><li><a href="status">status</a></li>
<li><a href="healthz">healthz</a></li><li><a href="readyz">readyz</a></li></ul></body></html>`;

/**
 * Every connection to this port holds a descriptor, and the calls to Vonage need descriptors too:
 * 1,500 idle connections under a 1,024 limit made every balance poll fail with EMFILE. So the
 * number of connections is capped (beyond it Node accepts and closes at once), and a connection
 * that sends nothing, dawdles over its headers or idles between requests is closed soon.
 */
export interface HttpLimits {
  /** Prometheus, a probe and a few people need a handful; the rest of the descriptors are Vonage's. */
  maxConnections: number;
  /** From connect to the end of the headers; also closes a connection that never sends a byte. */
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  /** Idle time allowed between two requests on one connection. */
  keepAliveTimeoutMs: number;
  /** No traffic either way (a client that stops reading its answer, for one). */
  idleTimeoutMs: number;
  /** How often Node enforces the two timeouts above it (its default, 30 s, would quadruple them). */
  checkIntervalMs: number;
}

export const HTTP_LIMITS: HttpLimits = {
  maxConnections: 100,
  headersTimeoutMs: 5_000,
  requestTimeoutMs: 10_000,
  keepAliveTimeoutMs: 5_000,
  idleTimeoutMs: 15_000,
  checkIntervalMs: 1_000,
};

export function createHttpServer(h: HttpHandlers, limits: Partial<HttpLimits> = {}): Server {
  const lim = { ...HTTP_LIMITS, ...limits };
  const log = h.log.child({ module: 'http' });
  const authorized = (req: IncomingMessage) => h.authToken === undefined || tokenMatches(req.headers.authorization, h.authToken);

  // Scrapes that arrive together share one rendering, encoded once: with a large fleet the text
  // is most of a megabyte. Rendering runs without a pause (its awaits resolve at once), so no
  // request could join one in progress; it is deferred instead to the end of this turn of the
  // event loop (setImmediate), and every scrape read in the same turn waits for that rendering.
  // It starts after all of them arrived, so none is served anything older than its request.
  let next: Promise<Buffer> | undefined;
  const scrape = () =>
    (next ??= new Promise<void>((resolve) => setImmediate(resolve)).then(async () => {
      next = undefined;
      return Buffer.from(await renderMetrics(h.registry), 'utf8');
    }));

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'method not allowed\n', undefined, { Allow: 'GET, HEAD' });
    switch (path) {
      case '/healthz': {
        const p = h.health();
        return send(res, p.ok ? 200 : 503, JSON.stringify(p), 'application/json');
      }
      case '/readyz': {
        const p = h.ready();
        return send(res, p.ok ? 200 : 503, JSON.stringify(p), 'application/json');
      }
      case '/metrics':
        if (!authorized(req)) return send(res, 401, 'unauthorized\n', undefined, { 'WWW-Authenticate': 'Bearer' });
        return send(res, 200, await scrape(), h.registry.contentType);
      case '/status':
        if (!authorized(req)) return send(res, 401, 'unauthorized\n', undefined, { 'WWW-Authenticate': 'Bearer' });
        return send(res, 200, `${JSON.stringify(h.status(), null, 2)}\n`, 'application/json');
      case '/':
        return send(res, 200, LANDING, 'text/html; charset=utf-8');
      default:
        return send(res, 404, 'not found\n');
    }
  };

  const server = createServer({ connectionsCheckingInterval: lim.checkIntervalMs, headersTimeout: lim.headersTimeoutMs, requestTimeout: lim.requestTimeoutMs }, (req, res) => {
    handle(req, res).catch((err: unknown) => {
      log.error({ problem: err instanceof Error ? err.message : String(err) }, 'request handler failed');
      if (!res.headersSent) send(res, 500, 'internal error\n');
      else res.end();
    });
  });
  server.maxConnections = lim.maxConnections;
  server.keepAliveTimeout = lim.keepAliveTimeoutMs;
  server.timeout = lim.idleTimeoutMs;
  return server;
}
