#!/usr/bin/env node
// Checks that this machine has what `npm run test:integration` needs, before any test runs.
//
//   node scripts/integration-preflight.mjs   exit 0 when everything is there; otherwise print one
//                                            line per missing thing and the one apt-get command
//                                            that installs them all, and exit 1
//
// A missing program fails the run: it is never skipped, because a skipped check would read as
// a passed one. test/integration/helpers/system.ts imports the same checks so that a test file
// run on its own (`npx vitest run --config vitest.integration.config.ts test/integration/x.test.ts`)
// fails with the same message. Node built-ins only: this runs before anything else is trusted.
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Debian's multiarch directory per Node architecture (where `faketime` puts its library). */
const MULTIARCH = {
  x64: 'x86_64-linux-gnu',
  arm64: 'aarch64-linux-gnu',
  arm: 'arm-linux-gnueabihf',
  ia32: 'i386-linux-gnu',
  ppc64: 'powerpc64le-linux-gnu',
  s390x: 's390x-linux-gnu',
  riscv64: 'riscv64-linux-gnu',
  mips64el: 'mips64el-linux-gnuabi64',
  loong64: 'loongarch64-linux-gnu',
};

/** The programs the integration tests run, and the Debian package that ships each. */
export const PROGRAMS = [
  { name: 'promtool', debianPackage: 'prometheus', why: 'checks the Prometheus config and runs the alert unit tests' },
  { name: 'prometheus', debianPackage: 'prometheus', why: 'scrapes the built daemon' },
  { name: 'amtool', debianPackage: 'prometheus-alertmanager', why: 'checks the Alertmanager config and routes' },
  { name: 'unshare', debianPackage: 'util-linux', why: 'runs daemons in their own UTS and PID namespaces' },
  { name: 'mount', debianPackage: 'mount', why: 'mounts a tiny tmpfs to fill the disk under the ledger' },
];

export const LIBFAKETIME_PACKAGE = 'faketime';
export const POSTGRES_PACKAGE = 'postgresql';

/**
 * The directory with PostgreSQL's server programs (initdb, postgres, pg_ctl): Debian keeps them
 * off PATH, under /usr/lib/postgresql/<version>/bin; the newest there, else PATH.
 * @returns {string | undefined}
 */
export function findPostgresBin() {
  const has = (dir) => ['initdb', 'postgres', 'pg_ctl'].every((n) => existsSync(join(dir, n)));
  try {
    const versions = readdirSync('/usr/lib/postgresql').filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
    for (const v of versions) if (has(`/usr/lib/postgresql/${v}/bin`)) return `/usr/lib/postgresql/${v}/bin`;
  } catch {
    // not Debian's layout
  }
  const initdb = findProgram('initdb');
  return initdb && has(dirname(initdb)) ? dirname(initdb) : undefined;
}

export function postgresProblem() {
  return `postgresql: initdb, postgres and pg_ctl not found under /usr/lib/postgresql/<version>/bin or on PATH (Debian package: ${POSTGRES_PACKAGE}); the PostgreSQL ledger is tested against a real server`;
}

/** Where Debian (or a `make install`) puts libfaketime, most likely first. */
export function libfaketimeCandidates() {
  const out = [];
  const arch = MULTIARCH[process.arch];
  if (arch) out.push(`/usr/lib/${arch}/faketime/libfaketime.so.1`);
  try {
    // Another multiarch directory than the one Node was built for (e.g. i386 on amd64).
    for (const dir of readdirSync('/usr/lib')) {
      const p = `/usr/lib/${dir}/faketime/libfaketime.so.1`;
      if (!out.includes(p)) out.push(p);
    }
  } catch {
    // no /usr/lib: not Linux; the candidates below will not exist either
  }
  out.push('/usr/lib/faketime/libfaketime.so.1', '/usr/local/lib/faketime/libfaketime.so.1');
  return out;
}

/** @returns {string | undefined} the path of libfaketime.so.1 */
export function findLibfaketime() {
  return libfaketimeCandidates().find((p) => existsSync(p));
}

/**
 * PATH only, no fallback directories: the tests spawn programs by name, so one that is installed
 * but not on PATH is as good as missing.
 * @returns {string | undefined} the absolute path of an executable on PATH
 */
