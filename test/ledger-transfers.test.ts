/**
 * The file ledger's side of the fleet: file names that never collide for distinct account names
 * (and find what earlier versions wrote under the old name), and claimMany(), the atomic step that
 * decides a primary's balance transfers and records every one before any is sent.
 */
import { execFileSync } from 'node:child_process';
import { appendFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FileLedger, legacyLedgerFileName, ledgerFileName, type LedgerEvent } from '../src/ledger/file-ledger.js';
import { encodeRecord, parseLedger } from '../src/ledger/records.js';
import { chargedAsA2, hourCooldown, low, MIN } from './helpers/ledger-world.js';

const dirs: string[] = [];
const opened: { close(): void }[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'ledger-transfers-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const o of opened.splice(0)) o.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const T0 = Date.UTC(2026, 11, 2, 12);
function open(dir: string, name: string, now: () => number, options: Parameters<typeof FileLedger.open>[3] = {}): FileLedger {
  const l = FileLedger.open(dir, name, now, options);
  opened.push(l);
  return l;
}

describe('ledger file names', () => {
  it('gives distinct account names distinct files, and keeps the old name for plain ones', () => {
    const names = ['prod eu/1', 'prod_eu_1', 'prod%20eu%2F1', 'prod-eu-1', 'Prod_EU_1', 'prod.eu.1', 'é', 'e\u0301', '%', '_', '~x'];
    const files = names.map((n) => ledgerFileName(n));
    expect(new Set(files).size).toBe(names.length);
    expect(ledgerFileName('prod_eu_1')).toBe('topups-prod_eu_1.jsonl');
    expect(ledgerFileName('eu-prod')).toBe(legacyLedgerFileName('eu-prod'));
    for (const f of files) expect(f).toMatch(/^topups-[A-Za-z0-9._%~-]+\.jsonl$/);
  });

  it('keeps names of 64 four-byte characters under NAME_MAX, still distinct', () => {
    const a = '😀'.repeat(64);
    const b = `${'😀'.repeat(63)}😁`;
    expect(Buffer.byteLength(ledgerFileName(a))).toBeLessThanOrEqual(255);
    expect(ledgerFileName(a)).not.toBe(ledgerFileName(b));
    const dir = tempDir();
    const l = open(dir, a, () => T0);
    expect(l.view().writable).toBe(true);
    l.recordAttempt(4, 10);
    expect(readdirSync(dir).some((f) => f === ledgerFileName(a))).toBe(true);
  });

  it('the two accounts that shared a file before no longer see each other\'s attempts', () => {
    const dir = tempDir();
    const a = open(dir, 'prod eu/1', () => T0, { apiKey: 'key-a' });
    const b = open(dir, 'prod_eu_1', () => T0, { apiKey: 'key-b' });
    a.recordAttempt(4, 10);
    expect(a.view().attempts).toHaveLength(1);
    expect(b.view().attempts).toHaveLength(0);
  });

  it('imports what an earlier version wrote under the old file name (no key fingerprint then)', () => {
    const dir = tempDir();
    // Written by a version that mapped " " and "/" to "_" and did not record the key.
    writeFileSync(join(dir, legacyLedgerFileName('prod eu/1')), encodeRecord({ type: 'attempt', at: T0 - 60_000, id: 'old-1', balance: 4, threshold: 10, account: 'prod eu/1' }));
    const events: LedgerEvent[] = [];
    const l = open(dir, 'prod eu/1', () => T0, { apiKey: 'key-a', onEvent: (e) => events.push(e) });
    expect(l.view().attempts.map((x) => [x.id, x.outcome])).toEqual([['old-1', 'unknown']]);
    expect(events).toContainEqual({ kind: 'imported', attempts: 1, from: legacyLedgerFileName('prod eu/1') });
    // …and the new file holds it from now on.
    const text = readFileSync(join(dir, ledgerFileName('prod eu/1')), 'utf8');
    expect(text).toContain('"id":"old-1"');
  });
});

describe('claimMany: a primary\'s transfers, decided and recorded in one step', () => {
  const planTwo = () => ({ result: 'plan', attempts: [{ balance: 500, threshold: 10, to: 'sub1', requested: 20 }, { balance: 500, threshold: 10, to: 'sub2', requested: 30 }] });

  it('records every planned attempt with its target and amount before returning, and they survive a restart', () => {
    const dir = tempDir();
    const l = open(dir, 'primary', () => T0, { kind: 'transfers', apiKey: 'pkey' });
    const seen: number[] = [];
    const claim = l.claimMany((view) => {
      seen.push(view.attempts.length);
      return planTwo();
    });
    expect(seen).toEqual([0]);
    expect(claim.problem).toBeUndefined();
    expect(claim.attempts.map((a) => [a.to, a.requested, a.outcome])).toEqual([['sub1', 20, 'pending'], ['sub2', 30, 'pending']]);
    const file = join(dir, ledgerFileName('primary', 'transfers'));
    expect(file.endsWith('transfers-primary.jsonl')).toBe(true);
    const parsed = parseLedger(readFileSync(file, 'utf8'), T0);
    expect('attempts' in parsed && parsed.attempts.map((a) => [a.id, a.to, a.requested, a.outcome])).toEqual(claim.attempts.map((a) => [a.id, a.to, a.requested, 'unknown']));
    l.recordOutcome(claim.attempts[0]!, 'success');
    l.close();
    const again = open(dir, 'primary', () => T0 + 1000, { kind: 'transfers', apiKey: 'pkey' });
    expect(again.view().attempts.map((a) => [a.to, a.outcome])).toEqual([['sub1', 'success'], ['sub2', 'unknown']]);
  });

  it('records nothing when the plan asks for nothing', () => {
    const dir = tempDir();
    const l = open(dir, 'primary', () => T0, { kind: 'transfers' });
    expect(l.claimMany(() => ({ result: 1, attempts: [] }))).toEqual({ result: 1, attempts: [] });
    expect(readFileSync(join(dir, ledgerFileName('primary', 'transfers')), 'utf8')).toBe('');
  });

  it('a short write of the second record returns no attempt at all: the first is withdrawn, nothing may be sent', () => {
    const dir = tempDir();
    let writes = 0;
    const l = open(dir, 'primary', () => T0, {
      kind: 'transfers',
      write: (fd, data) => {
        writes += 1;
        // The second attempt record lands 10 bytes short, as on a full disk.
        return writes === 2 ? writeSync(fd, data.subarray(0, data.length - 10)) : writeSync(fd, data);
      },
    });
    const claim = l.claimMany(planTwo);
    expect(claim.attempts).toEqual([]);
    expect(claim.problem).toMatch(/short write/);
    const byTo = new Map(l.view().attempts.map((a) => [a.to, a.outcome]));
    expect(byTo.get('sub1')).toBe('not_sent');
  });

  it('another writer\'s attempt landing between the decision and the record withdraws the whole plan', () => {
    const dir = tempDir();
    const file = join(dir, ledgerFileName('primary', 'transfers'));
    const events: LedgerEvent[] = [];
    const l = open(dir, 'primary', () => T0, { kind: 'transfers', onEvent: (e) => events.push(e) });
    const claim = l.claimMany(() => {
      // A second process on the same STATE_DIR appends its own transfer right after our read.
      appendFileSync(file, encodeRecord({ type: 'attempt', at: T0, id: 'foreign', balance: 500, threshold: 10, account: 'primary', to: 'sub1', requested: 20 }));
      return planTwo();
    });
    expect(claim.attempts).toEqual([]);
    expect(claim.problem).toMatch(/another process/);
    const view = l.view().attempts;
    expect(view.find((a) => a.id === 'foreign')?.to).toBe('sub1');
    expect(view.filter((a) => a.id !== 'foreign').every((a) => a.outcome === 'not_sent')).toBe(true);
    expect(events.filter((e) => e.kind === 'superseded')).toHaveLength(2);
  });

  it('a torn transfer attempt (cut before its target) is read back as an attempt of unknown outcome', () => {
    const dir = tempDir();
    const whole = encodeRecord({ type: 'attempt', at: T0, id: 'cut', balance: 500, threshold: 10, account: 'primary', to: 'sub1', requested: 20 });
    writeFileSync(join(dir, ledgerFileName('primary', 'transfers')), whole.slice(0, 40));
    const l = open(dir, 'primary', () => T0 + 1000, { kind: 'transfers' });
    const [a] = l.view().attempts;
    expect(a).toMatchObject({ outcome: 'unknown', torn: true });
    expect(a?.to).toBeUndefined();
  });

  it('two accounts that swap names keep their own attempts: a cooldown follows the API key, not the file name', () => {
    const dir = tempDir();
    for (const kind of ['topups', 'transfers'] as const) {
      const a = open(dir, 'A', () => T0, { apiKey: 'kA', kind });
      a.recordAttempt(4, 10);
      a.close();
      open(dir, 'B', () => T0, { apiKey: 'kB', kind }).close();
      // The swap: the account charged through kA is now called B, and kB's is called A.
      const nowB = open(dir, 'B', () => T0 + 1000, { apiKey: 'kA', kind });
      const nowA = open(dir, 'A', () => T0 + 1000, { apiKey: 'kB', kind });
      expect(nowB.view().attempts).toHaveLength(1);
      expect(nowA.view().attempts).toHaveLength(0);
      nowB.close();
      nowA.close();
    }
  });

  it('an account renamed and renamed back keeps what it did under the other name', () => {
    const dir = tempDir();
    const first = open(dir, 'A', () => T0, { apiKey: 'kA' });
    const one = first.recordAttempt(4, 10);
    first.close();
    const renamed = open(dir, 'A2', () => T0 + 3_600_000, { apiKey: 'kA' });
    expect(renamed.view().attempts.map((a) => a.id)).toEqual([one.id]);
    const two = renamed.recordAttempt(4, 10);
    renamed.close();
    const back = open(dir, 'A', () => T0 + 3_601_000, { apiKey: 'kA' });
    expect(back.view().attempts.map((a) => a.id)).toEqual([one.id, two.id]);
    // Opened again (a restart): nothing imported twice.
    back.close();
    const again = open(dir, 'A', () => T0 + 3_602_000, { apiKey: 'kA' });
    expect(again.view().attempts.map((a) => a.id)).toEqual([one.id, two.id]);
  });

  it('a rename back to a file that already has attempts still finds the charge made under the other name: no second one in the cooldown', () => {
    const dir = tempDir();
    chargedAsA2(dir);
    const back = open(dir, 'A', () => T0 + 5 * MIN, { apiKey: 'k1' });
    expect(back.claim(low(T0 + 5 * MIN), hourCooldown).decision).toMatchObject({ action: 'skip', reason: 'cooldown' });
  });

  it('a sibling that holds this key\'s attempts but cannot be trusted stops this ledger (it may hold a charge); one that does not mention the key is no concern', () => {
    const dir = tempDir();
    chargedAsA2(dir);
    appendFileSync(join(dir, ledgerFileName('A2')), '{"v":1,"type":"refund","at":1,"id":"x"}\n');
    const back = open(dir, 'A', () => T0 + 5 * MIN, { apiKey: 'k1' });
    expect(back.view().writable).toBe(false);
    expect(back.view().problem).toMatch(/may also be in topups-A2\.jsonl, which cannot be trusted/);
    expect(back.claim(low(T0 + 5 * MIN), hourCooldown).decision).toMatchObject({ action: 'skip', reason: 'ledger_unavailable' });
    back.close();
    const other = open(dir, 'B', () => T0 + 5 * MIN, { apiKey: 'k2' });
    expect(other.view().problem).toBeUndefined();
    expect(other.view().writable).toBe(true);
  });

  it('a rename back keeps the outcomes learnt under the other name', () => {
    const dir = tempDir();
    const p = open(dir, 'P', () => T0, { apiKey: 'pk', kind: 'transfers' });
    const t = p.claimMany(() => ({ result: 0, attempts: [{ balance: 50, threshold: 10, to: 'sub1', requested: 5 }] })).attempts[0]!;
    p.abandon();
    const p2 = open(dir, 'P2', () => T0 + 10 * MIN, { apiKey: 'pk', kind: 'transfers' });
    const there = p2.view().attempts.find((x) => x.id === t.id)!;
    expect(there.outcome).toBe('unknown');
    p2.recordOutcome(there, 'failed', 'not_in_history');
    p2.close();
    const back = open(dir, 'P', () => T0 + 11 * MIN, { apiKey: 'pk', kind: 'transfers' });
    expect(back.view().attempts.find((x) => x.id === t.id)?.outcome).toBe('failed');
  });

  it('a FIFO or a symbolic link named like a ledger in STATE_DIR is skipped, never waited on or followed', () => {
    const dir = tempDir();
    execFileSync('mkfifo', [join(dir, 'topups-fifo.jsonl')]);
    const elsewhere = tempDir();
    const planted = open(elsewhere, 'X', () => T0, { apiKey: 'k1' });
    planted.recordAttempt(4, 10);
    planted.close();
    symlinkSync(join(elsewhere, ledgerFileName('X')), join(dir, 'topups-link.jsonl'));
    const l = open(dir, 'A', () => T0 + MIN, { apiKey: 'k1' });
    expect(l.view()).toMatchObject({ writable: true, attempts: [] });
  });

  it('a renamed primary keeps its transfers (the API key fingerprint), and top-up files are not mixed in', () => {
    const dir = tempDir();
    const first = open(dir, 'old-name', () => T0, { kind: 'transfers', apiKey: 'pkey' });
    const c = first.claimMany(() => ({ result: 0, attempts: [{ balance: 500, threshold: 10, to: 'sub1', requested: 20 }] }));
    first.recordOutcome(c.attempts[0]!, 'success');
    first.close();
    const topups = open(dir, 'other', () => T0, { apiKey: 'pkey' });
    expect(topups.view().attempts).toHaveLength(0);
    topups.close();
    const renamed = open(dir, 'new-name', () => T0 + 1000, { kind: 'transfers', apiKey: 'pkey' });
    expect(renamed.view().attempts.map((a) => [a.to, a.outcome])).toEqual([['sub1', 'success']]);
  });
});
