import { open, type FileHandle } from "node:fs/promises";

/**
 * How the upload follows the archive while it is written: each archive object (chunk) is a `GrowingFile`,
 * and a `ChunkFeed` hands them over in order as the archive starts them.
 */

/**
 * A file while it is written, for one reader that follows it: `reach(n)` waits until `n` bytes are on the
 * file (or it is complete) and `read` reads them through a descriptor opened when the file was created, so
 * the rename of `<name>.partial` to `<name>` does not matter to the reader. The reader closes it.
 */
export class GrowingFile {
  private handle?: FileHandle;
  private written = 0;
  private complete = false;
  private closed = false;
  private failure?: Error;
  private waiters: Array<() => void> = [];

  /** A file that is already complete on disk. */
  static async ofComplete(path: string): Promise<GrowingFile> {
    const file = new GrowingFile();
    file.opened(await open(path, "r"));
    file.completed((await file.handle!.stat()).size);
    return file;
  }

  /** The writer created the file; `handle` reads it. */
  opened(handle: FileHandle): void {
    if (this.closed) {
      void handle.close().catch(() => undefined);
      return;
    }
    this.handle = handle;
    this.notify();
  }

  /** The writer has `bytes` on the file. */
  grew(bytes: number): void {
    if (bytes <= this.written) return;
    this.written = bytes;
    this.notify();
  }

  /** The writer is done: the file is complete at `bytes`. */
  completed(bytes: number): void {
    this.written = bytes;
    this.complete = true;
    this.notify();
  }

  /** Whether the writer failed. */
  get hasFailed(): boolean {
    return this.failure !== undefined;
  }

  /** The writer failed: every wait rejects with this. */
  failed(error: Error): void {
    this.failure ??= error;
    this.notify();
  }

  /** Waits until `bytes` are written or the file is complete; resolves with what is there. */
  async reach(bytes: number): Promise<{ available: number; complete: boolean }> {
    for (;;) {
      if (this.failure) throw this.failure;
      if (this.handle && (this.complete || this.written >= bytes))
        return { available: this.written, complete: this.complete };
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  /** Reads `length` bytes at `position` (which `reach` said are there) into the start of `buffer`. */
  async read(buffer: Buffer, length: number, position: number): Promise<Buffer> {
    if (!this.handle) throw new Error("the file is not open yet");
    let filled = 0;
    while (filled < length) {
      const { bytesRead } = await this.handle.read(buffer, filled, length - filled, position + filled);
      if (bytesRead === 0)
        throw new Error(`the file ended at byte ${position + filled}, expected ${position + length}`);
      filled += bytesRead;
    }
    return buffer.subarray(0, length);
  }

  /** Closes the reading descriptor. */
  async close(): Promise<void> {
    this.closed = true;
    await this.handle?.close();
    this.handle = undefined;
  }

  private notify(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}

/** One archive object as the archive starts it: its number (0-based), its local path and its bytes as they come. */
export interface GrowingChunk {
  index: number;
  path: string;
  source: GrowingFile;
}

/**
 * The archive's chunks in order, as they are started, for the one reader that uploads them: iterating waits
 * for the next chunk, ends when the archive is complete, and throws when it failed.
 */
export class ChunkFeed implements AsyncIterable<GrowingChunk> {
  private readonly chunks: GrowingChunk[] = [];
  private ended = false;
  private failure?: Error;
  private wake?: () => void;

  /** The archive started a chunk. */
  push(chunk: GrowingChunk): void {
    this.chunks.push(chunk);
    this.notify();
  }

  /** The archive is complete: no chunk follows. */
  end(): void {
    this.ended = true;
    this.notify();
  }

  /** The archive failed: the reader's wait, and every chunk's, rejects with this. */
  fail(error: Error): void {
    this.failure ??= error;
    for (const chunk of this.chunks) chunk.source.failed(error);
    this.notify();
  }

  /** Whether the archive failed. */
  get hasFailed(): boolean {
    return this.failure !== undefined;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<GrowingChunk> {
    for (let next = 0; ;) {
      if (this.failure) throw this.failure;
      if (next < this.chunks.length) yield this.chunks[next++];
      else if (this.ended) return;
      else await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  /** Closes the reading descriptor of every chunk (the reader's last step, also when it failed). */
  async close(): Promise<void> {
    await Promise.all(this.chunks.map((chunk) => chunk.source.close().catch(() => undefined)));
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}
