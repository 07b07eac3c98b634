/**
 * Which replica acts for which account group (LEDGER=postgres). Leadership only saves API calls
 * and keeps the replicas from polling the same accounts: the money guard is the claim
 * transaction (postgres-ledger.ts), which also re-checks the lease, so a replica that believes it
 * leads when it no longer does is refused there, never trusted.
 *
 * Every `renewEveryMs` one round trip renews the replica's heartbeat and takes or keeps every
 * group whose lease is this process's or has expired, by the database's clock. A replica
 * believes it leads a group only until `leaseMs` after that round trip began, on its own
 * monotonic clock: before the database would let anyone else take it. A round trip that fails
 * ends every belief at once: the ledger is then "down" and the daemon watches every account
 * without refilling any (no replica can claim while the database does not answer).
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { migrate } from './postgres-schema.js';

export interface LeaseGroup {
  /** The primary's key fingerprint: leases follow the account charged, whatever its label. */
  key: string;
  /** Its configured name, for the table and the metric label. */
  account: string;
}

export type LeadershipEvent =
  | { kind: 'migrated'; versions: number[] }
  | { kind: 'ledger_up' }
  | { kind: 'ledger_down'; problem: string }
  | { kind: 'leader'; account: string }
  | { kind: 'standby'; account: string }
  | { kind: 'instance_conflict'; instanceId: string }
  | { kind: 'instance_ok'; instanceId: string };

export interface LeadershipOptions {
  pool: pg.Pool;
  schema: string;
  instanceId: string;
  leaseMs: number;
  monoNow?: () => number;
  onEvent?: (e: LeadershipEvent) => void;
}

/** Lease checks inside a claim: this process's nonce must hold the group, unexpired, by the database's clock. */
export interface LeaseGuard {
  schema: string;
  groupKey: string;
  nonce: string;
}

export const problemText = (err: unknown): string => {
  const e = err as { code?: string; message?: string };
  // pg's messages name host and user at most, never the password; the URL is never in them.
  return `${e.code ?? 'error'}: ${String(e.message ?? 'unknown').slice(0, 160)}`;
};

export class Leadership {
  /** This process, as distinct from another with the same INSTANCE_ID (a restart). */
  readonly nonce = randomUUID();
  private groups: LeaseGroup[] = [];
  private readonly heldUntil = new Map<string, number>();
  private migrated = false;
  private up: boolean | undefined;
  private conflict = false;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private readonly monoNow: () => number;
  private lastProblem: string | undefined;

  constructor(private readonly o: LeadershipOptions) {
    this.monoNow = o.monoNow ?? (() => performance.now());
  }

  /** A third of the lease: two renewals may fail before another replica could take over. */
  get renewEveryMs(): number {
    return Math.max(200, Math.floor(this.o.leaseMs / 3));
  }

  /** Whether the database answered the last round trip (undefined before the first). */
  get ledgerUp(): boolean | undefined {
    return this.up;
  }

  get problem(): string | undefined {
    return this.lastProblem;
  }

  /** True while another live process uses this INSTANCE_ID: this one then acts for nothing. */
  get instanceConflict(): boolean {
    return this.conflict;
  }

  guard(groupKey: string): LeaseGuard {
    return { schema: this.o.schema, groupKey, nonce: this.nonce };
  }

  setGroups(groups: readonly LeaseGroup[]): void {
    this.groups = [...groups];
    const keys = new Set(groups.map((g) => g.key));
    for (const k of [...this.heldUntil.keys()]) if (!keys.has(k)) this.heldUntil.delete(k);
  }

  leads(groupKey: string): boolean {
    const until = this.heldUntil.get(groupKey);
    return this.up === true && !this.conflict && until !== undefined && this.monoNow() < until;
  }

  start(): void {
    if (this.stopped || this.timer) return;
    this.timer = setInterval(() => void this.renew(), this.renewEveryMs);
  }

  /** One round trip; concurrent calls share it. Never throws. */
  renew(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return (this.running ??= this.round().finally(() => (this.running = undefined)));
  }

