/**
 * The few file-system helpers the ledger, its lock and the --check-config probe share: a bounded
 * `mkdir -p`, a directory fsync, a quiet close, and the one way an error becomes a code to show.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, statSync } from 'node:fs';
import { dirname } from 'node:path';

// Deep enough for any real path; a bound because the walk recurses once per missing parent.
const MAX_MISSING_PARENTS = 64;

/**
 * `mkdir -p` that always ends. Node's `mkdirSync(dir, { recursive: true })` spins forever when a
 * parent exists but refuses the child with ENOENT, as /proc does (`/proc/nonexistent`) and as a
 * dangling symlink does: it steps back to the parent on ENOENT, finds it exists, and retries the
 * child, without end. Here each missing directory is retried once after its parent was made.
 * Returns the path that could not be made and why, or undefined when `dir` is a directory.
 */
export function createDirectory(dir: string, depth = 0): { path: string; code: string } | undefined {
  const first = mkdirOnce(dir);
  if (first !== 'ENOENT') return first === undefined ? undefined : { path: dir, code: first };
  const parent = dirname(dir);
  if (parent === dir || depth >= MAX_MISSING_PARENTS) return { path: dir, code: 'ENOENT' };
  const up = createDirectory(parent, depth + 1);
  if (up !== undefined) return up;
  const again = mkdirOnce(dir);
  return again === undefined ? undefined : { path: dir, code: again };
}

/**
 * undefined once `dir` is a directory (made now or before), else the error code: EEXIST means
 * something other than a directory is in the way.
 */
function mkdirOnce(dir: string): string | undefined {
  try {
    mkdirSync(dir);
    return undefined;
  } catch (err) {
    const code = errorCode(err);
    if (code !== 'EEXIST') return code;
  }
  try {
    return statSync(dir).isDirectory() ? undefined : 'EEXIST';
  } catch (err) {
    // EEXIST and then nothing there: a dangling symlink.
    return errorCode(err);
  }
}

/** As createDirectory, but throws an error carrying the system code (for callers that report `code`). */
export function ensureDir(dir: string): void {
  const failed = createDirectory(dir);
  // EEXIST here means something that is not a directory is in the way.
  if (failed !== undefined) throw Object.assign(new Error(`cannot create ${failed.path}: ${failed.code}`), { code: failed.code === 'EEXIST' ? 'ENOTDIR' : failed.code });
}

/** The system error code (ENOSPC, EACCES...), the only part of an error that is shown. */
export function errorCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[A-Z0-9_]{1,32}$/.test(code) ? code : 'error';
}

/** A new file's directory entry must be durable too, or a crash can lose the whole file. */
export function syncDir(dir: string): void {
  try {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // Some filesystems refuse fsync on a directory; the file's own fsync is the best we have.
  }
}

export function closeQuietly(fd: number | undefined): void {
  if (fd === undefined) return;
  try {
    closeSync(fd);
  } catch {
    // Already closed.
  }
}
