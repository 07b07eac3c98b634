import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { formatDuration, parseDuration } from '../src/config/duration.js';

describe('parseDuration', () => {
  test.each([
    ['0s', 0],
    ['500ms', 500],
    ['1s', 1_000],
    ['90s', 90_000],
    ['15m', 900_000],
    ['1h', 3_600_000],
    ['1h30m', 5_400_000],
    ['1m30s', 90_000],
    ['7d', 604_800_000],
    ['1d2h3m4s5ms', 93_784_005],
    ['007s', 7_000],
    ['120s', 120_000],
  ])('%j → %d ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  test.each([
    ['', 'empty'],
    ['15', 'no unit'],
    ['m', 'no number'],
    ['ms', 'no number'],
    ['1.5h', 'fraction'],
    ['-1s', 'sign'],
    ['+1s', 'sign'],
    ['1H', 'units are case-sensitive'],
    ['15M', 'M could mean months'],
    ['15 m', 'inner space'],
    [' 15m', 'leading space: the caller trims'],
    ['15m ', 'trailing space: the caller trims'],
    ['30m1h', 'units out of order'],
    ['1m1m', 'unit repeated'],
    ['1ms1s', 'ms before s'],
    ['1us', 'unknown unit'],
    ['1w', 'unknown unit'],
    ['1e3s', 'exponent'],
    ['1hh', 'trailing garbage'],
    ['15min', 'trailing garbage'],
    ['１５m', 'non-ASCII digits'],
    ['99999999999999999999h', 'beyond exact integers'],
    ['0x10s', 'hex'],
  ])('%j is rejected (%s)', (text) => {
    expect(parseDuration(text)).toBeUndefined();
  });

  test('never throws and returns a safe non-negative integer or undefined', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary' }), fc.stringMatching(/^(\d{1,4}(ms|d|h|m|s)){1,5}$/)), (text) => {
        const ms = parseDuration(text);
        if (ms !== undefined) {
          expect(Number.isSafeInteger(ms)).toBe(true);
          expect(ms).toBeGreaterThanOrEqual(0);
        }
      }),
    );
  });
});

// Units largest first, each at most once, counts that may overflow into the next unit (`90s`).
const inOrderDuration = fc
  .subarray(['d', 'h', 'm', 's', 'ms'], { minLength: 1 })
  .chain((units) => fc.tuple(...units.map((u) => fc.nat(999_999).map((n) => `${n}${u}`))))
  .map((parts) => parts.join(''));

describe('formatDuration', () => {
  test.each([
    [0, '0s'],
    [1, '1ms'],
    [500, '500ms'],
    [1_000, '1s'],
    [90_000, '1m30s'],
    [900_000, '15m'],
    [3_600_000, '1h'],
    [5_400_000, '1h30m'],
    [86_400_000, '1d'],
    [604_800_000, '7d'],
    [93_784_005, '1d2h3m4s5ms'],
    [1_500.4, '1s500ms'],
    [-90_000, '-1m30s'],
  ])('%d ms → %j', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });

  test.each([NaN, Infinity, -Infinity])('%d is a RangeError', (ms) => {
    expect(() => formatDuration(ms)).toThrow(RangeError);
  });

  test('parseDuration reads back every whole non-negative value', () => {
    fc.assert(
      fc.property(fc.maxSafeNat(), (ms) => {
        expect(parseDuration(formatDuration(ms))).toBe(ms);
      }),
    );
  });

  test('accepted texts have one canonical form with the same value', () => {
    fc.assert(
      fc.property(inOrderDuration, (text) => {
        const ms = parseDuration(text);
        expect(ms).toBeDefined();
        const canonical = formatDuration(ms!);
        expect(parseDuration(canonical)).toBe(ms);
        expect(formatDuration(parseDuration(canonical)!)).toBe(canonical);
      }),
    );
  });
});