  /** Stops renewing and hands the leases back, so that another replica takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => undefined);
    const mine = this.heldUntil.size;
    this.heldUntil.clear();
    if (this.up !== true) return;
    if (mine > 0) await this.o.pool.query(`UPDATE ${this.o.schema}.leases SET expires_at = now() WHERE nonce = $1`, [this.nonce]).catch(() => undefined);
    // A standby frees its INSTANCE_ID too: a replacement with the same name need not wait a lease.
    await this.o.pool.query(`DELETE FROM ${this.o.schema}.instances WHERE instance_id = $1 AND nonce = $2`, [this.o.instanceId, this.nonce]).catch(() => undefined);
  }

  private async round(): Promise<void> {
    const began = this.monoNow();
    const before = new Set([...this.heldUntil.keys()].filter((k) => this.leads(k)));
    const s = this.o.schema;
    try {
      if (!this.migrated) {
        const versions = await migrate(this.o.pool, s);
        this.migrated = true;
        this.o.onEvent?.({ kind: 'migrated', versions });
      }
      const lease = this.o.leaseMs / 1000;
      const beat = await this.o.pool.query(
        `INSERT INTO ${s}.instances (instance_id, nonce) VALUES ($1, $2)
         ON CONFLICT (instance_id) DO UPDATE SET nonce = EXCLUDED.nonce, heartbeat_at = now(),
           started_at = CASE WHEN ${s}.instances.nonce = EXCLUDED.nonce THEN ${s}.instances.started_at ELSE now() END
         WHERE ${s}.instances.nonce = EXCLUDED.nonce OR ${s}.instances.heartbeat_at < now() - make_interval(secs => $3)
         RETURNING nonce`,
        [this.o.instanceId, this.nonce, lease],
      );
      const conflict = beat.rowCount === 0;
      if (conflict !== this.conflict) this.o.onEvent?.(conflict ? { kind: 'instance_conflict', instanceId: this.o.instanceId } : { kind: 'instance_ok', instanceId: this.o.instanceId });
      this.conflict = conflict;
      let held = new Set<string>();
      if (!conflict && this.groups.length > 0) {
        const res = await this.o.pool.query<{ group_key: string }>(
          `INSERT INTO ${s}.leases (group_key, account, holder, nonce, expires_at)
           SELECT k, a, $3, $4, now() + make_interval(secs => $5) FROM unnest($1::text[], $2::text[]) AS t(k, a)
           ON CONFLICT (group_key) DO UPDATE SET account = EXCLUDED.account, holder = EXCLUDED.holder, nonce = EXCLUDED.nonce, expires_at = EXCLUDED.expires_at,
             acquired_at = CASE WHEN ${s}.leases.nonce = EXCLUDED.nonce THEN ${s}.leases.acquired_at ELSE now() END
           WHERE ${s}.leases.nonce = EXCLUDED.nonce OR ${s}.leases.expires_at < now()
           RETURNING group_key`,
          [this.groups.map((g) => g.key), this.groups.map((g) => g.account), this.o.instanceId, this.nonce, lease],
        );
        held = new Set(res.rows.map((r) => r.group_key));
      }
      this.heldUntil.clear();
      // From when the round trip began: the database's expiry is at least this late.
      for (const k of held) this.heldUntil.set(k, began + this.o.leaseMs);
      if (this.up !== true) this.o.onEvent?.({ kind: 'ledger_up' });
      this.up = true;
      this.lastProblem = undefined;
    } catch (err) {
      this.heldUntil.clear();
      this.lastProblem = problemText(err);
      if (this.up !== false) this.o.onEvent?.({ kind: 'ledger_down', problem: this.lastProblem });
      this.up = false;
    }
    for (const g of this.groups) {
      const now = this.leads(g.key);
      if (now && !before.has(g.key)) this.o.onEvent?.({ kind: 'leader', account: g.account });
      if (!now && before.has(g.key)) this.o.onEvent?.({ kind: 'standby', account: g.account });
    }
  }
}
