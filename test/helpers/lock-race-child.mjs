// One of two watchdogs started at the same instant on one STATE_DIR (test/ledger.test.ts): it
// opens the real ledger and tries the real money step, then prints what happened.
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ledger } from '../../dist/ledger/file-ledger.js';

const [dir, go] = process.argv.slice(2);
writeFileSync(join(dir, `ready-${process.pid}`), '');
// Spin until the start signal so both processes leave the gate within microseconds of each other.
const gate = new Int32Array(new SharedArrayBuffer(4));
while (!existsSync(go)) Atomics.wait(gate, 0, 0, 1);
const ledger = Ledger.open(dir, 'race', Date.now);
const claim = ledger.claim(
  { value: 4, autoReload: true, at: Date.now() },
  { threshold: 10, cooldownMs: 3_600_000, maxPerDay: 3, topupEnabled: true, dryRun: false, maxReadingAgeMs: 10_000 },
);
process.stdout.write(claim.attempt ? 'claimed\n' : `refused:${claim.decision.action === 'skip' ? claim.decision.reason : claim.decision.action}\n`);
if (claim.attempt) ledger.recordOutcome(claim.attempt, 'success');
ledger.close();
