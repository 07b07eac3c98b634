/**
 * The ledger in PostgreSQL (LEDGER=postgres), shared by every replica. The money guard is in the
 * database, not in a lock held by a process: a claim is one transaction that takes a
 * transaction-level advisory lock on the account (key fingerprint and kind), reads the account's
 * attempts, decides with the same pure policy as the file ledger, inserts the attempt and commits.
 * A second replica's claim waits on that lock and then sees the attempt; a replica paused in the
 * middle loses its transaction to idle_in_transaction_session_timeout and its commit fails, so it
 * sends nothing. No session-level lock and no in-process "I hold it" state is ever trusted.
 *
 * Times of attempts are the database's clock (`now()`), the one clock all replicas share; a
 * reading's local time is carried over to it by its age on this process's monotonic clock.
 *
 * A claim committed is sent only within `sendBoundMs` (monotonic) of the moment the claim began:
 * a process frozen between commit and request must not spend money on a reading that old. Such an
 * attempt is closed as failed (`abandoned`): it counts for cooldown and cap, and moved no money.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { Attempt, AttemptOutcome, ForecastDecision, ForecastInput, LedgerView, PolicySettings, Reading } from '../refill/topup-policy.js';
import { decideWithForecast } from '../refill/topup-policy.js';
import type { FinalOutcome } from './records.js';
import type { Claim, PlannedAttempt } from './file-ledger.js';
import { keyFingerprint } from './file-ledger.js';
import { problemText, type LeaseGuard } from './postgres-leases.js';

/** Attempts older than this matter to no rule (the daily cap is 24 h; a week, as the file ledger keeps). */
const KEEP_MS = 7 * 86_400_000;

export interface PostgresLedgerOptions {
  pool: pg.Pool;
  schema: string;
  /** The account's configured name, for rows and messages. */
  account: string;
  apiKey: string;
  kind: 'topups' | 'transfers';
  /** INSTANCE_ID: which replica wrote a row. */
  instanceId: string;
  now?: () => number;
  monoNow?: () => number;
  /** Longest time between the start of a claim and its request (well inside LEADER_LEASE). */
  sendBoundMs: number;
  /** Claims are refused unless this process holds the group's lease (checked in the claim's transaction). */
  lease?: LeaseGuard;
}

/** The claim's transaction found the group's lease held by another replica, or expired. */
export class NotLeaderError extends Error {
  constructor() {
    super('this replica does not hold the lease of this account (another replica acts for it, or the lease expired while this one was paused)');
    this.name = 'NotLeaderError';
  }
}

interface Row {
  id: string;
  at_ms: string | number;
  outcome: AttemptOutcome;
  reason: string | null;
  balance_before: number;
  confirmed_ms: string | number | null;
  amount: number | null;
  to_key: string | null;
  requested: number | null;
}

export interface PgClaim extends Claim {
  /** Monotonic deadline for sending the request; later, it is abandoned. */
  sendBy?: number;
}

// pg's messages name host and user at most, never the password (problemText).
const problemOf = (err: unknown): string => `the PostgreSQL ledger is unreachable or refused (${problemText(err)})`;

export class PostgresLedger {
  private attempts: Attempt[] = [];
  private problem: string | undefined = 'not read yet';
  /** Monotonic stamps of this process's own attempts (memory only, as in the file ledger). */
  private readonly monos = new Map<string, number>();
  private readonly keyId: string;
  private readonly now: () => number;
  private readonly monoNow: () => number;
  private closed = false;
  /** Ids inserted by the transaction in progress: gone again if it does not commit. */
  private uncommitted: string[] = [];

  constructor(private readonly o: PostgresLedgerOptions) {
    this.keyId = keyFingerprint(o.apiKey);
    this.now = o.now ?? Date.now;
    this.monoNow = o.monoNow ?? (() => performance.now());
  }

  get path(): string {
    return `postgres:${this.o.schema}.attempts (${this.o.account}, ${this.o.kind})`;
  }

  view(): LedgerView {
    return this.problem === undefined ? { writable: true, attempts: this.attempts } : { writable: false, problem: this.problem, attempts: this.attempts };
  }

