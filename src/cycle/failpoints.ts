/**
 * Crash points for the safety suite, in the style of etcd's gofail: with
 * WATCHDOG_FAILPOINTS=after_attempt_recorded (comma-separated), the process kills itself with
 * SIGKILL at that point, so tests can prove the ledger holds across a crash at the worst instant
 * rather than hoping a random kill lands there. Unset in production, where this is a no-op.
 */
export type Failpoint = 'after_attempt_recorded' | 'before_outcome_recorded' | 'after_transfer_recorded' | 'before_transfer_outcome_recorded';

const active = new Set((process.env.WATCHDOG_FAILPOINTS ?? '').split(',').map((s) => s.trim()).filter(Boolean));

export function failpoint(name: Failpoint): void {
  if (active.has(name)) process.kill(process.pid, 'SIGKILL');
}
