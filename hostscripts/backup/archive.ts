import { lstat, open, readdir, readlink, type FileHandle } from "node:fs/promises";
import type { Stats } from "node:fs";
import { join } from "node:path";
import { archiveChunkObject, type ArchivedFile } from "../../contracts";
import { noCheckpoint, type Checkpoint } from "../common/checkpoint";
import { PipelineError, messageOf } from "../common/errors";
import type { Logger } from "../common/log";
import { encodeHeader, type TarHeader } from "../common/tar";
import { ChunkedTarWriter, type WrittenChunk } from "./chunks";
import type { ChunkFeed } from "./growing";
import { syncDirectory } from "../common/durable";

export { SYNC_EVERY_BYTES } from "./chunks";

/**
 * Step 5: the snapshot as one tar stream in a single pass over the data, written as chunks of at most
 * `chunkBytes` of tar (manifest format 2, contracts/archive.ts), each compressed by its own `zstd` straight
 * into `<dir>/archive-NNNN.tar.zst` (`.partial` until complete). Each file is read once, into a few reused
 * buffers; its bytes go to its sha256 (per piece where a chunk boundary cuts it) and into zstd's input.
 * Backpressure runs end to end (file ← zstd ← disk), so memory stays flat whatever the size of the data. A
 * `ChunkFeed` lets the upload follow each chunk while it is written, from the page cache, and hash it there:
 * the compressed bytes are read exactly once, by the upload.
 */

/** Inputs of `writeArchive`. */
export interface ArchiveOptions {
  /** The directory to archive (the snapshot); paths in the archive are relative to it. */
  root: string;
  /** The directory the chunk files go to. */
  dir: string;
  /** The most tar bytes per chunk. Defaults to DEFAULT_CHUNK_BYTES. */
  chunkBytes?: number;
  /** zstd level. Defaults to 1. */
  level?: number;
  /** zstd threads, 0 = one per core. Defaults to 0. */
  threads?: number;
  log: Logger;
  /** Told the bytes of every buffer read (the progress bar). */
  onBytes?: (bytes: number) => void;
  /** Told of every chunk as it starts, for a reader that follows them (the upload). */
  feed?: ChunkFeed;
  /** Stops the archive (the follower failed); writeArchive then rejects with ArchiveFailed. */
  signal?: AbortSignal;
  /** Called at the `archive` pause point, once the archive is under way. Defaults to `noCheckpoint`. */
  checkpoint?: Checkpoint;
}

/** What was archived, as the manifest records it (each chunk's sha256 is the upload's). */
export interface ArchiveResult {
  chunks: WrittenChunk[];
  /** The most tar bytes per chunk. */
  chunkBytes: number;
  /** Compressed size of all chunks. */
  bytes: number;
  /** Sum of the archived files' sizes. */
  rawBytes: number;
  /** Bytes of the whole tar stream. */
  tarBytes: number;
  /** Every regular file, with its size and sha256 (or its pieces), in archive order. */
  files: ArchivedFile[];
  directories: number;
  symlinks: number;
  /** Sockets, FIFOs and devices, which a tar of a datadir cannot hold; logged too. */
  skipped: string[];
  seconds: number;
}

/** The fastest level, so compression keeps pace with reading the snapshot. */
const DEFAULT_ZSTD_LEVEL = 1;
/** One zstd thread per core: the archive runs at the database's leftover priority (priority.ts). */
const DEFAULT_ZSTD_THREADS = 0;
/**
 * 1 GiB of tar per chunk: a restore unpacks as many chunks at once as it has cores, and its work per chunk
 * follows the tar bytes (decompressing, hashing, writing), so chunks bounded in tar bytes share it evenly; a
 * chunk's object is at most that size too, far inside S3's limits and the lab emulator's (4 GiB per object).
 */
export const DEFAULT_CHUNK_BYTES = 1024 * 1024 * 1024;

/** Bytes per read of a file, and how many such buffers are in flight (being read, or in zstd's input). */
const READ_BYTES = 1024 * 1024;
const READ_BUFFERS = 8;
/** Reads of a file issued ahead of the one being sent to zstd (each holds one of the READ_BUFFERS). */
const READ_AHEAD = 4;

