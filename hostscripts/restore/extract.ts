import { spawn, type ChildProcessByStdio } from "node:child_process";
import { posix } from "node:path";
import type { Readable, Writable } from "node:stream";
import { isSplit, type ArchivedFile } from "../../contracts";
import { PipelineError, messageOf } from "../common/errors";
import { sha256Stream } from "../common/hash-offload";
import {
  ArchiveUnpacker,
  UnsafeEntryError,
  type ChunkEnd,
  type ChunkStart,
  type ExtractedFile,
} from "./untar";

export { UnsafeEntryError, safeEntryPath, safeLinkTarget, type ExtractedFile } from "./untar";

/**
 * One archive object, downloaded → sha256 of its compressed bytes → `zstd -d` → tar → files under a scratch
 * root, each hashed on the way: one streamed pass, no copy of the archive on disk (DESIGN §1 steps 11–12).
 * A restore runs one such pass per chunk of a format 2 archive, several at once (objects.ts), each with its
 * own zstd.
 *
 * A corrupt archive is a verdict, not a crash: when zstd or tar give up mid-stream the download is still
 * read to its end and hashed, so the report can say "the archive's sha256 differs" when that is the cause.
 * Failures of the verifier's own host (scratch disk full, zstd missing, the download breaking off) are
 * PipelineErrors of kind VerifierInfrastructure: the message is retried, no verdict is written.
 */

/** The outcome of one object's pass. */
export interface ChunkExtraction {
  /** Size and sha256 of the compressed bytes as downloaded. */
  archive: { bytes: number; sha256: string };
  /** How its tar stream ended, when it could be unpacked. */
  end: ChunkEnd | null;
  /** Why it could not be decompressed or unpacked (corrupt data, an unsafe entry), or null. */
  unpackError: string | null;
}

/** The outcome of a whole archive's extraction. */
export interface Extraction {
  /** Size and sha256 of each object's compressed bytes as downloaded, in order. */
  objects: Array<{ bytes: number; sha256: string }>;
  /** Every regular file written below the root, by its normalised relative path. */
  files: Map<string, ExtractedFile>;
  /** Why the archive could not be decompressed or unpacked (corrupt data, an unsafe entry), or null. */
  unpackError: string | null;
}

/** Options of the extraction. */
export interface ExtractOptions {
  /** The zstd binary. Defaults to `zstd` on PATH. */
  zstd?: string;
}

/**
 * Streams `source` (one object's bytes) through zstd and tar into the unpacker's root, starting as `start`
 * says. Each buffer of `source` is written into zstd before the next is asked for, so a source may reuse it.
 */
export async function extractChunk(
  source: AsyncIterable<Uint8Array>,
  unpacker: ArchiveUnpacker,
  start: ChunkStart,
  options: ExtractOptions = {},
): Promise<ChunkExtraction> {
  const zstd = spawn(options.zstd ?? "zstd", ["-d", "-c", "-q"], { stdio: ["pipe", "pipe", "pipe"] });
  const decompressor = watchDecompressor(zstd);
  let end: ChunkEnd | null = null;
  const unpacking = unpacker.unpackChunk(zstd.stdout as AsyncIterable<Buffer>, start).then(
    (ended) => {
      end = ended;
      return null;
    },
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
    const zstdError = describeZstdFailure(exit);
    return { archive, end: zstdError ? null : end, unpackError: unpackError ?? zstdError };
  } finally {
    if (zstd.exitCode === null && zstd.signalCode === null) zstd.kill("SIGKILL");
    await decompressor;
    // Nothing is written below the root once this returns or throws (a failed restore's caller may remove it).
    await unpacking.catch(() => undefined);
  }
}

/**
 * Extracts a whole archive that is a single stream (a format 1 archive, or a tar+zstd stream made by hand):
 * `root` must exist and be empty.
 */
export async function extractArchive(
  source: AsyncIterable<Uint8Array>,
  root: string,
  options: ExtractOptions = {},
): Promise<Extraction & { archive: { bytes: number; sha256: string } }> {
  const unpacker = new ArchiveUnpacker(root);
  try {
    const chunk = await extractChunk(source, unpacker, {}, options);
    const unpackError = chunk.unpackError ?? (await finishArchive(unpacker, [chunk.end], [{}]));
    return { archive: chunk.archive, objects: [chunk.archive], files: unpacker.files, unpackError };
  } finally {
    await unpacker.close();
  }
}

/**
 * Once every chunk is unpacked: checks that the first chunk begins with an entry, each chunk's stream ends
 * where the next one begins (`starts`, one per chunk) and the last with the end-of-archive blocks, then creates
 * the symbolic links. Returns why the archive does not hold together, or null.
 */
