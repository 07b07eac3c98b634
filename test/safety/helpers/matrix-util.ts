/**
 * Shared plumbing for the safety suite's fault matrix, declining-card, model and soak tests:
 * state directories on tmpfs, a log sink that keeps (or only scans) what the daemon writes,
 * Prometheus exposition parsing, a controllable clock, a recording sleep, and the canary sweep.
 * Nothing here replaces a part of the daemon; these are the test's own instruments.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { DestinationStream } from 'pino';
import { ledgerFileName } from '../../../src/ledger/file-ledger.js';
import { API_KEY, CANARY_SECRET, TRX, canaryForms, expectNoSecret } from '../../helpers/account.js';

/** fsync on tmpfs is nearly free; the ledger code path (write + fsync) is the same. */
export const FAST_DIR = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();

const created: string[] = [];

/**
 * A new STATE_DIR on tmpfs. With `ledgerOf`, it already holds that account's (empty) ledger, as an
 * installed watchdog's does: a STATE_DIR without any ledger makes the daemon wait out a 2 s
 * probation before its first top-up, which cases about something else need not pay each time.
 */
export function freshStateDir(prefix = 'safety-', ledgerOf?: string): string {
  const dir = mkdtempSync(join(FAST_DIR, prefix));
  created.push(dir);
  if (ledgerOf !== undefined) writeFileSync(join(dir, ledgerFileName(ledgerOf)), '');
  return dir;
}

/** tmpfs is memory: remove what freshStateDir made once a file's checks are done. */
export function removeStateDirs(): void {
  for (const dir of created.splice(0)) rmSync(dir, { recursive: true, force: true });
}

/** The environment the daemon reads (loadConfig), pointed at a simulator on loopback. */
export function daemonEnv(simUrl: string, stateDir: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    VONAGE_API_KEY: API_KEY,
    VONAGE_API_SECRET: CANARY_SECRET,
    VONAGE_TOPUP_TRX: TRX,
    VONAGE_ACCOUNT_NAME: 'safety',
    VONAGE_BASE_URL: simUrl,
    VONAGE_ALLOW_CUSTOM_BASE_URL: 'true',
    TOPUP_THRESHOLD: '10',
    TOPUP_COOLDOWN: '1s',
    TOPUP_MAX_PER_DAY: '3',
    // Never fires during a test: cycles are driven by scheduler.tick().
    POLL_SCHEDULE: '0 0 1 1 *',
    HTTP_TIMEOUT: '500ms',
    STATE_DIR: stateDir,
    METRICS_HOST: '127.0.0.1',
    METRICS_PORT: '0',
    LOG_LEVEL: 'debug',
    ...extra,
  };
}

/**
 * A pino destination. `keep` stores every line (for assertions and the canary sweep at the end);
 * otherwise each chunk is scanned for the canary as it arrives and dropped, so a 10,000-run
 * property test does not hold megabytes of logs.
 */
export class LogSink implements DestinationStream {
  private readonly chunks: string[] = [];
  bytes = 0;
  lines = 0;
  leaks = 0;
  redactions = 0;
  private readonly forms = canaryForms();
  constructor(private readonly keep = true) {}
  write(chunk: string): void {
    this.bytes += chunk.length;
    this.lines += 1;
    if (this.keep) this.chunks.push(chunk);
    else {
      if (this.forms.some((f) => chunk.includes(f))) this.leaks += 1;
      if (chunk.includes('[REDACTED]')) this.redactions += 1;
    }
  }
  text(): string {
    return this.chunks.join('');
  }
}

/** Prometheus text → series (name plus label set, as printed) → value. */
export function parseExposition(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

export function seriesKey(name: string, labels: Record<string, string>): string {
  const inner = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .join(',');
  return inner === '' ? name : `${name}{${inner}}`;
}

/** Series whose value changed between two scrapes, restricted to names starting with `prefix`. */
export function changed(before: Map<string, number>, after: Map<string, number>, prefix: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of after) {
    if (!k.startsWith(prefix)) continue;
    const d = v - (before.get(k) ?? 0);
    if (d !== 0) out[k] = d;
  }
  return out;
}

