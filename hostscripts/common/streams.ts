import type { FileHandle } from "node:fs/promises";

/** Stream helpers the archive (backup) and the extract (restore) both write with. */

/** What `drainedOrClosed` needs of a stream: Node's and tar-stream's (streamx) writables both have it. */
interface EventedStream {
  readonly destroyed: boolean;
  once(event: string, listener: () => void): unknown;
  off(event: string, listener: () => void): unknown;
}

/** Resolves true when `stream` can take more, false when it was closed or failed instead. */
export function drainedOrClosed(stream: EventedStream): Promise<boolean> {
  if (stream.destroyed) return Promise.resolve(false);
  return new Promise((resolve) => {
    const settle = (value: boolean) => () => {
      stream.off("drain", onDrain);
      stream.off("close", onClose);
      stream.off("error", onClose);
      resolve(value);
    };
    const onDrain = settle(true);
    const onClose = settle(false);
    stream.once("drain", onDrain);
    stream.once("close", onClose);
    stream.once("error", onClose);
  });
}

/** Writes every byte of `buffers` at `position`, with as few `writev` calls as the kernel allows; returns the end. */
export async function writeAllAt(file: FileHandle, buffers: Buffer[], position: number): Promise<number> {
  let pending = buffers;
  let at = position;
  while (pending.length > 0) {
    const { bytesWritten } = await file.writev(pending, at);
    at += bytesWritten;
    pending = remainderAfter(pending, bytesWritten);
  }
  return at;
}

/** The buffers left after the first `written` bytes of `buffers` (a short `writev`). */
function remainderAfter(buffers: Buffer[], written: number): Buffer[] {
  let skip = written;
  const rest: Buffer[] = [];
  for (const buffer of buffers) {
    if (skip >= buffer.length) skip -= buffer.length;
    else {
      rest.push(skip > 0 ? buffer.subarray(skip) : buffer);
      skip = 0;
    }
  }
  return rest;
}