export async function finishArchive(
  unpacker: ArchiveUnpacker,
  ends: Array<ChunkEnd | null>,
  starts: ChunkStart[],
): Promise<string | null> {
  const first = starts[0]?.continues;
  if (first)
    return `the first chunk continues ${first.path} at byte ${first.offset}: chunks before it are missing`;
  for (const [index, end] of ends.entries()) {
    if (end === null) return `chunk ${index + 1} could not be read`;
    const next = starts[index + 1]?.continues;
    const inside = end.endsInside;
    const last = index === ends.length - 1;
    if (last && (inside !== null || !end.sawEnd))
      return inside
        ? `the archive ends inside ${inside.path} at byte ${inside.offset} (truncated)`
        : "the archive ends without its end-of-archive blocks (truncated)";
    if (!last && (inside?.path !== next?.path || inside?.offset !== next?.offset))
      return `chunk ${index + 1} ends ${inside ? `inside ${inside.path} at byte ${inside.offset}` : "after a whole entry"}, but chunk ${index + 2} ${next ? `continues ${next.path} at byte ${next.offset}` : "starts with an entry"}`;
    if (!last && end.sawEnd) return `chunk ${index + 1} ends the archive, but chunks follow it`;
  }
  try {
    await unpacker.createLinks();
    return null;
  } catch (error) {
    if (error instanceof UnsafeEntryError) return messageOf(error);
    throw error;
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
 * Reads the whole download, hashing every byte, and writes it to zstd while zstd still takes it; each buffer
 * is in zstd's input (or zstd is gone) before the next is asked for. A download that breaks off is the
 * verifier's problem (network, S3), never a verdict on the backup.
 */
async function hashAndFeed(
  source: AsyncIterable<Uint8Array>,
  sink: Writable,
): Promise<{ bytes: number; sha256: string }> {
  const hash = sha256Stream("VerifierInfrastructure");
  let bytes = 0;
  let open = true;
  sink.on("error", () => {
    // EPIPE once zstd has given up on corrupt data; the hash goes on, the verdict comes later.
    open = false;
  });
  try {
    for await (const chunk of source) {
      await hash.update(chunk);
      bytes += chunk.length;
      if (open) open = await written(sink, chunk);
    }
  } catch (error) {
    // The hashing thread's own failure is already named; anything else broke the download.
    if (error instanceof PipelineError) throw error;
    throw new PipelineError(
      "VerifierInfrastructure",
      `the archive download broke off after ${bytes} bytes: ${messageOf(error)}`,
      "check the verifier's network path to S3; the message will be retried",
      { cause: error },
    );
  } finally {
    sink.end();
  }
  return { bytes, sha256: await hash.digest() };
}

/** Writes `chunk` and resolves once it is handed to zstd (true), or zstd's input failed (false). */
function written(sink: Writable, chunk: Uint8Array): Promise<boolean> {
  if (sink.destroyed || sink.writableEnded) return Promise.resolve(false);
  return new Promise((resolve) => sink.write(chunk, (error) => resolve(!error)));
}

/** What differs between the manifest's file list and what the archive held. */
export interface FileComparison {
  missing: string[];
  extra: string[];
  different: string[];
}

/**
 * Compares every file the manifest lists with what was extracted: missing, extra, different bytes. A file
 * hashed whole must have been written as one run with its sha256; a file listed in pieces must have been
 * written as exactly those pieces, each with its sha256.
 */
export function compareFiles(
  expected: ArchivedFile[],
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
    else {
      const difference = piecesDiffer(isSplit(file) ? file.pieces : [{ offset: 0, ...file }], got);
      if (difference !== null) result.different.push(`${path} (${difference})`);
    }
  }
  for (const path of extracted.keys()) if (!listed.has(path)) result.extra.push(path);
  return result;
}

/** How the fragments written differ from the pieces expected, or null when they are the same. */
function piecesDiffer(
  pieces: ReadonlyArray<{ offset: number; bytes: number; sha256: string }>,
  got: ExtractedFile,
): string | null {
  const byOffset = new Map(got.fragments.map((f) => [f.offset, f]));
  if (got.fragments.length !== pieces.length || byOffset.size !== pieces.length)
    return `written in ${got.fragments.length} runs, manifest lists ${pieces.length}`;
  for (const piece of pieces) {
    const fragment = byOffset.get(piece.offset);
    const where = pieces.length > 1 ? ` of the piece at byte ${piece.offset}` : "";
    if (fragment === undefined || fragment.bytes !== piece.bytes)
      return `no run of ${piece.bytes} bytes at byte ${piece.offset}`;
    if (fragment.sha256 !== piece.sha256)
      return `sha256${where} ${fragment.sha256}, manifest ${piece.sha256}`;
  }
  return null;
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
