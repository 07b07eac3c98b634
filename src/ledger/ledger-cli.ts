/**
 * `node dist/main.js ledger <migrate|export|import>`: the ledger's maintenance, on either backend.
 * - migrate [--dry-run]: creates or upgrades the PostgreSQL schema (what every replica also does at
 *   start-up); --dry-run prints the SQL and connects to nothing. The file ledger needs none.
 * - export --format csv|jsonl: every attempt, for audits, to stdout. PostgreSQL: the whole table;
 *   the file ledger: the attempts its live files hold (older ones are in its archive files).
 * - import: the file ledger in STATE_DIR into PostgreSQL (LEDGER=postgres), so that a move from one
 *   replica to several keeps the cooldowns and caps. Idempotent: an attempt already there (same
 *   id) is left as it is. An attempt whose outcome was never written comes over as unknown.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../config/config.js';
import { redactedDatabaseUrl } from '../config/config.js';
import { keyFingerprint, ledgerFileName, type LedgerKind } from './file-ledger.js';
import { createPool } from './postgres-pool.js';
import { migrate, migrationSql } from './postgres-schema.js';
import { parseLedger, type KnownAttempt } from './records.js';

export type LedgerCommand = { action: 'migrate'; dryRun: boolean } | { action: 'export'; format: 'csv' | 'jsonl' } | { action: 'import' };

export function parseLedgerArgs(argv: readonly string[]): LedgerCommand | { error: string } {
  const [action, ...rest] = argv;
  if (action === 'migrate') {
    const bad = rest.find((a) => a !== '--dry-run');
    return bad === undefined ? { action, dryRun: rest.includes('--dry-run') } : { error: `ledger migrate: unknown argument ${bad.slice(0, 40)}` };
  }
  if (action === 'export') {
    let format: string | undefined = 'csv';
    for (let i = 0; i < rest.length; i++) {
      const a = rest[i]!;
      if (a === '--format') format = rest[++i];
      else if (a.startsWith('--format=')) format = a.slice('--format='.length);
      else return { error: `ledger export: unknown argument ${a.slice(0, 40)}` };
    }
    return format === 'csv' || format === 'jsonl' ? { action, format } : { error: 'ledger export: --format must be csv or jsonl' };
  }
  if (action === 'import') return rest.length === 0 ? { action } : { error: `ledger import: unknown argument ${rest[0]!.slice(0, 40)}` };
  return { error: 'ledger: expected migrate [--dry-run], export [--format csv|jsonl] or import' };
}

/** One attempt as exported: the same columns from either backend. */
export interface ExportRow {
  id: string;
  kind: LedgerKind;
  account: string;
  key_id: string;
  instance: string;
  at: string;
  outcome: string;
  reason: string;
  balance_before: number;
  threshold: number;
  to: string;
  requested: number | null;
  confirmed_at: string;
  amount: number | null;
}

const COLUMNS: readonly (keyof ExportRow)[] = ['id', 'kind', 'account', 'key_id', 'instance', 'at', 'outcome', 'reason', 'balance_before', 'threshold', 'to', 'requested', 'confirmed_at', 'amount'];

