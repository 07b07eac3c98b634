/**
 * The file ledger and the STATE_DIR lock, on real files. Each defect of issue 7 that touches them
 * has its regression test here (numbers refer to the issue): a short write (5), a deleted
 * STATE_DIR (6), a damaged or huge ledger (7), a lock taken over from a live holder (3) or raced
 * for (4), and the ordering check that keeps two writers from both sending.
 */
import { spawn } from 'node:child_process';
import { appendFileSync, chmodSync, existsSync, linkSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeRecord } from '../src/ledger/records.js';
import { Ledger, LedgerWriteError, ledgerFileName, parseLedger, type LedgerEvent } from '../src/ledger/file-ledger.js';
import type { PolicySettings, Reading } from '../src/refill/topup-policy.js';
import { LOCK_FILE, StateDir } from '../src/ledger/state-lock.js';
import { waitFor } from './helpers/daemon.js';

const dirs: string[] = [];
const opened: { close(): void }[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'ledger-test-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const o of opened.splice(0)) o.close();
  for (const d of dirs.splice(0)) {
    try {
      chmodSync(d, 0o700);
    } catch {
      // already gone
    }
    rmSync(d, { recursive: true, force: true });
  }
});

const T0 = Date.UTC(2026, 10, 27);
const MIN = 60_000;
const settings: PolicySettings = { threshold: 10, cooldownMs: 15 * MIN, maxPerDay: 3, topupEnabled: true, dryRun: false, maxReadingAgeMs: 10_000 };
const low = (at: number): Reading => ({ value: 4, autoReload: true, at });
const attemptLine = (id: string, at: number, extra: Record<string, unknown> = {}) =>
  encodeRecord({ type: 'attempt', at, id, balance: 4, threshold: 10, account: 'acct', ...extra });

function open(dir: string, now: () => number, options: Parameters<typeof Ledger.open>[3] = {}): Ledger {
  const l = Ledger.open(dir, 'acct', now, options);
  opened.push(l);
  return l;
}

describe('Ledger: records', () => {
  it('writes the attempt before the outcome, and reads both back after a restart', () => {
    const dir = tempDir();
    const l = open(dir, () => T0);
    const a = l.recordAttempt(4.5, 10);
    const onDisk = readFileSync(join(dir, ledgerFileName('acct')), 'utf8');
    expect(onDisk).toContain('"type":"attempt"');
    expect(onDisk).not.toContain('"type":"outcome"');
    l.recordOutcome(a, 'success');
    l.close();
    const again = open(dir, () => T0 + 1000);
    expect(again.view().attempts).toMatchObject([{ id: a.id, at: T0, outcome: 'success', balanceBefore: 4.5 }]);
  });

  it('reads an attempt without an outcome (killed mid-request) as unknown', () => {
    const dir = tempDir();
    const l = open(dir, () => T0);
    l.recordAttempt(1, 10);
    l.abandon(); // as after kill -9: no outcome, the lock left behind
    const again = open(dir, () => T0 + 1);
    expect(again.view()).toMatchObject({ writable: true, attempts: [{ outcome: 'unknown', reason: 'interrupted' }] });
  });

  it('records the amount a top-up added with its confirmation, and keeps it across a restart', () => {
    const dir = tempDir();
    const l = open(dir, () => T0);
    const a = l.recordAttempt(4, 10);
    l.recordOutcome(a, 'success');
    l.recordConfirmed(a, 24, 20);
    l.close();
    expect(open(dir, () => T0 + 1).view().attempts).toMatchObject([{ id: a.id, outcome: 'success', amount: 20 }]);
  });

  it('appends; never rewrites history', () => {
    const dir = tempDir();
    const file = join(dir, ledgerFileName('acct'));
    const l = open(dir, () => T0);
    l.recordOutcome(l.recordAttempt(1, 10), 'failed', 'topup_failed');
    const before = readFileSync(file, 'utf8');
    l.recordConfirmed(l.recordAttempt(2, 10), 30);
    expect(readFileSync(file, 'utf8').startsWith(before)).toBe(true);
  });
});

