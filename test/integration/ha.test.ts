/**
 * Several built daemons on one real PostgreSQL (LEDGER=postgres), the simulator as ground truth:
 * one replica acts, the others stand by and say so; the leader killed, another takes over within
 * LEADER_LEASE plus a poll and does not top up again; a second live replica with the same
 * INSTANCE_ID refuses to act; the database gone, every replica keeps watching and none refills,
 * and they recover by themselves; a replica started while the database is down stays up and
 * migrates once it answers. The password never shows, anywhere.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { baseEnv, run, stop, tempDir, waitFor, type Child } from '../helpers/daemon.js';
import { daemonHarness } from '../helpers/harness.js';
import { MIGRATIONS } from '../../src/ledger/postgres-schema.js';
import { encodeRecord } from '../../src/ledger/records.js';
import { startPostgres, type Postgres } from './helpers/postgres.js';
import { parseExposition } from '../safety/helpers/matrix-util.js';

let db: Postgres;
beforeAll(async () => {
  db = await startPostgres();
});
afterAll(async () => {
  await db?.stop();
});

const h = daemonHarness();
let schemaSeq = 0;

async function scrape(c: Child): Promise<Map<string, number>> {
  return parseExposition(await (await fetch(`${c.url}/metrics`)).text());
}
const leaderOf = async (c: Child) => (await scrape(c).catch(() => new Map<string, number>())).get('vonage_watchdog_leader{account="e2e"}');

function haEnv(simUrl: string, schema: string, id: string, extra: Record<string, string> = {}) {
  return baseEnv(simUrl, { LEDGER: 'postgres', DATABASE_URL: db.url, DATABASE_SCHEMA: schema, INSTANCE_ID: id, LEADER_LEASE: '2s', TOPUP_COOLDOWN: '1h', ...extra });
}

const expectNoPassword = (...texts: string[]) => {
  for (const t of texts) {
    expect(t).not.toContain(db.password);
    expect(t).not.toContain(encodeURIComponent(db.password));
    expect(t).not.toContain(Buffer.from(db.password).toString('base64'));
  }
};

describe('replicas on PostgreSQL', () => {
  it('one acts and tops up once; the standby exports only its leader series; after kill -9 the standby takes over within the lease plus a poll and does not top up again', async () => {
    const sim = await h.simulator({ balance: 4 });
    const schema = `ha_${++schemaSeq}`;
    const a = await h.daemon(haEnv(sim.url, schema, 'replica-a'));
    await waitFor(async () => (await leaderOf(a)) === 1, 10_000, a.output);
    const b = await h.daemon(haEnv(sim.url, schema, 'replica-b'));
    await waitFor(() => sim.appliedTopUps().length === 1, 10_000, a.output);
    // The standby's leader series is 0 from its first scrape; its first round trip says the ledger is up.
    await waitFor(async () => (await scrape(b)).get('vonage_ledger_up') === 1, 10_000, b.output);
    expect(await leaderOf(b)).toBe(0);

    const sa = await scrape(a);
    const sb = await scrape(b);
    for (const s of [sa, sb]) {
      expect(s.get('vonage_ledger_up')).toBe(1);
      expect(s.has('vonage_leader_transitions_total{account="e2e"}')).toBe(true);
    }
    expect(sa.get('vonage_watchdog_leader{account="e2e"}')).toBe(1);
    expect(sa.has('vonage_balance_euros{account="e2e"}')).toBe(true);
    // The standby: the leader series and nothing else of the account.
    const standbySeries = [...sb.keys()].filter((k) => k.includes('account="e2e"'));
    expect(standbySeries.sort()).toEqual(['vonage_leader_transitions_total{account="e2e"}', 'vonage_watchdog_leader{account="e2e"}']);
    expect((await fetch(`${b.url}/readyz`)).status).toBe(200);
    const status = (await (await fetch(`${b.url}/status`)).json()) as { instance: string; ledger: { kind: string; up: boolean }; accounts: { leader: boolean }[] };
    expect(status).toMatchObject({ instance: 'replica-b', ledger: { kind: 'postgres', up: true } });
    expect(status.accounts[0]!.leader).toBe(false);
    // Their sessions are named after INSTANCE_ID.
    const names = db.sql("SELECT DISTINCT application_name FROM pg_stat_activity WHERE application_name LIKE 'vonage-reload-watchdog/%' ORDER BY 1");
    expect(names.trim().split('\n')).toEqual(['vonage-reload-watchdog/replica-a', 'vonage-reload-watchdog/replica-b']);

    // Spent again at once: a refill is due, and only the cooldown in the database holds it back.
    sim.setBalance(4);
    // The leader dies without a word: the lease (2 s) runs out, b takes over at its next renewal.
    const killedAt = performance.now();
    a.proc.kill('SIGKILL');
    await a.exited;
    await waitFor(async () => (await leaderOf(b)) === 1, 10_000, b.output);
    const failoverMs = performance.now() - killedAt;
    console.log(`failover after kill -9: ${Math.round(failoverMs)} ms (LEADER_LEASE 2 s, poll every 1 s)`);
    expect(failoverMs).toBeLessThanOrEqual(2000 + 1000 + 500);
    const polls = (await scrape(b)).get('vonage_balance_polls_total{account="e2e"}') ?? 0;
    await waitFor(async () => ((await scrape(b)).get('vonage_balance_polls_total{account="e2e"}') ?? 0) >= polls + 2, 10_000, b.output);
    // It reads the balance, still below the threshold, and the cooldown (in the database) holds.
    expect(sim.appliedTopUps()).toHaveLength(1);
    expect((await scrape(b)).get('vonage_topups_skipped_total{account="e2e",reason="cooldown"}')).toBeGreaterThan(0);
    expectNoPassword(a.output(), b.output(), await (await fetch(`${b.url}/metrics`)).text(), JSON.stringify(status));
  });

  it('a second live replica with the same INSTANCE_ID refuses to act and says why', async () => {
    const sim = await h.simulator({ balance: 50 });
    const schema = `ha_${++schemaSeq}`;
    const a = await h.daemon(haEnv(sim.url, schema, 'twin'));
    await waitFor(async () => (await leaderOf(a)) === 1, 10_000, a.output);
    const b = await h.daemon(haEnv(sim.url, schema, 'twin'));
    await waitFor(() => /INSTANCE_ID is in use by another live replica/.test(b.output()), 10_000, b.output);
    expect(await leaderOf(b)).toBe(0);
    expect(await leaderOf(a)).toBe(1);
    // When the first stops (cleanly: its heartbeat row goes), the second may act.
    await stop(a);
    await waitFor(async () => (await leaderOf(b)) === 1, 10_000, b.output);
    expect(b.output()).toMatch(/INSTANCE_ID is free again/);
  });

  it('the database gone: every replica watches (ledger_up 0), none refills; it comes back and they recover by themselves', async () => {
    const sim = await h.simulator({ balance: 50 });
    const schema = `ha_${++schemaSeq}`;
    const a = await h.daemon(haEnv(sim.url, schema, 'down-a', { TOPUP_COOLDOWN: '1s' }));
    await waitFor(async () => (await leaderOf(a)) === 1, 10_000, a.output);
    const b = await h.daemon(haEnv(sim.url, schema, 'down-b', { TOPUP_COOLDOWN: '1s' }));
    await waitFor(async () => (await leaderOf(b)) === 0, 10_000, b.output);

    await db.halt();
    sim.setBalance(4);
    for (const c of [a, b]) await waitFor(async () => (await scrape(c)).get('vonage_ledger_up') === 0, 15_000, c.output);
    // Both read the balance now, and both refuse to refill.
    for (const c of [a, b]) {
      await waitFor(async () => ((await scrape(c)).get('vonage_topups_skipped_total{account="e2e",reason="ledger_unavailable"}') ?? 0) >= 2, 15_000, c.output);
      expect((await scrape(c)).get('vonage_balance_euros{account="e2e"}')).toBe(4);
      expect((await fetch(`${c.url}/healthz`)).status).toBe(200);
    }
    expect(sim.appliedTopUps()).toHaveLength(0);

    await db.resume();
    await waitFor(() => sim.appliedTopUps().length >= 1, 20_000, () => a.output() + b.output());
    const leaders = [await leaderOf(a), await leaderOf(b)];
    expect(leaders.filter((l) => l === 1)).toHaveLength(1);
    for (const c of [a, b]) expect((await scrape(c)).get('vonage_ledger_up')).toBe(1);
    expectNoPassword(a.output(), b.output());
  });

  it('a replica started while the database is down stays up, reports ledger_up 0, and migrates once it answers', async () => {
    const sim = await h.simulator({ balance: 50 });
    const schema = `ha_${++schemaSeq}`;
    await db.halt();
    let early: Child;
    try {
      early = await h.daemon(haEnv(sim.url, schema, 'early'));
      const a = early;
      await waitFor(async () => (await scrape(a)).get('vonage_ledger_up') === 0, 10_000, a.output);
      expect(await leaderOf(a)).toBe(0);
      // It watches meanwhile.
      await waitFor(async () => (await scrape(a)).get('vonage_balance_euros{account="e2e"}') === 50, 10_000, a.output);
    } finally {
      await db.resume();
    }
    await waitFor(async () => (await leaderOf(early)) === 1, 20_000, early.output);
    expect(db.sql(`SELECT count(*) FROM ${schema}.schema_migrations`).trim()).toBe(String(MIGRATIONS.length));
    expect(early.output()).toMatch(/ledger schema migrated/);
  });
});

describe('ledger subcommands', () => {
  it('migrate --dry-run prints the SQL and connects to nothing; migrate applies it; export and import carry a file ledger over', async () => {
    const schema = `cli_${++schemaSeq}`;
    const env = { ...baseEnv('http://127.0.0.1:9'), LEDGER: 'postgres', DATABASE_URL: db.url, DATABASE_SCHEMA: schema };
    const dry = run(['ledger', 'migrate', '--dry-run'], { ...env, DATABASE_URL: 'postgres://u:CANARY-unreachable@127.0.0.1:9/x' });
    expect((await dry.exited).code).toBe(0);
    expect(dry.output()).toContain(`CREATE TABLE IF NOT EXISTS ${schema}.attempts`);
    expect(dry.output()).toContain(`CREATE TABLE IF NOT EXISTS ${schema}.leases`);
    expect(dry.output()).not.toContain('CANARY-unreachable');

    const m = run(['ledger', 'migrate'], env);
    expect((await m.exited).code).toBe(0);
    expect(m.output()).toMatch(new RegExp(`migrated ${schema} to version ${MIGRATIONS.length}`));
    const again = run(['ledger', 'migrate'], env);
    expect((await again.exited).code).toBe(0);
    expect(again.output()).toMatch(/up to date/);

    // A file ledger as the single-replica daemon writes it.
    const stateDir = tempDir('ha-import-');
    const at = Date.now() - 60_000;
    writeFileSync(join(stateDir, 'topups-e2e.jsonl'), encodeRecord({ type: 'attempt', at, id: 'imp-1', account: 'e2e', balance: 3.5, threshold: 10 }) + encodeRecord({ type: 'outcome', at: at + 500, id: 'imp-1', outcome: 'success' }));
    const fileExport = run(['ledger', 'export', '--format', 'csv'], { ...env, LEDGER: 'file', STATE_DIR: stateDir });
    expect((await fileExport.exited).code).toBe(0);
    expect(fileExport.output().split('\n')[0]).toBe('id,kind,account,key_id,instance,at,outcome,reason,balance_before,threshold,to,requested,confirmed_at,amount');
    expect(fileExport.output()).toMatch(/^imp-1,topups,e2e,/m);

    const imp = run(['ledger', 'import'], { ...env, STATE_DIR: stateDir });
    expect((await imp.exited).code, imp.output()).toBe(0);
    expect(imp.output()).toMatch(/imported 1 of 1 attempts/);
    expect(imp.output()).not.toContain(db.password);
    const twice = run(['ledger', 'import'], { ...env, STATE_DIR: stateDir });
    expect((await twice.exited).code).toBe(0);
    expect(twice.output()).toMatch(/imported 0 of 1 attempts .* 1 were there already/);

    const jsonl = run(['ledger', 'export', '--format', 'jsonl'], env);
    expect((await jsonl.exited).code).toBe(0);
    const rows = jsonl.output().trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(rows).toEqual([expect.objectContaining({ id: 'imp-1', kind: 'topups', account: 'e2e', outcome: 'success', balance_before: 3.5, threshold: 10, at: new Date(at).toISOString() })]);

    // The imported attempt holds the cooldown for a replica on PostgreSQL.
    const sim = await h.simulator({ balance: 4 });
    const d = await h.daemon(haEnv(sim.url, schema, 'after-import'));
    await waitFor(async () => ((await scrape(d)).get('vonage_topups_skipped_total{account="e2e",reason="cooldown"}') ?? 0) >= 1, 10_000, d.output);
    expect(sim.appliedTopUps()).toHaveLength(0);
  });

  it('upgrades a database made by the previous version (schema 1 only, with an attempt in it) without losing it', async () => {
    const schema = `prev_${++schemaSeq}`;
    const pool = new pg.Pool({ connectionString: db.url });
    try {
      await pool.query(`CREATE SCHEMA ${schema}`);
      await pool.query(`CREATE TABLE ${schema}.schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
      await pool.query(MIGRATIONS[0]!.sql(schema));
      await pool.query(`INSERT INTO ${schema}.schema_migrations (version, name) VALUES (1, 'attempts')`);
      await pool.query(`INSERT INTO ${schema}.attempts (id, key_id, kind, account, instance, balance_before, threshold, outcome) VALUES ('old-1', 'k', 'topups', 'e2e', 'v1', 2, 10, 'unknown')`);
    } finally {
      await pool.end();
    }
    const m = run(['ledger', 'migrate'], { ...baseEnv('http://127.0.0.1:9'), LEDGER: 'postgres', DATABASE_URL: db.url, DATABASE_SCHEMA: schema });
    expect((await m.exited).code, m.output()).toBe(0);
    expect(m.output()).toMatch(new RegExp(`applied: ${MIGRATIONS.slice(1).map((x) => x.version).join(', ')}`));
    expect(db.sql(`SELECT id || ':' || outcome FROM ${schema}.attempts`).trim()).toBe('old-1:unknown');
    expect(db.sql(`SELECT count(*) FROM ${schema}.leases`).trim()).toBe('0');
  });
});
