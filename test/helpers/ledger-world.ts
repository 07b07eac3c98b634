/** Ledgers in temp STATE_DIRs, closed and removed after each test, for the ledger sibling tests. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect } from 'vitest';
import { FileLedger } from '../../src/ledger/file-ledger.js';
import type { PolicySettings, Reading } from '../../src/refill/topup-policy.js';

const dirs: string[] = [];
const opened: { close(): void }[] = [];
export const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'ledger-world-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const o of opened.splice(0)) { try { o.close(); } catch { /* */ } }
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
export const T0 = Date.UTC(2026, 11, 2, 12);
export const MIN = 60_000;
export function open(dir: string, name: string, now: () => number, options: Parameters<typeof FileLedger.open>[3] = {}): FileLedger {
  const l = FileLedger.open(dir, name, now, options);
  opened.push(l);
  return l;
}
export const hourCooldown: PolicySettings = { threshold: 10, cooldownMs: 60 * MIN, maxPerDay: 5, topupEnabled: true, dryRun: false, maxReadingAgeMs: MIN };
export const low = (at: number): Reading => ({ value: 4, autoReload: true, at });

/** A has history (not a new file), then key k1 charges as A2: the setting of a rename back. */
export function chargedAsA2(dir: string): void {
  const a = open(dir, 'A', () => T0 - 3 * 86_400_000, { apiKey: 'k1' });
  a.recordAttempt(4, 10);
  a.close();
  const a2 = open(dir, 'A2', () => T0, { apiKey: 'k1' });
  const c = a2.claim(low(T0), hourCooldown);
  expect(c.decision.action).toBe('topup');
  a2.recordOutcome(c.attempt!, 'success');
  a2.close();
}