/** Date.now() plus an offset the test moves: cooldowns pass without waiting for them. */
export function offsetClock(): { now: () => number; advance: (ms: number) => void } {
  let offset = 0;
  return { now: () => Date.now() + offset, advance: (ms) => (offset += ms) };
}

/** A fully manual clock (declining card, model, soak). */
export function manualClock(start = Date.UTC(2030, 0, 1)): { now: () => number; set: (t: number) => void; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, set: (v) => (t = v), advance: (ms) => (t += ms) };
}

/**
 * The daemon's backoff sleep, recorded and shortened: `requested` is what the daemon asked for
 * (so Retry-After and the cycle bound can be checked), `actual` what it really waited.
 */
export function recordingSleep(capMs = 5): {
  sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  requested: number[];
  actualMs: () => number;
  reset: () => void;
} {
  const requested: number[] = [];
  let actual = 0;
  return {
    requested,
    actualMs: () => actual,
    reset: () => {
      requested.length = 0;
      actual = 0;
    },
    sleep: async (ms, signal) => {
      requested.push(ms);
      const wait = Math.min(ms, capMs);
      actual += wait;
      await delay(wait, undefined, signal ? { signal } : undefined);
    },
  };
}

/** A second loopback listener that counts every TCP connection made to it: redirects must not reach it. */
export async function trapListener(): Promise<{ port: number; connections: () => number; close: () => Promise<void> }> {
  let count = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    count += 1;
    sockets.add(s);
    s.on('error', () => {});
    s.destroy();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    connections: () => count,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}


/** Every file under `dir`, concatenated (ledger, lock): for the canary sweep. */
export function filesText(dir: string): string {
  let out = '';
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = statSync(p);
    out += st.isDirectory() ? filesText(p) : readFileSync(p, 'utf8');
  }
  return out;
}

/** One place that counts what was swept, so each test can print how much output was checked. */
export class CanarySweep {
  bytes = 0;
  items = 0;
  /** Times the logger's last-line-of-defence scrubber had to act: a secret reached it. */
  redactions = 0;
  /** Items in which a form of the canary was found (each also fails its test). */
  occurrences = 0;
  check(text: string, label: string): void {
    try {
      expectNoSecret(text, label);
    } catch (err) {
      this.occurrences += 1;
      throw err;
    }
    this.bytes += text.length;
    this.items += 1;
    this.redactions += text.split('[REDACTED]').length - 1;
  }
}

export function figure(name: string, value: unknown): void {
  console.log(`[figure] ${name}: ${typeof value === 'string' ? value : JSON.stringify(value)}`);
}

/** Ledger records as written (JSON lines). */
export interface LedgerRecord {
  type: 'attempt' | 'outcome' | 'confirmed';
  id: string;
  at: number;
  outcome?: string;
  reason?: string;
  balance?: number;
}

export function ledgerRecords(file: string): LedgerRecord[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as LedgerRecord);
}

/** Least-squares slope of y over x. */
export function slope(xs: readonly number[], ys: readonly number[]): number {
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

/** Collects unhandled rejections and uncaught exceptions of this process while installed. */
export function trapUnhandled(): { events: string[]; uninstall: () => void } {
  const events: string[] = [];
  const onRejection = (reason: unknown) => events.push(`unhandledRejection: ${reason instanceof Error ? reason.stack : String(reason)}`);
  const onException = (err: Error) => events.push(`uncaughtException: ${err.stack}`);
  process.on('unhandledRejection', onRejection);
  process.on('uncaughtException', onException);
  return {
    events,
    uninstall: () => {
      process.off('unhandledRejection', onRejection);
      process.off('uncaughtException', onException);
    },
  };
}
