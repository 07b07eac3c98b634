import { createServer, connect, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { VonageError } from '../src/vonage/errors.js';
import { MAX_PENDING_LOG_BYTES, createLogger, scrub, secretForms } from '../src/observe/log.js';
import { API_KEY, CANARY_SECRET, expectNoSecret } from './helpers/account.js';
import { tempDir, waitFor } from './helpers/daemon.js';

function sink() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(chunk.toString());
      cb();
    },
  });
  return { stream, lines };
}

describe('logger', () => {
  it('writes JSON lines with level, time and message', () => {
    const { stream, lines } = sink();
    createLogger({ level: 'info', format: 'json' }, stream).info({ balance: 3 }, 'balance read');
    const entry = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(entry).toMatchObject({ level: 30, msg: 'balance read', balance: 3, service: 'vonage-reload-watchdog' });
    expect(typeof entry.time).toBe('string');
  });

  it('serializes a VonageError without anything from the request, and without a stack', () => {
    const { stream, lines } = sink();
    const err = new VonageError('top_up', 'auth_failed', 'authentication failed (HTTP 401)', 'yes', 401, undefined, 'req-1');
    createLogger({ level: 'info', format: 'json' }, stream).error({ err }, 'top-up failed');
    const logged = JSON.parse(lines[0]!).err as Record<string, unknown>;
    expect(logged).toEqual({ type: 'VonageError', endpoint: 'top_up', reason: 'auth_failed', message: 'authentication failed (HTTP 401)', delivery: 'yes', status: 401, requestId: 'req-1' });
  });

  it('logs an expected failure (refused, 5xx, timeout) as one line with no stack trace', () => {
    const { stream, lines } = sink();
    const log = createLogger({ level: 'info', format: 'json' }, stream);
    log.warn({ err: new VonageError('get_balance', 'connection_refused', 'connection refused', 'no') }, 'balance read failed; retrying');
    log.error({ err: new VonageError('get_balance', 'server_error', 'Vonage server error (HTTP 503)', 'yes', 503) }, 'balance poll failed');
    log.error({ err: new VonageError('top_up', 'timeout', 'no complete answer within HTTP_TIMEOUT', 'unknown') }, 'top-up outcome unknown');
    expect(lines).toHaveLength(3);
    for (const l of lines) {
      expect(l.indexOf('\n')).toBe(l.length - 1);
      expect(l).not.toMatch(/stack|at .*\.js:\d+/);
    }
    expect(JSON.parse(lines[1]!).err).toEqual({ type: 'VonageError', endpoint: 'get_balance', reason: 'server_error', message: 'Vonage server error (HTTP 503)', delivery: 'yes', status: 503 });
  });

  it('keeps the stack of an unexpected error: that one is a bug', () => {
    const { stream, lines } = sink();
    createLogger({ level: 'info', format: 'json' }, stream).error({ err: new TypeError('boom') }, 'cycle crashed');
    expect(JSON.parse(lines[0]!).err).toMatchObject({ type: 'TypeError', message: 'boom', stack: expect.stringContaining('TypeError: boom') });
  });

  it('redacts secret-named fields and scrubs the secret in every encoding, even where nothing should have put it', () => {
    const { stream, lines } = sink();
    const log = createLogger({ level: 'info', format: 'json', secrets: [CANARY_SECRET], apiKeys: [API_KEY] }, stream);
    log.info({ apiSecret: CANARY_SECRET, nested: { trx: 'x' } }, 'fields');
    log.info({ url: `https://rest.nexmo.com/account/get-balance?api_secret=${encodeURIComponent(CANARY_SECRET)}` }, 'url-encoded');
    log.info({ header: `Basic ${Buffer.from(`${API_KEY}:${CANARY_SECRET}`).toString('base64')}` }, 'basic header');
    log.info(`raw ${CANARY_SECRET} and json ${JSON.stringify({ s: CANARY_SECRET })}`);
    expect(lines).toHaveLength(4);
    for (const l of lines) {
      expectNoSecret(l, 'log line');
      expect(l).toContain('[REDACTED]');
    }
  });

  it('does not scrub values too short to be told apart from ordinary text', () => {
    expect(secretForms(['abc'])).toEqual([]);
    expect(scrub('abc abc', secretForms(['abc']))).toBe('abc abc');
  });
});

