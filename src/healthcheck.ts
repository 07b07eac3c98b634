// Container HEALTHCHECK: `node dist/healthcheck.js` (exec form, so no shell and no curl in the image).
// GET /healthz on the daemon's own metrics server; exit 0 on 200, 1 on anything else.
// /healthz means "process and scheduler alive" and is never behind the bearer token, and it
// does not depend on Vonage being reachable, so a Vonage outage never restarts the container.
// Node built-ins only: this runs every 30 s and must not load the app or its dependencies.

const TIMEOUT_MS = 2000;
const DEFAULT_PORT = 8479;

function healthzUrl(env: NodeJS.ProcessEnv): string {
  const rawPort = (env.METRICS_PORT ?? '').trim();
  const parsed = /^\d+$/.test(rawPort) ? Number(rawPort) : NaN;
  const port = parsed >= 1 && parsed <= 65535 ? parsed : DEFAULT_PORT;

  // A wildcard bind address is not something to connect to: use IPv4 loopback.
  // (With `::` Linux accepts IPv4 too unless bindv6only is set.)
  let host = (env.METRICS_HOST ?? '').trim();
  if (host === '' || host === '0.0.0.0' || host === '::' || host === '[::]') host = '127.0.0.1';
  if (host.includes(':') && !host.startsWith('[')) host = `[${host}]`;
  return `http://${host}:${port}/healthz`;
}

async function check(url: string, timeoutMs = TIMEOUT_MS): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), redirect: 'error' });
    // Drain the body so the socket is released before we exit.
    await res.arrayBuffer().catch(() => undefined);
    return res.status === 200;
  } catch {
    return false;
  }
}

const ok = await check(healthzUrl(process.env));
process.exit(ok ? 0 : 1);
