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
import { randomUUID } from 'node:crypto';
import {
  closeSync,
  constants,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  linkSync,
  openSync,
  readSync,
  renameSync,
  statfsSync,
  statSync,
  unlinkSync,
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
} from './ledger-records.js';
import { decide, type Attempt, type Decision, type LedgerView, type PolicySettings, type Reading } from './policy.js';
import { StateDir } from './state-lock.js';

export { parseLedger } from './ledger-records.js';

export class LedgerWriteError extends Error {
  override readonly name = 'LedgerWriteError';
}

/** File names must not depend on characters an account name may carry. */
export function ledgerFileName(account: string): string {
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
}

export type LedgerEvent =
  | { kind: 'foreign_records'; count: number }
  | { kind: 'superseded'; attemptId: string }
  | { kind: 'restored'; records: number; why: string }
  | { kind: 'compacted'; kept: number; archivedTo: string }
  | { kind: 'torn_tail' };

export interface Claim {
  decision: Decision;
  /** Present only when the attempt is durably recorded and the request may be sent. */
  attempt?: Attempt;
}

function errorCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : 'error';
}

function defaultFreeBytes(dir: string): number | undefined {
  try {
    const s = statfsSync(dir);
    return Number(s.bavail) * Number(s.bsize);
  } catch {
    return undefined;
  }
}

function syncDir(dir: string): void {
  try {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // Some filesystems refuse fsync on a directory; the file's own fsync is the best we have.
  }
}

const stamp = (ms: number) => new Date(ms).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');

/**
 * Reads `[from, to)` of a file line by line without holding it whole: a legacy ledger can be far
 * larger than a string may be. Returns the offset just past the last complete line.
 */
function readLines(fd: number, from: number, to: number, onLine: (line: string) => void): number {
  const buf = Buffer.allocUnsafe(READ_CHUNK);
  let carry: Buffer = Buffer.alloc(0);
  let pos = from;
  let consumed = from;
  while (pos < to) {
    const n = readSync(fd, buf, 0, Math.min(READ_CHUNK, to - pos), pos);
    if (n <= 0) break;
    pos += n;
    let chunk = carry.length > 0 ? Buffer.concat([carry, buf.subarray(0, n)]) : buf.subarray(0, n);
    let start = 0;
    for (let nl = chunk.indexOf(10, start); nl !== -1; nl = chunk.indexOf(10, start)) {
      onLine(chunk.toString('utf8', start, nl));
      consumed += nl - start + 1;
      start = nl + 1;
    }
    chunk = chunk.subarray(start);
    carry = Buffer.from(chunk);
  }
  return consumed;
}

export class Ledger {
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
  private readonly now: () => number;
  private readonly stateDir: StateDir;
  private readonly ownsStateDir: boolean;
  private readonly write: (fd: number, data: Buffer) => number;
  private readonly freeBytes: (dir: string) => number | undefined;

  private constructor(
    private readonly dir: string,
    private readonly account: string,
    private readonly options: LedgerOptions,
  ) {
    this.file = join(dir, ledgerFileName(account));
    this.now = options.now ?? Date.now;
    this.ownsStateDir = options.stateDir === undefined;
    this.stateDir = options.stateDir ?? StateDir.open(dir);
    this.write = options.write ?? ((fd, data) => writeSync(fd, data));
    this.freeBytes = options.freeBytes ?? defaultFreeBytes;
  }

  /** Never throws: a ledger that cannot be opened is returned unwritable, with the reason. */
  static open(dir: string, account: string, now: () => number = Date.now, options: Omit<LedgerOptions, 'now'> = {}): Ledger {
    const ledger = new Ledger(dir, account, { ...options, now });
    ledger.reopen();
    return ledger;
  }

  view(): LedgerView {
    this.sorted ??= this.fold.attempts(this.now());
    return { writable: this.problem === undefined && this.fd !== undefined, problem: this.problem, attempts: this.sorted };
  }

