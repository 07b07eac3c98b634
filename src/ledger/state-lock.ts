/**
 * One watchdog per STATE_DIR. Two daemons on one ledger would each see the low balance and each
 * charge the card; two containers sharing a volume is the ordinary way to make that mistake. So
 * the directory has a lock, and a lock is taken over only when its holder has provably stopped.
 *
 * What "provably" means here, because host names and PIDs prove nothing across containers (every
 * container has its own UTS and PID namespace, and PID 7 in one is not PID 7 in another):
 *
 * - The holder **renews a lease**: it rewrites the lock file's counter every second. A contender
 *   watches the file on its own monotonic clock; only a lock that has not changed for a whole
 *   lease is stale. Wall-clock steps cannot fake that, and neither can a different host name.
 * - Shortcut, after kill -9 in the same container: the lock names a PID in *this* PID namespace
 *   (same namespace inode, same boot) and that PID is gone. Then the holder is dead right now.
 * - Ownership is the lock file's **inode**: the holder keeps it open (so the inode cannot be
 *   reused), and before every attempt the ledger checks that the file at the path is still that
 *   inode. A takeover renames the stale file away and creates a new one exclusively (O_EXCL), so
 *   two contenders cannot both create it, and a contender that renamed a fresh lock by mistake
 *   (it changed under it) puts it back.
 *
 * The lock only keeps a second daemon from trying. What makes two daemons unable to both send is
 * the ledger's own ordering check (see ledger.ts), which holds even if this lock were fooled.
 */
import { randomUUID } from 'node:crypto';
import { closeSync, constants, fstatSync, fsyncSync, linkSync, openSync, readdirSync, readFileSync, readlinkSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { closeQuietly, ensureDir, errorCode, syncDir } from './fs-util.js';

export const LOCK_FILE = 'watchdog.lock';
/** How long a silent lock is trusted. The holder checks it every LEASE_MS / 10 and renews it every other check. */
export const DEFAULT_LEASE_MS = 5_000;
/**
 * A watchdog that finds STATE_DIR without any ledger waits this long before it acts. If the
 * directory was just deleted under a watchdog that is still running, that one notices within a
 * check (half a second), takes its lock back or writes back what it remembers, and the newcomer
 * then reads it instead of topping up on an empty ledger.
 */
export const DEFAULT_PROBATION_MS = 2_000;

export interface StateDirOptions {
  leaseMs?: number;
  /** Wait before first acting on a STATE_DIR that holds no ledger (0 = none, for tests and tools). */
  probationMs?: number;
  monoNow?: () => number;
  /** Told when the lock is taken, lost or taken over; never required. */
  onEvent?: (event: LockEvent) => void;
}

export type LockEvent =
  | { kind: 'acquired'; tookOverFrom?: string }
  | { kind: 'lost'; why: string }
  | { kind: 'recreated' };

interface Holder {
  owner?: unknown;
  pid?: unknown;
  host?: unknown;
  bootId?: unknown;
  pidns?: unknown;
  startedAt?: unknown;
}

/** Tokens of locks this process holds right now, so a second StateDir in one process is a contender too. */
const liveTokens = new Set<string>();

function readIdentity(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}
const BOOT_ID = readIdentity('/proc/sys/kernel/random/boot_id');
const PID_NS = (() => {
  try {
    return readlinkSync('/proc/self/ns/pid');
  } catch {
    return undefined;
  }
})();


function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errorCode(err) === 'EPERM';
  }
}

function describeHolder(h: Holder): string {
  const parts: string[] = [];
  if (typeof h.pid === 'number') parts.push(`pid ${h.pid}`);
  if (typeof h.host === 'string') parts.push(`host ${JSON.stringify(h.host.slice(0, 64))}`);
  if (typeof h.startedAt === 'string') parts.push(`started ${h.startedAt.slice(0, 30)}`);
  return parts.length > 0 ? parts.join(', ') : 'unknown holder';
}