/** Writes the archive of `root` into `dir`; on failure removes every chunk file and throws ArchiveFailed. */
export async function writeArchive(options: ArchiveOptions): Promise<ArchiveResult> {
  const started = performance.now();
  const chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
  const writer = new ChunkedTarWriter({
    dir: options.dir,
    name: archiveChunkObject,
    chunkBytes,
    level: options.level ?? DEFAULT_ZSTD_LEVEL,
    threads: options.threads ?? DEFAULT_ZSTD_THREADS,
    feed: options.feed,
  });
  const { signal } = options;
  const stop = () => void writer.stop(new Error(`the archive failed: stopped: ${messageOf(signal?.reason)}`));
  signal?.addEventListener("abort", stop, { once: true });
  const walk: Walk = {
    writer,
    buffers: new BufferPool(READ_BUFFERS, READ_BYTES),
    contents: { files: [], rawBytes: 0, directories: 0, symlinks: 0, skipped: [] },
    log: options.log,
    onBytes: options.onBytes ?? (() => undefined),
    checkpoint: options.checkpoint ?? noCheckpoint,
    paused: false,
  };
  try {
    if (signal?.aborted) throw new Error(`stopped: ${messageOf(signal.reason)}`);
    await packDirectory(options.root, "", walk);
    const chunks = await writer.end();
    await syncDirectory(options.dir);
    options.feed?.end();
    return {
      chunks,
      chunkBytes,
      bytes: chunks.reduce((sum, chunk) => sum + chunk.bytes, 0),
      tarBytes: writer.tarBytes,
      ...walk.contents,
      seconds: (performance.now() - started) / 1000,
    };
  } catch (caught) {
    const e = signal?.aborted ? new Error(`stopped: ${messageOf(signal.reason)}`, { cause: caught }) : caught;
    const failure = new Error(`the archive failed: ${messageOf(e)}`, { cause: e });
    options.feed?.fail(failure);
    await writer.stop(failure);
    throw new PipelineError(
      "ArchiveFailed",
      `archiving ${options.root} into ${options.dir} failed: ${messageOf(e)}`,
      "check free space and permissions in the local backup directory; the snapshot was left intact for this run only",
      { cause: e },
    );
  } finally {
    signal?.removeEventListener("abort", stop);
  }
}

type Contents = Pick<ArchiveResult, "files" | "rawBytes" | "directories" | "symlinks" | "skipped">;

/** What the walk over the snapshot carries along. */
interface Walk {
  writer: ChunkedTarWriter;
  buffers: BufferPool;
  contents: Contents;
  log: Logger;
  onBytes: (bytes: number) => void;
  checkpoint: Checkpoint;
  /** Whether the `archive` pause point was passed. */
  paused: boolean;
}

/** Adds every entry below `relative` depth first in name order. */
async function packDirectory(root: string, relative: string, walk: Walk): Promise<void> {
  const names = (await readdir(join(root, relative))).sort();
  for (const name of names) {
    const path = relative ? `${relative}/${name}` : name;
    const full = join(root, path);
    const stats = await lstat(full);
    if (stats.isDirectory()) {
      await walk.writer.header(encodeHeader(header(path, stats, "directory")));
      walk.contents.directories++;
      await packDirectory(root, path, walk);
    } else if (stats.isFile()) {
      walk.contents.files.push(await packFile(full, path, stats, walk));
      walk.contents.rawBytes += stats.size;
    } else if (stats.isSymbolicLink()) {
      const linkname = await readlink(full);
      await walk.writer.header(encodeHeader({ ...header(path, stats, "symlink"), linkname }));
      walk.contents.symlinks++;
    } else {
      walk.contents.skipped.push(path);
      walk.log.warn("skipped a file that tar cannot hold (socket, FIFO or device)", {
        path,
        mode: stats.mode,
      });
    }
  }
}

function header(name: string, stats: Stats, type: "file" | "directory" | "symlink"): TarHeader {
  return {
    name,
    type,
    size: type === "file" ? stats.size : 0,
    mode: stats.mode & 0o7777,
    uid: stats.uid,
    gid: stats.gid,
    mtime: stats.mtime,
  };
}

