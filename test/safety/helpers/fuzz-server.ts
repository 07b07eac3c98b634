/**
 * A tiny Vonage stand-in for fuzzing: per request it answers the next canned response from a queue
 * (one queue per endpoint, a default when the queue is empty), over real loopback HTTP, and logs
 * what it served so a test can line up every client result with the exact bytes behind it.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Canned {
  status: number;
  /** undefined = no Content-Type header at all. */
  contentType?: string;
  body: string;
  headers?: Record<string, string>;
  /** Which generator made it, for the report. */
  kind: string;
}

export interface Served {
  seq: number;
  method: string;
  path: string;
  canned: Canned;
  /** Taken from a queue (a generated body), not the default answer. */
  fuzz: boolean;
  authorization: string | undefined;
  body: string;
}

export interface FuzzServer {
  url: string;
  balanceQueue: Canned[];
  topUpQueue: Canned[];
  defaultBalance: Canned;
  defaultTopUp: Canned;
  served: Served[];
  /** Requests to any other path or with another method. */
  unexpected: number;
  close(): Promise<void>;
}

/** What the client receives: Node sends no body with a 204; axios strips a leading UTF-8 BOM from text. */
export function received(c: Canned): { text: string; bytes: number } {
  if (c.status === 204) return { text: '', bytes: 0 };
  const buf = Buffer.from(c.body, 'utf8');
  let text = buf.toString('utf8');
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  return { text, bytes: buf.length };
}

function answer(res: ServerResponse, c: Canned): void {
  const headers: Record<string, string | number> = { ...c.headers };
  if (c.contentType !== undefined) headers['Content-Type'] = c.contentType;
  if (c.status === 204) {
    res.writeHead(204, headers);
    res.end();
    return;
  }
  const buf = Buffer.from(c.body, 'utf8');
  headers['Content-Length'] = buf.length;
  res.writeHead(c.status, headers);
  res.end(buf);
}

async function readAll(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export async function startFuzzServer(defaults: { balance: Canned; topUp: Canned }): Promise<FuzzServer> {
  let seq = 0;
  const state: Omit<FuzzServer, 'url' | 'close'> = {
    balanceQueue: [],
    topUpQueue: [],
    defaultBalance: defaults.balance,
    defaultTopUp: defaults.topUp,
    served: [],
    unexpected: 0,
  };
  const server: Server = createServer((req, res) => {
    req.on('error', () => {});
    res.on('error', () => {});
    readAll(req).then(
      (body) => {
        const path = new URL(req.url ?? '/', 'http://x').pathname;
        let canned: Canned | undefined;
        let fuzz = false;
        if (req.method === 'GET' && path === '/account/get-balance') {
          canned = state.balanceQueue.shift();
          fuzz = canned !== undefined;
          canned ??= state.defaultBalance;
        } else if (req.method === 'POST' && path === '/account/top-up') {
          canned = state.topUpQueue.shift();
          fuzz = canned !== undefined;
          canned ??= state.defaultTopUp;
        }
        if (!canned) {
          state.unexpected += 1;
          answer(res, { status: 404, body: '', kind: 'unexpected' });
          return;
        }
        state.served.push({ seq: seq++, method: req.method ?? '', path, canned, fuzz, authorization: req.headers.authorization, body });
        answer(res, canned);
      },
      () => res.destroy(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(state, {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  });
}

/** A server that must never be reached (a redirect target): it only counts. */
export async function startTrap(): Promise<{ url: string; hits: () => number; close: () => Promise<void> }> {
  let hits = 0;
  const server = createServer((_req, res) => {
    hits += 1;
    res.end('{"value":1,"autoReload":true}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    hits: () => hits,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
