/**
 * A sibling that may hold this key's charge but cannot be opened (EMFILE under descriptor
 * pressure, EACCES after a restore with other owners): the ledger refuses to act rather than
 * forget the charge. node:fs is wrapped to make the open fail: as root, permissions cannot.
 */
import { describe, expect, it, vi } from 'vitest';

const fail = { match: '', code: '' };
vi.mock('node:fs', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs')>();
  const openSync = ((p: unknown, ...rest: unknown[]) => {
    if (fail.match && String(p).includes(fail.match)) throw Object.assign(new Error(`${fail.code}: mocked`), { code: fail.code });
    return (real.openSync as (...a: unknown[]) => number)(p, ...rest);
  }) as typeof real.openSync;
  return { ...real, openSync, default: { ...real, openSync } };
});

const { chargedAsA2, hourCooldown, low, MIN, open, T0, tempDir } = await import('./helpers/ledger-world.js');

describe('a sibling that cannot be opened', () => {
  for (const code of ['EMFILE', 'EACCES']) {
    it(`${code} on a sibling that holds this key's charge (rename back) must not allow a second charge`, () => {
      const dir = tempDir();
      chargedAsA2(dir);
      fail.match = 'topups-A2.jsonl';
      fail.code = code;
      const events: unknown[] = [];
      const back = open(dir, 'A', () => T0 + 5 * MIN, { apiKey: 'k1', onEvent: (e) => events.push(e) });
      const d = back.claim(low(T0 + 5 * MIN), hourCooldown).decision;
      fail.match = '';
      expect(d).toMatchObject({ action: 'skip', reason: 'ledger_unavailable' });
      expect(back.view().problem).toContain(`cannot be opened (${code})`);
    });
  }
});
