/**
 * Which of a primary's subaccounts are watched: all of them, or the listed api keys. A listed key
 * that Vonage did not return is reported (it may be a typo, or deleted) and never refilled.
 */
import type { SubaccountEntry } from './types.js';

export function selectWatched(all: readonly SubaccountEntry[], watch: 'all' | readonly string[]): { watched: SubaccountEntry[]; missing: string[] } {
  if (watch === 'all') return { watched: [...all], missing: [] };
  const byKey = new Map(all.map((s) => [s.apiKey, s]));
  const watched: SubaccountEntry[] = [];
  const missing: string[] = [];
  for (const key of watch) {
    const s = byKey.get(key);
    if (s) watched.push(s);
    else missing.push(key);
  }
  return { watched, missing };
}
