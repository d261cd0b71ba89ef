import { spawn, type ChildProcessByStdio } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, open, realpath, symlink } from "node:fs/promises";
import { join, posix } from "node:path";
import type { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { extract as tarExtract } from "tar-stream";
import type { ManifestFile } from "../../contracts";
import { drainedOrClosed, writeAllAt } from "../common/streams";
import { PipelineError, messageOf } from "../common/errors";

/**
 * Download → sha256 of the compressed bytes → `zstd -d` → tar → files under a scratch root, each hashed on
 * the way: one streamed pass, no copy of the archive on disk (DESIGN §1 steps 11–12).
 *
 * A corrupt archive is a verdict, not a crash: when zstd or tar give up mid-stream the download is still
 * read to its end and hashed, so the report can say "the archive's sha256 differs" when that is the cause.
 * Failures of the verifier's own host (scratch disk full, zstd missing, the download breaking off) are
 * PipelineErrors of kind VerifierInfrastructure: the message is retried, no verdict is written.
 */

/** What was written for one archived file. */
export interface ExtractedFile {
  bytes: number;
  sha256: string;
}

/** The outcome of one extraction pass. */
export interface Extraction {
  /** Size and sha256 of the compressed bytes as downloaded. */
  archive: { bytes: number; sha256: string };
  /** Every regular file written below the root, by its normalised relative path. */
  files: Map<string, ExtractedFile>;
  /** Why the archive could not be decompressed or unpacked (corrupt data, an unsafe entry), or null. */
  unpackError: string | null;
}

/** Options of `extractArchive`. */
export interface ExtractOptions {
  /** The zstd binary. Defaults to `zstd` on PATH. */
  zstd?: string;
}

/** Raised for an archive entry that would write outside the scratch root or is not a plain file/dir. */
export class UnsafeEntryError extends Error {
  constructor(entry: string, why: string) {
    super(`archive entry "${entry}" refused: ${why}`);
    this.name = "UnsafeEntryError";
  }
}

/**
 * The relative path an entry may be written to, or null for the archive root itself (`./`).
 * Refuses absolute paths and any `..` segment: nothing in an archive may reach outside the scratch root.
 */
export function safeEntryPath(name: string): string | null {
  if (name.includes("\0")) throw new UnsafeEntryError(name, "the name holds a NUL byte");
  if (name.startsWith("/")) throw new UnsafeEntryError(name, "absolute path");
  if (name.split("/").includes(".."))
    throw new UnsafeEntryError(name, 'a ".." segment climbs out of the root');
  const normalised = posix.normalize(name).replace(/\/+$/, "");
  if (normalised === "." || normalised === "") return null;
  return normalised.replace(/^\.\//, "");
}

/**
 * Streams `source` (the archive's bytes) through zstd and tar into `root`, which must exist and be empty.
 * Hard links, devices and FIFOs are refused; symbolic links only when they stay inside `root`.
 */
export async function extractArchive(
  source: AsyncIterable<Uint8Array>,
  root: string,
  options: ExtractOptions = {},
): Promise<Extraction> {
  const zstd = spawn(options.zstd ?? "zstd", ["-d", "-c", "-q"], { stdio: ["pipe", "pipe", "pipe"] });
  const decompressor = watchDecompressor(zstd);
  const files = new Map<string, ExtractedFile>();
  const unpacking = unpack(zstd.stdout, root, files).then(
    () => null,
    (error: unknown) => {
      if (error instanceof PipelineError) throw error;
      // zstd may still be writing: stop it so the download keeps flowing into the hash alone.
      zstd.kill("SIGKILL");
      return messageOf(error);
    },
  );
  // Attach a handler now; the rejection (an infrastructure error) is rethrown when awaited below.
  unpacking.catch(() => undefined);
  try {
    const archive = await hashAndFeed(source, zstd.stdin);
    const unpackError = await unpacking;
    const exit = await decompressor;
    if (exit.spawnError) {
      throw new PipelineError(
        "VerifierInfrastructure",
        `cannot run zstd to decompress the archive: ${exit.spawnError}`,
        "install zstd on the verifier host (apt-get install zstd); the message will be retried",
      );
    }
    return { archive, files, unpackError: unpackError ?? describeZstdFailure(exit) };
  } finally {
    if (zstd.exitCode === null && zstd.signalCode === null) zstd.kill("SIGKILL");
    await decompressor;
  }
}

/** How zstd ended: its code, signal, the tail of its stderr, or why it could not start. */
interface DecompressorExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  spawnError: string | null;
}

function watchDecompressor(
  zstd: ChildProcessByStdio<Writable, Readable, Readable>,
): Promise<DecompressorExit> {
  let stderr = "";
  zstd.stderr.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-2000);
  });
  return new Promise((resolve) => {
    zstd.once("error", (error) =>
      resolve({ code: null, signal: null, stderr, spawnError: messageOf(error) }),
    );
    zstd.once("close", (code, signal) => resolve({ code, signal, stderr, spawnError: null }));
  });
}

