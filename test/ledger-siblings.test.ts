/**
 * What a ledger takes from the other ledger files of its kind in STATE_DIR when it opens, and when
 * it refuses to act because one of them may hold a charge it cannot read.
 */
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { keyFingerprint, legacyLedgerFileName, ledgerFileName } from '../src/ledger/file-ledger.js';
import { encodeRecord } from '../src/ledger/records.js';
import { hourCooldown, low, MIN, open, T0, tempDir } from './helpers/ledger-world.js';

function bigFile(path: string, bad: boolean) {
  const key = keyFingerprint('someone-else');
  const lines: string[] = [];
  let size = 0;
  for (let i = 0; size < 65 * 1024 * 1024 + 1; i++) {
    const l = encodeRecord({ type: 'attempt', at: T0 - 400 * 86_400_000 + i, id: `old-${i}-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx`, balance: 4, threshold: 10, account: 'retired', key });
    lines.push(l);
    size += l.length;
  }
  if (bad) lines.push('{"v":1,"type":"refund","at":1,"id":"x"}\n');
  writeFileSync(path, lines.join(''));
}

describe('ledger siblings: files of other names that may hold this account\'s attempts', () => {
  it('a legacy file (before fingerprints, old file name) is imported and written into the new file', () => {
    const dir = tempDir();
    writeFileSync(join(dir, legacyLedgerFileName('prod eu/1')), encodeRecord({ type: 'attempt', at: T0 - 5 * MIN, id: 'old-1', balance: 4, threshold: 10, account: 'prod eu/1' }));
    const l = open(dir, 'prod eu/1', () => T0, { apiKey: 'k1' });
    expect(l.claim(low(T0), hourCooldown).decision).toMatchObject({ action: 'skip', reason: 'cooldown' });
    expect(readFileSync(join(dir, ledgerFileName('prod eu/1')), 'utf8')).toContain('old-1');
  });
  it('a damaged legacy file holding a charge 5 minutes ago must not let a second charge through', () => {
    const dir = tempDir();
    const legacy = join(dir, legacyLedgerFileName('prod eu/1'));
    writeFileSync(legacy, encodeRecord({ type: 'attempt', at: T0 - 5 * MIN, id: 'old-1', balance: 4, threshold: 10, account: 'prod eu/1' }));
    appendFileSync(legacy, '{"v":1,"type":"refund","at":1,"id":"x"}\n');
    const l = open(dir, 'prod eu/1', () => T0, { apiKey: 'k1' });
    const c = l.claim(low(T0), hourCooldown);
    expect(c.decision.action).not.toBe('topup');
  });

  it('a damaged 65 MiB ledger of a retired account (another key) does not stop an unrelated one: large files are searched in chunks, not assumed to mention every key', () => {
    const dir = tempDir();
    bigFile(join(dir, 'topups-retired.jsonl'), true);
    const z = open(dir, 'Z', () => T0, { apiKey: 'k1' });
    z.retry();
    expect(z.view().problem).toBeUndefined();
    expect(z.claim(low(T0), hourCooldown).decision.action).toBe('topup');
  }, 120_000);

  it('finds the fingerprint wherever it falls, across the 1 MiB chunks the search reads: a damaged sibling holding it stops this ledger', () => {
    for (const shift of [-40, -20, -8, 0, 8, 20]) {
      const dir = tempDir();
      const own = open(dir, 'A', () => T0 - 3 * 86_400_000, { apiKey: 'k1' });
      own.recordAttempt(4, 10);
      own.close();
      const other = keyFingerprint('other');
      const mine = encodeRecord({ type: 'attempt', at: T0 - 5 * MIN, id: 'charge', balance: 4, threshold: 10, account: 'A2', key: keyFingerprint('k1') });
      const at = mine.indexOf('"key":"') + 10; // the middle of the fingerprint
      let text = '';
      for (let i = 0; text.length < 1024 * 1024 - 400; i++) text += encodeRecord({ type: 'attempt', at: T0 - 400 * 86_400_000 + i, id: `p${i}`, balance: 4, threshold: 10, account: 'x', key: other });
      const pad = 1024 * 1024 - text.length - at + shift;
      text += `${' '.repeat(Math.max(0, pad - 1))}\n${mine}{"v":1,"type":"refund","at":1,"id":"x"}\n`;
      writeFileSync(join(dir, ledgerFileName('A2')), text);
      const back = open(dir, 'A', () => T0, { apiKey: 'k1' });
      expect(back.view().problem, `shift ${shift}`).toMatch(/may also be in topups-A2\.jsonl, which cannot be trusted/);
      back.close();
    }
  });
});