  get path(): string {
    return this.file;
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
  claim(reading: Reading, settings: PolicySettings, monoNow?: number): Claim {
    const now = this.now();
    this.checkIdentity();
    if (this.problem === undefined) this.catchUp();
    const decision = decide(reading, settings, this.view(), now, monoNow);
    if (decision.action !== 'topup') return { decision };

    let attempt: KnownAttempt;
    try {
      attempt = this.recordAttemptAt(now, reading.value, settings.threshold);
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
      const again = decide(reading, settings, others, now, monoNow);
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
    this.closeFd();
    if (this.ownsStateDir) this.stateDir.close();
  }

  /** Stops as a crash would: nothing more is written, the lock is left behind (tests). */
  abandon(): void {
    this.closeFd();
    if (this.ownsStateDir) this.stateDir.abandon();
  }

  // ---- internals ---------------------------------------------------------------------------

  private recordAttemptAt(at: number, balance: number, threshold: number): KnownAttempt {
    const record: LedgerRecord = { type: 'attempt', at, id: randomUUID(), balance, threshold, account: this.account, owner: this.stateDir.token };
    this.mine.add(record.id);
    this.append([record]);
    this.remember(record);
    return this.fold.get(record.id)!;
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
      const results = parseLine(line);
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
    if (this.fd !== undefined) {
      try {
        closeSync(this.fd);
      } catch {
        // Already closed.
      }
    }
    this.fd = undefined;
    this.ino = undefined;
    this.dev = undefined;
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
    const fold = new AttemptFold();
    let size = 0;
    let consumed = 0;
    let lines = 0;
    let mtime = this.now();
    try {
      const st = fstatSync(fd);
      size = st.size;
      mtime = st.mtimeMs;
      consumed = readLines(fd, 0, size, (line) => {
        lines += 1;
        fold.addLine(parseLine(line), lines);
      });
      if (consumed < size) {
        // Bytes after the last newline: a torn record. Count it, and start the next append on a new line.
        const tail = Buffer.alloc(size - consumed);
        readSync(fd, tail, 0, tail.length, consumed);
        lines += 1;
        fold.addLine(parseLine(tail.toString('utf8')), lines);
        this.options.onEvent?.({ kind: 'torn_tail' });
      }
      this.ino = st.ino;
      this.dev = st.dev;
    } catch (err) {
      closeSync(fd);
      this.problem = `cannot read ${this.file}: ${errorCode(err)}`;
      return;
    }
    if (fold.problem !== undefined) {
      closeSync(fd);
      this.problem = `${this.file}: ${fold.problem}; refusing to top up until it is repaired or moved away`;
      return;
    }
    const onDisk = new Map(fold.attempts(mtime).map((a) => [a.id, { outcome: a.outcome, confirmed: a.confirmedAt !== undefined }]));
    // What memory knows first (an outcome the file missed), then what is still open is unknown.
    fold.absorb(remembered);
    for (const a of fold.attempts(mtime)) settleInterrupted(a);

    this.fd = fd;
    this.fold = fold;
    this.sorted = undefined;
    this.offset = size;
    this.tailPartial = consumed < size;
    this.lines = lines;
    try {
      syncDir(this.dir);
      this.restore(remembered, onDisk, why);
      this.maybeCompact();
    } catch (err) {
      this.problem = err instanceof LedgerWriteError ? err.message : `cannot write ${this.file}: ${errorCode(err)}`;
    }
  }

  /** Writes back what this process remembers and the file does not hold (it was deleted or replaced). */
  private restore(remembered: KnownAttempt[], onDisk: Map<string, { outcome: string; confirmed: boolean }>, why: string | undefined): void {
    const records: LedgerRecord[] = [];
    for (const a of remembered) {
      const disk = onDisk.get(a.id);
      if (!disk) {
        records.push({ type: 'attempt', at: a.at, id: a.id, balance: a.balanceBefore, threshold: a.threshold, account: a.account || this.account, ...(a.owner === undefined ? {} : { owner: a.owner }) });
        this.mine.add(a.id);
      }
      if (a.outcome !== 'pending' && (!disk || disk.outcome === 'pending' || (disk.outcome === 'unknown' && a.outcome !== 'unknown'))) {
        records.push({ type: 'outcome', at: this.now(), id: a.id, outcome: a.outcome, ...(a.reason === undefined ? {} : { reason: a.reason }) });
      }
      if (a.confirmedAt !== undefined && !disk?.confirmed) {
        records.push({ type: 'confirmed', at: a.confirmedAt, id: a.id, balance: a.confirmedBalance ?? Number.NaN, ...(a.amount === undefined ? {} : { amount: a.amount }) });
      }
    }
    if (records.length === 0) return;
    this.append(records.map((r) => (r.type === 'confirmed' && !Number.isFinite(r.balance) ? { ...r, balance: 0 } : r)));
    this.offset = fstatSync(this.fd!).size;
    this.options.onEvent?.({ kind: 'restored', records: records.length, why: why ?? 'the file lacked records this process remembers' });
  }

  /** Leftovers of a compaction interrupted by a crash: the ledger itself is always whole. */
  private cleanLeftovers(): void {
    try {
      unlinkSync(`${this.file}.compact.tmp`);
    } catch {
      // None.
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
      records.push({ type: 'attempt', at: a.at, id: a.id, balance: a.balanceBefore, threshold: a.threshold, account: a.account || this.account, ...(a.owner === undefined ? {} : { owner: a.owner }) });
      if (a.outcome !== 'pending') records.push({ type: 'outcome', at: a.at, id: a.id, outcome: a.outcome, ...(a.reason === undefined ? {} : { reason: a.reason }) });
      if (a.confirmedAt !== undefined) records.push({ type: 'confirmed', at: a.confirmedAt, id: a.id, balance: a.confirmedBalance ?? 0, ...(a.amount === undefined ? {} : { amount: a.amount }) });
    }
    const data = Buffer.from(records.map(encodeRecord).join(''));
    const archive = join(this.dir, `${ledgerFileName(this.account).replace(/\.jsonl$/, '')}.archive-${stamp(this.now())}-${this.stateDir.token.slice(0, 8)}.jsonl`);
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
