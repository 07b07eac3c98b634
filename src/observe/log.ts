/**
 * The pino logger. JSON lines on stdout by default; `pretty` for humans.
 *
 * Logging must never stop the money path. A blocking write to a pipe nobody reads (a stalled log
 * collector) would freeze the event loop: no polls, no health answers, no SIGTERM. So stdout is
 * written through a bounded, asynchronous writer: when the reader falls behind by more than
 * MAX_PENDING_LOG_BYTES, further lines are dropped and counted (`onDrop`), never waited for.
 *
 * Secrets are kept out by construction (only VonageError is logged, never an upstream error).
 * As a last line of defence every line is scrubbed of each secret in the forms it could take:
 * raw, JSON-escaped, URL-encoded, and inside the base64 of the Basic header.
 */
import { createRequire } from 'node:module';
import type { Writable } from 'node:stream';
import { isatty } from 'node:tty';
import { pino, type Logger, type DestinationStream } from 'pino';
import { VonageError } from '../vonage/errors.js';

// Loaded only when asked for: the JSON path should not pay for the pretty-printer's memory.
const loadPretty = () => createRequire(import.meta.url)('pino-pretty') as typeof import('pino-pretty');

export type { Logger };

export interface LogOptions {
  level: string;
  format: 'json' | 'pretty';
  /** Values that must never be written, and the API key they pair with in a Basic header. */
  secrets?: readonly string[];
  apiKeys?: readonly string[];
  /** Told of every line dropped because the output was not being read fast enough. */
  onDrop?: (lines: number) => void;
  /** Where the bounded writer writes; process.stdout unless a test gives another stream. */
  output?: Writable;
}

/**
 * What is held for a slow reader on top of the kernel's pipe buffer (64 KiB on Linux): at the
 * default schedule about an hour of ordinary lines, or a burst of some 50; a reader stalled for
 * longer gets the newest lines dropped and counted instead of the process stalling with it.
 */
export const MAX_PENDING_LOG_BYTES = 16 * 1024;
/** The longest `flush` waits for a reader before giving up (at exit: never hang on a full pipe). */
export const FLUSH_BOUND_MS = 500;

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

export interface BoundedOutputOptions {
  maxPendingBytes?: number;
  flushBoundMs?: number;
  onDrop?: (lines: number) => void;
  /** Applied to each line before it is measured and written (the pretty-printer). */
  format?: (line: string) => string;
}

export interface BoundedOutput extends DestinationStream {
  write(line: string): void;
  /** Calls back once everything accepted is written, or after the flush bound, whichever is first. */
  flush(cb: (err?: Error) => void): void;
}

/**
 * A destination that never blocks and never grows without bound.
 *
 * For a pipe or socket, Node's process.stdout puts the descriptor in non-blocking mode and lets
 * libuv write when the reader makes room; `writableLength` is then what the reader has not taken
 * yet. (pino.destination cannot be used here: its synchronous mode blocks in write(2), its
 * asynchronous mode parks a thread-pool thread in write(2) on a blocking descriptor, which also
 * makes process.exit wait forever, and its exit hook flushes synchronously, without a bound.)
 * Files and terminals are written synchronously by Node, as before; they do not stall for long.
 */
export function boundedOutput(out: Writable, options: BoundedOutputOptions = {}): BoundedOutput {
  const max = options.maxPendingBytes ?? MAX_PENDING_LOG_BYTES;
  const flushBoundMs = options.flushBoundMs ?? FLUSH_BOUND_MS;
  let broken = false;
  let pending = 0;
  const idle: (() => void)[] = [];
  const drop = () => options.onDrop?.(1);
  const written = () => {
    pending--;
    if (pending === 0) for (const cb of idle.splice(0)) cb();
  };
  // EPIPE and the like: the reader is gone for good. Without a listener the error would crash
  // the process; with one, every later line is dropped and counted.
  out.on('error', () => {
    broken = true;
    for (const cb of idle.splice(0)) cb();
  });
  return {
    write(line: string) {
      const text = options.format ? options.format(line) : line;
      if (broken || (out.writableLength > 0 && out.writableLength + Buffer.byteLength(text) > max)) return drop();
      pending++;
      try {
        out.write(text, written);
      } catch {
        // A synchronous stream (a file on a full disk) throws from write; the line is lost, not the cycle.
        pending--;
        drop();
      }
    },
    flush(cb) {
      if (broken || pending === 0) return cb();
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        cb();
      };
      const timer = setTimeout(finish, flushBoundMs);
      timer.unref();
      idle.push(finish);
    },
  };
}

/**
 * Expected failures are VonageErrors: their own fields say everything, and a stack trace would
 * turn one line per failed poll into twenty. Anything else is a bug and keeps its stack.
 */
function serializeErr(err: unknown): unknown {
  return err instanceof VonageError ? err.toJSON() : pino.stdSerializers.err(err as Error);
}

/**
 * @param destination a test's sink: receives the scrubbed JSON lines as they are, unbounded and
 *   unformatted. Without it, lines go through the bounded writer to `options.output` (stdout).
 */
export function createLogger(options: LogOptions, destination?: DestinationStream): Logger {
  let forms = secretForms(options.secrets ?? [], options.apiKeys ?? []);
  const out = options.output ?? process.stdout;
  const stream: DestinationStream =
    destination ??
    boundedOutput(out, {
      onDrop: options.onDrop,
      format:
        options.format === 'pretty'
          ? loadPretty().prettyFactory({
              // isatty, not process.stdout.isTTY: the question is about the descriptor, and tests give other streams.
              colorize: out === process.stdout && isatty(1),
              translateTime: 'SYS:standard',
              ignore: 'pid,hostname',
            })
          : undefined,
    });
  const logger = pino(
    {
      level: options.level,
      base: { service: 'vonage-reload-watchdog' },
      timestamp: pino.stdTimeFunctions.isoTime,
      serializers: { err: serializeErr },
      redact: {
        paths: ['apiSecret', '*.apiSecret', 'trx', '*.trx', 'authToken', '*.authToken', 'headers.authorization', 'headers.Authorization', 'err.config', 'err.request', 'err.response'],
        censor: REDACTED,
      },
      // Installed even with no secret yet: a reload (SIGHUP) may bring some (addLogSecrets).
      hooks: { streamWrite: (line: string) => (forms.length > 0 ? scrub(line, forms) : line) },
    },
    stream,
  );
  scrubbers.set(logger, (secrets, apiKeys) => {
    forms = [...new Set([...forms, ...secretForms(secrets, apiKeys)])].sort((a, b) => b.length - a.length);
  });
  return logger;
}

const scrubbers = new WeakMap<Logger, (secrets: readonly string[], apiKeys: readonly string[]) => void>();

/**
 * Secrets learnt after start-up (a reloaded fleet file) are scrubbed from then on, by the logger
 * and every child of it. Secrets it had stay scrubbed: an old one may still be in flight.
 */
export function addLogSecrets(logger: Logger, secrets: readonly string[], apiKeys: readonly string[]): void {
  scrubbers.get(logger)?.(secrets, apiKeys);
}
