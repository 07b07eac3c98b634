/**
 * The PostgreSQL ledger's schema: numbered migrations, applied at start-up by any replica, in one
 * transaction under a transaction-level advisory lock, so that two replicas starting together
 * apply each migration once and neither sees a half-made schema. Idempotent: a migration already
 * recorded in `schema_migrations` is skipped. `ledger migrate --dry-run` prints the same SQL.
 */
import type pg from 'pg';

/** A schema name is put into SQL as an identifier, so it is held to a plain form. */
export const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

export interface Migration {
  version: number;
  name: string;
  sql: (schema: string) => string;
}

export const MIGRATIONS: readonly Migration[] = Object.freeze([
  {
    version: 1,
    name: 'attempts',
    // One row per refill attempt, written before the request goes out. `key_id` is the API key's
    // fingerprint (never the key): attempts follow the account charged, whatever its label.
    // Times are the database's clock, the one clock every replica shares.
    sql: (s: string) => `CREATE TABLE IF NOT EXISTS ${s}.attempts (
  id text PRIMARY KEY,
  key_id text NOT NULL,
  kind text NOT NULL CHECK (kind IN ('topups', 'transfers')),
  account text NOT NULL,
  instance text NOT NULL,
  at timestamptz NOT NULL DEFAULT now(),
  balance_before double precision NOT NULL,
  threshold double precision NOT NULL,
  to_key text,
  requested double precision,
  outcome text NOT NULL DEFAULT 'pending' CHECK (outcome IN ('pending', 'success', 'failed', 'unknown', 'not_sent')),
  reason text,
  confirmed_at timestamptz,
  amount double precision
);
CREATE INDEX IF NOT EXISTS attempts_key_kind_at ON ${s}.attempts (key_id, kind, at);`,
  },
  {
    version: 2,
    name: 'leases',
    // Who acts for each account group (a primary with its subaccounts), until when, by the
    // database's clock. `nonce` is one process's, so a restarted replica with the same
    // INSTANCE_ID is not taken for its dead predecessor. `instances` holds each live replica's
    // heartbeat: a second live process with the same INSTANCE_ID is refused there.
    sql: (s: string) => `CREATE TABLE IF NOT EXISTS ${s}.leases (
  group_key text PRIMARY KEY,
  account text NOT NULL,
  holder text NOT NULL,
  nonce text NOT NULL,
  acquired_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS ${s}.instances (
  instance_id text PRIMARY KEY,
  nonce text NOT NULL,
  started_at timestamptz NOT NULL DEFAULT now(),
  heartbeat_at timestamptz NOT NULL DEFAULT now()
);`,
  },
]);

const lockKey = (schema: string) => `vonage-reload-watchdog:migrate:${schema}`;

/** Every statement a migration from nothing would run, for `--dry-run`. */
export function migrationSql(schema: string): string {
  const parts = [`CREATE SCHEMA IF NOT EXISTS ${schema};`, `CREATE TABLE IF NOT EXISTS ${schema}.schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());`];
  for (const m of MIGRATIONS) parts.push(`-- ${m.version}: ${m.name}\n${m.sql(schema)}\nINSERT INTO ${schema}.schema_migrations (version, name) VALUES (${m.version}, '${m.name}');`);
  return `${parts.join('\n')}\n`;
}

/** Applies the migrations not yet applied; returns their versions. */
export async function migrate(pool: pg.Pool, schema: string): Promise<number[]> {
  if (!SCHEMA_NAME.test(schema)) throw new Error(`DATABASE_SCHEMA must be a plain lower-case identifier (got ${JSON.stringify(schema.slice(0, 70))})`);
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [lockKey(schema)]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
    await client.query(`CREATE TABLE IF NOT EXISTS ${schema}.schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const done = new Set((await client.query<{ version: number }>(`SELECT version FROM ${schema}.schema_migrations`)).rows.map((r) => Number(r.version)));
    const applied: number[] = [];
    for (const m of MIGRATIONS) {
      if (done.has(m.version)) continue;
      await client.query(m.sql(schema));
      await client.query(`INSERT INTO ${schema}.schema_migrations (version, name) VALUES ($1, $2)`, [m.version, m.name]);
      applied.push(m.version);
    }
    await client.query('COMMIT');
    return applied;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}
