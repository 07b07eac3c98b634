/**
 * Several replicas on one PostgreSQL ledger (LEDGER=postgres): the shared ledgers, the leases,
 * and what a replica runs and exports. With LEDGER=file there is one replica, which runs and
 * exports everything (`singleReplica`).
 *
 * What a replica runs: the account groups it leads; while the database does not answer, every
 * group (no replica can refill then, and watching must not stop because the ledger did); while
 * another live process has its INSTANCE_ID, none.
 * What it exports: `vonage_watchdog_leader{account}` and `vonage_ledger_up` always; an account's
 * other series only while it runs it, so that with several replicas scraped each account's
 * balance comes from the replica reading it, and a standby's stale copy never alerts.
 */
import type pg from 'pg';
import type { AccountConfig, Config } from '../config/config.js';
import { keyFingerprint } from '../ledger/file-ledger.js';
import type { Ledger } from '../ledger/ledger.js';
import { Leadership, type LeadershipEvent } from '../ledger/postgres-leases.js';
import { PostgresLedger } from '../ledger/postgres-ledger.js';
import { createPool, sendBoundMs } from '../ledger/postgres-pool.js';
import type { Logger } from '../observe/log.js';
import { addAccount, removeAccount, type Metrics, type MetricsAccount } from '../observe/metrics.js';
import type { Unit } from './fleet.js';

export interface Replicas {
  readonly kind: 'file' | 'postgres';
  /** A shared ledger for the account; undefined with LEDGER=file (the caller opens a file ledger). */
  ledger(account: AccountConfig, kind: 'topups' | 'transfers'): Ledger | undefined;
  /** Registers a unit's series (as addAccount takes them), exported while the unit runs here. */
  register(unit: Unit, series: MetricsAccount & { primary?: string }): void;
  /** Forgets a unit a reload removed, with its leader series. */
  unregister(name: string): void;
  /** The fleet as it now is: the groups whose leases to hold. */
  setUnits(units: readonly Unit[]): void;
  runs(unit: Unit): boolean;
  leads(unit: Unit): boolean;
  /** Before the first cycle: the first round trip (migration, heartbeat, leases), then renewals. */
  start(): Promise<void>;
  stop(): Promise<void>;
  status(): { kind: 'file' | 'postgres'; up: boolean; problem?: string; instanceConflict?: boolean; leaseSeconds?: number };
}

const groupKey = (a: AccountConfig) => keyFingerprint(a.apiKey);

export function singleReplica(metrics: Metrics): Replicas {
  metrics.ledgerUp.set(1);
  return {
    kind: 'file',
    ledger: () => undefined,
    register(unit, series) {
      addAccount(metrics, series);
      metrics.leader.set({ account: unit.account.name }, 1);
      metrics.leaderTransitions.inc({ account: unit.account.name }, 0);
    },
    unregister(name) {
      metrics.leader.remove({ account: name });
      metrics.leaderTransitions.remove({ account: name });
    },
    setUnits: () => undefined,
    runs: () => true,
    leads: () => true,
    start: async () => undefined,
    stop: async () => undefined,
    status: () => ({ kind: 'file', up: true }),
  };
}

