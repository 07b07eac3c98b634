/**
 * Reproduction of a defect the transfer storm's T4 (primary never below primaryReserve because of
 * our transfers) was written to catch: a transfer whose answer never came, which Vonage applies
 * only after the daemon's next subaccount list.
 *
 * The transfer policy subtracts from the primary's reading only the transfers stamped at or after
 * the reading ("it cannot show them yet", src/refill/transfer-policy.ts, readingPredates); every
 * transfer stamped before it is taken to be in the balance already. For a transfer of unknown
 * outcome (timed out, answer lost, or interrupted by a crash) that is not so: Vonage may still be
 * processing it, as it does here (the simulator's `slow` fault applies the transfer after its delay,
 * whether or not anyone still waits for the answer). The next cycle reads a primary balance that
 * does not yet show it, the history does not have it yet (so it stays unknown: counted for the
 * cooldown and the EUR cap, rightly), but the reserve budget spends the same money again on
 * another subaccount. When the first transfer lands, the primary is below its reserve.
 *
 * Setup: primary 57 EUR, reserve 50, two subaccounts at 0 (threshold 10), 5 EUR per transfer: room
 * for exactly one. No duplicate transfer and no cap is involved; only the reserve breaks.
 * Both tests failed before open-outcome transfers were taken from the reserve budget (the primary
 * ended at 47 EUR); they hold that fix. Each waits until the late transfer has been found in the
 * history, then two more cycles (where a second transfer would go), and requires exactly one.
 */
import { describe, expect, it } from 'vitest';
import { alive, cleanupAfterAll, figure, until } from './helpers/crash-harness.js';
import type { Child } from '../helpers/daemon.js';
import { checkReferences, checkReserve, auditTransfers, fleetGroup, spawnFleetDaemon, startFleet, transferPosts, type Fleet } from './helpers/transfer-harness.js';

const { sims, children } = cleanupAfterAll();

const GROUP = fleetGroup(
  [
    { apiKey: 'sub-a', cooldownMs: 60_000, maxPerDay: 10 },
    { apiKey: 'sub-b', cooldownMs: 60_000, maxPerDay: 10 },
  ],
  { transferAmount: 5, primaryReserve: 50, maxTransferredPerDay: 1000 },
);

const setup = (label: string) => startFleet({ prefix: `transfer-late-${label}-`, group: GROUP, primaryBalance: 57, sims });

/** Stops the daemon that ran last, then holds what reached Vonage to T2 (references) and T4 (reserve). */
async function stopAndCheck(label: string, { sim, stateDir }: Fleet, last: Child) {
  last.proc.kill('SIGTERM');
  await last.exited;
  const applied = sim.appliedTransfers();
  figure(`late apply (${label}): transfers applied, primary balance after each`, applied.map((t) => `${t.to}→${t.primaryBalanceAfter}`).join(' '));
  // Exactly one: none would mean the daemon never acted (and the checks below would pass on nothing).
  expect(applied, last.output().slice(-4000)).toHaveLength(1);
  expect(checkReferences(sim, transferPosts(sim), auditTransfers(stateDir)).problems).toEqual([]);
  expect(checkReserve(sim, GROUP).problems, last.output().slice(-4000)).toEqual([]);
}

const reads = (d: Child) => d.output().split('"msg":"subaccounts read"').length - 1;

/** Until the late transfer is found in the history, then two more list reads: the cycles in which a second transfer would go. */
async function settledThenTwoCycles(d: Child, withinMs: number) {
  await until(() => d.output().includes('found in the transfer history: it was applied') || !alive(d), withinMs, 50);
  expect(d.output(), d.output().slice(-4000)).toContain('found in the transfer history: it was applied');
  const after = reads(d);
  await until(() => reads(d) >= after + 2 || !alive(d), 5000, 50);
  expect(reads(d), d.output().slice(-4000)).toBeGreaterThanOrEqual(after + 2);
}

describe('a transfer Vonage applies after the answer deadline (late apply)', () => {
  it('one daemon, no crash: the transfer times out (HTTP_TIMEOUT 1 s), lands 3 s later; the primary must stay at or above its reserve', async () => {
    const fleet = await setup('timeout');
    const { sim, env } = fleet;
    sim.setFault({ kind: 'slow', endpoint: 'transfer', delayMs: 3000, count: 1 });
    const d = await spawnFleetDaemon(env);
    children.push(d);
    await settledThenTwoCycles(d, 12_000);
    await stopAndCheck('timeout', fleet, d);
  });

  it('kill -9 while the transfer is in flight: the restarted daemon must not spend the same reserve again', async () => {
    const fleet = await setup('crash');
    const { sim, env } = fleet;
    // First start in an empty STATE_DIR: its ~2 s probation happens here, not in the race below.
    sim.setSubaccountBalance('sub-a', 100);
    sim.setSubaccountBalance('sub-b', 100);
    const first = await spawnFleetDaemon(env);
    children.push(first);
    await until(() => first.output().includes('"msg":"subaccounts read"'), 10_000, 20);
    first.proc.kill('SIGKILL');
    await first.exited;
    sim.setSubaccountBalance('sub-a', 0);
    sim.setSubaccountBalance('sub-b', 0);

    sim.setFault({ kind: 'slow', endpoint: 'transfer', delayMs: 2500, count: 1 });
    const a = await spawnFleetDaemon(env);
    children.push(a);
    await until(() => transferPosts(sim).length > 0 || !alive(a), 10_000, 5);
    a.proc.kill('SIGKILL');
    await a.exited;
    const b = await spawnFleetDaemon(env);
    children.push(b);
    await settledThenTwoCycles(b, 8000);
    await stopAndCheck('crash', fleet, b);
  });
});
