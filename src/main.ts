#!/usr/bin/env node
/**
 * Entry point. Exit codes: 0 done, 1 a `--once` cycle failed or the daemon crashed, 2 `--once`
 * found the balance below the threshold and sent nothing, 64 bad command line, 78 bad
 * configuration (EX_CONFIG, before anything is done).
 */
import dotenv from 'dotenv';
import { helpText, parseArgs } from './config/cli.js';
import { ConfigError, databasePassword, describeConfig, loadConfig, type Config } from './config/config.js';
import { buildParts, onceExitCode, reloader, settleLedgers, startDaemon } from './daemon.js';
import { scrub, secretForms } from './observe/log.js';

const EXIT_FAILED = 1;
const HANGUP_NOTE = 'SIGHUP received: a --once run does not reload its configuration; ignored';
const EXIT_USAGE = 64;
const EXIT_CONFIG = 78;

/** Secret forms to strip from a fatal message, once the configuration (and so the secrets) is known. */
let fatalForms: string[] = [];

function configOrExit(): Config {
  // quiet: dotenv would otherwise print a banner into what must stay pure JSON lines.
  dotenv.config({ quiet: true });
  try {
    return loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      // Warnings too: a misspelt optional name is often why a required one looks missing.
      const warnings = err.warnings.map((w) => `warning: ${w}\n`).join('');
      process.stderr.write(`vonage-reload-watchdog: invalid configuration, nothing was done:\n${err.problems.map((p) => `  ${p.variable}: ${p.message}`).join('\n')}\n${warnings}`);
      process.exit(EXIT_CONFIG);
    }
    throw err;
  }
}