export class StateDir {
  readonly token = randomUUID();
  readonly lockPath: string;
  private readonly leaseMs: number;
  private readonly probationMs: number;
  private readonly monoNow: () => number;
  /** Set while the lock file at the path is ours (held, or on probation). */
  private fd: number | undefined;
  private ino: number | undefined;
  private dev: number | undefined;
  private seq = 0;
  private ticks = 0;
  private readonly startedAt = new Date().toISOString();
  private problemText: string | undefined = 'not opened yet';
  private timer: NodeJS.Timeout | undefined;
  private seen: { content: string; ino: number; sinceMono: number; changes: number } | undefined;
  /** Waiting on someone else: a live holder being watched, or our own probation. */
  private waiting = false;
  private probationUntil: number | undefined;
  private everHeld = false;
  private closed = false;
  private settledWaiters: (() => void)[] = [];
  private readonly listeners = new Set<() => void>();
  /** Bumped whenever the lock is (re)acquired, so ledgers know to re-check their files. */
  generation = 0;

  private constructor(
    readonly dir: string,
    private readonly options: StateDirOptions,
  ) {
    this.lockPath = join(dir, LOCK_FILE);
    this.leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
    this.probationMs = options.probationMs ?? DEFAULT_PROBATION_MS;
    this.monoNow = options.monoNow ?? (() => performance.now());
  }

  /** Never throws: a directory that cannot be locked is returned with the reason. */
  static open(dir: string, options: StateDirOptions = {}): StateDir {
    const s = new StateDir(dir, options);
    s.tryAcquire();
    // One timer for everything: check (and every other time renew) our lock, watch someone
    // else's, and let the ledgers check their files. Unref'd: it never keeps a process alive.
    s.timer = setInterval(() => s.tick(), Math.max(20, Math.floor(s.leaseMs / 10)));
    s.timer.unref();
    return s;
  }

  /** Undefined while this process holds the lock; otherwise why not. */
  get problem(): string | undefined {
    return this.problemText;
  }

  get held(): boolean {
    return this.problemText === undefined && this.fd !== undefined;
  }