describe('Ledger: damaged files only ever make it more careful (7)', () => {
  it('counts a torn last line as an attempt of unknown outcome, and starts the next record on its own line', () => {
    const dir = tempDir();
    const file = join(dir, ledgerFileName('acct'));
    writeFileSync(file, `${attemptLine('x', T0 - 60 * MIN)}{"v":1,"type":"attempt","at":${T0 - MIN},"id":"7f3a`);
    const l = open(dir, () => T0);
    const view = l.view();
    expect(view.writable).toBe(true);
    expect(view.attempts).toMatchObject([{ id: 'x' }, { at: T0 - MIN, outcome: 'unknown', reason: 'torn_record' }]);
    // The torn attempt holds the cooldown: it may have been sent (as an older version did).
    expect(l.claim(low(T0), settings).decision).toMatchObject({ action: 'skip', reason: 'cooldown' });
    const b = l.recordAttempt(2, 10);
    l.close();
    const reread = parseLedger(readFileSync(file, 'utf8'));
    expect(reread).toMatchObject({ attempts: [{ id: 'x' }, { outcome: 'unknown', reason: 'torn_record' }, { id: b.id }] });
  });

  it('reads a torn record with a later record glued on as both', () => {
    const glued = `{"v":1,"type":"attempt","at":${T0},"id":"ab${attemptLine('whole', T0 + 1000).trim()}\n`;
    expect(parseLedger(glued, T0 + 5000)).toMatchObject({ attempts: [{ at: T0, outcome: 'unknown', reason: 'torn_record' }, { id: 'whole' }] });
  });

  it('dates a torn attempt that lost its time by the next record, or the file time', () => {
    const text = `{"v":1,"type":"att\n${encodeRecord({ type: 'outcome', at: T0 + 9, id: 'nobody', outcome: 'failed' })}`;
    expect(parseLedger(text, T0 + 500)).toMatchObject({ attempts: [{ at: T0 + 9, outcome: 'unknown' }] });
    expect(parseLedger('{"v":1,"type":"att\n', T0 + 500)).toMatchObject({ attempts: [{ at: T0 + 500 }] });
  });

  for (const [name, line] of [
    ['a line that is JSON null', 'null'],
    ['a JSON array', '[1,2]'],
    ['a number', '42'],
    ['garbage', 'this is not a ledger record'],
    ['an unknown record type', '{"v":1,"type":"refund","at":1,"id":"r"}'],
  ] as const) {
    it(`disables top-ups, without crashing, on ${name} in the middle`, () => {
      const dir = tempDir();
      writeFileSync(join(dir, ledgerFileName('acct')), `${attemptLine('a', T0)}${line}\n${attemptLine('b', T0 + 1)}`);
      const l = open(dir, () => T0);
      expect(l.view().writable).toBe(false);
      expect(l.view().problem).toMatch(/line 2; refusing to top up until it is repaired or moved away/);
      expect(() => l.recordAttempt(1, 10)).toThrow(LedgerWriteError);
      expect(l.claim(low(T0), settings).decision).toMatchObject({ action: 'skip', reason: 'ledger_unavailable' });
    });
  }

  it('an attempt that never left, stamped by a clock days ahead, does not push real attempts out of memory', () => {
    const DAY = 24 * 60 * MIN;
    const text =
      attemptLine('real', T0 - 5 * MIN) +
      encodeRecord({ type: 'outcome', at: T0 - 5 * MIN, id: 'real', outcome: 'success' }) +
      attemptLine('ahead', T0 + 8 * DAY) +
      encodeRecord({ type: 'outcome', at: T0 + 8 * DAY, id: 'ahead', outcome: 'not_sent', reason: 'connection_refused' });
    expect(parseLedger(text)).toMatchObject({ attempts: [{ id: 'real' }, { id: 'ahead', outcome: 'not_sent' }] });
  });

  it('reads a time beyond what a date can hold as damage (a torn attempt dated otherwise), never as a date that crashes a message', () => {
    const text = `{"v":1,"type":"attempt","at":9000000000000000,"id":"far","balance":4,"threshold":10,"account":"acct"}\n`;
    const parsed = parseLedger(text, T0);
    expect(parsed).toMatchObject({ attempts: [{ at: T0, outcome: 'unknown', reason: 'torn_record' }] });
  });

  it('drops the NUL bytes a power cut leaves behind instead of calling the ledger corrupt', () => {
    const dir = tempDir();
    writeFileSync(join(dir, ledgerFileName('acct')), Buffer.concat([Buffer.from(attemptLine('x', T0 - 60 * MIN)), Buffer.alloc(4096)]));
    const l = open(dir, () => T0);
    expect(l.view()).toMatchObject({ writable: true, attempts: [{ id: 'x' }] });
  });

  it('reads a line longer than any record as one unreadable line, whatever its length', () => {
    const dir = tempDir();
    writeFileSync(join(dir, ledgerFileName('acct')), `${attemptLine('x', T0)}${'{'.repeat(3 * 1024 * 1024)}\n${attemptLine('y', T0 + 1)}`);
    const l = open(dir, () => T0);
    expect(l.view().writable).toBe(false);
    expect(l.view().problem).toMatch(/a line longer than 1048576 bytes at line 2/);
  });

  it('after a crash between the archive link and the rename of a compaction, the archive name on the live ledger is dropped', () => {
    const dir = tempDir();
    const file = join(dir, ledgerFileName('acct'));
    writeFileSync(file, attemptLine('x', T0));
    writeFileSync(`${file}.compact.tmp`, attemptLine('x', T0));
    const archive = join(dir, 'topups-acct.archive-20261127T000000Z-deadbeef.jsonl');
    linkSync(file, archive);
    open(dir, () => T0).close();
    expect(existsSync(archive)).toBe(false);
    expect(existsSync(`${file}.compact.tmp`)).toBe(false);
    expect(readFileSync(file, 'utf8')).toContain('"id":"x"');
  });

  it('opens a ledger of 130,000 attempts (a cap of 1,000 a day for 130 days) and compacts it into an archive that keeps every line', () => {
    const dir = tempDir();
    const file = join(dir, ledgerFileName('acct'));
    const DAY = 24 * 60 * MIN;
    const lines: string[] = [];
    for (let i = 0; i < 130_000; i++) {
      const at = T0 - 130 * DAY + i * (DAY / 1000);
      lines.push(attemptLine(`id-${i}`, at), encodeRecord({ type: 'outcome', at: at + 1, id: `id-${i}`, outcome: 'failed', reason: 'topup_failed' }));
    }
    writeFileSync(file, lines.join(''));
    const original = readFileSync(file, 'utf8');
    const events: LedgerEvent[] = [];
    const l = open(dir, () => T0, { onEvent: (e) => events.push(e) });
    const view = l.view();
    expect(view.writable).toBe(true);
    // What cooldown and cap need: the last 7 days of attempts (7,000 at this rate).
    expect(view.attempts.length).toBe(7000);
    expect(view.attempts.at(-1)).toMatchObject({ id: 'id-129999', outcome: 'failed' });
    const compacted = events.find((e) => e.kind === 'compacted');
    expect(compacted).toMatchObject({ kind: 'compacted', kept: 7000 });
    const archives = readdirSync(dir).filter((f) => f.includes('.archive-'));
    expect(archives).toHaveLength(1);
    expect(readFileSync(join(dir, archives[0]!), 'utf8')).toBe(original);
    expect(readFileSync(file, 'utf8').split('\n').length - 1).toBe(14_000);
    // The compacted ledger says the same as the original did.
    l.close();
    const again = open(dir, () => T0);
    expect(again.view().attempts.map((a) => `${a.id}:${a.outcome}`)).toEqual(view.attempts.map((a) => `${a.id}:${a.outcome}`));
  });
});