/** RFC 4180; a cell that a spreadsheet would run as a formula is prefixed with `'`. */
function csvCell(v: unknown): string {
  let t = v === null || v === undefined ? '' : String(v);
  if (/^[=+\-@\t\r]/.test(t) && typeof v === 'string') t = `'${t}`;
  return /[",\n\r]/.test(t) ? `"${t.replace(/"/g, '""')}"` : t;
}

export function formatRows(rows: readonly ExportRow[], format: 'csv' | 'jsonl'): string {
  if (format === 'jsonl') return rows.map((r) => `${JSON.stringify(r)}\n`).join('');
  return [COLUMNS.join(','), ...rows.map((r) => COLUMNS.map((c) => csvCell(r[c])).join(','))].map((l) => `${l}\n`).join('');
}

const iso = (ms: number | undefined) => (ms === undefined || !Number.isFinite(ms) ? '' : new Date(ms).toISOString());

/** The file ledger's attempts of every configured account (both kinds), as export rows. */
export function fileLedgerRows(config: Config): { rows: ExportRow[]; attempts: { kind: LedgerKind; account: string; apiKey: string; attempt: KnownAttempt }[]; problems: string[] } {
  const rows: ExportRow[] = [];
  const attempts: { kind: LedgerKind; account: string; apiKey: string; attempt: KnownAttempt }[] = [];
  const problems: string[] = [];
  for (const account of config.accounts) {
    for (const kind of ['topups', 'transfers'] as const) {
      const path = join(config.stateDir, ledgerFileName(account.name, kind));
      if (!existsSync(path)) continue;
      const parsed = parseLedger(readFileSync(path, 'utf8'));
      if ('problem' in parsed) {
        problems.push(`${path}: ${parsed.problem}`);
        continue;
      }
      for (const a of parsed.attempts) {
        attempts.push({ kind, account: account.name, apiKey: account.apiKey, attempt: a });
        rows.push({ id: a.id, kind, account: account.name, key_id: keyFingerprint(account.apiKey), instance: a.owner ?? '', at: iso(a.at), outcome: a.outcome, reason: a.reason ?? '', balance_before: a.balanceBefore, threshold: a.threshold, to: a.to ?? '', requested: a.requested ?? null, confirmed_at: iso(a.confirmedAt), amount: a.amount ?? null });
      }
    }
  }
  return { rows, attempts, problems };
}

export interface LedgerIo {
  out: (text: string) => void;
  err: (text: string) => void;
}

/** Runs one subcommand; resolves to the exit code. */
export async function runLedgerCommand(config: Config, cmd: LedgerCommand, io: LedgerIo): Promise<number> {
  const pg = config.ledger.kind === 'postgres' ? config.ledger : undefined;
  const schema = config.ledger.schema;
  if (cmd.action === 'migrate' && cmd.dryRun) {
    io.out(migrationSql(schema));
    return 0;
  }
  if (cmd.action === 'migrate' && !pg) {
    io.out('LEDGER=file: the file ledger has no schema; nothing to migrate\n');
    return 0;
  }
  if (cmd.action === 'export' && !pg) {
    const { rows, problems } = fileLedgerRows(config);
    for (const p of problems) io.err(`ledger export: ${p}\n`);
    io.out(formatRows(rows, cmd.format));
    return problems.length > 0 ? 1 : 0;
  }
  if (cmd.action === 'import' && !pg) {
    io.err('ledger import: set LEDGER=postgres and DATABASE_URL: it copies the file ledger in STATE_DIR into PostgreSQL\n');
    return 64;
  }
  const pool = createPool({ url: pg!.url, instanceId: `${config.instanceId}-ledger-${cmd.action}`, leaseMs: pg!.leaseMs });
  try {
    if (cmd.action === 'migrate') {
      const versions = await migrate(pool, schema);
      io.out(versions.length > 0 ? `migrated ${schema} to version ${Math.max(...versions)} (applied: ${versions.join(', ')})\n` : `${schema} is up to date\n`);
      return 0;
    }
    await migrate(pool, schema);
    if (cmd.action === 'export') {
      const res = await pool.query<ExportRow & { at_ms: number; confirmed_ms: number | null }>(
        `SELECT id, kind, account, key_id, instance, (extract(epoch FROM at) * 1000)::float8 AS at_ms, outcome, COALESCE(reason, '') AS reason, balance_before, threshold,
                COALESCE(to_key, '') AS "to", requested, (extract(epoch FROM confirmed_at) * 1000)::float8 AS confirmed_ms, amount
           FROM ${schema}.attempts ORDER BY at, id`,
      );
      const rows = res.rows.map(({ at_ms, confirmed_ms, ...r }) => ({ ...r, at: iso(Number(at_ms)), confirmed_at: confirmed_ms === null ? '' : iso(Number(confirmed_ms)), requested: r.requested === null ? null : Number(r.requested), amount: r.amount === null ? null : Number(r.amount), balance_before: Number(r.balance_before), threshold: Number(r.threshold) }));
      io.out(formatRows(rows, cmd.format));
      return 0;
    }
    const { attempts, problems } = fileLedgerRows(config);
    if (problems.length > 0) {
      for (const p of problems) io.err(`ledger import: ${p}\n`);
      io.err('ledger import: nothing was imported\n');
      return 1;
    }
    let added = 0;
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      for (const { kind, account, apiKey, attempt: a } of attempts) {
        const r = await client.query(
          `INSERT INTO ${schema}.attempts (id, key_id, kind, account, instance, at, balance_before, threshold, to_key, requested, outcome, reason, confirmed_at, amount)
           VALUES ($1, $2, $3, $4, $5, to_timestamp($6 / 1000.0), $7, $8, $9, $10, $11, $12, CASE WHEN $13::float8 IS NULL THEN NULL ELSE to_timestamp($13 / 1000.0) END, $14)
           ON CONFLICT (id) DO NOTHING`,
          [a.id, keyFingerprint(apiKey), kind, account, a.owner ?? 'file-import', a.at, a.balanceBefore, a.threshold, a.to ?? null, a.requested ?? null, a.outcome === 'pending' ? 'unknown' : a.outcome, a.reason ?? null, a.confirmedAt ?? null, a.amount ?? null],
        );
        added += r.rowCount ?? 0;
      }
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
    io.out(`imported ${added} of ${attempts.length} attempts from ${config.stateDir} into ${redactedDatabaseUrl(pg!.url)} (${schema}); ${attempts.length - added} were there already\n`);
    return 0;
  } catch (err) {
    const e = err as { code?: string; message?: string };
    io.err(`ledger ${cmd.action}: PostgreSQL refused or is unreachable (${e.code ?? 'error'}: ${String(e.message ?? '').slice(0, 160)})\n`);
    return 1;
  } finally {
    await pool.end().catch(() => undefined);
  }
}
