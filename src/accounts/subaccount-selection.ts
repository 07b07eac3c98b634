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
    if (u.primaryKey) continue;
    if (u.apiKey === undefined) keyless += 1;
    else withKey.set(u.apiKey, u.problem);
  }
  // Never both: a key with any unreadable entry has no trustworthy reading.
  const readable = all.filter((s) => !withKey.has(s.apiKey));
  if (watch === 'all') return { watched: readable, missing: [], unreadable: [...withKey].map(([apiKey, problem]) => ({ apiKey, problem })) };
  const byKey = new Map(readable.map((s) => [s.apiKey, s]));
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

/**
 * The fleet's other accounts that a subaccount of `primary` may turn out to be, by API key (the
 * same Vonage account, which its own entry already refills by card) or by name (a top-level
 * account's `account` label, which the subaccount's key would share). Such a subaccount is not
 * watched through its primary: refilled two ways it could be charged twice; sharing a label, an
 * alert on one would read the other's balance. An API key wins over a name for the same string.
 */
export function accountsElsewhere(
  accounts: readonly ({ name: string; apiKey: string } | undefined)[],
  primary: string,
): Map<string, { by: 'apiKey' | 'name'; index: number; name: string }> {
  const out = new Map<string, { by: 'apiKey' | 'name'; index: number; name: string }>();
  // The primary's own name counts too: its series carry that label. (Its API key is no
  // subaccount's: the list parser and the file's checks refuse that already.)
  accounts.forEach((other, index) => {
    if (other !== undefined && !out.has(other.name)) out.set(other.name, { by: 'name', index, name: other.name });
  });
  accounts.forEach((other, index) => {
    if (other === undefined || other.name === primary) return;
    out.set(other.apiKey, { by: 'apiKey', index, name: other.name });
  });
  return out;
}
