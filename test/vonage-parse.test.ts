import { describe, expect, it } from 'vitest';
import { parseBalance, parseTopUp } from '../src/vonage/account-parse.js';

const JSON_CT = 'application/json';
const XML_CT = 'application/xml';
const xml = (root: string, inner: string) => `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<${root}>${inner}</${root}>`;

describe('parseBalance', () => {
  it('reads the documented JSON and XML answers', () => {
    expect(parseBalance(200, JSON_CT, '{"value": 10.28, "autoReload": false}')).toEqual({ ok: true, value: 10.28, autoReload: false });
    expect(parseBalance(200, XML_CT, xml('accountBalance', '\n  <value>10.17127500</value>\n  <autoReload>true</autoReload>\n'))).toEqual({ ok: true, value: 10.171275, autoReload: true });
    expect(parseBalance(200, undefined, '{"value":81.68078129,"autoReload":true,"extra":1}')).toMatchObject({ ok: true, value: 81.68078129 });
  });

  const bad: [string, number, string | undefined, string, string][] = [
    ['the 401 body (never a zero balance)', 401, JSON_CT, '{"error-code":"401","error-code-label":"authentication failed"}', 'auth_failed'],
    ['the 401 body with status 200', 200, JSON_CT, '{"error-code":"401","error-code-label":"authentication failed"}', 'auth_failed'],
    ['an error code with status 200', 200, JSON_CT, '{"error-code":"500","error-code-label":"oops"}', 'bad_response'],
    ['value as a string', 200, JSON_CT, '{"value":"10.28","autoReload":true}', 'bad_response'],
    ['value missing', 200, JSON_CT, '{"autoReload":true}', 'bad_response'],
    ['value null', 200, JSON_CT, '{"value":null,"autoReload":true}', 'bad_response'],
    ['value huge', 200, JSON_CT, '{"value":1e308,"autoReload":true}', 'bad_response'],
    ['value overflowing to Infinity', 200, JSON_CT, '{"value":1e309,"autoReload":true}', 'bad_response'],
    ['value hugely negative', 200, JSON_CT, '{"value":-5e9,"autoReload":true}', 'bad_response'],
    ['autoReload missing', 200, JSON_CT, '{"value":3}', 'bad_response'],
    ['autoReload a string in JSON is read but "yes" is not', 200, JSON_CT, '{"value":3,"autoReload":"yes"}', 'bad_response'],
    ['an array', 200, JSON_CT, '[1,2]', 'bad_response'],
    ['empty body', 200, JSON_CT, '', 'bad_response'],
    ['truncated JSON', 200, JSON_CT, '{"value": 10.2', 'bad_response'],
    ['HTML page', 200, 'text/html', '<html><body>Bad gateway</body></html>', 'bad_response'],
    ['XML with a non-number', 200, XML_CT, xml('accountBalance', '<value>ten</value><autoReload>true</autoReload>'), 'bad_response'],
    ['XML with an exponent', 200, XML_CT, xml('accountBalance', '<value>1e3</value><autoReload>true</autoReload>'), 'bad_response'],
    ['XML with a duplicated value', 200, XML_CT, xml('accountBalance', '<value>1</value><value>2</value><autoReload>true</autoReload>'), 'bad_response'],
    ['XML 401', 401, XML_CT, xml('accountBalance', '<error-code>401</error-code><error-code-label>authentication failed</error-code-label>'), 'auth_failed'],
    ['500', 500, JSON_CT, '', 'server_error'],
    ['503 with a value in the body', 503, JSON_CT, '{"value":1,"autoReload":true}', 'server_error'],
    ['429', 429, undefined, '', 'rate_limited'],
    ['302', 302, undefined, '', 'redirect'],
    ['404', 404, JSON_CT, '{}', 'http_error'],
    ['400', 400, JSON_CT, '{}', 'http_error'],
  ];
  for (const [name, status, ct, body, reason] of bad) {
    it(`fails on ${name}`, () => {
      const r = parseBalance(status, ct, body);
      expect(r.ok).toBe(false);
      expect(r).toMatchObject({ reason });
    });
  }
});

