// Reproducer for a slow leak found by the soak: run with `node --expose-gc`, SIM_URL pointing at a
// simulator in the parent process (so its request log is not in this heap). It measures the heap
// that balance requests through the built client (dist/vonage/account-client.js) leave behind after forced
// GC, either without a signal (MODE=none) or with one long-lived signal (MODE=long_lived), like the
// scheduler's: src/cycle/scheduler.ts creates one AbortController and passes its signal to every cycle
// until shutdown. Rounds of requests, heap after each; the slope over the later rounds is reported
// (the first rounds are JIT and pool warm-up).
import { resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
const { createVonageClient } = await import(pathToFileURL(resolve(here, '../../../dist/vonage/account-client.js')).href);

const PER_ROUND = Number(process.env.PER_ROUND ?? 600);
const ROUNDS = Number(process.env.ROUNDS ?? 7);
const MEASURED = 4;
const client = createVonageClient({
  account: { apiKey: process.env.API_KEY, apiSecret: process.env.API_SECRET, baseUrl: process.env.SIM_URL, auth: 'basic' },
  // Short, so that no per-request deadline timer is still pending when the heap is measured.
  timeoutMs: 250,
});
const signal = process.env.MODE === 'long_lived' ? new AbortController().signal : undefined;

async function settledHeap() {
  await delay(350);
  for (let i = 0; i < 5; i++) {
    globalThis.gc();
    await delay(10);
  }
  return process.memoryUsage().heapUsed;
}

const heaps = [];
for (let r = 0; r < ROUNDS; r++) {
  for (let i = 0; i < PER_ROUND; i++) await client.getBalance(signal);
  heaps.push(await settledHeap());
}
const first = heaps[ROUNDS - MEASURED];
const last = heaps[ROUNDS - 1];
process.send({ mode: process.env.MODE, bytesPerRequest: (last - first) / ((MEASURED - 1) * PER_ROUND), heapsKB: heaps.map((h) => Math.round(h / 1024)), node: process.version });
process.disconnect();
