import { appendFileSync, chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Ledger, LedgerWriteError, ledgerFileName, parseLedger } from '../src/ledger.js';

const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'ledger-test-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) {
    chmodSync(d, 0o700);
    rmSync(d, { recursive: true, force: true });
  }
});

const T0 = Date.UTC(2026, 10, 27);

describe('Ledger', () => {
  it('writes the attempt before the outcome, and reads both back after a restart', () => {
    const dir = tempDir();
    const l = Ledger.open(dir, 'acct', () => T0);
    const a = l.recordAttempt(4.5, 10);
    const onDisk = readFileSync(join(dir, ledgerFileName('acct')), 'utf8');
    expect(onDisk).toContain('"type":"attempt"');
    expect(onDisk).not.toContain('"type":"outcome"');
    l.recordOutcome(a, 'success');
    l.close();
    const again = Ledger.open(dir, 'acct', () => T0 + 1000);
    expect(again.view().attempts).toMatchObject([{ id: a.id, at: T0, outcome: 'success', balanceBefore: 4.5 }]);
    again.close();
  });

  it('reads an attempt without an outcome (killed mid-request) as unknown', () => {
    const dir = tempDir();
    const l = Ledger.open(dir, 'acct', () => T0);
    l.recordAttempt(1, 10);
    // No close, no outcome: as after kill -9.
    const again = Ledger.open(dir, 'acct', () => T0 + 1);
    expect(again.view().attempts).toMatchObject([{ outcome: 'unknown', reason: 'interrupted' }]);
    again.close();
  });

  it('ignores a torn last line but refuses a corrupt line in the middle', () => {
    const dir = tempDir();
    const file = join(dir, ledgerFileName('acct'));
    const good = JSON.stringify({ v: 1, type: 'attempt', id: 'x', at: T0, balance: 1, threshold: 10, account: 'acct' });
    writeFileSync(file, `${good}\n{"v":1,"type":"attem`);
    const l = Ledger.open(dir, 'acct', () => T0 + 1);
    expect(l.view()).toMatchObject({ writable: true, attempts: [{ id: 'x', outcome: 'unknown' }] });
    // The torn tail was closed off, so the next record starts on its own line.
    const b = l.recordAttempt(2, 10);
    l.close();
    expect(parseLedger(readFileSync(file, 'utf8'))).toMatchObject({ attempts: [{ id: 'x' }, { id: b.id }] });

    writeFileSync(file, `${good}\ngarbage\n${good}\n`);
    const corrupt = Ledger.open(dir, 'acct', () => T0);
    expect(corrupt.view().writable).toBe(false);
    expect(corrupt.view().problem).toMatch(/unreadable record at line 2/);
    expect(() => corrupt.recordAttempt(1, 10)).toThrow(LedgerWriteError);
  });

  it('is unwritable, with the reason, when STATE_DIR cannot be written, and recovers when it can', () => {
    if (process.getuid?.() === 0) {
      // root ignores directory permissions; use a path below a regular file instead.
      const dir = tempDir();
      writeFileSync(join(dir, 'file'), '');
      const l = Ledger.open(join(dir, 'file', 'state'), 'acct', () => T0);
      expect(l.view().writable).toBe(false);
      expect(l.view().problem).toMatch(/cannot create STATE_DIR .*ENOTDIR/);
      expect(() => l.recordAttempt(1, 10)).toThrow(LedgerWriteError);
      rmSync(join(dir, 'file'));
      l.retry();
      expect(l.view().writable).toBe(true);
      l.close();
      return;
    }
    const dir = tempDir();
    chmodSync(dir, 0o500);
    const l = Ledger.open(join(dir, 'state'), 'acct', () => T0);
    expect(l.view().writable).toBe(false);
    chmodSync(dir, 0o700);
    l.retry();
    expect(l.view().writable).toBe(true);
    l.close();
  });

  it('refuses a second live process on the same STATE_DIR, and takes over a dead one\'s lock', () => {
    const dir = tempDir();
    const lock = join(dir, `${ledgerFileName('acct')}.lock`);
    // pid 1 is always alive; pretend it holds the lock on this host.
    writeFileSync(lock, JSON.stringify({ pid: 1, host: hostname(), at: T0 }));
    const blocked = Ledger.open(dir, 'acct', () => T0);
    expect(blocked.view()).toMatchObject({ writable: false });
    expect(blocked.view().problem).toMatch(/another watchdog \(pid 1\)/);

    writeFileSync(lock, JSON.stringify({ pid: 2 ** 22 + 7, host: hostname(), at: T0 }));
    const taken = Ledger.open(dir, 'acct', () => T0);
    expect(taken.view().writable).toBe(true);
    taken.close();
  });

  it('keeps attempts stamped in the future (clock went backwards)', () => {
    const text = `${JSON.stringify({ v: 1, type: 'attempt', id: 'f', at: T0 + 3_600_000, balance: 1, threshold: 10, account: 'a' })}\n`;
    expect(parseLedger(text)).toMatchObject({ attempts: [{ id: 'f' }] });
  });

  it('forgets attempts only relative to the newest one, so a clock that was days ahead at start-up cannot erase them', () => {
    const rec = (id: string, at: number) => `${JSON.stringify({ v: 1, type: 'attempt', id, at, balance: 1, threshold: 10, account: 'a' })}\n`;
    const day = 24 * 3_600_000;
    const parsed = parseLedger(rec('old', T0 - 8 * day) + rec('recent', T0));
    expect(parsed).toMatchObject({ attempts: [{ id: 'recent' }] });
    // Restarted while the wall clock read T0 + 8 days: the attempt at T0 is still known.
    const dir = tempDir();
    writeFileSync(join(dir, ledgerFileName('acct')), rec('recent', T0));
    const l = Ledger.open(dir, 'acct', () => T0 + 8 * day);
    expect(l.view().attempts.map((a) => a.id)).toEqual(['recent']);
    l.close();
  });

  it('appends; never rewrites history', () => {
    const dir = tempDir();
    const file = join(dir, ledgerFileName('acct'));
    const l = Ledger.open(dir, 'acct', () => T0);
    l.recordOutcome(l.recordAttempt(1, 10), 'failed', 'topup_failed');
    const before = readFileSync(file, 'utf8');
    l.recordConfirmed(l.recordAttempt(2, 10), 30);
    expect(readFileSync(file, 'utf8').startsWith(before)).toBe(true);
    appendFileSync(file, '');
    l.close();
  });
});
