/**
 * The PostgreSQL ledger (groundwork of issue 10) against a real server: migrations applied once by
 * replicas starting together, a claim that several replicas race for granted to exactly one, the
 * attempt seen by a restarted replica, and a database that is gone refusing every claim without
 * ever naming the password.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresLedger } from '../../src/ledger/postgres-ledger.js';
import { MIGRATIONS, migrate, migrationSql } from '../../src/ledger/postgres-schema.js';
import type { PolicySettings, Reading } from '../../src/refill/topup-policy.js';
import { startPostgres, type Postgres } from './helpers/postgres.js';

let db: Postgres;
const pools: pg.Pool[] = [];
const pool = (url = db.url) => {
  const p = new pg.Pool({ connectionString: url, max: 4, connectionTimeoutMillis: 2000, statement_timeout: 5000, idle_in_transaction_session_timeout: 5000 });
  p.on('error', () => undefined);
  pools.push(p);
  return p;
};

beforeAll(async () => {
  db = await startPostgres();
});
afterAll(async () => {
  for (const p of pools) await p.end().catch(() => undefined);
  await db?.stop();
});

const settings: PolicySettings = { threshold: 10, cooldownMs: 15 * 60_000, maxPerDay: 3, topupEnabled: true, dryRun: false, maxReadingAgeMs: 5000 };
const reading = (): Reading => ({ value: 4, autoReload: true, at: Date.now(), mono: performance.now() });
const ledger = (p: pg.Pool, instanceId: string, schema = 'vrw_test') => new PostgresLedger({ pool: p, schema, account: 'main', apiKey: 'canary-key', kind: 'topups', instanceId, sendBoundMs: 5000 });

describe('PostgreSQL ledger', () => {
  it('three replicas migrating at once apply each migration exactly once; again, nothing', async () => {
    const results = await Promise.all([pool(), pool(), pool()].map((p) => migrate(p, 'vrw_test')));
    expect(results.flat().sort()).toEqual(MIGRATIONS.map((m) => m.version));
    expect(await migrate(pool(), 'vrw_test')).toEqual([]);
    const rows = (await pool().query('SELECT version FROM vrw_test.schema_migrations')).rows;
    expect(rows).toHaveLength(MIGRATIONS.length);
    expect(migrationSql('vrw_test')).toContain('CREATE TABLE IF NOT EXISTS vrw_test.attempts');
    await expect(migrate(pool(), 'bad; DROP TABLE x')).rejects.toThrow(/plain lower-case identifier/);
  });

  it('of three replicas claiming the same account at the same instant, exactly one gets the top-up, every round', async () => {
    const replicas = ['a', 'b', 'c'].map((id) => ledger(pool(), id, 'vrw_race'));
    await migrate(pool(), 'vrw_race');
    for (let round = 0; round < 10; round++) {
      await pool().query('DELETE FROM vrw_race.attempts');
      const claims = await Promise.all(replicas.map((l) => l.claim(reading(), settings)));
      const granted = claims.filter((c) => c.attempt !== undefined);
      expect(granted, `round ${round}`).toHaveLength(1);
      for (const c of claims) if (c.attempt === undefined) expect(c.decision).toMatchObject({ action: 'skip', reason: 'cooldown' });
    }
    // A replica started afterwards (a restart, a new pod) sees the attempt: the cooldown holds.
    const late = ledger(pool(), 'd', 'vrw_race');
    await late.retry();
    expect(late.view().writable).toBe(true);
    expect(late.view().attempts).toHaveLength(1);
    expect((await late.claim(reading(), settings)).decision).toMatchObject({ action: 'skip', reason: 'cooldown' });
  });

  it('an unreachable database: no claim is granted, the ledger says why, and never the password', async () => {
    const gone = ledger(pool(db.url.replace(`:${db.port}/`, ':1/')), 'x');
    const c = await gone.claim(reading(), settings);
    expect(c.attempt).toBeUndefined();
    expect(c.decision).toMatchObject({ action: 'skip', reason: 'ledger_unavailable' });
    expect(gone.view().writable).toBe(false);
    expect(JSON.stringify([c, gone.view()])).not.toContain(db.password);
    expect(JSON.stringify([c, gone.view()])).not.toContain(encodeURIComponent(db.password));
  });
});
