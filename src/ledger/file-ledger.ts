/**
 * The durable record of top-up attempts: one append-only JSON-lines file per account in
 * STATE_DIR. It is the only thing between a restart, a race or a second container and a second
 * charge on the card, so it follows four rules:
 *
 * 1. **Write before sending.** An attempt is appended and fsync'd, and the byte count checked, before
 *    the request goes out; a short write (full disk) is a failed write and nothing is sent.
 * 2. **Decide and record in one step.** `claim()` decides on the ledger's current content and
 *    records the attempt with no `await` in between, then reads the file back: if another process
 *    appended an attempt just before ours (the STATE_DIR lock should make that impossible, but a
 *    lock can be fooled), the decision is taken again on what came first, and ours is withdrawn.
 *    O_APPEND orders appends on a local filesystem, so two writers cannot both be first.
 * 3. **Check the file is still the one on disk.** Before every attempt, the lock and the ledger at
 *    their paths must be the inodes held open; if STATE_DIR was deleted, they are re-created and
 *    everything this process remembers is written back before anything is decided.
 * 4. **Never forget.** Reloading the file only adds to what memory knows; a torn attempt counts as
 *    an attempt whose outcome is unknown. Old records are moved to an archive file that is kept,
 *    so the ledger stays small and start-up stays fast at any history length.
 *
 * If the directory cannot be written, or the file cannot be trusted, the ledger says so
 * (`writable: false`) and the policy refuses to top up; watching and reporting go on.
 */
