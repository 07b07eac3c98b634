/**
 * The ledger's records, as pure functions: how a record is written, and how a file's lines fold
 * back into the attempts that still matter. No I/O here, so every rule about damaged files is
 * tested with plain strings (test/ledger-records.test.ts).
 *
 * The one rule everything else follows: **reading a ledger may only ever make the daemon more
 * careful.** A record cut short (a full disk, kill -9 mid-write, a version that did not check its
 * writes) is not thrown away: a torn attempt counts as an attempt whose outcome is unknown. Only
 * content that is not ours at all (garbage, an unknown record type) makes the ledger untrusted,
 * which disables top-ups without stopping anything else.
 */
import type { Attempt, AttemptOutcome } from '../refill/topup-policy.js';
import { DAY_MS } from '../refill/topup-policy.js';

export type FinalOutcome = Exclude<AttemptOutcome, 'pending'>;

export type LedgerRecord =
  /** `key`: a fingerprint of the API key charged, so a renamed account still finds its attempts. */
  /** A transfer's attempt also names its target (`to`, a subaccount api key) and the EUR asked (`requested`). */
  | { type: 'attempt'; at: number; id: string; balance: number; threshold: number; account: string; owner?: string; key?: string; to?: string; requested?: number }
  | { type: 'outcome'; at: number; id: string; outcome: FinalOutcome; reason?: string }
  | { type: 'confirmed'; at: number; id: string; balance: number; amount?: number };

/**
 * Attempts older than this (relative to the newest one) no longer matter for any decision: the
 * longest cooldown is 7 days and the cap looks back 24 h. Compaction moves them to the archive.
 */
export const MEMORY_WINDOW_MS = 7 * DAY_MS;

const OUTCOMES: ReadonlySet<string> = new Set(['success', 'failed', 'unknown', 'not_sent']);
const RECORD_START = '{"v":1,';

/**
 * One line, newline included. `at` comes right after the type so that a record torn after a few
 * dozen bytes still says when it was made.
 */
export function encodeRecord(record: LedgerRecord): string {
  const { type, at, id, ...rest } = record;
  return `${JSON.stringify({ v: 1, type, at, id, ...rest })}\n`;
}

export type LineResult =
  | { kind: 'record'; record: LedgerRecord }
  /** An attempt cut short: it may have been sent. `at` when the fragment still holds it. */
  | { kind: 'torn_attempt'; at?: number }
  /** An outcome or confirmation cut short: losing it only leaves its attempt unresolved. */
  | { kind: 'torn_other' }
  | { kind: 'unreadable'; why: string };

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const finite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
/** A time Date can represent: anything beyond is damage, not a date, and must not crash a message. */
const instant = (v: unknown): v is number => finite(v) && Math.abs(v) <= 8.64e15;
const text = (v: unknown): v is string => typeof v === 'string' && v.length > 0 && v.length <= 200;

/** A parsed JSON value → a record, or why it is not one. Attempts with a broken `at` still count. */
export function toRecord(value: unknown): LineResult {
  if (!isObject(value)) return { kind: 'unreadable', why: 'not a ledger record' };
  const { type } = value;
  if (type === 'attempt') {
    if (!text(value.id) || !instant(value.at)) return { kind: 'torn_attempt', ...(instant(value.at) ? { at: value.at } : {}) };
    return {
      kind: 'record',
      record: {
        type,
        at: value.at,
        id: value.id,
        balance: finite(value.balance) ? value.balance : Number.NaN,
        threshold: finite(value.threshold) ? value.threshold : Number.NaN,
        account: typeof value.account === 'string' ? value.account : '',
        ...(text(value.owner) ? { owner: value.owner } : {}),
        ...(text(value.key) ? { key: value.key } : {}),
        ...(text(value.to) ? { to: value.to } : {}),
        ...(finite(value.requested) && value.requested >= 0 ? { requested: value.requested } : {}),
      },
    };
  }
  if (type === 'outcome') {
    if (!text(value.id) || typeof value.outcome !== 'string' || !OUTCOMES.has(value.outcome)) return { kind: 'torn_other' };
    return {
      kind: 'record',
      record: {
        type,
        at: instant(value.at) ? value.at : Number.NaN,
        id: value.id,
        outcome: value.outcome as FinalOutcome,
        ...(typeof value.reason === 'string' ? { reason: value.reason.slice(0, 64) } : {}),
      },
    };
  }
  if (type === 'confirmed') {
    if (!text(value.id)) return { kind: 'torn_other' };
    return {
      kind: 'record',
      record: {
        type,
        at: instant(value.at) ? value.at : Number.NaN,
        id: value.id,
        balance: finite(value.balance) ? value.balance : Number.NaN,
        ...(finite(value.amount) ? { amount: value.amount } : {}),
      },
    };
  }
  // A record type from a newer version may carry money semantics this one cannot honour.
  return { kind: 'unreadable', why: typeof type === 'string' ? `unknown record type ${JSON.stringify(type.slice(0, 20))}` : 'not a ledger record' };
}

