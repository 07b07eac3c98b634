import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { VonageError } from '../src/errors.js';
import { createLogger, scrub, secretForms } from '../src/log.js';
import { API_KEY, CANARY_SECRET, expectNoSecret } from './helpers/account.js';

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

  it('serializes a VonageError without anything from the request', () => {
    const { stream, lines } = sink();
    const err = new VonageError('top_up', 'auth_failed', 'authentication failed (HTTP 401)', 'yes', 401);
    createLogger({ level: 'info', format: 'json' }, stream).error({ err }, 'top-up failed');
    const logged = JSON.parse(lines[0]!).err as Record<string, unknown>;
    expect(logged).toMatchObject({ type: 'VonageError', endpoint: 'top_up', reason: 'auth_failed', message: 'authentication failed (HTTP 401)', delivery: 'yes', status: 401 });
    expect(Object.keys(logged).sort()).toEqual(['delivery', 'endpoint', 'message', 'name', 'reason', 'stack', 'status', 'type']);
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
