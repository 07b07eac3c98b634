/**
 * The STATE_DIR probe behind --check-config. The ledger only finds out that STATE_DIR is unusable
 * when it opens it, and then the daemon watches but never tops up; an operator who ran
 * --check-config should hear it before deploying. So the probe does what the ledger will do:
 * create the directory if it is missing, create, write, fsync and remove a file in it, and fsync
 * the directory.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, statfsSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { closeQuietly, createDirectory, errorCode } from '../ledger/fs-util.js';
import { MIN_FREE_BYTES } from '../ledger/file-ledger.js';

export type StateDirCheck = { ok: true } | { ok: false; problem: string };

// Filesystems that cannot fsync a directory say so with these; the ledger copes, so the probe does.
const DIRECTORY_FSYNC_UNSUPPORTED = new Set(['EINVAL', 'ENOTSUP', 'EOPNOTSUPP']);

export function checkStateDir(dir: string): StateDirCheck {
  const created = createDirectory(dir);
  if (created !== undefined) {
    return created.code === 'EEXIST'
      ? fail(`${quote(created.path)} exists and is not a directory (EEXIST)`)
      : fail(`cannot create the directory ${quote(created.path)} (${created.code})`);
  }

  // Unique, so that a daemon already running on this directory, or a second check, is unaffected.
  const probe = join(dir, `.check-config-${process.pid}-${randomBytes(6).toString('hex')}.probe`);
  const content = Buffer.from('vonage-reload-watchdog --check-config probe\n');
  let fd: number | undefined;
  let step = 'create a file in';
  try {
    fd = openSync(probe, 'wx', 0o600);
    step = 'write to a file in';
    const written = writeSync(fd, content);
    // A short write is how a nearly full disk answers; the ledger treats it as a failed write.
    if (written !== content.length) return fail(`cannot ${step} ${quote(dir)}: wrote ${written} of ${content.length} bytes (short write)`);
    step = 'fsync a file in';
    fsyncSync(fd);
    step = 'close a file in';
    const toClose = fd;
    fd = undefined;
    closeSync(toClose);
    step = 'remove a file from';
    unlinkSync(probe);
  } catch (err) {
    return fail(`cannot ${step} ${quote(dir)} (${errorCode(err)})`);
  } finally {
    if (fd !== undefined) closeQuietly(fd);
    // Whatever failed, the probe must not be left behind (a no-op once it was removed).
    removeQuietly(probe);
  }

  try {
    const dirFd = openSync(dir, 'r');
    try {
      fsyncSync(dirFd);
    } finally {
      closeSync(dirFd);
    }
  } catch (err) {
    const code = errorCode(err);
    if (!DIRECTORY_FSYNC_UNSUPPORTED.has(code)) return fail(`cannot fsync the directory ${quote(dir)} (${code})`);
  }
  // The ledger refuses to record, and so to top up, below this much free space: say so now.
  try {
    const st = statfsSync(dir);
    const free = Number(st.bavail) * Number(st.bsize);
    if (free < MIN_FREE_BYTES) return fail(`${quote(dir)} has ${free} bytes free; the ledger needs at least ${MIN_FREE_BYTES} to record a top-up before sending it`);
  } catch {
    // statfs unsupported here: the ledger checks again before every attempt.
  }
  return { ok: true };
}

function fail(problem: string): StateDirCheck {
  return { ok: false, problem };
}

function quote(path: string): string {
  return JSON.stringify(path);
}


function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // ENOENT once removed or never created.
  }
}