export function sharedReplicas(config: Config & { ledger: { kind: 'postgres' } }, o: { metrics: Metrics; log: Logger; now: () => number; monoNow: () => number }): Replicas {
  const { metrics, log, now, monoNow } = o;
  const { url, schema, leaseMs } = config.ledger;
  const pool: pg.Pool = createPool({ url, instanceId: config.instanceId, leaseMs, onError: (problem) => log.warn({ problem }, 'PostgreSQL connection lost (it is re-opened on next use)') });
  const leadership = new Leadership({ pool, schema, instanceId: config.instanceId, leaseMs, monoNow, onEvent: (e) => onEvent(e) });
  const series = new Map<string, MetricsAccount & { primary?: string }>();
  const exported = new Set<string>();
  let units: readonly Unit[] = [];
  let lastSync = Number.NEGATIVE_INFINITY;
  metrics.ledgerUp.set(0);

  const runs = (u: Unit) => leadership.ledgerUp !== true ? !leadership.instanceConflict : leadership.leads(groupKey(u.account));

  /** Adds or removes each unit's series to match what this replica runs now. */
  const sync = () => {
    for (const u of units) {
      const name = u.account.name;
      const on = runs(u);
      metrics.leader.set({ account: name }, leadership.leads(groupKey(u.account)) ? 1 : 0);
      if (on && !exported.has(name)) {
        const s = series.get(name);
        if (s) addAccount(metrics, s);
        exported.add(name);
      } else if (!on && exported.has(name)) {
        removeAccount(metrics, name);
        u.group?.observer.forget();
        exported.delete(name);
      }
    }
  };

  function onEvent(e: LeadershipEvent): void {
    switch (e.kind) {
      case 'migrated':
        if (e.versions.length > 0) log.info({ schema, versions: e.versions }, 'ledger schema migrated');
        break;
      case 'ledger_up':
        metrics.ledgerUp.set(1);
        log.info({ schema, instance: config.instanceId }, 'PostgreSQL ledger reachable: refills allowed to the replica leading each account');
        break;
      case 'ledger_down':
        metrics.ledgerUp.set(0);
        log.error({ problem: e.problem }, 'PostgreSQL ledger unreachable: no replica refills (skip reason ledger_unavailable); this one watches every account until it answers again');
        break;
      case 'leader':
      case 'standby':
        metrics.leaderTransitions.inc({ account: e.account });
        if (e.kind === 'leader') log.info({ account: e.account, instance: config.instanceId }, 'this replica now acts for the account');
        else log.warn({ account: e.account, instance: config.instanceId }, 'this replica no longer acts for the account (lease lost or expired)');
        break;
      case 'instance_conflict':
        log.error({ instance: e.instanceId }, 'INSTANCE_ID is in use by another live replica (its heartbeat is fresh): this one acts for no account until that one has been silent for LEADER_LEASE; give each replica its own INSTANCE_ID');
        break;
      case 'instance_ok':
        log.info({ instance: e.instanceId }, 'INSTANCE_ID is free again: this replica may act');
        break;
    }
    sync();
  }

  return {
    kind: 'postgres',
    ledger: (account, kind) =>
      new PostgresLedger({ pool, schema, account: account.name, apiKey: account.apiKey, kind, instanceId: config.instanceId, now, monoNow, sendBoundMs: sendBoundMs(leaseMs), lease: leadership.guard(groupKey(account)) }),
    register(unit, s) {
      // Exported until the first round trip tells otherwise: the watchdog already set some of them.
      series.set(unit.account.name, s);
      addAccount(metrics, s);
      exported.add(unit.account.name);
      metrics.leader.set({ account: unit.account.name }, 0);
      metrics.leaderTransitions.inc({ account: unit.account.name }, 0);
    },
    unregister(name) {
      series.delete(name);
      exported.delete(name);
      metrics.leader.remove({ account: name });
      metrics.leaderTransitions.remove({ account: name });
    },
    setUnits(next) {
      units = next;
      leadership.setGroups(next.map((u) => ({ key: groupKey(u.account), account: u.account.name })));
      sync();
    },
    runs: (u) => {
      // Beliefs expire between renewals too: the series follow them, once per tick, not per unit.
      if (monoNow() - lastSync > 100) {
        lastSync = monoNow();
        sync();
      }
      return runs(u);
    },
    leads: (u) => leadership.leads(groupKey(u.account)),
    async start() {
      await leadership.renew();
      sync();
      leadership.start();
    },
    async stop() {
      await leadership.stop();
      await pool.end().catch(() => undefined);
    },
    status: () => ({ kind: 'postgres', up: leadership.ledgerUp === true, ...(leadership.problem ? { problem: leadership.problem } : {}), ...(leadership.instanceConflict ? { instanceConflict: true } : {}), leaseSeconds: leaseMs / 1000 }),
  };
}