describe('parseTopUp', () => {
  it('succeeds only on 2xx with error-code "200"', () => {
    expect(parseTopUp(200, JSON_CT, '{"error-code":"200","error-code-label":"success"}')).toEqual({ ok: true });
    expect(parseTopUp(200, XML_CT, xml('response', '<error-code>200</error-code><error-code-label>success</error-code-label>'))).toEqual({ ok: true });
  });

  const cases: [string, number, string, string, 'failed' | 'unknown'][] = [
    ['authentication failed', 401, '{"error-code":"401","error-code-label":"authentication failed"}', 'auth_failed', 'failed'],
    ['not auto-reload enabled', 401, '{"error-code":"401","error-code-label":"not auto-reload enabled"}', 'auto_reload_disabled', 'failed'],
    ['topup failed (420)', 401, '{"error-code":"420","error-code-label":"topup failed"}', 'topup_failed', 'failed'],
    ['420 inside a 200', 200, '{"error-code":"420","error-code-label":"topup failed"}', 'topup_failed', 'failed'],
    ['bad request', 400, '{"type":"BAD_REQUEST","error_title":"Bad Request","invalid_parameters":{"trx":"Is required."}}', 'bad_request', 'failed'],
    ['rate limited', 429, '', 'rate_limited', 'failed'],
    ['server error: may have been applied', 500, '', 'server_error', 'unknown'],
    ['truncated 200: may have been applied', 200, '{"error-code":"20', 'bad_response', 'unknown'],
    ['legacy bare "success" string: unreadable, so unknown', 200, '"success"', 'bad_response', 'unknown'],
    ['200 without a code', 200, '{}', 'bad_response', 'unknown'],
    ['redirect', 302, '', 'redirect', 'failed'],
  ];
  for (const [name, status, body, reason, outcome] of cases) {
    it(`${name} → ${reason}, ${outcome}`, () => {
      expect(parseTopUp(status, JSON_CT, body)).toMatchObject({ ok: false, reason, outcome });
    });
  }
});

describe('XML reader', () => {
  it('is not fooled by element names that are Object.prototype members', () => {
    const body = xml('accountBalance', '<constructor>x</constructor><value>3.5</value><toString>y</toString><autoReload>true</autoReload>');
    expect(parseBalance(200, XML_CT, body)).toEqual({ ok: true, value: 3.5, autoReload: true });
    expect(parseTopUp(200, XML_CT, xml('response', '<hasOwnProperty>1</hasOwnProperty><error-code>200</error-code>'))).toEqual({ ok: true });
  });
});

describe('an HTML page instead of an answer', () => {
  const hint = 'a proxy, captive portal or wrong VONAGE_BASE_URL?';
  const pages: [string, string | undefined, string][] = [
    ['text/html', 'text/html; charset=utf-8', '<html><body>Bad gateway</body></html>'],
    ['a doctype, no content type', undefined, '\n  <!DOCTYPE html>\n<html><head><title>Sign in to the Wi-Fi</title></head></html>'],
    ['upper-case <HTML> labelled JSON', JSON_CT, '<HTML lang="en"><body>login</body></HTML>'],
    ['text/html with a body that is no document at all', 'text/html', 'Service Unavailable'],
  ];
  for (const [name, ct, body] of pages) {
    it(`says so for the balance and the top-up: ${name}`, () => {
      expect(parseBalance(200, ct, body)).toEqual({ ok: false, reason: 'bad_response', outcome: 'failed', message: `balance answer is an HTML page (HTTP 200), not a balance: ${hint}` });
      // Whoever served the page may have passed the request on: unknown, as for any unreadable 2xx.
      expect(parseTopUp(200, ct, body)).toEqual({ ok: false, reason: 'bad_response', outcome: 'unknown', message: `top-up answer is an HTML page (HTTP 200), not a top-up result: ${hint}` });
    });
  }

  it('names the page behind an unexpected status too', () => {
    expect(parseBalance(404, 'text/html', '<!doctype html><title>Not Found</title>')).toMatchObject({ reason: 'http_error', message: `unexpected HTTP status 404 (an HTML page: ${hint})` });
    expect(parseTopUp(404, 'text/html', '<!doctype html><title>Not Found</title>')).toMatchObject({ reason: 'http_error', message: `unexpected HTTP status 404 (an HTML page: ${hint})` });
    expect(parseBalance(404, JSON_CT, '{}')).toMatchObject({ message: 'unexpected HTTP status 404' });
  });

  it('still reads a balance whose content type is mislabelled as HTML, and keeps the XML message for broken XML', () => {
    expect(parseBalance(200, 'text/html', '{"value":3.5,"autoReload":true}')).toEqual({ ok: true, value: 3.5, autoReload: true });
    expect(parseBalance(200, XML_CT, '<accountBalance><value>1</value>')).toMatchObject({ reason: 'bad_response', message: 'balance answer is not a valid XML document' });
    expect(parseBalance(200, undefined, '<htmlish>1</htmlish>')).toMatchObject({ message: 'balance answer is not a valid XML document' });
  });
});
