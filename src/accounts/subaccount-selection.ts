/**
 * Which of a primary's subaccounts are watched: all of them, or the listed api keys. A listed key
 * that Vonage did not return is reported (it may be a typo, or deleted) and never refilled. A
 * watched key whose list entry could not be read is neither: its reading failed this cycle.
 */
import type { SubaccountEntry, UnreadableEntry } from './types.js';

export interface Selection {
  watched: SubaccountEntry[];
  missing: string[];
  /** Watched keys without a reading this cycle, with why (`watch: all`: every unreadable entry with a key). */
  unreadable: { apiKey: string; problem: string }[];
}

export function selectWatched(all: readonly SubaccountEntry[], watch: 'all' | readonly string[], unreadable: readonly UnreadableEntry[] = []): Selection {
  const withKey = new Map<string, string>();
  let keyless = 0;
  for (const u of unreadable) {
    if (u.apiKey === undefined) keyless += 1;
    else withKey.set(u.apiKey, u.problem);
  }
  if (watch === 'all') return { watched: [...all], missing: [], unreadable: [...withKey].map(([apiKey, problem]) => ({ apiKey, problem })) };
  const byKey = new Map(all.map((s) => [s.apiKey, s]));
  const selection: Selection = { watched: [], missing: [], unreadable: [] };
  for (const key of watch) {
    const s = byKey.get(key);
    const problem = withKey.get(key);
    if (s) selection.watched.push(s);
    else if (problem !== undefined) selection.unreadable.push({ apiKey: key, problem });
    // An entry whose key could not be read may be this one: not proof that Vonage dropped it.
    else if (keyless > 0) selection.unreadable.push({ apiKey: key, problem: `not among the readable entries, and ${keyless} entr${keyless === 1 ? 'y' : 'ies'} of the list could not be read` });
    else selection.missing.push(key);
  }
  return selection;
}
