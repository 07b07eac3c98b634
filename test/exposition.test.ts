import fc from 'fast-check';
import { Counter, Gauge, Histogram, Registry, Summary } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { renderMetrics } from '../src/observe/exposition.js';
import { addAccount, addSubaccount, createMetrics, removeAccount } from '../src/observe/metrics.js';

// prom-client is the reference: every rendering must be byte for byte what registry.metrics()
// writes for the same registry at the same moment, including after values change, series go and
// come back, and label values hold the characters that need escaping.

/** Both renderings of a registry whose values cannot move between the two calls (no default metrics). */
async function both(registry: Registry) {
  return { ours: await renderMetrics(registry), theirs: await registry.metrics() };
}

const labelValue = fc.oneof(
  fc.string(),
  fc.constantFrom('', '"', '\\', '\n', 'a"b\\c\nd', 'é→€', '\\n', '""'),
);
const value = fc.oneof(fc.double(), fc.integer(), fc.constantFrom(0, -0, NaN, Infinity, -Infinity, 0.1, 1e21, 5e-324));

describe('renderMetrics: the Prometheus text exposition, as prom-client writes it', () => {
  it('matches prom-client for gauges, counters, histograms and summaries, with hostile label values and odd numbers', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ a: labelValue, b: labelValue, v: value, kind: fc.constantFrom('gauge', 'counter', 'histogram', 'summary') }), { maxLength: 30 }),
        fc.string({ minLength: 1 }),
        async (series, help) => {
          const registry = new Registry();
          const registers = [registry];
          const gauge = new Gauge({ name: 'g', help, labelNames: ['a', 'b'], registers });
          const counter = new Counter({ name: 'c_total', help: 'counter\nwith \\ newline', labelNames: ['a', 'b'], registers });
          const histogram = new Histogram({ name: 'h_seconds', help: 'h', labelNames: ['a'], buckets: [0.1, 1, 10], registers });
          const summary = new Summary({ name: 's', help: 's', labelNames: ['a'], percentiles: [0.5, 0.9], registers });
          new Gauge({ name: 'empty', help: 'no series', labelNames: ['a'], registers });
          new Gauge({ name: 'unlabelled', help: 'u', registers }).set(3);
          for (const s of series) {
            if (s.kind === 'gauge') gauge.set({ a: s.a, b: s.b }, s.v);
            else if (s.kind === 'counter' && Number.isFinite(s.v) && s.v >= 0) counter.inc({ a: s.a, b: s.b }, s.v);
            else if (s.kind === 'histogram' && Number.isFinite(s.v)) histogram.observe({ a: s.a }, s.v);
            else if (s.kind === 'summary' && Number.isFinite(s.v)) summary.observe({ a: s.a }, s.v);
          }
          const r = await both(registry);
          expect(r.ours).toBe(r.theirs);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('reuses nothing stale: after every change (set, inc, remove, re-add, reset) the next rendering matches prom-client again', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({ op: fc.constantFrom('set', 'inc', 'remove', 'reset', 'render'), key: fc.integer({ min: 0, max: 5 }), v: fc.oneof(fc.integer({ min: -5, max: 5 }), fc.double({ noNaN: true, noDefaultInfinity: true })) }),
          { minLength: 1, maxLength: 40 },
        ),
        async (ops) => {
          const registry = new Registry();
          const gauge = new Gauge({ name: 'g', help: 'g', labelNames: ['account'], registers: [registry] });
          const counter = new Counter({ name: 'c_total', help: 'c', labelNames: ['account'], registers: [registry] });
          for (const o of ops) {
            const labels = { account: `acct${o.key}` };
            if (o.op === 'set') gauge.set(labels, o.v);
            else if (o.op === 'inc') counter.inc(labels, Math.abs(o.v));
            else if (o.op === 'remove') {
              gauge.remove(labels);
              counter.remove(labels);
            } else if (o.op === 'reset') gauge.reset();
            const r = await both(registry);
            expect(r.ours).toBe(r.theirs);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('matches prom-client on the watchdog\'s own registry at fleet size, through adds, updates and removals', async () => {
    const registry = new Registry();
    const m = createMetrics(registry, [{ name: 'eu "prod"\\1', threshold: 25, maxPerDay: 3, topupEnabled: true, dryRun: false, subaccounts: {} }], '1.0.0');
    // Default metrics move between two calls (CPU, memory, event-loop lag): compare the rest.
    const own = (text: string) => text.split('\n\n').filter((block) => !/^# HELP (process_|nodejs_)/.test(block)).join('\n\n');
    const check = async () => {
      const r = await both(registry);
      expect(own(r.ours)).toBe(own(r.theirs));
      expect(own(r.ours)).toContain('vonage_balance_euros');
    };
    for (let i = 0; i < 300; i++) addSubaccount(m, { apiKey: `sub${i}`, name: `Sub\n${i}`, primary: 'eu "prod"\\1', shared: i % 7 === 0 });
    await check();
    for (let i = 0; i < 300; i += 3) m.balance.set({ account: `sub${i}` }, i / 3);
    m.requestDuration.observe({ account: 'eu "prod"\\1', endpoint: 'list_subaccounts' }, 0.2);
    await check();
    for (let i = 0; i < 300; i += 5) removeAccount(m, `sub${i}`);
    addAccount(m, { name: 'us', threshold: 5, maxPerDay: 1, topupEnabled: false, dryRun: true });
    await check();
    await check();
  });

  it('leaves registries it does not render exactly to prom-client: OpenMetrics, default labels', async () => {
    // Typed as the plain registry our code uses: renderMetrics must look at the content type at run time.
    const open = new (Registry as unknown as new (contentType: string) => Registry)(Registry.OPENMETRICS_CONTENT_TYPE);
    new Counter({ name: 'x_total', help: 'x', registers: [open] }).inc(2);
    expect(await renderMetrics(open)).toBe(await open.metrics());
    expect(await renderMetrics(open)).toContain('# EOF');

    const labelled = new Registry();
    labelled.setDefaultLabels({ instance: 'a"b' });
    new Gauge({ name: 'y', help: 'y', labelNames: ['account'], registers: [labelled] }).set({ account: 'z' }, 1);
    expect(await renderMetrics(labelled)).toBe(await labelled.metrics());
    expect(await renderMetrics(labelled)).toContain('instance="a\\"b"');
  });
});