async function main(): Promise<void> {
  const parsed = parseArgs(process.argv.slice(2));
  if ('error' in parsed) {
    process.stderr.write(`vonage-reload-watchdog: ${parsed.error}\nTry --help.\n`);
    process.exit(EXIT_USAGE);
  }
  const { command } = parsed;
  if (command === 'help') {
    process.stdout.write(helpText());
    return;
  }
  if (command === 'version') {
    const { VERSION } = await import('./version.js');
    process.stdout.write(`${VERSION}\n`);
    return;
  }

  const config = configOrExit();
  // Node's default for SIGHUP is to exit, which would cut an in-flight top-up short and turn a
  // known outcome into an unknown one: from here on it reloads the configuration (the daemon)
  // or is logged and ignored (--once, and while starting).
  let onHangup = () => {};
  process.on('SIGHUP', () => onHangup());
  fatalForms = secretForms([...config.accounts.flatMap((a) => [a.apiSecret, a.trx ?? '']), config.metrics.authToken ?? '', databasePassword(config) ?? ''], config.accounts.map((a) => a.apiKey));

  if (parsed.command === 'ledger') {
    const { runLedgerCommand } = await import('./ledger/ledger-cli.js');
    const forms = [...fatalForms, ...secretForms([databasePassword(config) ?? ''], [])];
    const code = await runLedgerCommand(config, parsed.ledger, { out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(scrub(t, forms)) });
    process.exitCode = code;
    return;
  }

  if (command === 'check-config') {
    // The daemon would learn only at start-up that it can keep no ledger there, and then never
    // top up: test STATE_DIR the way the ledger uses it.
    const { checkStateDir } = await import('./config/state-dir-check.js');
    // LEDGER=postgres keeps nothing there.
    const stateDir = config.ledger.kind === 'file' ? checkStateDir(config.stateDir) : { ok: true as const };
    if (!stateDir.ok) {
      process.stderr.write(`vonage-reload-watchdog: invalid configuration:\n  STATE_DIR: ${stateDir.problem}\n`);
      for (const w of config.warnings) process.stderr.write(`warning: ${w}\n`);
      process.exitCode = EXIT_CONFIG;
      return;
    }
    const described = describeConfig(config);
    const width = Math.max(...Object.keys(described).map((k) => k.length));
    process.stdout.write('configuration is valid; effective settings:\n');
    for (const [k, v] of Object.entries(described)) process.stdout.write(`  ${k.padEnd(width)}  ${v}\n`);
    for (const w of config.warnings) process.stdout.write(`warning: ${w}\n`);
    return;
  }

  if (command === 'once') {
    const parts = buildParts(config);
    onHangup = () => parts.log.warn(HANGUP_NOTE);
    await settleLedgers(parts);
    // For cron, a ledger that cannot be written means the run cannot do its job: say so and stop
    // before asking Vonage anything (unless only watching, where no ledger is needed).
    const blocked = parts.fleet.units.flatMap((u) => {
      const a = u.account;
      const view = u.ledger.view();
      const out = a.topupEnabled && !a.dryRun && !view.writable ? [`${a.name}: ${view.problem ?? 'the ledger cannot be written'}`] : [];
      const sub = a.subaccounts;
      const transfers = u.group?.ledger.view();
      if (sub && transfers && sub.refill === 'transfer' && sub.transfersEnabled && !sub.dryRun && !transfers.writable) out.push(`${a.name} (balance transfers): ${transfers.problem ?? 'the ledger cannot be written'}`);
      return out;
    });
    let code: number;
    if (blocked.length > 0) {
      await parts.closeLedgers();
      process.stderr.write(`vonage-reload-watchdog: --once cannot top up, nothing was done:\n${blocked.map((b) => `  ${scrub(b, fatalForms)}`).join('\n')}\n`);
      code = EXIT_FAILED;
    } else {
      const results = await parts.fleet.runCycle();
      await parts.closeLedgers();
      code = onceExitCode(results);
    }
    // Bounded: with stdout a pipe nobody reads, a pending write would keep the process alive.
    await new Promise<void>((resolve) => parts.log.flush(() => resolve()));
    process.exit(code);
  }

  // Signals are handled from the start: the wait for the STATE_DIR lock can take seconds, and a
  // SIGTERM then must still end in a clean stop (lock released), not Node's default exit.
  const starting = new AbortController();
  let stopWith: ((signal: string) => void) | undefined;
  const onStopSignal = (signal: string) => (stopWith ? stopWith(signal) : starting.abort(signal));
  process.on('SIGTERM', () => onStopSignal('SIGTERM'));
  process.on('SIGINT', () => onStopSignal('SIGINT'));
  const daemon = await startDaemon(config, { startSignal: starting.signal });
  const { log } = daemon;
  process.on('unhandledRejection', (reason) => {
    log.fatal({ problem: reason instanceof Error ? reason.message : String(reason) }, 'unhandled rejection; exiting');
    process.exit(1);
  });
  const shutdown = (signal: string) => {
    log.info({ signal }, 'signal received');
    // Flushing is bounded, so a reader that stopped reading cannot hold the exit.
    const exit = (code: number) => log.flush(() => process.exit(code));
    daemon.stop().then(
      () => exit(0),
      () => exit(1),
    );
  };
  // `on`, not `once` (above): a second signal during a graceful stop must not fall back to
  // Node's default and kill an in-flight top-up; stop() is idempotent.
  stopWith = shutdown;
  const reload = reloader(daemon, config, () => {
    const next = loadConfig(process.env);
    fatalForms = [...new Set([...fatalForms, ...secretForms([...next.accounts.flatMap((a) => [a.apiSecret, a.trx ?? '']), next.metrics.authToken ?? ''], next.accounts.map((a) => a.apiKey))])];
    return next;
  });
  onHangup = () => {
    log.info('SIGHUP received: reloading the configuration');
    void reload();
  };
  if (starting.signal.aborted) shutdown(String(starting.signal.reason));
}

// Every command ends with an explicit exit or return, and the daemon never lets the event loop
// empty. If it empties anyway, something awaited a promise nothing will settle: that must not
// pass for success (exit 0) in cron.
let finished = false;
process.on('beforeExit', () => {
  if (finished) return;
  process.stderr.write('vonage-reload-watchdog: fatal: stopped with nothing left to wait for, before finishing (a bug); nothing more was done\n');
  process.exit(EXIT_FAILED);
});

main().then(() => {
  finished = true;
}).catch((err: unknown) => {
  // Only our own messages, and scrubbed like every log line: a system error (getaddrinfo
  // ENOTFOUND <host>) quotes whatever it was given.
  const message = err instanceof Error ? err.message : 'unknown error';
  process.stderr.write(`vonage-reload-watchdog: fatal: ${scrub(message, fatalForms)}\n`);
  process.exit(EXIT_FAILED);
});
