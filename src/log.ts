/**
 * The pino logger. JSON lines on stdout by default; `pretty` for humans (synchronous, no worker
 * thread, so nothing is lost at exit).
 *
 * Secrets are kept out by construction (only VonageError is logged, never an upstream error).
 * As a last line of defence every line is scrubbed of each secret in the forms it could take:
 * raw, JSON-escaped, URL-encoded, and inside the base64 of the Basic header.
 */
import { createRequire } from 'node:module';
import { pino, type Logger, type DestinationStream } from 'pino';

// Loaded only when asked for: the JSON path should not pay for the pretty-printer's memory.
const loadPretty = () => createRequire(import.meta.url)('pino-pretty') as typeof import('pino-pretty');

export type { Logger };

export interface LogOptions {
  level: string;
  format: 'json' | 'pretty';
  /** Values that must never be written, and the API key they pair with in a Basic header. */
  secrets?: readonly string[];
  apiKeys?: readonly string[];
}

const REDACTED = '[REDACTED]';

/** Every encoding in which a secret could appear in a log line or HTTP artefact. */
export function secretForms(secrets: readonly string[], apiKeys: readonly string[] = []): string[] {
  const forms = new Set<string>();
  for (const s of secrets) {
    if (s.length < 4) continue; // too short to scrub without mangling ordinary text
    forms.add(s);
    forms.add(JSON.stringify(s).slice(1, -1));
    forms.add(encodeURIComponent(s));
    forms.add(new URLSearchParams({ s }).toString().slice(2));
    forms.add(Buffer.from(s).toString('base64'));
    for (const key of apiKeys) forms.add(Buffer.from(`${key}:${s}`).toString('base64'));
  }
  // Longest first, so a form containing another is replaced whole.
  return [...forms].filter((f) => f.length >= 4).sort((a, b) => b.length - a.length);
}

export function scrub(text: string, forms: readonly string[]): string {
  let out = text;
  for (const f of forms) if (out.includes(f)) out = out.split(f).join(REDACTED);
  return out;
}

export function createLogger(options: LogOptions, destination?: DestinationStream): Logger {
  const forms = secretForms(options.secrets ?? [], options.apiKeys ?? []);
  const stream: DestinationStream =
    destination ??
    (options.format === 'pretty'
      ? loadPretty()({ sync: true, colorize: process.stdout.isTTY === true, translateTime: 'SYS:standard', ignore: 'pid,hostname' })
      : pino.destination({ dest: 1, sync: true }));
  return pino(
    {
      level: options.level,
      base: { service: 'vonage-reload-watchdog' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: {
        paths: ['apiSecret', '*.apiSecret', 'trx', '*.trx', 'authToken', '*.authToken', 'headers.authorization', 'headers.Authorization', 'err.config', 'err.request', 'err.response'],
        censor: REDACTED,
      },
      hooks: forms.length > 0 ? { streamWrite: (line: string) => scrub(line, forms) } : {},
    },
    stream,
  );
}
