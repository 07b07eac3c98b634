/**
 * The lifecycle every built-daemon test file needs: the simulators and the daemons a test
 * starts, and both stopped after each test whatever it did.
 */
import { afterEach } from 'vitest';
import { startSimulator, type Simulator, type SimulatorOptions } from '../../src/simulator/simulator.js';
import { API_KEY, CANARY_SECRET, TRX } from './account.js';
import { startDaemon, stop, type Child } from './daemon.js';

export function daemonHarness() {
  const sims: Simulator[] = [];
  const children: Child[] = [];
  afterEach(async () => {
    for (const c of children.splice(0)) await stop(c);
    for (const s of sims.splice(0)) await s.close();
  });
  return {
    /** The simulator with the canary credentials and a 20 EUR top-up; closed after the test. */
    simulator: async (opts: SimulatorOptions = {}) => {
      const s = await startSimulator({ apiKey: API_KEY, apiSecret: CANARY_SECRET, trx: TRX, topUpAmount: 20, ...opts });
      sims.push(s);
      return s;
    },
    /** The built daemon, started and healthy; stopped after the test. */
    daemon: async (env: Record<string, string>, cwd?: string) => {
      const c = await startDaemon(env, cwd);
      children.push(c);
      return c;
    },
    /** A child started some other way, stopped after the test too. */
    track: (c: Child) => {
      children.push(c);
      return c;
    },
  };
}
