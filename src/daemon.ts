/**
 * The composition root: builds every part from the configuration and injected edges (clock,
 * sleep, log destination), starts the scheduler and the HTTP server, and stops them in order.
 */
import type { AddressInfo } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import type { DestinationStream } from 'pino';
import { Registry } from 'prom-client';
import type { Config } from './config.js';
import { createHttpServer, type Probe } from './http-server.js';
import { Ledger } from './ledger.js';
import { createLogger, type Logger } from './log.js';
import { createMetrics, type Metrics } from './metrics.js';
import { createScheduler, type Scheduler } from './scheduler.js';
import { VERSION } from './version.js';
import { createVonageClient } from './vonage-client.js';
import { Watchdog } from './watchdog.js';

export interface DaemonDeps {
  now?: () => number;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  logDestination?: DestinationStream;
  log?: Logger;
  /** Run the first cycle at start-up (default). Tests that drive every tick themselves turn it off. */
  pollAtStart?: boolean;
}

export interface Parts {
  log: Logger;
  metrics: Metrics;
  watchdogs: Watchdog[];
  ledgers: Ledger[];
  now: () => number;
}

const BALANCE_ATTEMPTS = 3;

/** Sleep that an abort cuts short, so shutdown never waits out a backoff. */
const abortableSleep = (ms: number, signal?: AbortSignal) => delay(ms, undefined, signal ? { signal } : undefined);

export function buildParts(config: Config, deps: DaemonDeps = {}): Parts {
  const now = deps.now ?? Date.now;
  const log =
    deps.log ??
    createLogger(
      {
        level: config.log.level,
        format: config.log.format,
        secrets: [...config.accounts.flatMap((a) => [a.apiSecret, a.trx ?? '']), config.metrics.authToken ?? ''],
        apiKeys: config.accounts.map((a) => a.apiKey),
      },
      deps.logDestination,
    );
  const metrics = createMetrics(new Registry(), config.accounts, VERSION);
  const ledgers: Ledger[] = [];
  const watchdogs = config.accounts.map((account) => {
    const ledger = Ledger.open(config.stateDir, account.name, now);
    ledgers.push(ledger);
    const view = ledger.view();
    if (!view.writable) log.error({ account: account.name, problem: view.problem }, 'top-ups are DISABLED until the ledger is writable; watching and reporting continue');
    const client = createVonageClient({
      account,
      timeoutMs: config.httpTimeoutMs,
      now,
      observe: (endpoint, seconds) => metrics.requestDuration.observe({ account: account.name, endpoint }, seconds),
    });
    return new Watchdog({ account, client, ledger, metrics, log, now, sleep: deps.sleep ?? abortableSleep, httpTimeoutMs: config.httpTimeoutMs, balanceAttempts: BALANCE_ATTEMPTS });
  });
  for (const w of config.warnings) log.warn(w);
  return { log, metrics, watchdogs, ledgers, now };
}

export interface Daemon extends Parts {
  url: string;
  port: number;
  scheduler: Scheduler;
  stop(): Promise<void>;
}

/** The longest a healthy cycle can take: every balance try timing out, plus backoff and a top-up. */
export function cycleBoundMs(httpTimeoutMs: number): number {
  return (BALANCE_ATTEMPTS + 1) * httpTimeoutMs + 2 * 10_000;
}

/** How long SIGTERM waits for an in-flight cycle: inside Docker's default 10 s stop timeout. */
export function shutdownBoundMs(httpTimeoutMs: number): number {
  return Math.min(Math.max(httpTimeoutMs + 1000, 1000), 8000);
}

export async function startDaemon(config: Config, deps: DaemonDeps = {}): Promise<Daemon> {
  const parts = buildParts(config, deps);
  const { log, metrics, watchdogs, ledgers, now } = parts;

  const scheduler = createScheduler({
    expression: config.pollSchedule,
    log,
    now,
    run: async (signal) => {
      await Promise.all(watchdogs.map((w) => w.runCycle(signal)));
    },
  });
  const staleAfterMs = 2 * scheduler.intervalMs + cycleBoundMs(config.httpTimeoutMs);

  const health = (): Probe => scheduler.health(staleAfterMs);
  const ready = (): Probe => {
    for (const w of watchdogs) {
      if (w.lastSuccessAt === undefined) return { ok: false, reason: `${w.name}: no successful balance poll yet` };
      if (!w.lastPollOk) return { ok: false, reason: `${w.name}: the latest balance poll failed` };
      const age = now() - w.lastSuccessAt;
      if (age > staleAfterMs) return { ok: false, reason: `${w.name}: last successful poll is ${Math.round(age / 1000)}s old` };
    }
    return { ok: true };
  };
  const server = createHttpServer({
    registry: metrics.registry,
    health,
    ready,
    authToken: config.metrics.authToken,
    log,
    status: () => {
      const next = scheduler.nextRun();
      const nextPoll = next ? next.toISOString() : null;
      return {
        service: 'vonage-reload-watchdog',
        version: VERSION,
        now: new Date(now()).toISOString(),
        nextPoll,
        accounts: watchdogs.map((w) => ({ ...w.status(), nextPoll })),
      };
    },
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.metrics.port, config.metrics.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const host = config.metrics.host.includes(':') ? `[${config.metrics.host}]` : config.metrics.host;
  const url = `http://${host}:${port}`;
  scheduler.start();
  log.info({ url, schedule: config.pollSchedule, accounts: watchdogs.map((w) => w.name), version: VERSION }, 'watchdog started');
  // Poll once now rather than at the schedule's first slot (up to a minute away by default): a
  // restarted watchdog must see a low balance at once, and /readyz should not wait for the clock.
  // The overlap guard keeps it from running beside the first scheduled tick; the ledger keeps a
  // restart loop from topping up more than the cooldown allows.
  if (deps.pollAtStart !== false) void scheduler.tick();

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      log.info('stopping: no new polls');
      const finished = await scheduler.stop(shutdownBoundMs(config.httpTimeoutMs));
      if (!finished) log.warn('in-flight cycle did not finish within the shutdown bound; any top-up it sent is in the ledger');
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      for (const l of ledgers) l.close();
      log.info('stopped');
    })());

  return { ...parts, url, port, scheduler, stop };
}
