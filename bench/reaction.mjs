// How long from the balance dropping below the threshold to the top-up request reaching Vonage,
// with a one-second POLL_SCHEDULE. The drop is made at random instants relative to the schedule.
import { quantile, sleep, startDaemon, startSimulator } from './common.mjs';

const RUNS = Number(process.env.RUNS ?? 20);
const sim = await startSimulator({ apiKey: 'demo-key', apiSecret: 'demo-secret', balance: 50, topUpAmount: 40 });
const daemon = await startDaemon(sim.url, { POLL_SCHEDULE: '* * * * * *', TOPUP_COOLDOWN: '1s', TOPUP_MAX_PER_DAY: '1000' });
const delays = [];
try {
  for (let i = 0; i < RUNS; i++) {
    await sleep(1200 + Math.random() * 1000);
    const before = sim.requests().filter((r) => r.endpoint === 'topup').length;
    const dropAt = Date.now();
    sim.setBalance(5);
    while (sim.requests().filter((r) => r.endpoint === 'topup').length === before) await sleep(5);
    const post = sim.requests().filter((r) => r.endpoint === 'topup')[before];
    delays.push(post.at - dropAt);
  }
} finally {
  daemon.proc.kill('SIGTERM');
  await sim.close();
}
delays.sort((a, b) => a - b);
const mean = delays.reduce((s, d) => s + d, 0) / delays.length;
console.log(`drop below threshold → top-up request, POLL_SCHEDULE="* * * * * *", ${RUNS} drops:`);
console.log(`  min ${delays[0]} ms   median ${quantile(delays, 0.5)} ms   mean ${mean.toFixed(0)} ms   p95 ${quantile(delays, 0.95)} ms   max ${delays.at(-1)} ms`);
