import { closeSync, constants, openSync, readSync } from 'node:fs';
import { open } from 'node:fs/promises';

/** A file longer than the reader allows (a config that is really /dev/zero, a sysfs file swapped for a link). */
export class FileTooLargeError extends Error {
  constructor(
    readonly path: string,
    readonly maxBytes: number,
  ) {
    super(`${path} is larger than ${maxBytes} bytes`);
    this.name = 'FileTooLargeError';
  }
}

// O_NONBLOCK: a FIFO named as a config file reads as empty instead of hanging the start
const FLAGS = constants.O_RDONLY | constants.O_NONBLOCK;
const FIRST = 8192;

/** Reads into a buffer that doubles up to maxBytes + 1; `read` returns bytes read, 0 at the end. */
class CappedBuffer {
  buf: Buffer;
  n = 0;
  constructor(
    readonly path: string,
    readonly maxBytes: number,
  ) {
    this.buf = Buffer.allocUnsafe(Math.min(FIRST, maxBytes + 1));
  }
  /** room for the next read, grown when full */
  room(): number {
    if (this.n === this.buf.length) {
      const bigger = Buffer.allocUnsafe(Math.min(this.buf.length * 2, this.maxBytes + 1));
      this.buf.copy(bigger, 0, 0, this.n);
      this.buf = bigger;
    }
    return this.buf.length - this.n;
  }
  /** false at the end of the file; throws once past maxBytes */
  took(got: number): boolean {
    if (got === 0) return false;
    this.n += got;
    if (this.n > this.maxBytes) throw new FileTooLargeError(this.path, this.maxBytes);
    return true;
  }
  result(): Buffer {
    return this.buf.subarray(0, this.n);
  }
}

const again = (err: unknown) => (err as NodeJS.ErrnoException).code === 'EAGAIN';

/**
 * Reads at most maxBytes of a file, whatever size it claims (/dev/zero and sysfs attributes claim
 * 0 or 4096); throws FileTooLargeError when there is more.
 */
export function readFileCapped(path: string, maxBytes: number): Buffer {
  const fd = openSync(path, FLAGS);
  try {
    const b = new CappedBuffer(path, maxBytes);
    for (;;) {
      let got = 0;
      const room = b.room(); // first: it may replace the buffer
      try {
        got = readSync(fd, b.buf, b.n, room, null);
      } catch (err) {
        if (!again(err)) throw err;
      }
      if (!b.took(got)) return b.result();
    }
  } finally {
    closeSync(fd);
  }
}

/** readFileCapped off the event loop (sysfs attributes that block while the device measures). */
export async function readFileCappedAsync(path: string, maxBytes: number): Promise<Buffer> {
  const fh = await open(path, FLAGS);
  try {
    const b = new CappedBuffer(path, maxBytes);
    for (;;) {
      let got = 0;
      const room = b.room();
      try {
        ({ bytesRead: got } = await fh.read(b.buf, b.n, room, null));
      } catch (err) {
        if (!again(err)) throw err;
      }
      if (!b.took(got)) return b.result();
    }
  } finally {
    await fh.close();
  }
}