function fragment(piece: string): LineResult {
  try {
    return toRecord(JSON.parse(piece) as unknown);
  } catch {
    // fall through: a torn record
  }
  if (!piece.startsWith(RECORD_START)) return { kind: 'unreadable', why: 'not a ledger record' };
  if (/"type":"attempt"/.test(piece) || /^\{"v":1,"type":"a/.test(piece) || piece.length < RECORD_START.length + 12) {
    // Short fragments may be an attempt whose type was cut off: the careful reading is "attempt".
    const at = /"at":(\d{1,16})[,}]/.exec(piece);
    return at && instant(Number(at[1])) ? { kind: 'torn_attempt', at: Number(at[1]) } : { kind: 'torn_attempt' };
  }
  return { kind: 'torn_other' };
}

/**
 * One line of the file → what it says. A line that holds a torn record with a later record glued
 * on (the next append landed after the torn bytes) yields both.
 */
export function parseLine(line: string): LineResult[] {
  // NUL bytes are what a filesystem leaves where a write was lost in a power cut (XFS, ext4 with
  // delalloc). Our own output never holds one (JSON escapes it), so they are dropped, not judged.
  const trimmed = (line.includes('\0') ? line.replace(/\0/g, '') : line).trim();
  if (trimmed === '') return [];
  try {
    return [toRecord(JSON.parse(trimmed) as unknown)];
  } catch {
    // Not one JSON value: split at every record start and read each piece on its own.
  }
  const pieces: string[] = [];
  let from = 0;
  for (let i = trimmed.indexOf(RECORD_START, 1); i !== -1; i = trimmed.indexOf(RECORD_START, i + 1)) {
    pieces.push(trimmed.slice(from, i));
    from = i;
  }
  pieces.push(trimmed.slice(from));
  return pieces.map(fragment);
}

/** What the fold remembers of one attempt: everything needed to decide, report, and re-write it. */
export interface KnownAttempt extends Attempt {
  threshold: number;
  account: string;
  owner?: string;
  key?: string;
  /** Recovered from a torn record rather than written whole. */
  torn?: boolean;
  confirmedBalance?: number;
}

/**
 * Folds records into attempts, in file order, in linear time and bounded memory: attempts that
 * fall out of MEMORY_WINDOW_MS behind the newest one are dropped as it goes.
 */
export class AttemptFold {
  private readonly byId = new Map<string, KnownAttempt>();
  private sinceprune = 0;
  /** Torn attempts that did not keep their time; they take the time of the next record. */
  private undated: KnownAttempt[] = [];
  private tornCount = 0;
  problem: string | undefined;

  /** Applies one line's results; `lineNo` only labels problems and torn attempts. */
  addLine(results: readonly LineResult[], lineNo: number): void {
    for (const r of results) {
      if (r.kind === 'unreadable') {
        this.problem ??= `${r.why} at line ${lineNo}`;
        continue;
      }
      if (r.kind === 'torn_other') continue;
      if (r.kind === 'torn_attempt') {
        this.tornCount += 1;
        const a: KnownAttempt = {
          id: `torn-${lineNo}-${this.tornCount}`,
          at: r.at ?? Number.NaN,
          outcome: 'pending',
          reason: 'torn_record',
          balanceBefore: Number.NaN,
          threshold: Number.NaN,
          account: '',
          torn: true,
        };
        if (r.at === undefined) this.undated.push(a);
        else this.note(r.at);
        this.byId.set(a.id, a);
        continue;
      }
      this.apply(r.record);
    }
  }

