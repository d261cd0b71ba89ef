import { spawn, type ChildProcessByStdio } from "node:child_process";
import { createHash, type Hash } from "node:crypto";
import { once } from "node:events";
import { createReadStream, createWriteStream, type Stats } from "node:fs";
import { lstat, open, readdir, readlink, rename, unlink, type FileHandle } from "node:fs/promises";
import { dirname, join } from "node:path";
import { Transform, type Readable, type Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { pack as tarPack, type Header, type Pack } from "tar-stream";
import type { ManifestFile } from "../contracts";
import { PipelineError, messageOf } from "./errors";
import type { Logger } from "./log";
import { pauseAt } from "./testhooks";

/**
 * Step 5: the snapshot as one tar+zstd stream in a single pass over the data. Each file is read once; its
 * bytes go to its sha256 and into the tar stream, which `zstd` compresses in a child process; the
 * compressed bytes go to the archive's sha256 and to `<dest>.partial`, which is fsynced and renamed to
 * `<dest>` only when complete. Backpressure runs end to end (file ← tar ← zstd ← disk), so memory stays
 * flat whatever the size of the data.
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

/** Read size per file chunk: large enough to keep per-chunk overhead low, small enough to stay flat. */
const CHUNK_BYTES = 1024 * 1024;

/** Writes the archive of `root` to `dest`; on failure removes the partial file and throws ArchiveFailed. */
export async function writeArchive(options: ArchiveOptions): Promise<ArchiveResult> {
  const started = performance.now();
  const partial = `${options.dest}.partial`;
  const zstd = spawn("zstd", [`-${options.level ?? 1}`, `-T${options.threads ?? 0}`, "-q", "-c"], {
    stdio: ["pipe", "pipe", "pipe"],
  });
  const tar = tarPack({ highWaterMark: 4 * CHUNK_BYTES });
  const archiveHash = createHash("sha256");
  let archiveBytes = 0;
  let chunks = 0;
  const tally = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      archiveHash.update(chunk);
      archiveBytes += chunk.length;
      // Test hook: with the first chunk already passed on to the file, the archive is half written here.
      if (++chunks === 2) void pauseAt("archive").then(() => done(null, chunk));
      else done(null, chunk);
    },
  });
  const contents: Contents = { files: [], rawBytes: 0, directories: 0, symlinks: 0, skipped: [] };

  try {
    await Promise.all([
      packTree(options.root, tar, contents, options.log, options.onBytes ?? (() => undefined)),
      pipeline(tar as unknown as Readable, zstd.stdin),
      pipeline(zstd.stdout, tally, createWriteStream(partial, { flags: "wx", mode: 0o600 })),
      zstdExit(zstd),
    ]);
    await fsyncPath(partial);
  } catch (e) {
    tar.destroy();
    zstd.kill("SIGKILL");
    await unlink(partial).catch(() => undefined);
    throw new PipelineError(
      "ArchiveFailed",
      `archiving ${options.root} into ${partial} failed: ${messageOf(e)}`,
      "check free space and permissions in the local backup directory; the snapshot was left intact for this run only",
      { cause: e },
    );
  }
  await rename(partial, options.dest);
  await fsyncPath(dirname(options.dest));
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
  const done = new Promise<void>((resolve, reject) => {
    entry = tar.entry(header(name, stats, "file"), (error) => (error ? reject(error) : resolve()));
  });
  let bytes = 0;
  for await (const chunk of createReadStream(full, { highWaterMark: CHUNK_BYTES })) {
    const data = chunk as Buffer;
    bytes += data.length;
    if (bytes > stats.size) break;
    hash.update(data);
    onBytes(data.length);
    if (!entry.write(data)) await once(entry, "drain");
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