describe('Ledger: a short write is a failed write (5)', () => {
  it('sends nothing when only part of the attempt reached the disk, cuts the torn bytes off, and remembers nothing false', () => {
    const dir = tempDir();
    const file = join(dir, ledgerFileName('acct'));
    let short = true;
    const write = (fd: number, data: Buffer) => (short ? writeSync(fd, data.subarray(0, 50)) : writeSync(fd, data));
    let now = T0;
    const l = open(dir, () => now, { write });
    const claim = l.claim(low(T0), settings);
    expect(claim.attempt).toBeUndefined();
    expect(claim.decision).toMatchObject({ action: 'skip', reason: 'ledger_unavailable' });
    expect(claim.decision.action === 'skip' && claim.decision.detail).toMatch(/short write .*50 of \d+ bytes/);
    expect(readFileSync(file, 'utf8')).toBe('');
    // Space comes back: the next cycle reopens and may act, and only once.
    short = false;
    now = T0 + 1000;
    l.retry();
    const second = l.claim(low(now), settings);
    expect(second.attempt).toBeDefined();
    now = T0 + 2000;
    expect(l.claim(low(now), settings).decision).toMatchObject({ action: 'skip', reason: 'cooldown' });
  });

  it('counts torn bytes it could not cut off as an unknown attempt after a reload', () => {
    const dir = tempDir();
    const file = join(dir, ledgerFileName('acct'));
    // The short write, then another writer's record lands right after it: the torn bytes cannot
    // be cut off without destroying that record.
    const write = (fd: number, data: Buffer) => {
      const n = writeSync(fd, data.subarray(0, 60));
      appendFileSync(file, encodeRecord({ type: 'outcome', at: T0, id: 'other', outcome: 'failed' }));
      return n;
    };
    const l = open(dir, () => T0, { write });
    expect(l.claim(low(T0), settings).attempt).toBeUndefined();
    l.close();
    const again = open(dir, () => T0 + 1000);
    expect(again.view().attempts).toMatchObject([{ outcome: 'unknown', reason: 'torn_record' }]);
    expect(again.claim(low(T0 + 1000), settings).decision).toMatchObject({ action: 'skip', reason: 'cooldown' });
  });

  it('refuses to record (so to top up) when STATE_DIR is full', () => {
    const dir = tempDir();
    const l = open(dir, () => T0, { freeBytes: () => 1000 });
    const claim = l.claim(low(T0), settings);
    expect(claim.attempt).toBeUndefined();
    expect(claim.decision).toMatchObject({ action: 'skip', reason: 'ledger_unavailable', detail: expect.stringMatching(/is full/) });
  });

  it('keeps an outcome it could not write in memory, and writes it back once the disk works again', () => {
    const dir = tempDir();
    let fail = false;
    const write = (fd: number, data: Buffer) => {
      if (fail) throw Object.assign(new Error('no space'), { code: 'ENOSPC' });
      return writeSync(fd, data);
    };
    const l = open(dir, () => T0, { write });
    const a = l.claim(low(T0), settings).attempt!;
    fail = true;
    expect(() => l.recordOutcome(a, 'success')).toThrow(LedgerWriteError);
    expect(l.view().attempts).toMatchObject([{ id: a.id, outcome: 'success' }]);
    fail = false;
    l.retry(); // the next cycle
    expect(l.view().attempts).toMatchObject([{ id: a.id, outcome: 'success' }]);
    l.close();
    expect(open(dir, () => T0 + 1).view().attempts).toMatchObject([{ id: a.id, outcome: 'success' }]);
  });
});

