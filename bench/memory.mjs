// Resident memory of the daemon after 60 s idle (default schedule: one poll a minute), read from
// /proc like `ps` would, plus the V8 heap it reports in its own metrics.
import { readFileSync } from 'node:fs';
import { sleep, startDaemon, startSimulator } from './common.mjs';

const IDLE_S = Number(process.env.IDLE_SECONDS ?? 60);
const sim = await startSimulator({ apiKey: 'demo-key', apiSecret: 'demo-secret', balance: 50 });
const daemon = await startDaemon(sim.url);
const rssKiB = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${daemon.proc.pid}/status`, 'utf8'))[1]);
try {
  const atStart = rssKiB();
  await sleep(IDLE_S * 1000);
  const after = rssKiB();
  const metrics = await (await fetch(`${daemon.url}/metrics`)).text();
  const heap = Number(/^nodejs_heap_size_used_bytes (\S+)$/m.exec(metrics)[1]);
  console.log(`daemon resident memory: ${(atStart / 1024).toFixed(1)} MiB after start, ${(after / 1024).toFixed(1)} MiB after ${IDLE_S} s idle; V8 heap used ${(heap / 2 ** 20).toFixed(1)} MiB`);
} finally {
  daemon.proc.kill('SIGTERM');
  await sim.close();
}
