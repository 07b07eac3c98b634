/**
 * What an integration test needs from the machine, checked where the test starts so that a file
 * run on its own fails with the same message as `npm run test:integration`'s preflight
 * (scripts/integration-preflight.mjs, which holds the checks): what is missing and the apt-get
 * line that installs it. These throw; they never skip, because a skipped test reads as a pass.
 *
 *   const promtool = requireProgram('promtool', 'prometheus');
 *   const lib = requireLibfaketime();
 *   requireRoot();
 */
import {
  LIBFAKETIME_PACKAGE,
  describeMissing,
  findLibfaketime,
  findPostgresBin,
  findProgram,
  POSTGRES_PACKAGE,
  postgresProblem,
  libfaketimeProblem,
  namespaceProblem,
  programProblem,
  rootProblem,
} from '../../../scripts/integration-preflight.mjs';

export class MissingRequirementError extends Error {
  override readonly name = 'MissingRequirementError';
}

/** The absolute path of `name` on PATH, or an error naming the Debian package that ships it. */
export function requireProgram(name: string, debianPackage: string): string {
  const path = findProgram(name);
  if (path === undefined) {
    throw new MissingRequirementError(describeMissing([{ problem: programProblem(name, debianPackage), debianPackage }]));
  }
  return path;
}

/** The path of libfaketime.so.1 (for LD_PRELOAD), or an error naming the `faketime` package. */
export function requireLibfaketime(): string {
  const path = findLibfaketime();
  if (path === undefined) {
    throw new MissingRequirementError(describeMissing([{ problem: libfaketimeProblem(), debianPackage: LIBFAKETIME_PACKAGE }]));
  }
  return path;
}

/**
 * Root (uid 0) that may create UTS/PID/mount namespaces and mount a tmpfs: a container without
 * CAP_SYS_ADMIN refuses that even to root, so it is tried, not assumed.
 */
export function requireRoot(): void {
  const uid = process.getuid?.();
  if (uid !== 0) throw new MissingRequirementError(describeMissing([{ problem: rootProblem(uid ?? 'unknown (not a POSIX system)') }]));
  const problem = namespaceProblem();
  if (problem !== undefined) throw new MissingRequirementError(describeMissing([{ problem }]));
}

/** The directory of PostgreSQL's server programs, or an error naming the `postgresql` package. */
export function requirePostgres(): string {
  const dir = findPostgresBin();
  if (dir === undefined) throw new MissingRequirementError(describeMissing([{ problem: postgresProblem(), debianPackage: POSTGRES_PACKAGE }]));
  return dir;
}