describe('Ledger: the file on disk must be the one held open (6)', () => {
  it('after STATE_DIR is deleted, re-creates it with what it remembers before deciding, so neither it nor a newcomer tops up again', () => {
    const base = tempDir();
    const dir = join(base, 'state');
    let now = T0;
    const l = open(dir, () => now);
    const a = l.claim(low(T0), settings).attempt!;
    l.recordOutcome(a, 'success');
    rmSync(dir, { recursive: true, force: true });
    // Same process, next cycle, within the cooldown: no second top-up, and the directory is back.
    now = T0 + MIN;
    expect(l.claim(low(now), settings).decision).toMatchObject({ action: 'skip', reason: 'cooldown' });
    expect(parseLedger(readFileSync(join(dir, ledgerFileName('acct')), 'utf8'))).toMatchObject({ attempts: [{ id: a.id, outcome: 'success' }] });
    // A second watchdog started on the path finds the lock taken again.
    const newcomer = open(dir, () => now);
    expect(newcomer.view().writable).toBe(false);
    expect(newcomer.view().problem).toMatch(/locked by another watchdog that is still running/);
    l.close();
    newcomer.retry();
    expect(newcomer.view().attempts).toMatchObject([{ id: a.id }]);
    now = T0 + 2 * MIN;
    expect(newcomer.claim(low(now), settings).decision).toMatchObject({ action: 'skip', reason: 'cooldown' });
  });

  it('notices a ledger file replaced under it, and writes back what the new one lacks', () => {
    const dir = tempDir();
    const file = join(dir, ledgerFileName('acct'));
    let now = T0;
    const l = open(dir, () => now);
    const a = l.claim(low(T0), settings).attempt!;
    writeFileSync(`${file}.new`, '');
    renameSync(`${file}.new`, file);
    now = T0 + MIN;
    expect(l.claim(low(now), settings).decision).toMatchObject({ action: 'skip', reason: 'cooldown' });
    expect(readFileSync(file, 'utf8')).toContain(a.id);
  });
});

