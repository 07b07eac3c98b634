/**
 * The connection pool of the shared ledger. Every wait is bounded (a database that hangs must not
 * hang the cycle, and a replica frozen inside a transaction must not wedge the others):
 * - connect: CONNECT_TIMEOUT_MS;
 * - each statement: on the server (statement_timeout) and on the client (query_timeout, for a
 *   server or a network that stops answering altogether);
 * - the claim's advisory lock: lock_timeout, well inside the lease;
 * - a session idle inside a transaction (its replica was paused or killed mid-claim) is ended by
 *   the server after idle_in_transaction_session_timeout, which releases its lock.
 * Sessions are named `vonage-reload-watchdog/<INSTANCE_ID>` (application_name), so
 * pg_stat_activity tells the replicas apart. Errors of idle connections (a killed backend, a
 * restarted server) are logged, never thrown: the next query reconnects.
 */
import pg from 'pg';

export const CONNECT_TIMEOUT_MS = 5_000;

export interface PoolTimeouts {
  connectMs: number;
  statementMs: number;
  lockMs: number;
  idleInTransactionMs: number;
  queryMs: number;
}

/** The bounds for a lease: a claim (lock wait + statements) ends well inside it. */
export function poolTimeouts(leaseMs: number): PoolTimeouts {
  const statementMs = Math.max(1_000, Math.min(5_000, Math.floor(leaseMs / 2)));
  return {
    connectMs: Math.min(CONNECT_TIMEOUT_MS, Math.max(1_000, leaseMs)),
    statementMs,
    lockMs: Math.max(250, Math.min(5_000, Math.floor(leaseMs / 4))),
    idleInTransactionMs: Math.max(1_000, Math.min(10_000, Math.floor(leaseMs / 2))),
    queryMs: statementMs + 1_000,
  };
}

/** How long after its claim began a refill may still be sent: half the lease. */
export const sendBoundMs = (leaseMs: number): number => Math.floor(leaseMs / 2);

export function createPool(o: { url: string; instanceId: string; leaseMs: number; onError?: (problem: string) => void; max?: number }): pg.Pool {
  const t = poolTimeouts(o.leaseMs);
  const pool = new pg.Pool({
    connectionString: o.url,
    max: o.max ?? 4,
    connectionTimeoutMillis: t.connectMs,
    idleTimeoutMillis: 30_000,
    statement_timeout: t.statementMs,
    lock_timeout: t.lockMs,
    idle_in_transaction_session_timeout: t.idleInTransactionMs,
    query_timeout: t.queryMs,
    application_name: `vonage-reload-watchdog/${o.instanceId}`.slice(0, 63),
    keepAlive: true,
  });
  pool.on('error', (err) => o.onError?.(`${(err as { code?: string }).code ?? 'error'}: ${err.message.slice(0, 160)}`));
  return pool;
}