function describeZstdFailure(exit: DecompressorExit): string | null {
  if (exit.code === 0) return null;
  const how = exit.signal ? `was killed by ${exit.signal}` : `exited with ${exit.code}`;
  return `zstd -d ${how}: ${exit.stderr.trim() || "(no message)"}`;
}

/**
 * Reads the whole download, hashing every byte, and writes it to zstd while zstd still takes it.
 * A download that breaks off is the verifier's problem (network, S3), never a verdict on the backup.
 */
async function hashAndFeed(
  source: AsyncIterable<Uint8Array>,
  sink: Writable,
): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash("sha256");
  let bytes = 0;
  let open = true;
  sink.on("error", () => {
    // EPIPE once zstd has given up on corrupt data; the hash goes on, the verdict comes later.
    open = false;
  });
  try {
    for await (const chunk of source) {
      hash.update(chunk);
      bytes += chunk.length;
      if (open && !sink.write(chunk)) open = await drainedOrClosed(sink);
    }
  } catch (error) {
    throw new PipelineError(
      "VerifierInfrastructure",
      `the archive download broke off after ${bytes} bytes: ${messageOf(error)}`,
      "check the verifier's network path to S3; the message will be retried",
      { cause: error },
    );
  } finally {
    sink.end();
  }
  return { bytes, sha256: hash.digest("hex") };
}

/**
 * Parses the tar stream and writes its entries below `root`; throws on corrupt or unsafe entries.
 * Symbolic links are created only after every file and directory is written, so no entry is ever written
 * through one; then each must resolve inside `root`.
 */
async function unpack(tarStream: Readable, root: string, files: Map<string, ExtractedFile>): Promise<void> {
  const extract = tarExtract();
  // Errors reach us through the iterator below; this only keeps the pipeline's own rejection handled.
  pipeline(tarStream, extract).catch(() => undefined);
  const links: Array<{ path: string; target: string }> = [];
  for await (const entry of extract) {
    const path = safeEntryPath(entry.header.name);
    const type = entry.header.type ?? "file";
    if (type === "directory") {
      if (path !== null)
        await writeSafely(path, () => mkdir(join(root, path), { recursive: true, mode: 0o750 }));
      entry.resume();
    } else if (type === "file" || type === "contiguous-file") {
      if (path === null) throw new UnsafeEntryError(entry.header.name, "a file entry without a name");
      if (files.has(path)) throw new UnsafeEntryError(path, "the archive holds it twice");
      // tar-stream yields Buffers; its typings leave the entry iterator untyped.
      files.set(path, await writeEntry(entry as AsyncIterable<Buffer>, root, path));
    } else if (type === "symlink" && path !== null) {
      links.push({ path, target: safeLinkTarget(path, entry.header.linkname ?? "") });
      entry.resume();
    } else {
      throw new UnsafeEntryError(
        entry.header.name,
        `a ${type} entry; a datadir snapshot holds only files, directories and symbolic links`,
      );
    }
  }
  await createLinks(root, links);
}

/** A symbolic link's target, refused when absolute or when it climbs out of the root by its text alone. */
export function safeLinkTarget(path: string, target: string): string {
  if (target === "" || target.includes("\0"))
    throw new UnsafeEntryError(path, "an empty or invalid link target");
  if (target.startsWith("/")) throw new UnsafeEntryError(path, `links to the absolute path ${target}`);
  const resolved = posix.normalize(posix.join(posix.dirname(path), target));
  if (resolved === ".." || resolved.startsWith("../")) {
    throw new UnsafeEntryError(path, `links to ${target}, outside the archive`);
  }
  return target;
}