import { createHash, randomUUID } from 'node:crypto';
import {
  closeSync,
  constants,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  linkSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  statfsSync,
  statSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import {
  AttemptFold,
  encodeRecord,
  MEMORY_WINDOW_MS,
  parseLine,
  settleInterrupted,
  type FinalOutcome,
  type KnownAttempt,
  type LedgerRecord,
  type LineResult,
} from './records.js';
import { decideWithForecast, type Attempt, type ForecastDecision, type ForecastInput, type LedgerView, type PolicySettings, type Reading } from '../refill/topup-policy.js';
import { closeQuietly, errorCode, syncDir } from './fs-util.js';
import type { Ledger } from './ledger.js';
import { StateDir } from './state-lock.js';

export { parseLedger } from './records.js';

export class LedgerWriteError extends Error {
  override readonly name = 'LedgerWriteError';
}

/**
 * The file of one account's ledger. Names made only of `[A-Za-z0-9._-]` keep the name they always
 * had; any other character is percent-encoded (UTF-8), and so is `%`, so distinct account names
 * never share a file (`prod eu/1` → `topups-prod%20eu%2F1.jsonl`, `prod_eu_1` →
 * `topups-prod_eu_1.jsonl`). Earlier versions mapped every such character to `_`: a ledger
 * opened under the new name imports the attempts it made under the old one (importRenamed).
 */
export function ledgerFileName(account: string, kind: LedgerKind = 'topups'): string {
  return `${kind}-${encodeName(account)}.jsonl`;
}

export type LedgerKind = 'topups' | 'transfers';

function encodeName(name: string): string {
  let out = '';
  for (const ch of name) {
    if (/^[A-Za-z0-9._-]$/.test(ch)) out += ch;
    else for (const b of Buffer.from(ch, 'utf8')) out += `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  // 64 code points of four UTF-8 bytes each would pass NAME_MAX (255): such a name gets a digest.
  // `~` is neither a safe character nor `%`, so a digest never equals an encoded name.
  return out.length <= 200 ? out : `~${createHash('sha256').update(name).digest('hex').slice(0, 40)}`;
}

/** What earlier versions called the file (every unsafe character → `_`): imported from, never written. */
export function legacyLedgerFileName(account: string): string {
  return `topups-${account.replace(/[^A-Za-z0-9._-]/g, '_')}.jsonl`;
}

/** Below this much free space the next attempt, its outcome and its confirmation might not fit. */
export const MIN_FREE_BYTES = 16 * 1024;
/** Lines beyond twice what the window needs before the file is compacted. */
const COMPACT_SLACK_LINES = 3000;
const READ_CHUNK = 1 << 20;

export interface LedgerOptions {
  now?: () => number;
  /** The lock of the directory, shared by every ledger of one daemon. A ledger opened alone makes its own. */
  stateDir?: StateDir;
  /** The one write the ledger makes, replaceable so tests can make it short (a full disk). */
  write?: (fd: number, data: Buffer) => number;
  /** Free bytes of the filesystem holding `dir`, or undefined when it cannot be told. */
  freeBytes?: (dir: string) => number | undefined;
  compactSlackLines?: number;
  /** Told about everything an operator should hear (foreign writers, restored files, compaction). */
  onEvent?: (event: LedgerEvent) => void;
  /**
   * The API key charged. Its fingerprint goes into every attempt, and a ledger opened under a new
   * account name takes over the attempts made for the same key under another one (a rename).
   */
  apiKey?: string;
  /** `transfers`: the balance transfers of one primary to its subaccounts (one file per primary). */
  kind?: LedgerKind;
}

export type LedgerEvent =
  | { kind: 'foreign_records'; count: number }
  | { kind: 'superseded'; attemptId: string }
  | { kind: 'restored'; records: number; why: string }
  | { kind: 'compacted'; kept: number; archivedTo: string }
  | { kind: 'imported'; attempts: number; from: string }
  | { kind: 'torn_tail' };

/** One attempt a plan asks claimMany() to record. */
export interface PlannedAttempt {
  /** The balance the decision read (the primary's, for a transfer). */
  balance: number;
  threshold: number;
  to?: string;
  requested?: number;
}

export interface Claim {
  decision: ForecastDecision;
  /** Present only when the attempt is durably recorded and the request may be sent. */
  attempt?: Attempt;
  /** Monotonic time after which the request must not go out (a shared ledger's claims); unset: no bound. */
  sendBy?: number;
}


function defaultFreeBytes(dir: string): number | undefined {
  try {
    const s = statfsSync(dir);
    return Number(s.bavail) * Number(s.bsize);
  } catch {
    return undefined;
  }
}


const stamp = (ms: number) => new Date(ms).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');

/** No record is anywhere near this long; a longer line is damage, read as one unreadable line. */
export const MAX_LINE_BYTES = 1 << 20;
const OVERSIZED = Symbol('oversized line');

/**
 * Reads `[from, to)` of a file line by line without holding it whole: a legacy ledger can be far
 * larger than a string may be. Linear in the file's size whatever its line lengths. Returns the
 * offset just past the last complete line.
 */
function readLines(fd: number, from: number, to: number, onLine: (line: string | typeof OVERSIZED) => void): number {
  const buf = Buffer.allocUnsafe(READ_CHUNK);
  let parts: Buffer[] = [];
  let partsBytes = 0;
  let oversized = false;
  let pos = from;
  let consumed = from;
  while (pos < to) {
    const n = readSync(fd, buf, 0, Math.min(READ_CHUNK, to - pos), pos);
    if (n <= 0) break;
    pos += n;
    const chunk = buf.subarray(0, n);
    let start = 0;
    for (let nl = chunk.indexOf(10, start); nl !== -1; nl = chunk.indexOf(10, start)) {
      const bytes = partsBytes + (nl - start);
      if (oversized || bytes > MAX_LINE_BYTES) onLine(OVERSIZED);
      else if (partsBytes === 0) onLine(chunk.toString('utf8', start, nl));
      else onLine(Buffer.concat([...parts, chunk.subarray(start, nl)]).toString('utf8'));
      consumed += bytes + 1;
      parts = [];
      partsBytes = 0;
      oversized = false;
      start = nl + 1;
    }
    if (start < n) {
      // Kept only while the line could still be a record; its length is counted either way.
      if (!oversized && partsBytes + (n - start) <= MAX_LINE_BYTES) parts.push(Buffer.from(chunk.subarray(start)));
      else {
        oversized = true;
        parts = [];
      }
      partsBytes += n - start;
    }
  }
  return consumed;
}

const linesOf = (line: string | typeof OVERSIZED): LineResult[] =>
  line === OVERSIZED ? [{ kind: 'unreadable', why: `a line longer than ${MAX_LINE_BYTES} bytes` }] : parseLine(line);

/** A fingerprint of the API key: attempts stay tied to the account charged, whatever its label. */
export function keyFingerprint(apiKey: string): string {
  return createHash('sha256').update(`vonage-reload-watchdog:${apiKey}`).digest('hex').slice(0, 16);
}

/** Which fingerprints a ledger file mentions, by file identity, valid while its size and mtime hold. */
const keyScans = new Map<string, { size: number; mtimeMs: number; keys: Set<string> }>();
/** Siblings that could not be loaded, by identity, size and mtime: not parsed again every cycle. */
const failedLoads = new Map<string, { size: number; mtimeMs: number; problem: string }>();
const KEY_IN_RECORD = /"key":"([0-9a-f]{16})"/g;
const SCAN_CHUNK = 1024 * 1024;
/** Longer than any `"key":"<16 hex>"` (23 bytes). */
const SCAN_OVERLAP = 64;

type FileStat = { ino: number; size: number; mtimeMs: number; dev: number };
const identity = (st: FileStat) => `${st.dev}:${st.ino}`;

/**
 * Reads the file behind `fd` in chunks of SCAN_CHUNK, each handed to `visit` with the last
 * `overlap` bytes of the one before it, so that a needle shorter than `overlap` is whole in some
 * chunk wherever it falls. Stops early when `visit` returns true; says whether it did.
 */
function scanChunks(fd: number, overlap: number, visit: (chunk: Buffer) => boolean): boolean {
  const buf = Buffer.alloc(SCAN_CHUNK + overlap);
  let carried = 0;
  let at = 0;
  for (;;) {
    const n = readSync(fd, buf, carried, SCAN_CHUNK, at);
    if (n <= 0) return false;
    at += n;
    const chunk = buf.subarray(0, carried + n);
    if (visit(chunk)) return true;
    carried = Math.min(overlap, chunk.length);
    buf.copy(buf, 0, chunk.length - carried, chunk.length);
  }
}

/**
 * The fingerprints the file behind `fd` mentions, by a plain text search: it works on a file
 * whose records cannot all be parsed, which is when it matters most, and on any size.
 */
function keysMentioned(fd: number, st: FileStat): Set<string> {
  const id = identity(st);
  const cached = keyScans.get(id);
  if (cached && cached.size === st.size && cached.mtimeMs === st.mtimeMs) return cached.keys;
  const keys = new Set<string>();
  scanChunks(fd, SCAN_OVERLAP, (chunk) => {
    for (const m of chunk.toString('latin1').matchAll(KEY_IN_RECORD)) keys.add(m[1]!);
    return false;
  });
  if (keyScans.size >= 10_000) keyScans.clear(); // files replaced by compaction leave entries behind
  keyScans.set(id, { size: st.size, mtimeMs: st.mtimeMs, keys });
  return keys;
}

/** Whether the file's text names this account the way records before fingerprints did. */
function namesAccount(fd: number, names: readonly string[]): boolean {
  const needles = names.map((n) => Buffer.from(`"account":${JSON.stringify(n)}`, 'utf8'));
  const overlap = Math.max(...needles.map((x) => x.length));
  return scanChunks(fd, overlap, (chunk) => needles.some((needle) => chunk.includes(needle)));
}

export class FileLedger implements Ledger {
  private fold = new AttemptFold();
  private sorted: KnownAttempt[] | undefined;
  private fd: number | undefined;
  private ino: number | undefined;
  private dev: number | undefined;
  /** Bytes of the file read into `fold`; always at the end of a complete line. */
  private offset = 0;
  /** The file ends in bytes without a newline (a torn record): the next append starts a new line. */
  private tailPartial = false;
  private lines = 0;
  private generation = -1;
  private problem: string | undefined;
  /** Attempt ids this process appended, so a read-back can tell its own records from another writer's. */
  private readonly mine = new Set<string>();
  private readonly file: string;
  private readonly kind: LedgerKind;
  private readonly now: () => number;
  private readonly stateDir: StateDir;
  private readonly ownsStateDir: boolean;
  private readonly write: (fd: number, data: Buffer) => number;
  private readonly freeBytes: (dir: string) => number | undefined;
  private readonly keyId: string | undefined;
  /** The file that last failed to parse: not read again every cycle while it is unchanged. */
  private failedFile: { ino: number; size: number; mtimeMs: number; problem: string } | undefined;
  /** The ledger file we last wrote back to while another process held the lock. */
  private writtenBack: { ino: number } | undefined;
  private closed = false;
  private readonly stopGuard: () => void;

  private constructor(
    private readonly dir: string,
    private readonly account: string,
    private readonly options: LedgerOptions,
  ) {
    this.kind = options.kind ?? 'topups';
    this.file = join(dir, ledgerFileName(account, this.kind));
    this.now = options.now ?? Date.now;
    this.ownsStateDir = options.stateDir === undefined;
    // A ledger opened alone (tests, tools) needs no probation: nobody else's memory is at stake.
    this.stateDir = options.stateDir ?? StateDir.open(dir, { probationMs: 0 });
    this.write = options.write ?? ((fd, data) => writeSync(fd, data));
    this.freeBytes = options.freeBytes ?? defaultFreeBytes;
    this.keyId = options.apiKey === undefined ? undefined : keyFingerprint(options.apiKey);
    this.stopGuard = this.stateDir.onTick(() => this.guard());
  }

  /** Never throws: a ledger that cannot be opened is returned unwritable, with the reason. */
  static open(dir: string, account: string, now: () => number = Date.now, options: Omit<LedgerOptions, 'now'> = {}): FileLedger {
    const ledger = new FileLedger(dir, account, { ...options, now });
    ledger.reopen();
    return ledger;
  }

  view(): LedgerView {
    // Attempts made for another API key (the file's name was another account's: a swap of two
    // names, a name reused) are that account's, kept in the file and left out of every decision
    // here. An attempt without a fingerprint (older versions, a torn record) cannot be placed and counts.
    this.sorted ??= this.fold.attempts(this.now()).filter((a) => this.keyId === undefined || a.key === undefined || a.key === this.keyId);
    return { writable: this.problem === undefined && this.fd !== undefined, problem: this.problem, attempts: this.sorted };
  }

  get path(): string {
    return this.file;
  }

  /**
   * Takes over the monotonic stamps another ledger object of this process held for the same
   * attempts (a reload rebuilds an account's parts): they are memory only, and without them a
   * forward wall-clock step right after a reload could end a cooldown early.
   */
  adoptMonotonic(attempts: readonly Attempt[]): void {
    for (const a of attempts) {
      if (a.mono === undefined) continue;
      const mine = this.fold.get(a.id);
      if (mine !== undefined && mine.mono === undefined) mine.mono = a.mono;
    }
    this.sorted = undefined;
  }

  /**
   * Called at the start of every cycle: re-checks that the lock and the file on disk are the ones
   * held open, and tries again to open an unwritable ledger (the volume may have come back).
   */
  retry(): void {
    if (this.problem !== undefined || this.fd === undefined) this.reopen();
    else this.checkIdentity();
  }

  /**
   * The money step: decides on the ledger's content as it is on disk right now and, if a top-up
   * is due, records the attempt durably. Returns the attempt only when the request may be sent.
   * Synchronous on purpose: nothing can run between the decision and the record.
   */
  claim(reading: Reading, settings: PolicySettings, monoNow?: number, forecast?: ForecastInput): Claim {
    const now = this.now();
    this.checkIdentity();
    if (this.problem === undefined) this.catchUp();
    const decision = decideWithForecast(reading, settings, this.view(), now, monoNow, forecast);
    if (decision.action !== 'topup') return { decision };

    let attempt: KnownAttempt;
    try {
      attempt = this.recordAttemptAt(now, reading.value, settings.threshold, monoNow);
    } catch (err) {
      const detail = err instanceof LedgerWriteError ? err.message : 'ledger write failed';
      return { decision: { action: 'skip', reason: 'ledger_unavailable', detail } };
    }

    // Read back what landed in the file up to our record: anything before it that is not ours
    // was appended by another process between our decision and our write.
    const readBack = this.catchUp(attempt.id);
    if (!readBack.found) {
      this.problem = `${this.file}: the attempt just written is not in the file (was it replaced?)`;
      this.withdraw(attempt, 'ledger_unverified');
      return { decision: { action: 'skip', reason: 'ledger_unavailable', detail: this.problem } };
    }
    if (readBack.foreignBefore > 0) {
      const others = { ...this.view(), attempts: this.view().attempts.filter((a) => a.id !== attempt.id) };
      const again = decideWithForecast(reading, settings, others, now, monoNow, forecast);
      if (again.action !== 'topup') {
        this.withdraw(attempt, 'superseded');
        this.options.onEvent?.({ kind: 'superseded', attemptId: attempt.id });
        return { decision: again };
      }
    }
    // The write is durable; make sure it went to the file that is still at the path.
    const identity = this.identityProblem();
    if (identity !== undefined) {
      this.problem = identity;
      this.withdraw(attempt, 'ledger_unverified');
      return { decision: { action: 'skip', reason: 'ledger_unavailable', detail: identity } };
    }
    return { decision, attempt };
  }

  /**
   * The money step for several requests at once (a primary's balance transfers): `plan` decides
   * on the ledger as it is on disk right now, and every attempt it asks for is recorded durably
   * before this returns, all in one synchronous step. Either every planned attempt comes back
   * (each may be sent) or none does, with `problem` saying why (a failed write, another writer):
   * a half-recorded plan could fund some subaccounts on a stale view of the caps.
   */
  claimMany<D>(plan: (view: LedgerView, now: number) => { result: D; attempts: readonly PlannedAttempt[] }, monoNow?: number): { result: D; attempts: Attempt[]; problem?: string } {
    const now = this.now();
    this.checkIdentity();
    if (this.problem === undefined) this.catchUp();
    const { result, attempts: planned } = plan(this.view(), now);
    if (planned.length === 0) return { result, attempts: [] };
    const recorded: KnownAttempt[] = [];
    const giveUp = (problem: string, reason: string) => {
      for (const a of recorded) this.withdraw(a, reason);
      return { result, attempts: [], problem };
    };
    try {
      for (const p of planned) recorded.push(this.recordAttemptAt(now, p.balance, p.threshold, monoNow, p));
    } catch (err) {
      return giveUp(err instanceof LedgerWriteError ? err.message : 'ledger write failed', 'ledger_write_failed');
    }
    const readBack = this.catchUp(recorded[recorded.length - 1]!.id);
    if (!readBack.found) {
      this.problem = `${this.file}: the attempts just written are not in the file (was it replaced?)`;
      return giveUp(this.problem, 'ledger_unverified');
    }
    if (readBack.foreignBefore > 0) {
      // Another process wrote between our decision and our record: none of it is sent this cycle.
      for (const a of recorded) this.options.onEvent?.({ kind: 'superseded', attemptId: a.id });
      return giveUp('another process recorded attempts in this ledger just before these; they are withdrawn', 'superseded');
    }
    const identity = this.identityProblem();
    if (identity !== undefined) {
      this.problem = identity;
      return giveUp(identity, 'ledger_unverified');
    }
    return { result, attempts: recorded };
  }

  /**
   * Durably records that a top-up is about to be sent, without deciding. Throws LedgerWriteError
   * if the record is not on disk whole; the caller must then not send. (The daemon uses claim().)
   */
  recordAttempt(balance: number, threshold: number): Attempt {
    this.checkIdentity();
    return this.recordAttemptAt(this.now(), balance, threshold);
  }

  /**
   * Records how an attempt ended. The in-memory view changes even if the disk write fails, and
   * the failure only ever makes the ledger more conservative: on restart the attempt has no
   * outcome and is read back as unknown, which still counts.
   */
  recordOutcome(attempt: Attempt, outcome: FinalOutcome, reason?: string): void {
    attempt.outcome = outcome;
    if (reason !== undefined) attempt.reason = reason;
    const record: LedgerRecord = { type: 'outcome', at: this.now(), id: attempt.id, outcome, ...(reason === undefined ? {} : { reason }) };
    this.remember(record);
    this.append([record]);
  }

  /** Records that the balance rose after the attempt, and by how much when that is known. */
  recordConfirmed(attempt: Attempt, balance: number, amount?: number): void {
    attempt.confirmedAt = this.now();
    if (amount !== undefined) attempt.amount = amount;
    const record: LedgerRecord = { type: 'confirmed', at: attempt.confirmedAt, id: attempt.id, balance, ...(amount === undefined ? {} : { amount }) };
    this.remember(record);
    this.append([record]);
  }

  close(): void {
    if (this.closed) return;
    // A last look before going: if the files were deleted, what memory knows goes back on disk.
    try {
      if (this.stateDir.held && this.fd !== undefined) this.checkIdentity();
      else this.writeBackUnlocked();
    } catch {
      // Best effort at shutdown; every attempt was on disk before it was sent.
    }
    this.closed = true;
    this.stopGuard();
    this.closeFd();
    if (this.ownsStateDir) this.stateDir.close();
  }

  /** Stops as a crash would: nothing more is written, the lock is left behind (tests). */
  abandon(): void {
    this.closed = true;
    this.stopGuard();
    this.closeFd();
    if (this.ownsStateDir) this.stateDir.abandon();
  }

  /**
   * Runs on every check of the STATE_DIR lock (twice a second). Holding it: the files at their
   * paths must be ours, or they are re-created and restored now, not at the next cycle. Not
   * holding it (another watchdog took it, say after STATE_DIR was deleted under us): write back
   * the attempts this process remembers, since an attempt record can only make the other one
   * more careful.
   */
  private guard(): void {
    if (this.closed) return;
    if (this.stateDir.held) {
      if (this.fd !== undefined) this.checkIdentity();
      else if (this.stateDir.generation !== this.generation) this.reopen();
    } else {
      this.writeBackUnlocked();
    }
  }

  private writeBackUnlocked(): void {
    const remembered = this.fold.attempts(this.now()).filter((a) => a.outcome !== 'not_sent');
    if (remembered.length === 0) return;
    let st: { ino: number } | undefined;
    try {
      st = statSync(this.file);
    } catch (err) {
      if (errorCode(err) !== 'ENOENT') return;
    }
    if (st !== undefined && this.writtenBack?.ino === st.ino) return;
    let fd: number;
    try {
      fd = openSync(this.file, constants.O_RDWR | constants.O_APPEND | constants.O_CREAT, 0o600);
    } catch {
      return; // the directory is gone too: whoever re-creates it is told at the next check
    }
    try {
      const loaded = this.load(fd);
      if ('problem' in loaded) return;
      const onDisk = new Map(loaded.fold.attempts(loaded.mtime).map((a) => [a.id, { outcome: a.outcome, confirmed: a.confirmedAt !== undefined }]));
      let newest = Number.NEGATIVE_INFINITY;
      for (const a of loaded.fold.attempts(loaded.mtime)) if (a.outcome !== 'not_sent' && a.at > newest) newest = a.at;
      const records = this.missingRecords(remembered.filter((a) => a.at > newest - MEMORY_WINDOW_MS), onDisk);
      if (records.length > 0) {
        const data = Buffer.from((loaded.consumed < loaded.size ? '\n' : '') + records.map(encodeRecord).join(''));
        if (this.write(fd, data) !== data.length) return;
        fsyncSync(fd);
        this.options.onEvent?.({ kind: 'restored', records: records.length, why: 'another watchdog holds the STATE_DIR lock now; wrote back, without the lock, the attempts this one remembers' });
      }
      this.writtenBack = { ino: fstatSync(fd).ino };
    } catch {
      // Tried again at the next check.
    } finally {
      closeSync(fd);
    }
  }

  // ---- internals ---------------------------------------------------------------------------

  private recordAttemptAt(at: number, balance: number, threshold: number, mono?: number, target?: PlannedAttempt): KnownAttempt {
    const record: LedgerRecord = {
      type: 'attempt',
      at,
      id: randomUUID(),
      balance,
      threshold,
      account: this.account,
      owner: this.stateDir.token,
      ...(this.keyId === undefined ? {} : { key: this.keyId }),
      ...(target?.to === undefined ? {} : { to: target.to }),
      ...(target?.requested === undefined ? {} : { requested: target.requested }),
    };
    this.mine.add(record.id);
    this.append([record]);
    this.remember(record);
    const attempt = this.fold.get(record.id)!;
    // Memory only: the monotonic clock means nothing to another process.
    if (mono !== undefined) attempt.mono = mono;
    return attempt;
  }

  /** An attempt recorded but not sent: it is closed as not sent, so it does not count. */
  private withdraw(attempt: Attempt, reason: string): void {
    try {
      this.recordOutcome(attempt, 'not_sent', reason);
    } catch {
      // The attempt stays unresolved on disk and counts after a restart: more careful, not less.
    }
  }

  private remember(record: LedgerRecord): void {
    this.fold.apply(record);
    this.sorted = undefined;
  }

  private append(records: LedgerRecord[]): void {
    if (this.fd === undefined || this.problem !== undefined) throw new LedgerWriteError(this.problem ?? 'ledger is not open');
    const free = this.freeBytes(this.dir);
    if (free !== undefined && free < MIN_FREE_BYTES) {
      this.problem = `STATE_DIR ${this.dir} is full (${free} bytes free); refusing to record, so refusing to top up`;
      throw new LedgerWriteError(this.problem);
    }
    const data = Buffer.from((this.tailPartial ? '\n' : '') + records.map(encodeRecord).join(''));
    let before = -1;
    try {
      before = fstatSync(this.fd).size;
      const n = this.write(this.fd, data);
      if (n !== data.length) {
        this.repairShortWrite(before, n);
        this.problem = `short write to ${this.file} (${n} of ${data.length} bytes; is STATE_DIR full?)`;
        throw new LedgerWriteError(this.problem);
      }
      fsyncSync(this.fd);
    } catch (err) {
      if (err instanceof LedgerWriteError) throw err;
      this.problem = `cannot write ${this.file}: ${errorCode(err)}`;
      throw new LedgerWriteError(this.problem);
    }
    this.tailPartial = false;
    this.lines += records.length;
  }

  /**
   * A short write left part of a record in the file. If nothing was appended after it, cut it
   * off; otherwise it stays, and every reader counts it as an attempt of unknown outcome.
   */
  private repairShortWrite(before: number, written: number): void {
    if (this.fd === undefined || written <= 0) return;
    try {
      if (fstatSync(this.fd).size === before + written) {
        ftruncateSync(this.fd, before);
        fsyncSync(this.fd);
        return;
      }
    } catch {
      // Could not repair; the torn bytes count as an unknown attempt.
    }
    this.tailPartial = true;
  }

  /** Verifies lock and file; re-opens (and restores) when the directory was re-created. */
  private checkIdentity(): void {
    if (this.fd === undefined) return;
    const problem = this.identityProblem();
    if (problem === undefined && this.stateDir.generation === this.generation) return;
    // The lock was re-taken (STATE_DIR re-created) or the file is not ours any more: open
    // whatever is at the path now and write back what it lacks.
    this.reopen(problem);
  }

  private identityProblem(): string | undefined {
    const lock = this.stateDir.verify();
    if (lock !== undefined) return lock;
    if (this.fd === undefined) return this.problem ?? 'ledger is not open';
    try {
      const held = fstatSync(this.fd);
      const onDisk = statSync(this.file);
      if (held.ino !== onDisk.ino || held.dev !== onDisk.dev) return `${this.file} was replaced while the watchdog was running`;
      return undefined;
    } catch (err) {
      return errorCode(err) === 'ENOENT' ? `${this.file} was removed while the watchdog was running (STATE_DIR deleted?)` : `cannot check ${this.file}: ${errorCode(err)}`;
    }
  }

  /**
   * Reads what was appended since the last read. With `untilId`, also says whether that record
   * was found and how many records of another writer came before it.
   */
  private catchUp(untilId?: string): { found: boolean; foreignBefore: number } {
    const result = { found: false, foreignBefore: 0 };
    if (this.fd === undefined) return result;
    let size: number;
    try {
      size = fstatSync(this.fd).size;
    } catch {
      return result;
    }
    if (size < this.offset) {
      // The file shrank under us: someone truncated it. Never trust less than we knew.
      this.problem = `${this.file} shrank while the watchdog was running`;
      return result;
    }
    if (size === this.offset) return result;
    let foreign = 0;
    let lineNo = this.lines;
    const consumed = readLines(this.fd, this.offset, size, (line) => {
      lineNo += 1;
      const results = linesOf(line);
      for (const r of results) {
        if (r.kind === 'record' && r.record.id === untilId && r.record.type === 'attempt') result.found = true;
        // Only attempts can hold a decision back; outcomes and confirmations never add a charge.
        const foreignAttempt = r.kind === 'torn_attempt' || (r.kind === 'record' && r.record.type === 'attempt' && !this.mine.has(r.record.id));
        if (foreignAttempt) {
          foreign += 1;
          if (untilId !== undefined && !result.found) result.foreignBefore += 1;
        }
      }
      this.addResults(results, lineNo);
    });
    this.offset = consumed;
    this.lines = lineNo;
    this.tailPartial = consumed < size;
    if (foreign > 0) this.options.onEvent?.({ kind: 'foreign_records', count: foreign });
    return result;
  }

  private addResults(results: LineResult[], lineNo: number): void {
    this.fold.addLine(results, lineNo);
    this.sorted = undefined;
    if (this.fold.problem !== undefined && this.problem === undefined) {
      this.problem = `${this.file}: ${this.fold.problem}; refusing to top up until it is repaired or moved away`;
    }
  }

  private closeFd(): void {
    closeQuietly(this.fd);
    this.fd = undefined;
    this.ino = undefined;
    this.dev = undefined;
  }

  /** Reads a whole ledger file from an open descriptor. */
  private load(fd: number, path: string = this.file): { fold: AttemptFold; size: number; consumed: number; lines: number; mtime: number; ino: number; dev: number; torn: boolean } | { problem: string; ino: number; size: number; mtimeMs: number } {
    const st = fstatSync(fd);
    const fold = new AttemptFold();
    let lines = 0;
    const consumed = readLines(fd, 0, st.size, (line) => {
      lines += 1;
      fold.addLine(linesOf(line), lines);
    });
    let torn = false;
    if (consumed < st.size) {
      // Bytes after the last newline: a torn record. Count it, and start the next append on a new line.
      const tail = Buffer.alloc(Math.min(st.size - consumed, MAX_LINE_BYTES));
      readSync(fd, tail, 0, tail.length, consumed);
      lines += 1;
      fold.addLine(st.size - consumed > MAX_LINE_BYTES ? linesOf(OVERSIZED) : parseLine(tail.toString('utf8')), lines);
      torn = true;
    }
    if (fold.problem !== undefined) {
      return { problem: `${path}: ${fold.problem}; refusing to top up until it is repaired or moved away`, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs };
    }
    return { fold, size: st.size, consumed, lines, mtime: st.mtimeMs, ino: st.ino, dev: st.dev, torn };
  }

  private reopen(why?: string): void {
    const remembered = [...this.fold.attempts(this.now())];
    this.closeFd();
    this.problem = undefined;
    const lock = this.stateDir.verify();
    if (lock !== undefined) {
      this.problem = lock;
      return;
    }
    this.generation = this.stateDir.generation;
    this.cleanLeftovers();

    let fd: number;
    try {
      fd = openSync(this.file, constants.O_RDWR | constants.O_APPEND | constants.O_CREAT, 0o600);
    } catch (err) {
      this.problem = `cannot open ${this.file}: ${errorCode(err)}`;
      return;
    }
    let loaded: ReturnType<FileLedger['load']>;
    try {
      // A file that could not be trusted and has not changed since is not read again every cycle.
      const st = fstatSync(fd);
      const f = this.failedFile;
      if (f && f.ino === st.ino && f.size === st.size && f.mtimeMs === st.mtimeMs) {
        closeSync(fd);
        this.problem = f.problem;
        return;
      }
      loaded = this.load(fd);
    } catch (err) {
      closeSync(fd);
      this.problem = `cannot read ${this.file}: ${errorCode(err)}`;
      return;
    }
    if ('problem' in loaded) {
      closeSync(fd);
      this.failedFile = { ino: loaded.ino, size: loaded.size, mtimeMs: loaded.mtimeMs, problem: loaded.problem };
      this.problem = loaded.problem;
      return;
    }
    this.failedFile = undefined;
    if (loaded.torn) this.options.onEvent?.({ kind: 'torn_tail' });
    const { fold } = loaded;
    const onDisk = new Map(fold.attempts(loaded.mtime).map((a) => [a.id, { outcome: a.outcome, confirmed: a.confirmedAt !== undefined }]));
    // This key's attempts in the other files of this kind (a rename, a rename back, two names
    // swapped, an upgrade): they count here too, with whatever those files know of their outcomes.
    const siblings = this.importRenamed(onDisk.size === 0 && remembered.length === 0);
    if ('problem' in siblings) {
      closeSync(fd);
      this.problem = siblings.problem;
      return;
    }
    const imported = siblings.attempts;
    // What memory knows first (an outcome the file missed), then what is still open is unknown.
    fold.absorb([...remembered, ...imported]);
    for (const a of fold.attempts(loaded.mtime)) settleInterrupted(a);

    this.fd = fd;
    this.ino = loaded.ino;
    this.dev = loaded.dev;
    this.fold = fold;
    this.sorted = undefined;
    this.offset = loaded.size;
    this.tailPartial = loaded.consumed < loaded.size;
    this.lines = loaded.lines;
    try {
      syncDir(this.dir);
      this.restore([...remembered, ...imported], onDisk, why);
      this.maybeCompact();
    } catch (err) {
      this.problem = err instanceof LedgerWriteError ? err.message : `cannot write ${this.file}: ${errorCode(err)}`;
    }
  }

  /**
   * This key's attempts in the other ledger files of this kind. A file that mentions this key's
   * fingerprint is read whole (and must be trustworthy: if it cannot be read, this ledger refuses
   * to act rather than forget a charge); one that does not is only scanned, and the scan is
   * remembered by the file's inode, size and mtime, so opening 200 ledgers does not read 200
   * files 200 times. A new ledger (nothing on disk or in memory) also reads every file for records
   * from before fingerprints, which name only their account (the API key, or this very name).
   * Siblings are opened without following links or blocking (a FIFO or a link planted in STATE_DIR
   * is skipped, never waited on), and must be regular files.
   */
  private importRenamed(isNew: boolean): { attempts: KnownAttempt[] } | { problem: string } {
    if (this.keyId === undefined || this.options.apiKey === undefined) return { attempts: [] };
    const own = ledgerFileName(this.account, this.kind);
    let names: string[];
    try {
      names = readdirSync(this.dir).filter((f) => f.startsWith(`${this.kind}-`) && f.endsWith('.jsonl') && !f.includes('.archive-') && f !== own);
    } catch {
      return { attempts: [] };
    }
    const found = new AttemptFold();
    const refuse = (name: string, why: string) => ({ problem: `${this.file}: attempts of this API key may also be in ${name}, which ${why}; refusing to top up until it is repaired or moved away` });
    for (const name of names) {
      const path = join(this.dir, name);
      let fd: number | undefined;
      try {
        try {
          fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
        } catch (err) {
          // Gone meanwhile, or a link planted in STATE_DIR (never followed): nothing of ours.
          if (errorCode(err) === 'ENOENT' || errorCode(err) === 'ELOOP') continue;
          return refuse(name, `cannot be opened (${errorCode(err)})`);
        }
        const st = fstatSync(fd);
        if (!st.isFile()) continue; // a FIFO or a device: never read, never waited on
        const mentions = keysMentioned(fd, st).has(this.keyId);
        if (!mentions && !isNew) continue;
        const id = identity(st);
        const failed = failedLoads.get(id);
        const loaded = failed && failed.size === st.size && failed.mtimeMs === st.mtimeMs ? { problem: failed.problem } : this.load(fd, path);
        if ('problem' in loaded) {
          if (failedLoads.size >= 10_000) failedLoads.clear();
          failedLoads.set(id, { size: st.size, mtimeMs: st.mtimeMs, problem: loaded.problem });
          // It may hold this key's charge: by its fingerprint, or (records before fingerprints) by
          // this account's name or API key, or by the file name earlier versions gave this account.
          const legacy = isNew && ((this.kind === 'topups' && name === legacyLedgerFileName(this.account)) || namesAccount(fd, [this.account, this.options.apiKey]));
          if (mentions || legacy) return refuse(name, `cannot be trusted (${loaded.problem})`);
          continue;
        }
        // Before fingerprints a record named only its account: the API key (the default name), or this
        // very name under the file name earlier versions gave it (legacyLedgerFileName).
        const mine = loaded.fold.attempts(loaded.mtime).filter((a) => a.key === this.keyId || (isNew && a.key === undefined && (a.account === this.options.apiKey || a.account === this.account)));
        if (mine.length === 0) continue;
        for (const a of mine) settleInterrupted(a);
        found.absorb(mine);
        this.options.onEvent?.({ kind: 'imported', attempts: mine.length, from: name });
      } catch (err) {
        return refuse(name, `cannot be read (${errorCode(err)})`);
      } finally {
        if (fd !== undefined) closeSync(fd);
      }
    }
    return { attempts: found.attempts(this.now()) };
  }

  /** The records that would bring a file holding `onDisk` up to what `remembered` knows. */
  private missingRecords(remembered: KnownAttempt[], onDisk: Map<string, { outcome: string; confirmed: boolean }>): LedgerRecord[] {
    const records: LedgerRecord[] = [];
    for (const a of remembered) {
      const disk = onDisk.get(a.id);
      if (!disk) {
        records.push(this.attemptRecordOf(a));
        this.mine.add(a.id);
      }
      if (a.outcome !== 'pending' && (!disk || disk.outcome === 'pending' || (disk.outcome === 'unknown' && a.outcome !== 'unknown'))) {
        records.push({ type: 'outcome', at: this.now(), id: a.id, outcome: a.outcome, ...(a.reason === undefined ? {} : { reason: a.reason }) });
      }
      if (a.confirmedAt !== undefined && !disk?.confirmed) {
        records.push({ type: 'confirmed', at: a.confirmedAt, id: a.id, balance: a.confirmedBalance ?? 0, ...(a.amount === undefined ? {} : { amount: a.amount }) });
      }
    }
    return records;
  }

  private attemptRecordOf(a: KnownAttempt): LedgerRecord {
    return {
      type: 'attempt',
      at: a.at,
      id: a.id,
      balance: a.balanceBefore,
      threshold: a.threshold,
      account: a.account || this.account,
      ...(a.owner === undefined ? {} : { owner: a.owner }),
      ...(a.key === undefined ? {} : { key: a.key }),
      ...(a.to === undefined ? {} : { to: a.to }),
      ...(a.requested === undefined ? {} : { requested: a.requested }),
    };
  }

  /** Writes back what this process remembers and the file does not hold (it was deleted or replaced). */
  private restore(remembered: KnownAttempt[], onDisk: Map<string, { outcome: string; confirmed: boolean }>, why: string | undefined): void {
    const records = this.missingRecords(remembered, onDisk);
    if (records.length === 0) return;
    this.append(records);
    this.offset = fstatSync(this.fd!).size;
    this.options.onEvent?.({ kind: 'restored', records: records.length, why: why ?? 'the file lacked records this process remembers' });
  }

  /** Leftovers of a compaction interrupted by a crash: the ledger itself is always whole. */
  private cleanLeftovers(): void {
    const tmp = `${this.file}.compact.tmp`;
    try {
      unlinkSync(tmp);
    } catch {
      return; // none: the last compaction finished, or never started
    }
    // A crash between the archive link and the rename leaves an archive name on the live ledger:
    // drop that name, or the next compaction would archive the same history under two names.
    try {
      const live = statSync(this.file);
      const prefix = `${ledgerFileName(this.account, this.kind).replace(/\.jsonl$/, '')}.archive-`;
      for (const f of readdirSync(this.dir)) {
        if (!f.startsWith(prefix)) continue;
        const st = statSync(join(this.dir, f));
        if (st.ino === live.ino && st.dev === live.dev) unlinkSync(join(this.dir, f));
      }
    } catch {
      // Housekeeping only.
    }
  }

  private maybeCompact(): void {
    const needed = this.fold.attempts(this.now()).length * 3;
    if (this.lines <= 2 * needed + (this.options.compactSlackLines ?? COMPACT_SLACK_LINES)) return;
    this.compact();
  }

  /**
   * Rotates the file: the whole history so far becomes an archive file (a hard link, so even a
   * years-long ledger rotates in constant time), and the ledger restarts with what the cooldown
   * and the cap still need. Crash-safe: the ledger path always holds a complete file.
   */
  private compact(): void {
    if (this.fd === undefined) return;
    const keep = this.fold.attempts(this.now());
    const tmp = `${this.file}.compact.tmp`;
    const records: LedgerRecord[] = [];
    for (const a of keep) {
      records.push(this.attemptRecordOf(a));
      if (a.outcome !== 'pending') records.push({ type: 'outcome', at: a.at, id: a.id, outcome: a.outcome, ...(a.reason === undefined ? {} : { reason: a.reason }) });
      if (a.confirmedAt !== undefined) records.push({ type: 'confirmed', at: a.confirmedAt, id: a.id, balance: a.confirmedBalance ?? 0, ...(a.amount === undefined ? {} : { amount: a.amount }) });
    }
    const data = Buffer.from(records.map(encodeRecord).join(''));
    const archive = join(this.dir, `${ledgerFileName(this.account, this.kind).replace(/\.jsonl$/, '')}.archive-${stamp(this.now())}-${this.stateDir.token.slice(0, 8)}.jsonl`);
    let fd: number | undefined;
    try {
      fd = openSync(tmp, 'w', 0o600);
      if (this.write(fd, data) !== data.length) throw new LedgerWriteError(`short write to ${tmp}`);
      fsyncSync(fd);
      closeSync(fd);
      fd = undefined;
      linkSync(this.file, archive);
      syncDir(this.dir);
      renameSync(tmp, this.file);
      syncDir(this.dir);
    } catch (err) {
      if (fd !== undefined) closeSync(fd);
      try {
        unlinkSync(tmp);
      } catch {
        // None.
      }
      // Compaction is housekeeping: failing it leaves the ledger as it was, still correct.
      return void err;
    }
    for (const a of keep) this.mine.add(a.id);
    this.closeFd();
    const reopened = openSync(this.file, constants.O_RDWR | constants.O_APPEND, 0o600);
    const st = fstatSync(reopened);
    this.fd = reopened;
    this.ino = st.ino;
    this.dev = st.dev;
    this.offset = st.size;
    this.lines = records.length;
    this.tailPartial = false;
    this.options.onEvent?.({ kind: 'compacted', kept: keep.length, archivedTo: archive });
  }
}

export { MEMORY_WINDOW_MS };
/** The class under its old name, for tools and tests written before the Ledger interface. */
export { FileLedger as Ledger };