export function findProgram(name) {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // keep looking
    }
  }
  return undefined;
}

const ROOT_WHY = 'the tests mount a tiny tmpfs and create UTS and PID namespaces, which needs root';

export function programProblem(name, debianPackage) {
  return `${name}: not found on PATH (Debian package: ${debianPackage})`;
}

export function libfaketimeProblem() {
  const where = libfaketimeCandidates()[0] ?? '/usr/lib/<multiarch>/faketime/libfaketime.so.1';
  return `libfaketime: not found at ${where} (Debian package: ${LIBFAKETIME_PACKAGE})`;
}

export function rootProblem(uid) {
  return `root: running as uid ${uid}, but ${ROOT_WHY} (uid 0): run it as root, e.g. sudo npm run test:integration`;
}

/**
 * Root is not always enough: a container started without CAP_SYS_ADMIN (Docker's default)
 * refuses namespaces and mounts to root too. Try exactly what the tests do, in a namespace that
 * vanishes with the probe.
 * @returns {string | undefined} the problem, or undefined when it works
 */
export function namespaceProblem() {
  const unshare = findProgram('unshare');
  const mount = findProgram('mount');
  if (!unshare || !mount) return undefined; // already reported as missing programs
  const dir = mkdtempSync(join(tmpdir(), 'vrw-preflight-'));
  try {
    const r = spawnSync(unshare, ['--uts', '--pid', '--mount', '--fork', mount, '-t', 'tmpfs', '-o', 'size=64k', 'vrw-preflight', dir], {
      encoding: 'utf8',
      timeout: 10_000,
    });
    if (r.status === 0) return undefined;
    const said = `${r.stderr ?? ''}${r.error ? r.error.message : ''}`.trim().split('\n')[0] ?? '';
    return `namespaces: root cannot create UTS/PID/mount namespaces or mount a tmpfs here (${said || `exit ${r.status}`}); in a container, run it with --privileged or --cap-add SYS_ADMIN`;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Every unmet requirement.
 * @returns {{ problem: string, debianPackage?: string }[]}
 */
export function missingRequirements() {
  const missing = [];
  for (const p of PROGRAMS) {
    if (!findProgram(p.name)) missing.push({ problem: programProblem(p.name, p.debianPackage), debianPackage: p.debianPackage });
  }
  if (!findLibfaketime()) missing.push({ problem: libfaketimeProblem(), debianPackage: LIBFAKETIME_PACKAGE });
  if (!findPostgresBin()) missing.push({ problem: postgresProblem(), debianPackage: POSTGRES_PACKAGE });
  const uid = process.getuid?.();
  if (uid !== 0) {
    missing.push({ problem: rootProblem(uid ?? 'unknown (not a POSIX system)') });
  } else {
    const ns = namespaceProblem();
    if (ns) missing.push({ problem: ns });
  }
  return missing;
}

/** The one command that installs every missing package (sudo unless already root). */
export function installCommand(packages) {
  const unique = [...new Set(packages)];
  if (unique.length === 0) return undefined;
  const sudo = process.getuid?.() === 0 ? '' : 'sudo ';
  return `${sudo}apt-get install -y --no-install-recommends ${unique.join(' ')}`;
}

/** The full message for a list of unmet requirements. */
export function describeMissing(missing) {
  const lines = ['npm run test:integration cannot run on this machine. Missing:'];
  for (const m of missing) lines.push(`  - ${m.problem}`);
  const command = installCommand(missing.flatMap((m) => (m.debianPackage ? [m.debianPackage] : [])));
  if (command) lines.push('Install them (Debian/Ubuntu) with:', `  ${command}`);
  return `${lines.join('\n')}\n`;
}

function main() {
  const missing = missingRequirements();
  if (missing.length > 0) {
    process.stderr.write(describeMissing(missing));
    return 1;
  }
  process.stdout.write(`integration preflight: ${PROGRAMS.map((p) => p.name).join(", ")}, libfaketime (${findLibfaketime()}), PostgreSQL (${findPostgresBin()}) and root: all present\n`);
  return 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  process.exitCode = main();
}
