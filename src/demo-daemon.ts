/**
 * What both demos do with the daemon: run the built daemon as a child process (exactly as
 * `npm start` runs it), stop it on Ctrl-C, SIGTERM or after DEMO_SECONDS, and once it has exited
 * let the demo tidy up and print what the simulator saw before exiting with the daemon's code.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** What both demos run the daemon with: a 2-second schedule, short timeouts, loopback only. */
export function demoSettings(stateDir: string, metricsPort: string): NodeJS.ProcessEnv {
  return {
    POLL_SCHEDULE: '*/2 * * * * *',
    HTTP_TIMEOUT: '2s',
    STATE_DIR: stateDir,
    METRICS_HOST: '127.0.0.1',
    METRICS_PORT: metricsPort,
    LOG_FORMAT: process.env.LOG_FORMAT ?? 'pretty',
  };
}

export function runDemoDaemon(options: { env: NodeJS.ProcessEnv; cwd?: string; onExit: () => Promise<void> }): void {
  const daemon = spawn(process.execPath, [fileURLToPath(new URL('./main.js', import.meta.url))], {
    stdio: 'inherit',
    env: options.env,
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
  });
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    daemon.kill('SIGTERM');
  };
  daemon.on('exit', async (code) => {
    await options.onExit();
    process.exit(code ?? 0);
  });
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  if (process.env.DEMO_SECONDS) setTimeout(stop, Number(process.env.DEMO_SECONDS) * 1000).unref();
}
