/** Command-line parsing and the help text. */
import { CONFIG_VARIABLES } from './config.js';
import { VERSION } from '../version.js';

import { parseLedgerArgs, type LedgerCommand } from '../ledger/ledger-cli.js';

export type Command = 'daemon' | 'once' | 'check-config' | 'help' | 'version' | 'ledger';

export function parseArgs(argv: readonly string[]): { command: Exclude<Command, 'ledger'> } | { command: 'ledger'; ledger: LedgerCommand } | { error: string } {
  if (argv[0] === 'ledger') {
    const ledger = parseLedgerArgs(argv.slice(1));
    return 'error' in ledger ? ledger : { command: 'ledger', ledger };
  }
  const flags: Record<string, Exclude<Command, 'ledger'>> = { '--once': 'once', '--check-config': 'check-config', '--help': 'help', '-h': 'help', '--version': 'version' };
  let command: Exclude<Command, 'ledger'> = 'daemon';
  for (const arg of argv) {
    const c = flags[arg];
    if (!c) return { error: `unknown argument: ${arg.slice(0, 40)}` };
    if (command !== 'daemon' && command !== c) return { error: `${arg} cannot be combined with --${command}` };
    command = c;
  }
  return { command };
}

export function helpText(): string {
  const width = Math.max(...CONFIG_VARIABLES.map((v) => v.name.length)) + 2;
  const vars = CONFIG_VARIABLES.map((v) => {
    const name = `${v.name}${v.fileVariant ? ' (or _FILE)' : ''}`;
    return `  ${name.padEnd(width + 11)} ${v.description}${v.default ? ` [default: ${v.default}]` : ''}`;
  }).join('\n');
  return `vonage-reload-watchdog ${VERSION}
Keeps a Vonage (Nexmo) account from running out of credit: polls the balance, tops it up
through POST /account/top-up at most once per cooldown, and exports Prometheus metrics.

Usage:
  node dist/main.js                  run the daemon
  node dist/main.js --once           run one poll-decide-act cycle, then exit (for cron)
  node dist/main.js --check-config   validate the configuration, test that STATE_DIR is
                                     writable, and print every setting (secrets masked)
  node dist/main.js --help           this text
  node dist/main.js ledger migrate [--dry-run]
                                     create or upgrade the PostgreSQL ledger's schema (as every
                                     replica does at start-up); --dry-run prints the SQL
  node dist/main.js ledger export [--format csv|jsonl]
                                     every refill attempt, for audits, to stdout (either ledger)
  node dist/main.js ledger import    copy the file ledger in STATE_DIR into PostgreSQL
                                     (LEDGER=postgres), keeping cooldowns and caps; idempotent

Exit codes:
  0   done; for --once: the balance was read and is above the threshold, or a top-up succeeded
  1   --once: a poll, a top-up or a transfer failed, or its outcome is unknown; the daemon crashed
  2   --once: a balance is below its threshold and no refill was sent (skipped: cooldown,
      daily cap, disabled, dry run, ledger unavailable, auto-reload off, primary reserve,
      transfer cap, suspended)
  64  bad command line
  78  bad configuration (also: --check-config found STATE_DIR unusable); nothing was sent

Configuration comes from the environment; a .env file in the working directory is read when
present, and the real environment wins. An unknown VONAGE_*, TOPUP_*, POLL_*, METRICS_* or LOG_*
variable (a misspelt name) draws a warning naming the closest known one.

Environment:
${vars}

Endpoints (METRICS_HOST:METRICS_PORT): /metrics  /healthz  /readyz  /status
`;
}
