/**
 * Crash points for the safety suite, in the style of etcd's gofail: with
 * WATCHDOG_FAILPOINTS=after_attempt_recorded (comma-separated), the process kills itself with
 * SIGKILL at that point, so tests can prove the ledger holds across a crash at the worst instant
 * rather than hoping a random kill lands there. `name:stop` freezes it there instead (SIGSTOP,
 * until the test sends SIGCONT): a pause at the worst instant, as a stalled VM or a GC would make.
 * Unset in production, where this is a no-op.
 */
export type Failpoint = 'after_attempt_recorded' | 'before_outcome_recorded' | 'after_transfer_recorded' | 'before_transfer_outcome_recorded' | 'after_claim_committed';

const entries = (process.env.WATCHDOG_FAILPOINTS ?? '').split(',').map((s) => s.trim()).filter(Boolean);
const kill = new Set(entries.filter((e) => !e.endsWith(':stop')));
const stop = new Set(entries.filter((e) => e.endsWith(':stop')).map((e) => e.slice(0, -':stop'.length)));

export function failpoint(name: Failpoint): void {
  if (kill.has(name)) process.kill(process.pid, 'SIGKILL');
  if (stop.has(name)) process.kill(process.pid, 'SIGSTOP');
}