/**
 * Streams one file into the archive, hashing it on the way: reads of READ_BYTES into the pool's buffers, up to
 * READ_AHEAD of them issued ahead of the one zstd is taking, so the disk and zstd work at the same time (one
 * read at a time left zstd waiting for every read of a cold snapshot, and the disk waiting for zstd). A
 * snapshot must not change: a file that ends early or grows fails the archive.
 */
async function packFile(full: string, name: string, stats: Stats, walk: Walk): Promise<ArchivedFile> {
  const { writer, buffers } = walk;
  let handle: FileHandle | undefined;
  const ahead: Array<Promise<FileRead>> = [];
  try {
    handle = await open(full, "r");
    await writer.header(encodeHeader(header(name, stats, "file")), stats.size > 0);
    writer.beginFile(name, stats.size);
    let requested = 0;
    for (let position = 0; position < stats.size;) {
      while (ahead.length < READ_AHEAD && requested < stats.size) {
        const length = Math.min(READ_BYTES, stats.size - requested);
        const read = readAt(handle, buffers, requested, length);
        read.catch(() => undefined);
        ahead.push(read);
        requested += length;
      }
      const { buffer, bytes, wanted } = await ahead.shift()!;
      if (bytes < wanted) {
        buffers.give(buffer);
        throw changed(full, stats.size, position + bytes);
      }
      position += bytes;
      walk.onBytes(bytes);
      await writer.fileData(buffer.subarray(0, bytes), () => buffers.give(buffer));
      if (!walk.paused && writer.tarBytes >= 2 * READ_BYTES) {
        walk.paused = true;
        await walk.checkpoint("archive");
      }
    }
    const { bytesRead: beyond } = await handle.read(Buffer.alloc(1), 0, 1, stats.size);
    if (beyond > 0) throw changed(full, stats.size, "grew");
    return { path: name, bytes: stats.size, ...(await writer.endFile()) };
  } finally {
    // Reads still in flight (the archive failed) finish before the file is closed; their buffers go back.
    for (const settled of await Promise.allSettled(ahead))
      if (settled.status === "fulfilled") buffers.give(settled.value.buffer);
    // Closed in every case, so nothing in the snapshot stays open (it could not be unmounted).
    await handle?.close();
  }
}

/** One read of a file: `wanted` bytes at `position` into a buffer of the pool; `bytes` < `wanted` at the end of the file. */
interface FileRead {
  buffer: Buffer;
  bytes: number;
  wanted: number;
}

/** Reads `wanted` bytes at `position` (fewer only where the file ends); the buffer is the caller's to give back. */
async function readAt(
  file: FileHandle,
  buffers: BufferPool,
  position: number,
  wanted: number,
): Promise<FileRead> {
  const buffer = await buffers.take();
  try {
    let bytes = 0;
    while (bytes < wanted) {
      const { bytesRead } = await file.read(buffer, bytes, wanted - bytes, position + bytes);
      if (bytesRead === 0) break;
      bytes += bytesRead;
    }
    return { buffer, bytes, wanted };
  } catch (error) {
    buffers.give(buffer);
    throw error;
  }
}

/** The error for a file of the snapshot that ended early (`bytes` found) or grew past the size it had. */
function changed(full: string, size: number, bytes: number | "grew"): Error {
  const now = bytes === "grew" ? `more than ${size}` : `${bytes}`;
  return new Error(
    `${full} changed size while it was archived (${size} → ${now} bytes); a snapshot must not change`,
  );
}

/**
 * A few buffers reused for every read: the archive makes no garbage per byte, so the garbage collector stays
 * idle (a buffer per read made it mark the heap every few hundred MB).
 */
class BufferPool {
  private readonly free: Buffer[];
  private readonly waiting: Array<(buffer: Buffer) => void> = [];

  constructor(count: number, bytes: number) {
    this.free = Array.from({ length: count }, () => Buffer.allocUnsafeSlow(bytes));
  }

  /** A free buffer; waits for one while all are in flight. */
  take(): Promise<Buffer> {
    const buffer = this.free.pop();
    return buffer ? Promise.resolve(buffer) : new Promise((resolve) => this.waiting.push(resolve));
  }

  /** Returns a buffer once nothing holds it any more. */
  give(buffer: Buffer): void {
    const next = this.waiting.shift();
    if (next) next(buffer);
    else this.free.push(buffer);
  }
}
