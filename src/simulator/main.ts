// `npm run simulator`: the Vonage simulator as a standalone process, configured from SIM_* env.
import { SIM_ENDPOINTS, describeFaultKinds, startSimulator, type SimRequestRecord, type SimSubaccountInit, type SimulatorOptions } from './simulator.js';

const HELP = `vonage simulator: a local stand-in for rest.nexmo.com balance and top-up, and for
api.nexmo.com's subaccount list and balance transfers (the primary is SIM_API_KEY)

Environment (all optional):
  SIM_HOST              listen address (default 127.0.0.1; use 0.0.0.0 in a container)
  SIM_PORT              listen port, 0 for any free port (default 8480)
  SIM_API_KEY           accepted API key (default demo-key)
  SIM_API_SECRET        accepted API secret (default demo-secret)
  SIM_TRX               accepted top-up transaction reference (default 8ef2447e69604f642ae59363aa5f781b)
  SIM_BALANCE           starting balance in EUR (default 12.5)
  SIM_AUTO_RELOAD       true or false (default true)
  SIM_DRAIN_PER_SECOND  EUR spent per second (default 0)
  SIM_TOPUP_AMOUNT      EUR added by each top-up (default 20)
  SIM_APPLIED_LOG       file to append one JSON line per applied top-up
  SIM_SUBACCOUNTS       subaccounts of the primary: key=balance[:suspended],... where balance
                        is EUR or "shared" (spends the primary's balance), e.g. a1=5,b2=shared
  SIM_SUBACCOUNTS_PROVISIONED  false: the Subaccounts API answers 403 unprovisioned (default true)
  SIM_APPLIED_TRANSFERS_LOG    file to append one JSON line per applied balance transfer

Control API (loopback clients only): GET/POST /_sim/state, POST/DELETE /_sim/faults,
GET /_sim/requests, GET /_sim/topups, GET/POST /_sim/subaccounts, GET /_sim/transfers.

Fault kinds, for POST /_sim/faults {"kind": ..., "endpoint": ${SIM_ENDPOINTS.map((e) => `"${e}"`).join('|')}|"both", "count": N}:
${describeFaultKinds()}
`;

type Env = Record<string, string | undefined>;

function parseEnv(env: Env): { options: SimulatorOptions; problems: string[] } {
  const problems: string[] = [];
  // Compose files often pass unset variables through as empty strings; those mean "default".
  const get = (name: string): string | undefined => {
    const value = env[name]?.trim();
    return value === '' ? undefined : value;
  };
  const number = (name: string, check: (n: number) => boolean, rule: string): number | undefined => {
    const raw = get(name);
    if (raw === undefined) return undefined;
    const value = Number(raw);
    if (!Number.isFinite(value) || !check(value)) {
      problems.push(`${name} must be ${rule}, got ${JSON.stringify(raw)}`);
      return undefined;
    }
    return value;
  };

  const options: SimulatorOptions = {
    host: get('SIM_HOST') ?? '127.0.0.1',
    port: number('SIM_PORT', (n) => Number.isInteger(n) && n >= 0 && n <= 65535, 'an integer from 0 to 65535') ?? 8480,
    apiKey: get('SIM_API_KEY'),
    apiSecret: get('SIM_API_SECRET'),
    trx: get('SIM_TRX'),
    balance: number('SIM_BALANCE', (n) => n >= 0, 'a number >= 0'),
    drainPerSecond: number('SIM_DRAIN_PER_SECOND', (n) => n >= 0, 'a number >= 0'),
    topUpAmount: number('SIM_TOPUP_AMOUNT', (n) => n > 0, 'a number > 0'),
    appliedLogPath: get('SIM_APPLIED_LOG'),
  };
  const subaccounts = get('SIM_SUBACCOUNTS');
  if (subaccounts !== undefined) {
    const parsed = parseSubaccounts(subaccounts);
    if (typeof parsed === 'string') problems.push(`SIM_SUBACCOUNTS ${parsed}`);
    else options.subaccounts = parsed;
  }
  const provisioned = get('SIM_SUBACCOUNTS_PROVISIONED')?.toLowerCase();
  if (provisioned === 'true' || provisioned === 'false') options.subaccountsProvisioned = provisioned === 'true';
  else if (provisioned !== undefined) problems.push(`SIM_SUBACCOUNTS_PROVISIONED must be true or false, got ${JSON.stringify(provisioned)}`);
  const transfersLog = get('SIM_APPLIED_TRANSFERS_LOG');
  if (transfersLog !== undefined) options.appliedTransfersLogPath = transfersLog;
  const autoReload = get('SIM_AUTO_RELOAD')?.toLowerCase();
  if (autoReload === 'true' || autoReload === 'false') options.autoReload = autoReload === 'true';
  else if (autoReload !== undefined) problems.push(`SIM_AUTO_RELOAD must be true or false, got ${JSON.stringify(autoReload)}`);
  return { options, problems };
}

/** `a1=5,b2=shared,c3=0:suspended` → the subaccounts, or what is wrong with it. */
function parseSubaccounts(text: string): SimSubaccountInit[] | string {
  const out: SimSubaccountInit[] = [];
  for (const item of text.split(',').map((part) => part.trim()).filter((part) => part !== '')) {
    const match = /^([A-Za-z0-9_-]{1,64})=([^:]+)(:suspended)?$/.exec(item);
    if (!match) return `must be key=balance[:suspended],..., got ${JSON.stringify(item)}`;
    const [, apiKey, rawBalance, suspended] = match;
    const balance = rawBalance === 'shared' ? null : Number(rawBalance);
    if (balance !== null && (!Number.isFinite(balance) || balance < 0)) return `balance of ${apiKey} must be a number >= 0 or "shared", got ${JSON.stringify(rawBalance)}`;
    if (out.some((s) => s.apiKey === apiKey)) return `lists ${apiKey} twice`;
    out.push({ apiKey: apiKey!, balance, suspended: suspended !== undefined });
  }
  return out;
}

// Deliberately leaves out the query string, headers and body: they carry the API secret and trx.
function logRequest(record: SimRequestRecord): void {
  console.log(
    JSON.stringify({
      msg: 'request',
      method: record.method,
      path: record.path,
      endpoint: record.endpoint,
      status: record.status,
      requestId: record.requestId,
    }),
  );
}

async function main(argv: string[], env: Env): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(HELP);
    return 0;
  }
  if (argv.length > 0) {
    console.error(`unknown argument ${JSON.stringify(argv[0])}; configure the simulator with SIM_* env (see --help)`);
    return 2;
  }
  const { options, problems } = parseEnv(env);
  if (problems.length > 0) {
    console.error(`invalid simulator configuration:\n  ${problems.join('\n  ')}`);
    return 2;
  }

  const sim = await startSimulator({ ...options, onRequest: logRequest });
  console.log(JSON.stringify({ msg: 'vonage simulator listening', url: sim.url }));
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  await sim.close();
  return 0;
}

main(process.argv.slice(2), process.env).then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`vonage simulator failed: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