  /** Reads the account's attempts again; a failure makes the ledger unwritable until the next success. */
  async retry(): Promise<void> {
    if (this.closed) return;
    try {
      const { rows, dbNow } = await this.read(this.o.pool);
      this.attempts = this.toAttempts(rows, dbNow);
      this.problem = undefined;
    } catch (err) {
      this.problem = problemOf(err);
    }
  }

  adoptMonotonic(attempts: readonly Attempt[]): void {
    for (const a of attempts) if (a.mono !== undefined && !this.monos.has(a.id)) this.monos.set(a.id, a.mono);
    for (const a of this.attempts) if (a.mono === undefined && this.monos.has(a.id)) a.mono = this.monos.get(a.id)!;
  }

  async claim(reading: Reading, settings: PolicySettings, _monoNow?: number, forecast?: ForecastInput): Promise<PgClaim> {
    const started = this.monoNow();
    let decision: ForecastDecision | undefined;
    const attempt = await this.transaction(async (c, dbNow, view) => {
      // The reading in the database's time: its age on this process's monotonic clock.
      const age = reading.mono === undefined ? this.now() - reading.at : this.monoNow() - reading.mono;
      const r = { ...reading, at: dbNow - age };
      decision = decideWithForecast(r, settings, view, dbNow, this.monoNow(), forecast);
      if (decision.action !== 'topup') return undefined;
      return this.insert(c, { balance: reading.value, threshold: settings.threshold });
    });
    if (attempt instanceof Error) return { decision: { action: 'skip', reason: 'ledger_unavailable', detail: attempt.message } };
    if (attempt === undefined) return { decision: decision! };
    return { decision: decision!, attempt, sendBy: started + this.o.sendBoundMs };
  }

  async claimMany<D>(plan: (view: LedgerView, now: number) => { result: D; attempts: readonly PlannedAttempt[] }): Promise<{ result: D; attempts: Attempt[]; problem?: string; sendBy?: number }> {
    const started = this.monoNow();
    let result: D | undefined;
    const out = await this.transaction(async (c, dbNow, view) => {
      const p = plan(view, dbNow);
      result = p.result;
      const made: Attempt[] = [];
      for (const a of p.attempts) made.push(await this.insert(c, a));
      return made;
    });
    if (out instanceof Error) {
      // Nothing committed: the plan's result stands, with no attempt to send.
      if (result === undefined) result = plan(this.view(), this.now()).result;
      return { result, attempts: [], problem: out.message };
    }
    return { result: result as D, attempts: out, sendBy: started + this.o.sendBoundMs };
  }

  async recordOutcome(attempt: Attempt, outcome: FinalOutcome, reason?: string): Promise<void> {
    attempt.outcome = outcome;
    if (reason !== undefined) attempt.reason = reason;
    await this.o.pool.query(`UPDATE ${this.o.schema}.attempts SET outcome = $2, reason = $3 WHERE id = $1`, [attempt.id, outcome, reason ?? null]);
  }

  async recordConfirmed(attempt: Attempt, _balance: number, amount?: number): Promise<void> {
    attempt.confirmedAt = this.now();
    if (amount !== undefined) attempt.amount = amount;
    await this.o.pool.query(`UPDATE ${this.o.schema}.attempts SET confirmed_at = now(), amount = COALESCE($2, amount) WHERE id = $1`, [attempt.id, amount ?? null]);
  }

  close(): void {
    this.closed = true;
  }