  /** Applies a record. Idempotent: the same record applied twice changes nothing. */
  apply(record: LedgerRecord): void {
    if (Number.isFinite(record.at)) this.dateUndated(record.at);
    if (record.type === 'attempt') {
      if (!this.byId.has(record.id)) {
        this.byId.set(record.id, {
          id: record.id,
          at: record.at,
          outcome: 'pending',
          balanceBefore: record.balance,
          threshold: record.threshold,
          account: record.account,
          ...(record.owner === undefined ? {} : { owner: record.owner }),
          ...(record.key === undefined ? {} : { key: record.key }),
          ...(record.to === undefined ? {} : { to: record.to }),
          ...(record.requested === undefined ? {} : { requested: record.requested }),
        });
      }
      this.note(record.at);
      return;
    }
    const a = this.byId.get(record.id);
    if (!a) return; // pruned, or written by a run whose attempt record was lost: nothing to resolve
    if (record.type === 'outcome') {
      a.outcome = record.outcome;
      if (record.reason !== undefined) a.reason = record.reason;
      else if (a.reason === 'interrupted') delete a.reason; // it was only in flight
    } else {
      a.confirmedAt ??= Number.isFinite(record.at) ? record.at : a.at;
      if (Number.isFinite(record.balance)) a.confirmedBalance = record.balance;
      if (record.amount !== undefined) a.amount = record.amount;
    }
  }

  /** Adds what `other` knows and this fold does not: memory must never shrink on a reload. */
  absorb(other: Iterable<KnownAttempt>): void {
    for (const o of other) {
      const mine = this.byId.get(o.id);
      if (!mine) {
        this.byId.set(o.id, { ...o });
        this.note(o.at);
        continue;
      }
      if (mine.outcome === 'pending' && o.outcome !== 'pending') {
        mine.outcome = o.outcome;
        if (o.reason !== undefined) mine.reason = o.reason;
      }
      if (mine.confirmedAt === undefined && o.confirmedAt !== undefined) {
        mine.confirmedAt = o.confirmedAt;
        if (o.confirmedBalance !== undefined) mine.confirmedBalance = o.confirmedBalance;
      }
      if (mine.amount === undefined && o.amount !== undefined) mine.amount = o.amount;
      // The monotonic stamp lives in memory only: a record read back from disk never has it, and
      // without it a forward wall-clock step could end a cooldown early.
      if (mine.mono === undefined && o.mono !== undefined) mine.mono = o.mono;
    }
  }

  has(id: string): boolean {
    return this.byId.has(id);
  }

  get(id: string): KnownAttempt | undefined {
    return this.byId.get(id);
  }

  /**
   * The attempts, oldest first. Undated torn attempts take `fallbackAt` (the caller passes the
   * file's modification time: the moment the torn bytes were written, or later).
   */
  attempts(fallbackAt: number): KnownAttempt[] {
    for (const a of this.undated) a.at = fallbackAt;
    if (this.undated.length > 0) {
      this.note(fallbackAt);
      this.undated = [];
    }
    this.prune();
    return [...this.byId.values()].sort((x, y) => x.at - y.at);
  }

  private dateUndated(at: number): void {
    if (this.undated.length === 0) return;
    for (const a of this.undated) a.at = at;
    this.undated = [];
  }

  private note(_at: number): void {
    // Pruning as we go keeps a years-long ledger from being held whole in memory.
    if (++this.sinceprune >= 50_000) this.prune(true);
  }

  /**
   * Relative to the newest attempt that counts: one that provably never left (a refused
   * connection, stamped by a clock far ahead) must not push real attempts out of memory.
   */
  private prune(whileLoading = false): void {
    this.sinceprune = 0;
    let newest = Number.NEGATIVE_INFINITY;
    for (const a of this.byId.values()) {
      // While loading, an attempt without an outcome yet may still turn out not sent (its outcome
      // is on the next line): only settled ones may move the cutoff, which keeps it no later
      // than the final one.
      if (a.outcome === 'not_sent' || (whileLoading && a.outcome === 'pending')) continue;
      if (Number.isFinite(a.at) && a.at > newest) newest = a.at;
    }
    if (newest === Number.NEGATIVE_INFINITY) return;
    const cutoff = newest - MEMORY_WINDOW_MS;
    for (const [id, a] of this.byId) if (a.at <= cutoff) this.byId.delete(id);
  }
}

/** Pure: a whole ledger text → the attempts that can still matter, or why it can't be trusted. */
export function parseLedger(text: string, fallbackAt = Date.now()): { attempts: KnownAttempt[] } | { problem: string } {
  const fold = new AttemptFold();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) fold.addLine(parseLine(lines[i]!), i + 1);
  if (fold.problem !== undefined) return { problem: fold.problem };
  return { attempts: fold.attempts(fallbackAt).map(settleInterrupted) };
}

/**
 * Read back after a restart, an attempt with no outcome was interrupted after it was recorded:
 * it may have been sent, so it is `unknown` (and counts), never dropped.
 */
export function settleInterrupted(a: KnownAttempt): KnownAttempt {
  if (a.outcome !== 'pending') return a;
  a.outcome = 'unknown';
  a.reason ??= 'interrupted';
  return a;
}
