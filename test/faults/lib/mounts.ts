import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, rmSync, statfsSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Everything this process mounted, so that a failing test still leaves nothing mounted. */
const mounted = new Set<string>();

function run(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`${cmd} ${args.join(' ')}: ${(e.stderr || e.message).trim()}`, { cause: err });
  }
}

/** Why a small tmpfs cannot be mounted here, or undefined when it can. */
export function tmpfsUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root to mount a tmpfs';
  const dir = mkdtempSync(join(tmpdir(), 'esf-probe-'));
  try {
    mountTmpfs(dir, 1 << 20);
    unmount(dir);
    return undefined;
  } catch (err) {
    return `cannot mount a tmpfs: ${(err as Error).message}`;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Why a loop-mounted ext4 image cannot be used here, or undefined when it can. */
export function loopUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root to loop-mount an ext4 image';
  if (!existsSync('/dev/loop-control')) return 'no loop device (/dev/loop-control missing)';
  const dir = mkdtempSync(join(tmpdir(), 'esf-probe-'));
  try {
    const img = join(dir, 'probe.img');
    makeExt4Image(img, 8);
    mkdirSync(join(dir, 'm'));
    mountLoop(img, join(dir, 'm'));
    unmount(join(dir, 'm'));
    return undefined;
  } catch (err) {
    return `cannot loop-mount an ext4 image: ${(err as Error).message}`;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function mountTmpfs(dir: string, bytes: number): void {
  run('mount', ['-t', 'tmpfs', '-o', `size=${bytes},mode=0755`, 'tmpfs', dir]);
  mounted.add(dir);
}

/** A sparse file holding a fresh ext4 file system. */
export function makeExt4Image(path: string, mb: number): void {
  run('truncate', ['-s', `${mb}M`, path]);
  run('mkfs.ext4', ['-q', '-F', path]);
}

/** mount -o loop: the loop device is released again when unmounted (autoclear). */
export function mountLoop(image: string, dir: string): void {
  run('mount', ['-o', 'loop,noatime', image, dir]);
  mounted.add(dir);
}

export function unmount(dir: string): void {
  try {
    run('umount', [dir]);
  } catch {
    // busy (a process still holds a file): detach now, the kernel finishes when it is released
    run('umount', ['-l', dir]);
  }
  mounted.delete(dir);
}

/** Unmounts whatever is still mounted (afterAll, after a failure). */
export function unmountAll(): void {
  for (const dir of [...mounted]) {
    try {
      unmount(dir);
    } catch {
      /* reported by the test that failed */
    }
  }
}

/**
 * Copies an image file as it is now: the loop device's backing file holds what the file
 * system inside has written to its "disk"; its dirty pages in memory are not in it. That is
 * what a power cut leaves behind (holes stay holes: the copy is quick).
 */
export function copyImage(from: string, to: string): void {
  run('cp', ['--sparse=always', from, to]);
}

export function freeBytes(dir: string): number {
  const s = statfsSync(dir);
  return s.bavail * s.bsize;
}

/** Takes every free byte of the file system with one file; returns its path (delete it to free the space). */
export function fillUp(dir: string): string {
  const path = join(dir, 'filler');
  const free = freeBytes(dir);
  if (free > 0) {
    try {
      run('fallocate', ['-l', String(free), path]);
    } catch {
      /* some blocks are always left: the writes below take them */
    }
  }
  const fd = openSync(path, 'a');
  const block = Buffer.alloc(4096, 1);
  try {
    for (;;) writeSync(fd, block);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    closeSync(fd);
  }
  return path;
}