describe('Ledger: two writers cannot both be first', () => {
  it('withdraws its attempt when another process appended one just before it', () => {
    const dir = tempDir();
    const file = join(dir, ledgerFileName('acct'));
    const events: LedgerEvent[] = [];
    let race = true;
    // The other process's append lands between our decision and our write.
    const write = (fd: number, data: Buffer) => {
      if (race) {
        race = false;
        appendFileSync(file, attemptLine('theirs', T0 - 10, { owner: 'another-process' }));
      }
      return writeSync(fd, data);
    };
    const l = open(dir, () => T0, { write, onEvent: (e) => events.push(e) });
    const claim = l.claim(low(T0), settings);
    expect(claim.attempt).toBeUndefined();
    expect(claim.decision).toMatchObject({ action: 'skip', reason: 'cooldown' });
    expect(events.map((e) => e.kind)).toEqual(expect.arrayContaining(['foreign_records', 'superseded']));
    const parsed = parseLedger(readFileSync(file, 'utf8'));
    expect(parsed).toMatchObject({ attempts: [{ id: 'theirs' }, { outcome: 'not_sent', reason: 'superseded' }] });
  });

  it('sees attempts another process appended since its last look before it decides', () => {
    const dir = tempDir();
    const file = join(dir, ledgerFileName('acct'));
    const l = open(dir, () => T0);
    appendFileSync(file, attemptLine('theirs', T0 - MIN, { owner: 'another-process' }));
    expect(l.claim(low(T0), settings).decision).toMatchObject({ action: 'skip', reason: 'cooldown' });
  });
});

