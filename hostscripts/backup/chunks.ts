import { spawn, type ChildProcessByStdio } from "node:child_process";
import { once } from "node:events";
import { open, rename, unlink, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import type { Readable, Writable } from "node:stream";
import type { FilePiece } from "../../contracts";
import { messageOf } from "../common/errors";
import { sha256Stream, type StreamHash } from "../common/hash-offload";
import { END_OF_ARCHIVE, paddingAfter } from "../common/tar";
import { GrowingFile, type ChunkFeed } from "./growing";

/**
 * One tar stream written as chunks (contracts/archive.ts): each chunk is compressed by a `zstd` of its own,
 * which writes the chunk's file itself (the compressed bytes never pass through this process), and ends after
 * at most `chunkBytes` of tar. A chunk ends inside a file's data when the file does not fit, or before a
 * header that does not fit. The writer hashes each file's data as it goes — in pieces where a chunk
 * boundary cuts it — and polls each chunk's file to tell the upload how far it is written, flushing it to
 * disk every SYNC_EVERY_BYTES so no burst of dirty pages lands on the database's disk at the end.
 */

/**
 * A chunk's file is flushed (fdatasync, in the background) every this many bytes written. Without it the whole
 * archive stays dirty in the page cache and one fsync at the end writes it in a burst, which stalls the
 * replica's applier for seconds when the archive shares the database's disk.
 */
export const SYNC_EVERY_BYTES = 32 * 1024 * 1024;

/** How often a chunk's file is looked at while zstd writes it (the upload's latency to a new part). */
const POLL_MS = 25;

/** How the chunks are made. */
export interface ChunkOptions {
  /** The directory the chunk files go to. */
  dir: string;
  /** The file name of chunk `index` (0-based). */
  name: (index: number) => string;
  /** The most tar bytes a chunk holds; a multiple of 512. */
  chunkBytes: number;
  level: number;
  threads: number;
  /** Where each chunk is announced as it starts, for the upload. */
  feed?: ChunkFeed;
}

/** A finished chunk, as the manifest records it (its sha256 is the upload's, which reads every byte). */
export interface WrittenChunk {
  index: number;
  path: string;
  /** Compressed size. */
  bytes: number;
  tarOffset: number;
  tarBytes: number;
  continues?: { path: string; offset: number };
}

/** A chunk being written. */
interface OpenChunk {
  index: number;
  path: string;
  partial: string;
  file: FileHandle;
  zstd: ChildProcessByStdio<Writable, null, Readable>;
  exited: Promise<void>;
  source: GrowingFile;
  tarOffset: number;
  continues?: { path: string; offset: number };
  /** Stops the polling; resolves once the last poll is done. */
  stopWatching: () => Promise<void>;
  /** The first write error of zstd's stdin (EPIPE when zstd died). */
  writeError?: Error;
}

/** The file whose data is being written: where it is, and the piece being hashed. */
interface OpenFile {
  path: string;
  size: number;
  offset: number;
  pieceStart: number;
  hash: StreamHash;
  pieces: FilePiece[];
}

/** Writes the tar stream of an archive into chunk files; see the module comment. */
export class ChunkedTarWriter {
  private position = 0;
  private chunk?: OpenChunk;
  private readonly finishing: Array<Promise<WrittenChunk>> = [];
  private readonly started: OpenChunk[] = [];
  private file?: OpenFile;
  private stopped?: Error;

  constructor(private readonly options: ChunkOptions) {
    if (options.chunkBytes % 512 !== 0 || options.chunkBytes < 1024 * 1024)
      throw new Error(`chunkBytes ${options.chunkBytes} must be a multiple of 512 of at least 1 MiB`);
  }

  /** Where the stream is: tar bytes written so far. */
  get tarBytes(): number {
    return this.position;
  }

  /**
   * Writes an entry's header blocks, in a new chunk when they do not fit in this one. When data follows
   * (`dataFollows`: a file of at least one byte), at least one block of it must fit too: a chunk never ends
   * right after a file's header, so a chunk that continues a file always begins after its first byte and
   * every piece holds at least one byte.
   */
  async header(blocks: Buffer, dataFollows = false): Promise<void> {
    const chunk = await this.current();
    const used = this.position - chunk.tarOffset;
    const needs = blocks.length + (dataFollows ? 512 : 0);
    if (used > 0 && used + needs > this.options.chunkBytes) await this.cut();
    await this.send(blocks);
  }

  /** A file's data follows: `size` bytes, hashed in pieces where a chunk boundary cuts them. */
  beginFile(path: string, size: number): void {
    this.file = { path, size, offset: 0, pieceStart: 0, hash: sha256Stream("ArchiveFailed"), pieces: [] };
  }

  /**
   * Writes the next bytes of the file's data; `written` is called once zstd took all of them (the caller
   * reuses the buffer then). Waits while zstd is behind.
   */
  async fileData(data: Buffer, written: () => void): Promise<void> {
    const file = this.file!;
    let pending = 1;
    const settle = () => {
      if (--pending === 0) written();
    };
    for (let at = 0; at < data.length;) {
      let chunk = await this.current();
      if (this.position - chunk.tarOffset === this.options.chunkBytes) {
        file.pieces.push(await this.pieceOf(file));
        file.pieceStart = file.offset;
        file.hash = sha256Stream("ArchiveFailed");
        chunk = await this.cut({ path: file.path, offset: file.offset });
      }
      const room = chunk.tarOffset + this.options.chunkBytes - this.position;
      const piece = data.subarray(at, at + Math.min(room, data.length - at));
      await file.hash.update(piece);
      file.offset += piece.length;
      at += piece.length;
      pending++;
      await this.send(piece, settle);
    }
    settle();
  }

  /** The file's data is complete: pads it to a block; returns its sha256, or its pieces when it was cut. */
  async endFile(): Promise<{ sha256: string } | { pieces: FilePiece[] }> {
    const file = this.file!;
    this.file = undefined;
    if (file.offset !== file.size)
      throw new Error(`${file.path}: ${file.offset} of ${file.size} bytes written`);
    const padding = paddingAfter(file.size);
    if (padding > 0) await this.send(Buffer.alloc(padding));
    if (file.pieces.length === 0) return { sha256: await file.hash.digest() };
    return { pieces: [...file.pieces, await this.pieceOf(file)] };
  }

  /** Ends the tar stream and the last chunk; resolves with every chunk once each is complete on disk. */
  async end(): Promise<WrittenChunk[]> {
    await this.header(END_OF_ARCHIVE);
    this.finishing.push(this.finish(this.chunk!));
    this.chunk = undefined;
    return Promise.all(this.finishing);
  }

  /** Stops at once (the archive failed): kills zstd, removes every chunk file, fails the followers. */
  async stop(error: Error): Promise<void> {
    this.stopped ??= error;
    const open = this.chunk;
    this.chunk = undefined;
    for (const chunk of this.started) {
      if (chunk.zstd.exitCode === null && chunk.zstd.signalCode === null) chunk.zstd.kill("SIGKILL");
      chunk.source.failed(error);
    }
    if (open) {
      await open.exited.catch(() => undefined);
      await open.stopWatching();
      await open.file.close().catch(() => undefined);
      await unlink(open.partial).catch(() => undefined);
    }
    const finished = await Promise.allSettled(this.finishing);
    for (const result of finished)
      if (result.status === "fulfilled") await unlink(result.value.path).catch(() => undefined);
  }

  private async pieceOf(file: OpenFile): Promise<FilePiece> {
    return {
      offset: file.pieceStart,
      bytes: file.offset - file.pieceStart,
      sha256: await file.hash.digest(),
    };
  }

  private async current(): Promise<OpenChunk> {
    if (this.stopped) throw this.stopped;
    this.chunk ??= await this.start(0, undefined);
    return this.chunk;
  }

  /** Ends the current chunk (it completes in the background) and starts the next one. */
  private async cut(continues?: { path: string; offset: number }): Promise<OpenChunk> {
    const done = this.chunk!;
    this.finishing.push(this.finish(done));
    // Marked handled: a failure surfaces from end() or from the next write, whichever comes first.
    this.finishing[this.finishing.length - 1].catch(() => undefined);
    this.chunk = await this.start(done.index + 1, continues);
    return this.chunk;
  }

  private async start(index: number, continues?: { path: string; offset: number }): Promise<OpenChunk> {
    const path = join(this.options.dir, this.options.name(index));
    const partial = `${path}.partial`;
    const file = await open(partial, "wx", 0o600);
    const source = new GrowingFile();
    // The reader (the upload) closes its descriptor; without one nothing reads the chunk while it grows.
    if (this.options.feed) source.opened(await open(partial, "r"));
    const { level, threads } = this.options;
    const zstd = spawn("zstd", [`-${level}`, `-T${threads}`, "-q", "-c"], {
      stdio: ["pipe", file.fd, "pipe"],
    }) as ChildProcessByStdio<Writable, null, Readable>;
    const chunk: OpenChunk = {
      index,
      path,
      partial,
      file,
      zstd,
      exited: zstdExit(zstd),
      source,
      tarOffset: this.position,
      continues,
      stopWatching: watch(file, source),
    };
    chunk.exited.catch(() => undefined);
    this.started.push(chunk);
    zstd.stdin.on("error", (error) => (chunk.writeError ??= error));
    this.options.feed?.push({ index, path, source });
    return chunk;
  }

  /** Sends bytes into the current chunk's zstd; waits while its input is full. */
  private async send(data: Buffer, written?: () => void): Promise<void> {
    const chunk = this.chunk!;
    if (chunk.writeError) throw new Error(`zstd stopped taking input: ${messageOf(chunk.writeError)}`);
    this.position += data.length;
    if (!chunk.zstd.stdin.write(data, written && (() => written())))
      await Promise.race([once(chunk.zstd.stdin, "drain"), chunk.exited]);
  }

  /** Closes zstd's input, waits for it to write the rest, then makes the chunk's file complete and durable. */
  private async finish(chunk: OpenChunk): Promise<WrittenChunk> {
    const tarBytes = this.position - chunk.tarOffset;
    chunk.zstd.stdin.end();
    try {
      await chunk.exited;
      await chunk.stopWatching();
      const { size } = await chunk.file.stat();
      await chunk.file.datasync();
      await chunk.file.close();
      await rename(chunk.partial, chunk.path);
      chunk.source.completed(size);
      return {
        index: chunk.index,
        path: chunk.path,
        bytes: size,
        tarOffset: chunk.tarOffset,
        tarBytes,
        ...(chunk.continues ? { continues: chunk.continues } : {}),
      };
    } catch (error) {
      const failure = new Error(`chunk ${chunk.index + 1}: ${messageOf(error)}`, { cause: error });
      // The whole feed fails, not only this chunk: the upload then knows the failure is the archive's, and
      // does not report it as its own (a full disk is ArchiveFailed, not UploadFailed).
      if (this.options.feed) this.options.feed.fail(failure);
      else chunk.source.failed(failure);
      await chunk.stopWatching();
      await chunk.file.close().catch(() => undefined);
      await unlink(chunk.partial).catch(() => undefined);
      throw failure;
    }
  }
}

/** Resolves when zstd exits 0; rejects with its stderr otherwise. */
async function zstdExit(zstd: ChildProcessByStdio<Writable, null, Readable>): Promise<void> {
  let stderr = "";
  zstd.stderr.setEncoding("utf8").on("data", (text: string) => (stderr = (stderr + text).slice(-2000)));
  const [code, signal] = (await Promise.race([
    once(zstd, "exit"),
    once(zstd, "error").then(([error]) => {
      throw new Error(`cannot run zstd: ${messageOf(error)}`);
    }),
  ])) as [number | null, string | null];
  if (code !== 0)
    throw new Error(`zstd ${signal ? `was killed by ${signal}` : `exited ${code}`}: ${stderr.trim()}`);
}

/**
 * Polls the file zstd writes: tells `source` how far it is, and flushes it every SYNC_EVERY_BYTES in the
 * background (one flush at a time, so the writer never runs more than two windows ahead of the disk). Returns
 * the function that stops it after its last poll and flush.
 */
function watch(file: FileHandle, source: GrowingFile): () => Promise<void> {
  let syncedTo = 0;
  let polling: Promise<void> | undefined;
  let syncing: Promise<void> = Promise.resolve();
  let flushing = false;
  const poll = async () => {
    const { size } = await file.stat();
    source.grew(size);
    if (!flushing && size - syncedTo >= SYNC_EVERY_BYTES) {
      flushing = true;
      syncedTo = size;
      syncing = file.datasync().finally(() => (flushing = false));
      syncing.catch(() => undefined);
    }
  };
  const timer = setInterval(() => {
    polling ??= poll()
      .catch(() => undefined)
      .finally(() => (polling = undefined));
  }, POLL_MS);
  return async () => {
    clearInterval(timer);
    await polling;
    await syncing.catch(() => undefined);
  };
}