  /**
   * One claim transaction: the account's advisory lock, the database's now, the attempts, the
   * caller's decision and inserts, commit. An error anywhere rolls it all back and is returned
   * (the ledger is then unwritable until it reads again).
   */
  private async transaction<T>(body: (c: pg.PoolClient, dbNow: number, view: LedgerView) => Promise<T>): Promise<T | Error> {
    let client: pg.PoolClient | undefined;
    // A connection that failed mid-transaction (killed backend, timeout) is dropped, never reused.
    let broken = false;
    this.uncommitted = [];
    try {
      client = await this.o.pool.connect();
      await client.query('BEGIN');
      await client.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`vonage-reload-watchdog:${this.o.kind}:${this.keyId}`]);
      if (this.o.lease) {
        const l = this.o.lease;
        const held = await client.query(`SELECT 1 FROM ${l.schema}.leases WHERE group_key = $1 AND nonce = $2 AND expires_at > now()`, [l.groupKey, l.nonce]);
        if (held.rowCount === 0) throw new NotLeaderError();
      }
      const { rows, dbNow } = await this.read(client);
      this.attempts = this.toAttempts(rows, dbNow);
      this.problem = undefined;
      // Decided as of the latest moment each claimed refill may go out (its claim plus the send
      // bound): the gap between two refills as Vonage receives them is then at least the cooldown.
      const bound = this.o.sendBoundMs;
      const asSent = this.attempts.map((a): Attempt => ({ ...a, at: a.at + bound, ...(a.mono === undefined ? {} : { mono: a.mono + bound }) }));
      const out = await body(client, dbNow, { writable: true, attempts: asSent });
      await client.query('COMMIT');
      return out;
    } catch (err) {
      if (client) await client.query('ROLLBACK').catch(() => undefined);
      // Refused, not broken: the ledger stays writable for the replica that leads.
      if (err instanceof NotLeaderError) return err;
      broken = true;
      this.problem = problemOf(err);
      // Rows inserted in the failed transaction are not in the database (or, if only the answer
      // to COMMIT was lost, they count there until read again): none is sent from here.
      const gone = new Set(this.uncommitted);
      this.attempts = this.attempts.filter((a) => !gone.has(a.id));
      for (const id of gone) this.monos.delete(id);
      return new Error(this.problem);
    } finally {
      client?.release(broken);
    }
  }

  private async read(q: pg.Pool | pg.PoolClient): Promise<{ rows: Row[]; dbNow: number }> {
    const res = await q.query<Row & { db_now_ms: string }>(
      `SELECT (extract(epoch FROM now()) * 1000)::float8 AS db_now_ms, a.id, (extract(epoch FROM a.at) * 1000)::float8 AS at_ms, a.outcome, a.reason, a.balance_before,
              (extract(epoch FROM a.confirmed_at) * 1000)::float8 AS confirmed_ms, a.amount, a.to_key, a.requested
         FROM (SELECT 1) one LEFT JOIN ${this.o.schema}.attempts a ON a.key_id = $1 AND a.kind = $2 AND a.at > now() - make_interval(secs => $3)
        ORDER BY a.at, a.id`,
      [this.keyId, this.o.kind, KEEP_MS / 1000],
    );
    const dbNow = Number(res.rows[0]?.db_now_ms ?? this.now());
    return { rows: res.rows.filter((r) => r.id !== null), dbNow };
  }

  private toAttempts(rows: readonly Row[], _dbNow: number): Attempt[] {
    return rows.map((r) => {
      const a: Attempt = { id: r.id, at: Number(r.at_ms), outcome: r.outcome, balanceBefore: Number(r.balance_before) };
      if (r.reason !== null) a.reason = r.reason;
      if (r.confirmed_ms !== null) a.confirmedAt = Number(r.confirmed_ms);
      if (r.amount !== null) a.amount = Number(r.amount);
      if (r.to_key !== null) a.to = r.to_key;
      if (r.requested !== null) a.requested = Number(r.requested);
      const mono = this.monos.get(r.id);
      if (mono !== undefined) a.mono = mono;
      return a;
    });
  }

  private async insert(c: pg.PoolClient, p: PlannedAttempt): Promise<Attempt> {
    const id = randomUUID();
    const res = await c.query<{ at_ms: number }>(
      `INSERT INTO ${this.o.schema}.attempts (id, key_id, kind, account, instance, balance_before, threshold, to_key, requested)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING (extract(epoch FROM at) * 1000)::float8 AS at_ms`,
      [id, this.keyId, this.o.kind, this.o.account, this.o.instanceId, p.balance, p.threshold, p.to ?? null, p.requested ?? null],
    );
    const mono = this.monoNow();
    this.monos.set(id, mono);
    this.uncommitted.push(id);
    const a: Attempt = { id, at: Number(res.rows[0]!.at_ms), outcome: 'pending', balanceBefore: p.balance, mono };
    if (p.to !== undefined) a.to = p.to;
    if (p.requested !== undefined) a.requested = p.requested;
    this.attempts.push(a);
    return a;
  }
}