describe('StateDir lock (3, 4)', () => {
  const leaseMs = 300;

  it('a second watchdog in the same process is refused while the first lives, and takes over when it closes or crashes', () => {
    const dir = tempDir();
    const first = StateDir.open(dir, { leaseMs, probationMs: 0 });
    opened.push(first);
    const second = StateDir.open(dir, { leaseMs, probationMs: 0 });
    opened.push(second);
    expect(first.held).toBe(true);
    expect(second.held).toBe(false);
    expect(second.problem).toMatch(/locked by another watchdog that is still running \(pid \d+/);
    first.abandon(); // crash: the file stays, nobody renews it, and this process knows it is dead
    expect(second.verify()).toBeUndefined();
    expect(second.held).toBe(true);
  });

  it('never takes a lock over from a live holder in another process, whatever its host name says', async () => {
    const dir = tempDir();
    const child = spawn(process.execPath, ['-e', `
      import(${JSON.stringify(resolve(__dirname, '../dist/ledger/state-lock.js'))}).then(({ StateDir }) => {
        const s = StateDir.open(${JSON.stringify(dir)}, { leaseMs: ${leaseMs}, probationMs: 0 });
        process.stdout.write(s.held ? 'held\\n' : 'refused\\n');
        setInterval(() => {}, 1000);
      });`], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    try {
      await waitFor(() => out.includes('held'), 10_000, () => out);
      // Pretend the holder is in another container: another host name and PID namespace. Only the
      // lease may decide, and the live holder keeps renewing it.
      const lock = join(dir, LOCK_FILE);
      const mine = StateDir.open(dir, { leaseMs, probationMs: 0 });
      opened.push(mine);
      expect(mine.held).toBe(false);
      const seenAlive = Date.now();
      await mine.whenSettled(5 * leaseMs);
      await waitFor(() => Date.now() - seenAlive > 4 * leaseMs, 10_000);
      expect(mine.verify()).toMatch(/locked by another watchdog/);
      expect(readFileSync(lock, 'utf8')).toContain(`"pid":${child.pid}`);
      // Once the holder is gone (kill -9), its lock is stale and is taken.
      child.kill('SIGKILL');
      await waitFor(() => mine.verify() === undefined, 10_000, () => String(mine.problem));
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('takes over a lock nobody renews only after a whole lease, even from a "live" PID of another namespace', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, LOCK_FILE), JSON.stringify({ v: 1, owner: 'x', pid: 1, host: 'another-container', bootId: 'other', pidns: 'pid:[1]', seq: '000000000001' }));
    const started = performance.now();
    const s = StateDir.open(dir, { leaseMs, probationMs: 0 });
    opened.push(s);
    expect(s.held).toBe(false);
    await waitFor(() => s.verify() === undefined, 10_000, () => String(s.problem));
    expect(performance.now() - started).toBeGreaterThanOrEqual(leaseMs);
  });

  it('of two watchdogs starting at the same instant on a dead holder\'s lock, exactly one wins, every time', async () => {
    const script = resolve(__dirname, 'helpers/lock-race-child.mjs');
    const trials = 40;
    let winners = 0;
    for (let t = 0; t < trials; t++) {
      const dir = tempDir();
      // A lock left by kill -9: this PID namespace, this boot, a PID that is not running.
      writeFileSync(join(dir, LOCK_FILE), JSON.stringify({ v: 1, owner: 'dead', pid: 2 ** 22 - 3, host: 'h', bootId: readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim(), pidns: readlinkSync('/proc/self/ns/pid'), seq: '0' }));
      const go = join(dir, 'go');
      const kids = [0, 1].map(() => spawn(process.execPath, [script, dir, go], { stdio: ['ignore', 'pipe', 'inherit'] }));
      const outs = kids.map((k) => new Promise<string>((r) => {
        let o = '';
        k.stdout.on('data', (d: Buffer) => (o += d.toString()));
        k.on('exit', () => r(o));
      }));
      // Both wait for the same file to appear, then race.
      await waitFor(() => readdirSync(dir).filter((f) => f.startsWith('ready-')).length === 2, 10_000);
      writeFileSync(go, '');
      const results = (await Promise.all(outs)).map((o) => o.trim());
      const claimed = results.filter((r) => r === 'claimed').length;
      expect(claimed, `trial ${t}: ${results.join(', ')}`).toBeLessThanOrEqual(1);
      winners += claimed;
      const parsed = parseLedger(readFileSync(join(dir, ledgerFileName('race')), 'utf8'));
      expect('attempts' in parsed && parsed.attempts.filter((a) => a.outcome !== 'not_sent').length, `trial ${t}`).toBeLessThanOrEqual(1);
    }
    // Liveness: the race is not won by nobody.
    expect(winners).toBe(trials);
  });
});

describe('StateDir probation', () => {
  it('on a STATE_DIR without any ledger, holds the lock file at once but acts only after the probation', async () => {
    const dir = tempDir();
    const s = StateDir.open(dir, { probationMs: 300 });
    opened.push(s);
    expect(existsSync(join(dir, LOCK_FILE))).toBe(true);
    expect(s.held).toBe(false);
    expect(s.problem).toMatch(/holds no ledger yet, so this watchdog waits 0.3s before it acts/);
    const started = performance.now();
    await s.whenSettled(5000);
    expect(s.held).toBe(true);
    expect(performance.now() - started).toBeGreaterThanOrEqual(250);
  });

  it('needs none where a ledger already is, nor when it takes back its own lock', () => {
    const dir = tempDir();
    writeFileSync(join(dir, ledgerFileName('acct')), '');
    const s = StateDir.open(dir, { probationMs: 60_000 });
    opened.push(s);
    expect(s.held).toBe(true);
    rmSync(join(dir, LOCK_FILE));
    rmSync(join(dir, ledgerFileName('acct')));
    expect(s.verify()).toBeUndefined();
  });
});

describe('lock file', () => {
  it('is removed on a clean close and holds no secret-shaped content', () => {
    const dir = tempDir();
    const l = open(dir, () => T0);
    const lock = join(dir, LOCK_FILE);
    expect(existsSync(lock)).toBe(true);
    expect(Object.keys(JSON.parse(readFileSync(lock, 'utf8')) as object).sort()).toEqual(['bootId', 'host', 'owner', 'pid', 'pidns', 'seq', 'startedAt', 'v']);
    expect(statSync(lock).mode & 0o777).toBe(0o600);
    l.close();
    expect(existsSync(lock)).toBe(false);
  });
});
