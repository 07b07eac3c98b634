/**
 * The durable record of top-up attempts, one append-only JSON-lines file per account in
 * STATE_DIR. An attempt is written and fsync'd before the request goes out, its outcome after,
 * so a restart (kill -9 included) still knows every attempt that may have charged the card:
 * an attempt with no outcome is read back as `unknown` and counts for cooldown and cap.
 *
 * If the directory cannot be written, or the file cannot be trusted, the ledger says so
 * (`writable: false`) and the policy refuses to top up; watching and reporting go on.
 */
import { closeSync, constants, fsyncSync, ftruncateSync, mkdirSync, openSync, readFileSync, renameSync, writeFileSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import type { Attempt, AttemptOutcome, LedgerView } from './policy.js';
import { DAY_MS } from './policy.js';

type Entry =
  | { type: 'attempt'; id: string; at: number; balance: number; threshold: number; account: string }
  | { type: 'outcome'; id: string; at: number; outcome: Exclude<AttemptOutcome, 'pending'>; reason?: string }
  | { type: 'confirmed'; id: string; at: number; balance: number };

export class LedgerWriteError extends Error {
  override readonly name = 'LedgerWriteError';
}

/** Attempts older than this are no longer needed for any decision; they stay in the file. */
const MEMORY_WINDOW_MS = 7 * DAY_MS;

/** File names must not depend on characters an account name may carry. */
export function ledgerFileName(account: string): string {
  return `topups-${account.replace(/[^A-Za-z0-9._-]/g, '_')}.jsonl`;
}

export class Ledger {
  private attempts: Attempt[] = [];
  private fd: number | undefined;
  private problem: string | undefined;
  private readonly file: string;
  private readonly lockFile: string;

  private constructor(
    private readonly dir: string,
    private readonly account: string,
    private readonly now: () => number,
  ) {
    this.file = join(dir, ledgerFileName(account));
    this.lockFile = `${this.file}.lock`;
  }

  /** Never throws: a ledger that cannot be opened is returned unwritable, with the reason. */
  static open(dir: string, account: string, now: () => number = Date.now): Ledger {
    const ledger = new Ledger(dir, account, now);
    ledger.reopen();
    return ledger;
  }

  view(): LedgerView {
    return { writable: this.problem === undefined, problem: this.problem, attempts: this.attempts };
  }

  get path(): string {
    return this.file;
  }

  /** Tries again to open an unwritable ledger (the volume may have come back). */
  retry(): void {
    if (this.problem !== undefined) this.reopen();
  }

  /**
   * Durably records that a top-up is about to be sent. Throws LedgerWriteError if the record is
   * not on disk; the caller must then not send.
   */
  recordAttempt(balance: number, threshold: number): Attempt {
    const attempt: Attempt = { id: randomUUID(), at: this.now(), outcome: 'pending', balanceBefore: balance };
    this.append({ type: 'attempt', id: attempt.id, at: attempt.at, balance, threshold, account: this.account });
    this.attempts = this.attempts.filter((a) => a.at > attempt.at - MEMORY_WINDOW_MS);
    this.attempts.push(attempt);
    return attempt;
  }

  /**
   * Records how an attempt ended. The in-memory view changes even if the disk write fails, and
   * the failure only ever makes the ledger more conservative: on restart the attempt has no
   * outcome and is read back as unknown, which still counts.
   */
  recordOutcome(attempt: Attempt, outcome: Exclude<AttemptOutcome, 'pending'>, reason?: string): void {
    attempt.outcome = outcome;
    if (reason !== undefined) attempt.reason = reason;
    this.append({ type: 'outcome', id: attempt.id, at: this.now(), outcome, ...(reason === undefined ? {} : { reason }) });
  }

  recordConfirmed(attempt: Attempt, balance: number): void {
    attempt.confirmedAt = this.now();
    this.append({ type: 'confirmed', id: attempt.id, at: attempt.confirmedAt, balance });
  }

  close(): void {
    if (this.fd !== undefined) {
      closeSync(this.fd);
      this.fd = undefined;
      this.releaseLock();
    }
  }

  private append(entry: Entry): void {
    if (this.fd === undefined) throw new LedgerWriteError(this.problem ?? 'ledger is not open');
    try {
      writeSync(this.fd, `${JSON.stringify({ v: 1, ...entry })}\n`);
      fsyncSync(this.fd);
    } catch (err) {
      this.problem = `cannot write ${this.file}: ${errorCode(err)}`;
      throw new LedgerWriteError(this.problem);
    }
  }

  private reopen(): void {
    this.close();
    this.problem = undefined;
    try {
      mkdirSync(this.dir, { recursive: true });
    } catch (err) {
      this.problem = `cannot create STATE_DIR ${this.dir}: ${errorCode(err)}`;
      return;
    }
    const lockProblem = this.acquireLock();
    if (lockProblem) {
      this.problem = lockProblem;
      return;
    }
    let text = '';
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (err) {
      if (errorCode(err) !== 'ENOENT') {
        this.problem = `cannot read ${this.file}: ${errorCode(err)}`;
        return;
      }
    }
    const loaded = parseLedger(text);
    if ('problem' in loaded) {
      this.problem = `${this.file}: ${loaded.problem}; refusing to top up until it is repaired or moved away`;
      return;
    }
    this.attempts = loaded.attempts;
    try {
      this.fd = openSync(this.file, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT, 0o600);
      // A record cut short by kill -9 mid-write was never fsync'd, so its request never left:
      // cut it off, or the next record would be glued onto it.
      if (!text.endsWith('\n') && text.length > 0) ftruncateSync(this.fd, Buffer.byteLength(text.slice(0, text.lastIndexOf('\n') + 1)));
      fsyncSync(this.fd);
      syncDir(this.dir);
    } catch (err) {
      this.problem = `cannot write ${this.file}: ${errorCode(err)}`;
      if (this.fd !== undefined) closeSync(this.fd);
      this.fd = undefined;
      this.releaseLock();
    }
  }

  /**
   * Two processes sharing one STATE_DIR could both top up. The lock catches that on one host;
   * a lock left by a dead process (kill -9) is taken over.
   */
  private acquireLock(): string | undefined {
    const mine = JSON.stringify({ pid: process.pid, host: hostname(), at: this.now() });
    try {
      const fd = openSync(this.lockFile, 'wx', 0o600);
      writeSync(fd, mine);
      fsyncSync(fd);
      closeSync(fd);
      return undefined;
    } catch (err) {
      if (errorCode(err) !== 'EEXIST') return `cannot create lock ${this.lockFile}: ${errorCode(err)}`;
    }
    let holder: { pid?: unknown; host?: unknown } = {};
    try {
      holder = JSON.parse(readFileSync(this.lockFile, 'utf8')) as typeof holder;
    } catch {
      // Unreadable or torn lock content: its writer died mid-write, so it is stale.
    }
    if (typeof holder.pid === 'number' && holder.pid !== process.pid && holder.host === hostname() && isAlive(holder.pid)) {
      return `another watchdog (pid ${holder.pid}) holds ${this.lockFile}`;
    }
    try {
      const tmp = `${this.lockFile}.${process.pid}.tmp`;
      writeFileSync(tmp, mine, { mode: 0o600 });
      renameSync(tmp, this.lockFile);
      return undefined;
    } catch (err) {
      return `cannot take over lock ${this.lockFile}: ${errorCode(err)}`;
    }
  }

  private releaseLock(): void {
    try {
      const holder = JSON.parse(readFileSync(this.lockFile, 'utf8')) as { pid?: unknown };
      if (holder.pid === process.pid) writeFileSync(this.lockFile, '{}');
    } catch {
      // Nothing to release.
    }
  }
}

/** Pure: the ledger file's text → the attempts that can still matter, or why it can't be trusted. */
export function parseLedger(text: string): { attempts: Attempt[] } | { problem: string } {
  // Every record is written with its newline in one write; a last line without one is torn.
  const lines = text.split('\n').slice(0, -1);
  const byId = new Map<string, Attempt>();
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '') continue;
    let entry: Entry;
    try {
      entry = JSON.parse(line) as Entry;
    } catch {
      return { problem: `unreadable record at line ${i + 1}` };
    }
    if (entry.type === 'attempt' && typeof entry.at === 'number' && typeof entry.id === 'string') {
      byId.set(entry.id, { id: entry.id, at: entry.at, outcome: 'pending', balanceBefore: Number(entry.balance) });
    } else if (entry.type === 'outcome' && byId.has(entry.id)) {
      const a = byId.get(entry.id)!;
      a.outcome = entry.outcome;
      if (entry.reason !== undefined) a.reason = entry.reason;
    } else if (entry.type === 'confirmed' && byId.has(entry.id)) {
      byId.get(entry.id)!.confirmedAt = entry.at;
    } else if (entry.type !== 'outcome' && entry.type !== 'confirmed') {
      return { problem: `unknown record at line ${i + 1}` };
    }
  }
  // Pruned relative to the newest attempt, not to `now`: a clock that is days ahead at start-up
  // and corrected later must not have made the daemon forget its most recent attempts.
  const newest = Math.max(...[...byId.values()].map((a) => a.at));
  const attempts = [...byId.values()]
    // An attempt with no outcome was interrupted after it was recorded: it may have been sent.
    .map((a) => (a.outcome === 'pending' ? { ...a, outcome: 'unknown' as const, reason: a.reason ?? 'interrupted' } : a))
    .filter((a) => a.at > newest - MEMORY_WINDOW_MS)
    .sort((x, y) => x.at - y.at);
  return { attempts };
}

function syncDir(dir: string): void {
  // A new file's directory entry must be durable too, or a crash can lose the whole file.
  try {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // Some filesystems refuse fsync on directories; the file's own fsync is the best we have.
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errorCode(err) === 'EPERM';
  }
}

function errorCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : 'error';
}