/** Creates the links, then proves each resolves inside `root` (chains of links could still climb out). */
async function createLinks(root: string, links: Array<{ path: string; target: string }>): Promise<void> {
  for (const link of links) {
    const at = join(root, link.path);
    await writeSafely(link.path, () => mkdir(join(at, ".."), { recursive: true, mode: 0o750 }));
    await writeSafely(link.path, () => symlink(link.target, at));
  }
  const realRoot = await realpath(root);
  for (const link of links) {
    const resolved = await realpath(join(root, link.path)).catch(() => null);
    if (resolved === null)
      throw new UnsafeEntryError(link.path, `links to ${link.target}, which does not exist`);
    if (resolved !== realRoot && !resolved.startsWith(realRoot + "/")) {
      throw new UnsafeEntryError(link.path, `resolves to ${resolved}, outside the scratch root`);
    }
  }
}

/** Writes one file entry, hashing it on the way. */
async function writeEntry(entry: AsyncIterable<Buffer>, root: string, path: string): Promise<ExtractedFile> {
  const target = join(root, path);
  await writeSafely(path, () => mkdir(join(target, ".."), { recursive: true, mode: 0o750 }));
  // "wx": never follow or overwrite something that is already there.
  const file = await writeSafely(path, () => open(target, "wx", 0o640));
  const hash = createHash("sha256");
  let bytes = 0;
  // Chunks come at the pipe's 64 KiB; written one by one, each write is a trip through the thread pool
  // that the extract waits for. Gathered into ~1 MiB writev calls, there are 16× fewer.
  let batch: Buffer[] = [];
  let batchBytes = 0;
  const flush = async () => {
    const pending = batch;
    const position = bytes - batchBytes;
    batch = [];
    batchBytes = 0;
    await writeSafely(path, () => writeAllAt(file, pending, position));
  };
  try {
    for await (const chunk of entry) {
      hash.update(chunk);
      bytes += chunk.length;
      batch.push(chunk);
      batchBytes += chunk.length;
      if (batchBytes >= WRITE_BATCH_BYTES) await flush();
    }
    await flush();
  } finally {
    await file.close();
  }
  return { bytes, sha256: hash.digest("hex") };
}

/** The extract writes a file in calls of at least this many bytes (but the last). */
const WRITE_BATCH_BYTES = 1024 * 1024;

/** Runs a filesystem write; its failure is the scratch disk's (full, read-only), not the backup's. */
async function writeSafely<T>(path: string, write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "EEXIST") throw new UnsafeEntryError(path, "it already exists in the scratch root");
    throw new PipelineError(
      "VerifierInfrastructure",
      `cannot write ${path} into the scratch directory: ${messageOf(error)}`,
      code === "ENOSPC"
        ? "the scratch disk is full: give the verifier a bigger scratch volume; the message will be retried"
        : "check the scratch directory's filesystem and permissions; the message will be retried",
      { cause: error },
    );
  }
}

/** What differs between the manifest's file list and what the archive held. */
export interface FileComparison {
  missing: string[];
  extra: string[];
  different: string[];
}

/** Compares every file the manifest lists with what was extracted: missing, extra, different bytes. */
export function compareFiles(
  expected: ManifestFile[],
  extracted: Map<string, ExtractedFile>,
): FileComparison {
  const result: FileComparison = { missing: [], extra: [], different: [] };
  const listed = new Set<string>();
  for (const file of expected) {
    const path = posix.normalize(file.path).replace(/^\.\//, "");
    listed.add(path);
    const got = extracted.get(path);
    if (got === undefined) result.missing.push(path);
    else if (got.bytes !== file.bytes)
      result.different.push(`${path} (${got.bytes} bytes, manifest ${file.bytes})`);
    else if (got.sha256 !== file.sha256)
      result.different.push(`${path} (sha256 ${got.sha256}, manifest ${file.sha256})`);
  }
  for (const path of extracted.keys()) if (!listed.has(path)) result.extra.push(path);
  return result;
}

/** One sentence naming what differs (at most a few paths of each kind), or null when nothing does. */
export function describeComparison(comparison: FileComparison): string | null {
  const parts: string[] = [];
  const list = (paths: string[]) =>
    paths.slice(0, 5).join(", ") + (paths.length > 5 ? ` and ${paths.length - 5} more` : "");
  if (comparison.missing.length) parts.push(`missing from the archive: ${list(comparison.missing)}`);
  if (comparison.extra.length) parts.push(`not in the manifest: ${list(comparison.extra)}`);
  if (comparison.different.length)
    parts.push(`content differs (sha256 mismatch): ${list(comparison.different)}`);
  return parts.length ? parts.join("; ") : null;
}
