import { spawn, type ChildProcessByStdio } from "node:child_process";
import { createHash, type Hash } from "node:crypto";
import { once } from "node:events";
import { createReadStream, type Stats } from "node:fs";
import { lstat, open, readdir, readlink, rename, unlink, type FileHandle } from "node:fs/promises";
import { dirname, join } from "node:path";
import { Transform, Writable, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { pack as tarPack, type Header, type Pack } from "tar-stream";
import type { ManifestFile } from "../../contracts";
import { noCheckpoint, type Checkpoint } from "../common/checkpoint";
import { PipelineError, messageOf } from "../common/errors";
import type { Logger } from "../common/log";
import { drainedOrClosed, writeAllAt } from "../common/streams";

/**
 * Step 5: the snapshot as one tar+zstd stream in a single pass over the data. Each file is read once; its
 * bytes go to its sha256 and into the tar stream, which `zstd` compresses in a child process; the
 * compressed bytes go to the archive's sha256 and to `<dest>.partial`, which is flushed to disk every
 * `SYNC_EVERY_BYTES` while it grows (so no burst of dirty pages lands on the database's disk at the end) and
 * renamed to `<dest>` only when complete. Backpressure runs end to end (file ← tar ← zstd ← disk), so memory
 * stays flat whatever the size of the data. A `GrowingFile` lets the upload follow the archive while it is
 * written, part by part from the page cache, instead of reading it again afterwards.
 */

/** Inputs of `writeArchive`. */
export interface ArchiveOptions {
  /** The directory to archive (the snapshot); paths in the archive are relative to it. */
  root: string;
  /** The archive's final path; `<dest>.partial` until complete. */
  dest: string;
  /** zstd level. Defaults to 1. */
  level?: number;
  /** zstd threads, 0 = one per core. Defaults to 0. */
  threads?: number;
  log: Logger;
  /** Told the bytes of every file chunk read (the progress bar). */
  onBytes?: (bytes: number) => void;
  /** Told how far the archive is written, for a reader that follows it (the upload). */
  follow?: GrowingFile;
  /** Stops the archive (the follower failed); writeArchive then rejects with ArchiveFailed. */
  signal?: AbortSignal;
  /** Called at the `archive` pause point, once the archive is half written. Defaults to `noCheckpoint`. */
  checkpoint?: Checkpoint;
}

/** What was archived, as the manifest records it. */
export interface ArchiveResult {
  path: string;
  /** Compressed size. */
  bytes: number;
  /** sha256 of the compressed archive, hex. */
  sha256: string;
  /** Sum of the archived files' sizes. */
  rawBytes: number;
  /** Every regular file, with its size and sha256, in archive order. */
  files: ManifestFile[];
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

/** Read size per file chunk: large enough to keep per-chunk overhead low, small enough to stay flat. */
const CHUNK_BYTES = 1024 * 1024;

/**
 * The archive is flushed (fdatasync, in the background) every this many bytes written. Without it the whole
 * archive stays dirty in the page cache and one fsync at the end writes it in a burst, which stalls the
 * replica's applier for seconds when the archive shares the database's disk.
 */
export const SYNC_EVERY_BYTES = 32 * 1024 * 1024;

/**
 * An archive while it is written, for one reader that follows it: `reach(n)` waits until `n` bytes are on
 * the file (or it is complete) and `read` reads them through a descriptor opened when the file was created,
 * so the rename of `<dest>.partial` to `<dest>` does not matter to the reader. The reader closes it.
 */
export class GrowingFile {
  private handle?: FileHandle;
  private written = 0;
  private complete = false;
  private closed = false;
  private failure?: Error;
  private waiters: Array<() => void> = [];

  /** An archive that is already complete on disk. */
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
    if (!this.handle) throw new Error("the archive is not open yet");
    let filled = 0;
    while (filled < length) {
      const { bytesRead } = await this.handle.read(buffer, filled, length - filled, position + filled);
      if (bytesRead === 0)
        throw new Error(`the archive ended at byte ${position + filled}, expected ${position + length}`);
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

/** Writes the archive of `root` to `dest`; on failure removes the partial file and throws ArchiveFailed. */
export async function writeArchive(options: ArchiveOptions): Promise<ArchiveResult> {
  const started = performance.now();
  const partial = `${options.dest}.partial`;
  const level = options.level ?? DEFAULT_ZSTD_LEVEL;
  const threads = options.threads ?? DEFAULT_ZSTD_THREADS;
  const zstd = spawn("zstd", [`-${level}`, `-T${threads}`, "-q", "-c"], { stdio: ["pipe", "pipe", "pipe"] });
  const tar = tarPack({ highWaterMark: 4 * CHUNK_BYTES });
  const archiveHash = createHash("sha256");
  const checkpoint = options.checkpoint ?? noCheckpoint;
  let archiveBytes = 0;
  let chunks = 0;
  const tally = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      archiveHash.update(chunk);
      archiveBytes += chunk.length;
      // With the first chunk already passed on to the file, the archive is half written here.
      if (++chunks === 2) void checkpoint("archive").then(() => done(null, chunk), done);
      else done(null, chunk);
    },
  });
  const contents: Contents = { files: [], rawBytes: 0, directories: 0, symlinks: 0, skipped: [] };
  const { follow, signal } = options;
  // Destroyed without an error: an error would also reach the tar entry being written, which has no listener.
  const stop = () => {
    tar.destroy();
    zstd.kill("SIGKILL");
  };
  signal?.addEventListener("abort", stop, { once: true });

  let file: FileHandle | undefined;
  try {
    file = await open(partial, "wx", 0o600);
    if (follow) follow.opened(await open(partial, "r"));
    if (signal?.aborted) throw new Error(`stopped: ${messageOf(signal.reason)}`);
    await Promise.all([
      packTree(options.root, tar, contents, options.log, options.onBytes ?? (() => undefined)),
      pipeline(tar as unknown as Readable, zstd.stdin),
      pipeline(zstd.stdout, tally, new SyncingFileWriter(file, follow)),
      zstdExit(zstd),
    ]);
  } catch (caught) {
    tar.destroy();
    zstd.kill("SIGKILL");
    const e = signal?.aborted ? new Error(`stopped: ${messageOf(signal.reason)}`, { cause: caught }) : caught;
    follow?.failed(new Error(`the archive failed: ${messageOf(e)}`));
    await file?.close().catch(() => undefined);
    await unlink(partial).catch(() => undefined);
    throw new PipelineError(
      "ArchiveFailed",
      `archiving ${options.root} into ${partial} failed: ${messageOf(e)}`,
      "check free space and permissions in the local backup directory; the snapshot was left intact for this run only",
      { cause: e },
    );
  } finally {
    signal?.removeEventListener("abort", stop);
  }
  await file.close();
  await rename(partial, options.dest);
  await fsyncPath(dirname(options.dest));
  follow?.completed(archiveBytes);
  return {
    path: options.dest,
    bytes: archiveBytes,
    sha256: archiveHash.digest("hex"),
    ...contents,
    seconds: (performance.now() - started) / 1000,
  };
}

type Contents = Pick<ArchiveResult, "files" | "rawBytes" | "directories" | "symlinks" | "skipped">;

/** Adds every entry below `root` to the tar stream, depth first in name order, then ends the stream. */
async function packTree(
  root: string,
  tar: Pack,
  contents: Contents,
  log: Logger,
  onBytes: (bytes: number) => void,
): Promise<void> {
  try {
    await packDirectory(root, "", tar, contents, log, onBytes);
    tar.finalize();
  } catch (e) {
    tar.destroy(e as Error);
    throw e;
  }
}

async function packDirectory(
  root: string,
  relative: string,
  tar: Pack,
  contents: Contents,
  log: Logger,
  onBytes: (bytes: number) => void,
): Promise<void> {
  const names = (await readdir(join(root, relative))).sort();
  for (const name of names) {
    const path = relative ? `${relative}/${name}` : name;
    const full = join(root, path);
    const stats = await lstat(full);
    if (stats.isDirectory()) {
      await addEntry(tar, header(path, stats, "directory"));
      contents.directories++;
      await packDirectory(root, path, tar, contents, log, onBytes);
    } else if (stats.isFile()) {
      contents.files.push(await packFile(full, path, stats, tar, onBytes));
      contents.rawBytes += stats.size;
    } else if (stats.isSymbolicLink()) {
      await addEntry(tar, { ...header(path, stats, "symlink"), linkname: await readlink(full) });
      contents.symlinks++;
    } else {
      contents.skipped.push(path);
      log.warn("skipped a file that tar cannot hold (socket, FIFO or device)", { path, mode: stats.mode });
    }
  }
}

function header(
  name: string,
  stats: Stats,
  type: "file" | "directory" | "symlink",
): Partial<Header> & { name: string } {
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

/** Adds an entry without a body (directory, symlink). */
function addEntry(tar: Pack, entry: Partial<Header> & { name: string }): Promise<void> {
  return new Promise((resolve, reject) => {
    tar.entry(entry, (error) => (error ? reject(error) : resolve()));
  });
}

/** Streams one file into the tar entry, hashing its bytes on the way; waits when the tar stream is full. */
async function packFile(
  full: string,
  name: string,
  stats: Stats,
  tar: Pack,
  onBytes: (bytes: number) => void,
): Promise<ManifestFile> {
  const hash: Hash = createHash("sha256");
  let entry!: ReturnType<Pack["entry"]>;
  // The executor runs at once, so `entry` is set before it is used; `done` settles when tar took it all.
  // The entry's own error event (it is destroyed when the tar stream is) settles `done` too; without a
  // listener it would be an uncaught exception. Marked handled, as the loop below may throw first.
  const done = new Promise<void>((resolve, reject) => {
    entry = tar.entry(header(name, stats, "file"), (error) => (error ? reject(error) : resolve()));
    entry.on("error", reject);
  });
  done.catch(() => undefined);
  let bytes = 0;
  for await (const chunk of createReadStream(full, { highWaterMark: CHUNK_BYTES })) {
    const data = chunk as Buffer;
    bytes += data.length;
    if (bytes > stats.size) break;
    hash.update(data);
    onBytes(data.length);
    // The entry is destroyed when the archive is stopped: then the wait ends too, and leaving the loop closes
    // the file, so nothing in the snapshot stays open (it could not be unmounted).
    if (!entry.write(data) && !(await drainedOrClosed(entry)))
      throw new Error(`the archive stopped while ${name} was read`);
  }
  if (bytes !== stats.size) {
    entry.destroy();
    throw new Error(
      `${full} changed size while it was archived (${stats.size} → ${bytes} bytes); a snapshot must not change`,
    );
  }
  entry.end(null);
  await done;
  return { path: name, bytes, sha256: hash.digest("hex") };
}

/** Resolves when zstd exits 0; rejects with its stderr otherwise. */
async function zstdExit(zstd: ChildProcessByStdio<Writable, Readable, Readable>): Promise<void> {
  let stderr = "";
  zstd.stderr.setEncoding("utf8").on("data", (text: string) => (stderr = (stderr + text).slice(-2000)));
  const [code, signal] = (await once(zstd, "exit")) as [number | null, string | null];
  if (code !== 0)
    throw new Error(`zstd ${signal ? `was killed by ${signal}` : `exited ${code}`}: ${stderr.trim()}`);
}

/**
 * Writes the compressed stream to the archive file at increasing offsets, tells the follower how far it got,
 * and flushes the file every SYNC_EVERY_BYTES without waiting (the next flush waits for the previous one, so
 * the writer never runs more than two windows ahead of the disk); `final` waits for the last flush, so the
 * archive is durable when the pipeline ends.
 */
class SyncingFileWriter extends Writable {
  private position = 0;
  private syncedTo = 0;
  private syncing: Promise<void> = Promise.resolve();

  constructor(
    private readonly file: FileHandle,
    private readonly follow?: GrowingFile,
  ) {
    super({ highWaterMark: 4 * CHUNK_BYTES });
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, done: (error?: Error | null) => void): void {
    this.append(chunks.map((c) => c.chunk)).then(() => done(), done);
  }

  override _final(done: (error?: Error | null) => void): void {
    this.syncing.then(() => this.file.datasync()).then(() => done(), done);
  }

  private async append(buffers: Buffer[]): Promise<void> {
    this.position = await writeAllAt(this.file, buffers, this.position);
    this.follow?.grew(this.position);
    if (this.position - this.syncedTo >= SYNC_EVERY_BYTES) {
      await this.syncing;
      this.syncedTo = this.position;
      this.syncing = this.file.datasync();
      // Awaited by the next window or by _final; marked handled here so it cannot go unobserved meanwhile.
      this.syncing.catch(() => undefined);
    }
  }
}

/**
 * fsync of a path: for a file, through a new descriptor, which flushes its data too (Linux syncs the inode,
 * not the descriptor); for a directory, it makes a rename in it durable.
 */
async function fsyncPath(path: string): Promise<void> {
  const handle: FileHandle = await open(path, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