  /** Called on every check, held or not (the ledgers use it to guard their files). */
  onTick(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Checks, now, that the lock file at the path is still the one this process holds. Called before
   * every attempt. If STATE_DIR was deleted under us, the lock is re-created at once (before a
   * second daemon can take the empty directory), and `generation` moves so ledgers restore.
   */
  verify(): string | undefined {
    if (this.closed) return 'STATE_DIR lock is closed';
    if (this.fd === undefined) {
      this.tryAcquire();
      return this.problemText;
    }
    try {
      const st = statSync(this.lockPath);
      if (st.ino !== this.ino || st.dev !== this.dev) {
        this.lose(`the lock file ${this.lockPath} was replaced by another process`);
      } else if (this.probationUntil !== undefined && this.monoNow() >= this.probationUntil) {
        this.probationUntil = undefined;
        this.becomeHolder();
      }
    } catch (err) {
      if (errorCode(err) !== 'ENOENT') {
        this.lose(`cannot check the lock ${this.lockPath}: ${errorCode(err)}`);
      } else {
        // Our lock (and probably the whole STATE_DIR) was deleted. Take the path back now.
        this.releaseFd();
        this.tryAcquire();
        if (this.fd !== undefined) this.options.onEvent?.({ kind: 'recreated' });
      }
    }
    return this.problemText;
  }

  /** Resolves once the lock is held, or a live holder has been seen renewing it, or after `timeoutMs`. */
  whenSettled(timeoutMs: number): Promise<void> {
    if (this.held || this.closed || !this.waiting || (this.seen?.changes ?? 0) > 0) return Promise.resolve();
    return new Promise((resolve) => {
      // Not unref'd: the caller is waiting on it (a `--once` run has nothing else keeping it alive).
      const timer = setTimeout(done, timeoutMs);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.settledWaiters.push(done);
    });
  }

  /** Releases the lock (the file is removed if it is still ours). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stopTimer();
    if (this.fd !== undefined && this.verifyQuietly()) {
      try {
        unlinkSync(this.lockPath);
      } catch {
        // Already gone.
      }
    }
    this.releaseFd();
    this.problemText = 'STATE_DIR lock is closed';
    this.settle();
  }

  /** Stops as a crash would: the file stays, nobody renews it (tests of takeover). */
  abandon(): void {
    this.closed = true;
    this.stopTimer();
    this.releaseFd();
    this.problemText = 'STATE_DIR lock was abandoned';
    this.settle();
  }

  private tick(): void {
    if (this.closed) return;
    this.ticks += 1;
    this.verify();
    if (this.fd !== undefined && this.ticks % 2 === 0) this.renew();
    for (const l of this.listeners) {
      try {
        l();
      } catch {
        // A ledger's guard reports its own problems; one must not stop the others.
      }
    }
  }

  private verifyQuietly(): boolean {
    try {
      const st = statSync(this.lockPath);
      return st.ino === this.ino && st.dev === this.dev;
    } catch {
      return false;
    }
  }

  private content(): string {
    return `${JSON.stringify({
      v: 1,
      owner: this.token,
      pid: process.pid,
      host: hostname(),
      bootId: BOOT_ID ?? null,
      pidns: PID_NS ?? null,
      startedAt: this.startedAt,
      // Fixed width, so every renewal rewrites the same bytes in place.
      seq: String(this.seq).padStart(12, '0'),
    })}\n`;
  }

  private tryAcquire(): void {
    if (this.closed) return;
    try {
      ensureDir(this.dir);
    } catch (err) {
      this.waiting = false;
      this.problemText = `cannot create STATE_DIR ${this.dir}: ${errorCode(err)}`;
      return;
    }
    let tookOverFrom: string | undefined;
    // A few rounds: each takeover frees the path for an exclusive create that another contender may win.
    for (let round = 0; round < 4; round++) {
      const created = this.createExclusive();
      if (created === 'created') return this.acquired(tookOverFrom);
      if (created !== 'exists') {
        this.waiting = false;
        this.problemText = created;
        return;
      }
      const current = this.readLock();
      if (current === undefined) continue; // it vanished between the two calls
      if (!this.provablyStopped(current.holder) && !this.leaseExpired(current)) {
        this.problemText =
          `STATE_DIR ${this.dir} is locked by another watchdog that is still running (${describeHolder(current.holder)}). ` +
          'Two watchdogs on one STATE_DIR would top up twice, so this one will not top up until that one stops.';
        this.waiting = true;
        this.noteSeen(current);
        return;
      }
      if (this.takeOver(current.ino)) tookOverFrom = describeHolder(current.holder);
    }
    this.waiting = true;
    this.problemText = `STATE_DIR lock ${this.lockPath} is contended by another starting watchdog; will try again`;
  }

  private createExclusive(): 'created' | 'exists' | string {
    let fd: number | undefined;
    try {
      fd = openSync(this.lockPath, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, 0o600);
    } catch (err) {
      if (errorCode(err) === 'EEXIST') return 'exists';
      return `cannot create the lock ${this.lockPath}: ${errorCode(err)}`;
    }
    try {
      const text = this.content();
      const n = writeSync(fd, text, 0);
      if (n !== Buffer.byteLength(text)) throw Object.assign(new Error('short write'), { code: 'ENOSPC' });
      fsyncSync(fd);
      syncDir(this.dir);
      const st = fstatSync(fd);
      this.fd = fd;
      this.ino = st.ino;
      this.dev = st.dev;
      return 'created';
    } catch (err) {
      // A lock we could not write whole is not a lock: remove it so nobody waits a lease on it.
      try {
        closeSync(fd);
        unlinkSync(this.lockPath);
      } catch {
        // Best effort.
      }
      return `cannot write the lock ${this.lockPath}: ${errorCode(err)}`;
    }
  }

  private readLock(): { content: string; ino: number; holder: Holder } | undefined {
    try {
      const st = statSync(this.lockPath);
      const content = readFileSync(this.lockPath, 'utf8');
      let holder: Holder = {};
      try {
        const parsed: unknown = JSON.parse(content);
        if (typeof parsed === 'object' && parsed !== null) holder = parsed as Holder;
      } catch {
        // Torn or foreign content: nothing proves its writer dead, so only the lease can.
      }
      return { content, ino: st.ino, holder };
    } catch {
      return undefined;
    }
  }

  /** The holder is in this PID namespace on this boot, and its PID is gone (or it is a dead StateDir of ours). */
  private provablyStopped(h: Holder): boolean {
    if (typeof h.pid !== 'number' || BOOT_ID === undefined || PID_NS === undefined) return false;
    if (h.bootId !== BOOT_ID || h.pidns !== PID_NS) return false;
    if (h.pid === process.pid) return typeof h.owner === 'string' && !liveTokens.has(h.owner);
    return !isAlive(h.pid);
  }

  private leaseExpired(current: { content: string; ino: number }): boolean {
    const s = this.seen;
    return s !== undefined && s.content === current.content && s.ino === current.ino && this.monoNow() - s.sinceMono >= this.leaseMs;
  }

  /**
   * Moves a stale lock out of the way. If what we moved is not the file we judged stale (someone
   * replaced it in between), it is put back and we back off.
   */
  private takeOver(staleIno: number): boolean {
    const grave = `${this.lockPath}.stale-${this.token}`;
    try {
      renameSync(this.lockPath, grave);
    } catch {
      return false; // someone else moved it first
    }
    let moved: number | undefined;
    try {
      moved = statSync(grave).ino;
    } catch {
      moved = undefined;
    }
    if (moved !== staleIno) {
      try {
        linkSync(grave, this.lockPath); // back where it was, same inode, unless the path is taken again
      } catch {
        // The path is taken: whoever has it is a contender like us.
      }
      try {
        unlinkSync(grave);
      } catch {
        // Best effort.
      }
      return false;
    }
    try {
      unlinkSync(grave);
    } catch {
      // Best effort.
    }
    this.seen = undefined;
    return true;
  }

  /** The lock file is ours. On a first start in a STATE_DIR without ledgers, wait out the probation first. */
  private acquired(tookOverFrom?: string): void {
    this.seen = undefined;
    liveTokens.add(this.token);
    if (tookOverFrom !== undefined) this.options.onEvent?.({ kind: 'acquired', tookOverFrom });
    if (!this.everHeld && this.probationMs > 0 && !this.holdsLedgers()) {
      this.probationUntil = this.monoNow() + this.probationMs;
      this.waiting = true;
      this.problemText =
        `taking the STATE_DIR lock: ${this.dir} holds no ledger yet, so this watchdog waits ${this.probationMs / 1000}s ` +
        'before it acts, in case a watchdog still running there lost its files and is writing back what it knows';
      return;
    }
    this.becomeHolder();
  }

  private becomeHolder(): void {
    this.problemText = undefined;
    this.waiting = false;
    this.everHeld = true;
    this.generation += 1;
    if (this.generation === 1) this.options.onEvent?.({ kind: 'acquired' });
    this.settle();
  }

  private holdsLedgers(): boolean {
    try {
      return readdirSync(this.dir).some((f) => (f.startsWith('topups-') || f.startsWith('transfers-')) && f.endsWith('.jsonl') && !f.includes('.archive-'));
    } catch {
      return false;
    }
  }

  private renew(): void {
    if (this.fd === undefined) return;
    this.seq += 1;
    try {
      writeSync(this.fd, this.content(), 0);
    } catch {
      // A renewal that fails (full disk) only makes a contender take over sooner; the next
      // attempt's verify() then finds the lock gone and refuses.
    }
  }

  private lose(why: string): void {
    this.releaseFd();
    this.probationUntil = undefined;
    this.waiting = true;
    this.problemText = `lost the STATE_DIR lock: ${why}; top-ups are off until it can be taken again`;
    this.options.onEvent?.({ kind: 'lost', why });
  }

  private releaseFd(): void {
    liveTokens.delete(this.token);
    closeQuietly(this.fd);
    this.fd = undefined;
    this.ino = undefined;
    this.dev = undefined;
  }

  private noteSeen(current: { content: string; ino: number }): void {
    const s = this.seen;
    if (s && s.content === current.content && s.ino === current.ino) return;
    this.seen = { content: current.content, ino: current.ino, sinceMono: this.monoNow(), changes: s ? s.changes + 1 : 0 };
    if (this.seen.changes > 0) this.settle();
  }

  private settle(): void {
    for (const w of this.settledWaiters.splice(0)) w();
  }

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.listeners.clear();
  }
}
