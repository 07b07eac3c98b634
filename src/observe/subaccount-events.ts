/**
 * What a primary's subaccount group tells (src/cycle/subaccount-group.ts), turned into metrics and
 * log lines. The group only reports; this decides what an operator sees, so the money path and
 * its presentation change apart (notifications will subscribe the same way).
 */
import type { GroupEvent } from '../cycle/subaccount-group.js';
import { DAY_MS } from '../refill/topup-policy.js';
import type { Logger } from './log.js';
import { addSubaccount, removeAccount, type Metrics } from './metrics.js';

export interface GroupObserver {
  (event: GroupEvent): void;
  /** Drops every series of the subaccounts this primary has shown (the primary was removed). */
  forget(): void;
  /** Subaccount api keys that have series now. */
  readonly known: ReadonlySet<string>;
}

export function observeGroup(options: { metrics: Metrics; log: Logger; primary: string; primaryKey: string; pollMaxIntervalSeconds?: number }): GroupObserver {
  const { metrics: m, primary } = options;
  const log = options.log.child({ account: primary });
  const known = new Map<string, string>(); // api key → name, as last shown in account_info
  let warnedMissing = '';
  let warnedUnreadable = '';
  let warnedElsewhere = '';

  const observer = ((e: GroupEvent): void => {
    switch (e.kind) {
      case 'list_ok': {
        const seen = new Set<string>();
        for (const s of e.watched) {
          seen.add(s.apiKey);
          const label = { account: s.apiKey };
          const before = known.get(s.apiKey);
          if (before === undefined) addSubaccount(m, { apiKey: s.apiKey, name: s.name, primary, shared: s.balance === null, pollMaxIntervalSeconds: options.pollMaxIntervalSeconds ?? 0 });
          else if (before !== s.name) m.accountInfo.remove({ account: s.apiKey, name: before, primary });
          known.set(s.apiKey, s.name);
          m.accountInfo.set({ account: s.apiKey, name: s.name, primary }, 1);
          // No balance series for a subaccount that spends its primary's: a 0 would page.
          if (s.balance === null) m.balance.remove(label);
          else m.balance.set(label, s.balance);
          m.pollSuccess.set(label, 1);
          m.lastPollSuccess.set(label, e.list.at / 1000);
          m.polls.inc(label);
        }
        // An entry that could not be read is a failed poll of that subaccount, not its removal.
        for (const u of e.unreadable) {
          seen.add(u.apiKey);
          const label = { account: u.apiKey };
          if (!known.has(u.apiKey)) {
            addSubaccount(m, { apiKey: u.apiKey, name: u.apiKey, primary, shared: false, pollMaxIntervalSeconds: options.pollMaxIntervalSeconds ?? 0 });
            m.balance.remove(label);
            known.set(u.apiKey, u.apiKey);
            m.accountInfo.set({ account: u.apiKey, name: u.apiKey, primary }, 1);
          }
          m.pollSuccess.set(label, 0);
          m.polls.inc(label);
          m.pollFailures.inc({ account: u.apiKey, reason: 'bad_response' });
        }
        const unreadable = e.list.unreadable.map((u) => `${u.index}:${u.apiKey ?? ''}:${u.problem}`).join('; ');
        if (unreadable !== warnedUnreadable) {
          // At most 20 in the line: a hostile answer of 100,000 bad entries must not make a 10 MB log line.
          if (e.list.unreadable.length > 0) log.error({ unreadable: e.list.unreadable.slice(0, 20), count: e.list.unreadable.length }, 'subaccount list entries that could not be read: no transfer to these subaccounts this cycle (the others are read and refilled as usual)');
          warnedUnreadable = unreadable;
        }
        // An entry without a readable key may be any subaccount shown before: none is dropped on
        // such an answer; those not found have a failed poll instead.
        const keyless = e.list.unreadable.some((u) => u.apiKey === undefined && u.primaryKey !== true);
        for (const key of [...known.keys()]) {
          if (seen.has(key)) continue;
          if (keyless) {
            m.pollSuccess.set({ account: key }, 0);
            m.polls.inc({ account: key });
            m.pollFailures.inc({ account: key, reason: 'bad_response' });
            continue;
          }
          removeAccount(m, key, { name: known.get(key)!, primary });
          known.delete(key);
        }
        const elsewhere = e.elsewhere.map((x) => `${x.apiKey}:${x.by}:${x.account}`).join(',');
        if (elsewhere !== warnedElsewhere) {
          for (const x of e.elsewhere) {
            log.error(
              { subaccount: x.apiKey, fleetAccount: x.account, by: x.by },
              x.by === 'apiKey'
                ? 'subaccount not watched through its primary: it is also a fleet account of its own (refilled by its own card top-up); refilled two ways it could be charged twice'
                : 'subaccount not watched through its primary: its API key is the name of another fleet account, whose series it would overwrite; rename that account',
            );
          }
          warnedElsewhere = elsewhere;
        }
        m.subaccountsWatched.set({ account: primary }, e.watched.length);
        const missing = e.missing.join(',');
        if (missing !== warnedMissing) {
          if (e.missing.length > 0) log.warn({ missing: e.missing }, 'watched subaccounts that Vonage did not return: never refilled (a typo, or deleted?)');
          warnedMissing = missing;
        }
        log.debug({ primaryBalance: e.list.primary.balance, watched: e.watched.length, requestId: e.list.requestId }, 'subaccounts read');
        break;
      }
      case 'list_failed':
        for (const key of known.keys()) {
          m.pollSuccess.set({ account: key }, 0);
          m.polls.inc({ account: key });
          m.pollFailures.inc({ account: key, reason: e.error.reason });
        }
        log.error({ err: e.error }, 'subaccount list failed: no transfer this cycle');
        break;
      case 'decided': {
        const d = e.decision;
        const label = { account: d.to };
        m.threshold.set(label, e.settings.threshold);
        if (d.action === 'none' && d.why === 'forecast_held') {
          // Not a skip (the balance is above the threshold); a dry run says what a live run would do.
          const dry = d.reason === 'dry_run';
          log[dry && !e.repeat ? 'warn' : 'debug']({ subaccount: d.to, reason: d.reason, detail: d.detail, balance: e.sub.balance, threshold: e.settings.threshold }, dry ? 'forecast: the subaccount reaches its threshold within its leadTime; dry run, would transfer' : 'forecast: the subaccount reaches its threshold within its leadTime, but a rule holds the transfer back');
          break;
        }
        if (d.action !== 'skip') break;
        m.topupsSkipped.inc({ ...label, reason: d.reason });
        const level = e.repeat ? 'debug' : d.reason === 'ledger_unavailable' ? 'error' : 'warn';
        log[level]({ subaccount: d.to, reason: d.reason, detail: d.detail, ...(d.retryAt === undefined ? {} : { until: new Date(d.retryAt).toISOString() }), balance: e.sub.balance, threshold: e.settings.threshold }, 'subaccount below threshold; transfer skipped');
        break;
      }
      case 'claim_failed':
        log.error({ problem: e.problem, planned: e.planned }, 'balance transfers NOT sent: the ledger could not record them');
        break;
      case 'transfer_sending':
        if (e.trigger === 'forecast') log.warn({ subaccount: e.to, attemptId: e.attempt.id, amount: e.amount, primaryBalance: e.primaryBalance, trigger: e.trigger }, 'forecast: the subaccount reaches its threshold within its leadTime; sending balance transfer');
        else log.warn({ subaccount: e.to, attemptId: e.attempt.id, amount: e.amount, primaryBalance: e.primaryBalance, trigger: e.trigger }, 'subaccount below threshold; sending balance transfer');
        break;
      case 'transfer_done': {
        const label = { account: e.to };
        if (e.outcome !== 'not_sent') {
          m.transfers.inc(label);
          // Created with the first transfer (as a subaccount's reason series are): both triggers at once.
          for (const trigger of ['threshold', 'forecast'] as const) m.refillTriggers.inc({ account: e.to, trigger }, trigger === e.trigger ? 1 : 0);
        }
        m.lastTopupAttempt.set(label, e.attempt.at / 1000);
        if (e.outcome === 'success') {
          m.transferredEuros.inc(label, e.amount);
          m.refilledEuros.inc({ ...label, action: 'transfer' }, e.amount);
          m.lastTopupSuccess.set(label, Date.now() / 1000);
          m.lastTopupAmount.set(label, e.amount);
          log.warn({ subaccount: e.to, attemptId: e.attempt.id, amount: e.amount, transferId: e.transferId }, 'balance transfer succeeded');
        } else {
          m.transferFailures.inc({ ...label, reason: e.error?.reason ?? 'network' });
          const note =
            e.outcome === 'unknown'
              ? 'balance transfer outcome UNKNOWN: not retried; it counts for cooldown and caps until the transfer history tells'
              : e.outcome === 'not_sent'
                ? 'balance transfer not sent: the connection was refused; not counted'
                : 'balance transfer failed';
          log.error({ subaccount: e.to, attemptId: e.attempt.id, amount: e.amount, err: e.error, outcome: e.outcome }, note);
        }
        break;
      }
      case 'transfer_resolved':
        if (e.outcome === 'success') {
          const amount = e.amount ?? 0;
          m.transferredEuros.inc({ account: e.to }, amount);
          m.refilledEuros.inc({ account: e.to, action: 'transfer' }, amount);
          log.warn({ subaccount: e.to, attemptId: e.attempt.id, amount }, 'balance transfer with unknown outcome found in the transfer history: it was applied');
        } else {
          m.transferFailures.inc({ account: e.to, reason: 'not_in_history' });
          log.warn({ subaccount: e.to, attemptId: e.attempt.id }, 'balance transfer with unknown outcome is not in the transfer history: it did not happen (it still counts for cooldown and cap)');
        }
        break;
      case 'history_failed':
        log.warn({ err: e.error, unresolved: e.unresolved }, 'could not read the transfer history; transfers of unknown outcome stay counted');
        break;
      case 'transfer_abandoned':
        log.error({ attemptId: e.attempt.id, subaccount: e.to, lateMs: Math.round(e.lateMs) }, 'balance transfer NOT sent: too long passed between its claim and the request (the process was paused?); recorded as abandoned, it counts for cooldown and caps');
        break;
      case 'ledger_write_failed':
        log.error({ attemptId: e.attemptId, problem: e.problem }, 'could not record a transfer outcome; the attempt stays counted');
        break;
      case 'forecast': {
        for (const key of known.keys()) m.nextPoll.set({ account: key }, e.nextPollAt / 1000);
        // A subaccount without a forecast now (it spends the primary's balance, or its entry could
        // not be read) must not keep an old runway: VonageRunwayShort would fire on it forever.
        const estimated = new Set(e.estimates.map((f) => f.apiKey));
        for (const key of known.keys()) {
          if (estimated.has(key)) continue;
          m.burnRate.remove({ account: key });
          m.runway.remove({ account: key });
          m.refillBlocked.remove({ account: key });
        }
        for (const f of e.estimates) {
          if (!known.has(f.apiKey)) continue;
          m.burnRate.set({ account: f.apiKey }, f.rate);
          m.runway.set({ account: f.apiKey }, f.runwaySeconds);
          m.refillBlocked.set({ account: f.apiKey }, f.blocked === undefined ? 0 : 1);
        }
        break;
      }
      case 'ledger':
        for (const key of known.keys()) {
          m.ledgerWritable.set({ account: key }, e.view.writable ? 1 : 0);
          let count = 0;
          let unresolved = 0;
          for (const a of e.view.attempts) {
            if (a.to !== key || a.outcome === 'not_sent' || e.now - a.at >= DAY_MS) continue;
            count += 1;
            if (a.outcome === 'unknown') unresolved += 1;
          }
          m.attemptsLastDay.set({ account: key }, count);
          m.unresolvedAttempts.set({ account: key }, unresolved);
        }
        break;
    }
  }) as GroupObserver;
  observer.forget = () => {
    for (const [key, name] of known) removeAccount(m, key, { name, primary });
    known.clear();
    m.subaccountsWatched.remove({ account: primary });
  };
  Object.defineProperty(observer, 'known', { get: () => new Set(known.keys()) });
  return observer;
}