/**
 * The bounded writer (defect 8), on a real socket whose other end stops reading: like a pipe to a
 * stalled log collector, the kernel's buffers fill and then Node's queue grows.
 */
describe('output nobody reads', () => {
  const open: { server: Server; client: Socket; peer: Socket }[] = [];
  afterEach(async () => {
    for (const o of open.splice(0)) {
      o.client.destroy();
      o.peer.destroy();
      await new Promise((r) => o.server.close(r));
    }
  });

  /** A connected pair: `client` is the logger's output; `peer` reads only when resumed. */
  async function stalledReader() {
    const path = join(tempDir('log-sock-'), 's');
    const server = createServer();
    const accepted = new Promise<Socket>((r) => server.once('connection', r));
    await new Promise<void>((r) => server.listen(path, r));
    const client = connect(path);
    await new Promise((r) => client.once('connect', r));
    const peer = await accepted;
    peer.pause();
    let received = '';
    peer.on('data', (d: Buffer) => (received += d.toString()));
    open.push({ server, client, peer });
    return { client, peer, received: () => received };
  }

  it('never holds more than its bound, drops and counts the rest, and loses nothing it did not count', async () => {
    const { client, peer, received } = await stalledReader();
    let dropped = 0;
    const log = createLogger({ level: 'info', format: 'json', output: client, onDrop: (n) => (dropped += n) });
    const total = 20_000;
    let maxPending = 0;
    for (let i = 0; i < total; i++) {
      log.info({ seq: i, pad: 'x'.repeat(100) }, 'line');
      maxPending = Math.max(maxPending, client.writableLength);
    }
    expect(dropped).toBeGreaterThan(0);
    expect(maxPending).toBeLessThanOrEqual(MAX_PENDING_LOG_BYTES);

    // The reader comes back: every line it gets is whole, and written + dropped = logged.
    peer.resume();
    await waitFor(() => received().split('\n').length - 1 + dropped === total, 10_000, () => `${received().length} bytes, ${dropped} dropped`);
    const seqs = received().trimEnd().split('\n').map((l) => (JSON.parse(l) as { seq: number }).seq);
    // The newest lines are the ones dropped: what arrives is the beginning, in order.
    expect(seqs).toEqual(seqs.map((_, i) => i));
  });

  it('scrubs secrets and pretty-prints on the same bounded path', async () => {
    const { client, peer, received } = await stalledReader();
    peer.resume();
    const log = createLogger({ level: 'info', format: 'pretty', secrets: [CANARY_SECRET], apiKeys: [API_KEY], output: client });
    log.info({ url: `https://x/?api_secret=${encodeURIComponent(CANARY_SECRET)}` }, `raw ${CANARY_SECRET}`);
    await waitFor(() => received().includes('[REDACTED]'), 5000, received);
    expect(received()).toMatch(/INFO.*raw \[REDACTED\]/);
    expectNoSecret(received(), 'pretty output');
  });

  it('flushes within a bound even when nothing is read, and at once when everything was written', async () => {
    const stalled = await stalledReader();
    const log = createLogger({ level: 'info', format: 'json', output: stalled.client });
    for (let i = 0; i < 20_000 && stalled.client.writableLength === 0; i++) log.info({ pad: 'x'.repeat(500) }, 'fill');
    expect(stalled.client.writableLength).toBeGreaterThan(0);
    await new Promise<void>((r) => log.flush(() => r()));
    expect(stalled.client.writableLength).toBeGreaterThan(0);

    const reading = await stalledReader();
    reading.peer.resume();
    const log2 = createLogger({ level: 'info', format: 'json', output: reading.client });
    log2.info('last words');
    await new Promise<void>((r) => log2.flush(() => r()));
    expect(reading.client.writableLength).toBe(0);
  });

  it('survives the reader going away: later lines are dropped and counted, nothing throws', async () => {
    const { client, peer } = await stalledReader();
    let dropped = 0;
    const log = createLogger({ level: 'info', format: 'json', output: client, onDrop: (n) => (dropped += n) });
    peer.destroy();
    await waitFor(() => {
      log.info({ pad: 'x'.repeat(1000) }, 'into the void');
      return dropped > 0;
    }, 5000);
    expect(client.destroyed).toBe(true);
  });
});

