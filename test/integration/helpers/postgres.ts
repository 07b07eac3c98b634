/**
 * A real PostgreSQL server for a test: initdb into a temporary directory and `postgres` on a
 * random loopback port, run as the unprivileged `postgres` user when the test runs as root (initdb
 * refuses root). Password authentication over TCP, so the URL carries a secret as a user's would.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, waitFor } from '../../helpers/daemon.js';
import { requirePostgres } from './system.js';

export interface Postgres {
  url: string;
  password: string;
  port: number;
  /** Stops the server (fast shutdown: sessions are cut), keeping its data. */
  halt(): Promise<void>;
  /** Starts it again on the same port and data. */
  resume(): Promise<void>;
  /** SQL as the superuser, over the Unix socket (works whatever the test did to TCP sessions). */
  sql(query: string): string;
  stop(): Promise<void>;
}

const PASSWORD = 'CANARY-pg-pw-7f3a';

export async function startPostgres(): Promise<Postgres> {
  const bin = requirePostgres();
  const root = process.getuid?.() === 0;
  const dir = mkdtempSync(join(tmpdir(), 'vrw-pg-'));
  const data = join(dir, 'data');
  const pwfile = join(dir, 'pw');
  writeFileSync(pwfile, `${PASSWORD}\n`);
  let uid: number | undefined;
  let gid: number | undefined;
  if (root) {
    uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    chownSync(dir, uid, gid);
    chownSync(pwfile, uid, gid);
  }
  chmodSync(dir, 0o700);
  const as = root ? { uid: uid!, gid: gid! } : {};
  execFileSync(join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '--auth-local=trust', '--auth-host=scram-sha-256', `--pwfile=${pwfile}`, '-E', 'UTF8', '--no-sync'], { ...as, stdio: 'pipe', cwd: dir });
  const port = await freePort();
  let proc: ChildProcess | undefined;
  let log = '';
  const launch = async () => {
    log = '';
    const p = spawn(join(bin, 'postgres'), ['-D', data, '-k', dir, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off', '-c', 'max_connections=200'], { ...as, stdio: ['ignore', 'pipe', 'pipe'], cwd: dir });
    p.stdout!.on('data', (d: Buffer) => (log += d.toString()));
    p.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    proc = p;
    await waitFor(() => /ready to accept connections/.test(log), 30_000, () => log);
  };
  const halt = async () => {
    const p = proc;
    if (p && p.exitCode === null && p.signalCode === null) {
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGINT');
      await exited;
    }
    proc = undefined;
  };
  await launch();
  return {
    url: `postgres://postgres:${encodeURIComponent(PASSWORD)}@127.0.0.1:${port}/postgres`,
    password: PASSWORD,
    port,
    halt,
    resume: launch,
    sql: (query: string) => execFileSync(join(bin, 'psql'), ['-h', dir, '-p', String(port), '-U', 'postgres', '-d', 'postgres', '-At', '-c', query], { ...as, encoding: 'utf8', cwd: dir }),
    async stop() {
      await halt();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
