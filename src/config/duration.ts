// Durations as people write them in env files: `90s`, `15m`, `1h30m`, `500ms`.
//
// Units must appear largest first and at most once each (as in Prometheus' model.ParseDuration):
// `30m1h` or `1m1m` are far more likely typos than intent, and refusing them keeps every accepted
// text with exactly one meaning. Units are case-sensitive because `M` reads as "months" to many.

const UNITS = [
  ['d', 86_400_000],
  ['h', 3_600_000],
  ['m', 60_000],
  ['s', 1_000],
  ['ms', 1],
] as const;

const UNIT_MS: ReadonlyMap<string, number> = new Map(UNITS);
const UNIT_RANK: ReadonlyMap<string, number> = new Map(UNITS.map(([unit], rank) => [unit, rank]));

// `ms` must be tried before `m`, or `500ms` would split as `500m` + garbage.
const PAIR = /(\d+)(ms|d|h|m|s)/y;

/** Milliseconds, or undefined when `text` is not a duration this project accepts. */
export function parseDuration(text: string): number | undefined {
  if (text.length === 0) return undefined;
  PAIR.lastIndex = 0;
  let total = 0;
  let lastRank = -1;
  while (PAIR.lastIndex < text.length) {
    const match = PAIR.exec(text);
    if (match === null) return undefined;
    const [, digits = '', unit = ''] = match;
    const rank = UNIT_RANK.get(unit) ?? -1;
    if (rank <= lastRank) return undefined;
    lastRank = rank;
    total += Number(digits) * (UNIT_MS.get(unit) ?? 0);
    // Past 2^53 the sum is no longer exact, so the caller's range check would compare garbage.
    if (!Number.isSafeInteger(total)) return undefined;
  }
  return total;
}

/**
 * 900000 → "15m", 90000 → "1m30s". For a non-negative whole number of ms, parseDuration reads the
 * result back as the same value; negative values get a leading "-" for log lines only.
 */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) throw new RangeError(`formatDuration: not a finite number: ${ms}`);
  // Callers pass computed values (elapsed times, Retry-After); a fraction of a ms is noise.
  let rest = Math.round(Math.abs(ms));
  if (rest === 0) return '0s';
  let out = ms < 0 ? '-' : '';
  for (const [unit, size] of UNITS) {
    const count = Math.floor(rest / size);
    if (count > 0) {
      out += `${count}${unit}`;
      rest -= count * size;
    }
  }
  return out;
}
