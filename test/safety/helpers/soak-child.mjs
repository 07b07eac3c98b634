// The soak's daemon process: the built daemon (dist/daemon.js, the same startDaemon as
// `npm start`) in a child started with `node --expose-gc`, driven over IPC by
// test/safety/soak.test.ts. Its clock is the simulated one the parent sends with every tick;
// its backoff sleeps are shortened (the parent checks nothing about backoff here). Everything
// else is the real daemon: config, HTTP client, ledger with fsync, metrics, HTTP server, logs
// (JSON lines on stdout, which the parent keeps for the canary sweep).
import { readdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
const dist = resolve(here, '../../../dist');
const { loadConfig } = await import(pathToFileURL(`${dist}/config/config.js`).href);
const { startDaemon, cycleBoundMs } = await import(pathToFileURL(`${dist}/daemon.js`).href);

if (typeof globalThis.gc !== 'function') {
  process.send({ type: 'fatal', message: 'run me with node --expose-gc' });
  process.exit(2);
}

let unhandled = 0;
process.on('unhandledRejection', () => {
  unhandled += 1;
});
process.on('uncaughtException', () => {
  unhandled += 1;
});

let simNow = Number(process.env.SOAK_T0);
const config = loadConfig(process.env);
const daemon = await startDaemon(config, {
  now: () => simNow,
  sleep: (ms, signal) => delay(Math.min(ms, 2), undefined, signal ? { signal } : undefined),
});

async function sample() {
  // Several passes, with turns of the event loop between them, so finalizers and weak callbacks run.
  for (let i = 0; i < 4; i++) {
    globalThis.gc();
    await delay(5);
  }
  const m = process.memoryUsage();
  return { heapUsed: m.heapUsed, rss: m.rss, external: m.external, fds: readdirSync('/proc/self/fd').length, unhandled };
}

process.on('message', async (msg) => {
  try {
    if (msg.cmd === 'tick') {
      simNow = msg.now;
      const t = performance.now();
      const result = await daemon.scheduler.tick();
      process.send({ id: msg.id, result, ms: performance.now() - t });
    } else if (msg.cmd === 'sample') {
      process.send({ id: msg.id, ...(await sample()) });
    } else if (msg.cmd === 'stop') {
      await daemon.stop();
      process.send({ id: msg.id, unhandled });
      process.disconnect();
    }
  } catch (err) {
    process.send({ id: msg.id, error: err instanceof Error ? err.message : String(err) });
  }
});

process.send({ type: 'ready', url: daemon.url, boundMs: cycleBoundMs(config.httpTimeoutMs) });
