import { mkdir, open, realpath, symlink, type FileHandle } from "node:fs/promises";
import { join, posix } from "node:path";
import type { FilePiece } from "../../contracts";
import { PipelineError, messageOf } from "../common/errors";
import { sha256Stream, type StreamHash } from "../common/hash-offload";
import { writeAllAt } from "../common/streams";
import {
  BLOCK,
  TarFormatError,
  applyExtended,
  decodeHeader,
  decodeLongName,
  decodePax,
  isZeroBlock,
  paddingAfter,
  type TarHeader,
} from "../common/tar";

/**
 * Unpacks the tar stream of an archive into a scratch root, one chunk at a time or several at once (manifest
 * format 2, contracts/archive.ts): each chunk's decompressed bytes are parsed on their own, starting inside a
 * file's data when the chunk says so, and every run of a file's bytes written here is hashed on the way as a
 * fragment (offset, bytes, sha256) — the whole file when one chunk holds it, a piece when a chunk boundary
 * cuts it. Files are created `wx` (never through or over something already there), hard links, devices and
 * FIFOs are refused, and symbolic links are created only once every chunk is unpacked, so no entry is ever
 * written through one; each must then resolve inside the root.
 */

/** What was written of one file: its fragments, one per chunk it lay in. */
export interface ExtractedFile {
  /** Bytes written in all. */
  bytes: number;
  /** Every run of bytes written, with its sha256, in the order they were written. */
  fragments: FilePiece[];
}

/** Raised for an archive entry that would write outside the scratch root or is not a plain file/dir. */
export class UnsafeEntryError extends Error {
  constructor(entry: string, why: string) {
    super(`archive entry "${entry}" refused: ${why}`);
    this.name = "UnsafeEntryError";
  }
}

/** Where a chunk begins: inside a file's data (that file, its size, and the byte the chunk begins with). */
export interface ChunkStart {
  continues?: { path: string; offset: number; fileBytes: number };
}

/** How a chunk's stream ended: inside a file's data (which the next chunk must continue), or after a whole entry. */
export interface ChunkEnd {
  /** Tar bytes the chunk held. */
  tarBytes: number;
  /** Set when the stream ended inside a file's data: the file and the byte the next chunk must begin with. */
  endsInside: { path: string; offset: number } | null;
  /** Whether the end-of-archive blocks were read. */
  sawEnd: boolean;
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

/** The extract writes a file in calls of at least this many bytes (but the last). */
const WRITE_BATCH_BYTES = 1024 * 1024;
/**
 * Writes of a chunk's file data in flight while its parser goes on (each of about WRITE_BATCH_BYTES): parsing,
 * hashing and `zstd -d` no longer wait for every write to reach the page cache.
 */
const WRITES_IN_FLIGHT = 2;

/** Unpacks the chunks of one archive into `root` (which must exist and be empty); see the module comment. */
export class ArchiveUnpacker {
  /** Every regular file written below the root, by its normalised relative path. */
  readonly files = new Map<string, ExtractedFile>();
  private readonly links: Array<{ path: string; target: string }> = [];
  /** Files some entry header named: a second header for one is refused. */
  private readonly headed = new Set<string>();
  /** Open files, shared by the chunks that write pieces of the same file; each closes after its last use. */
  private readonly handles = new Map<string, { file: Promise<FileHandle>; users: number }>();

  /**
   * @param root the scratch root
   * @param split the files the manifest lists in pieces, with how many: such a file stays open until every
   *   piece is written, as chunks may write them in any order
   */
  constructor(
    private readonly root: string,
    private readonly split: ReadonlyMap<string, number> = new Map(),
  ) {}

  /** Parses one chunk's tar bytes (`stream`, in order) and writes its entries; see `ChunkEnd`. */
  async unpackChunk(stream: AsyncIterable<Buffer>, start: ChunkStart = {}): Promise<ChunkEnd> {
    const parser = new ChunkParser(this, start);
    try {
      for await (const data of stream) await parser.push(data);
      return await parser.end();
    } finally {
      await parser.release();
    }
  }

  /** Closes every file still open (a split file missing a piece, or after a failure); idempotent. */
  async close(): Promise<void> {
    for (const [path, entry] of [...this.handles]) {
      this.handles.delete(path);
      await (await entry.file.catch(() => undefined))?.close();
    }
  }

  /** Once every chunk is unpacked: creates the symbolic links, then proves each resolves inside the root. */
  async createLinks(): Promise<void> {
    for (const link of this.links) {
      const at = join(this.root, link.path);
      await writeSafely(link.path, () => mkdir(join(at, ".."), { recursive: true, mode: 0o750 }));
      await writeSafely(link.path, () => symlink(link.target, at));
    }
    const realRoot = await realpath(this.root);
    for (const link of this.links) {
      const resolved = await realpath(join(this.root, link.path)).catch(() => null);
      if (resolved === null)
        throw new UnsafeEntryError(link.path, `links to ${link.target}, which does not exist`);
      if (resolved !== realRoot && !resolved.startsWith(realRoot + "/")) {
        throw new UnsafeEntryError(link.path, `resolves to ${resolved}, outside the scratch root`);
      }
    }
  }

  /** A directory entry. */
  async directory(path: string | null): Promise<void> {
    if (path !== null)
      await writeSafely(path, () => mkdir(join(this.root, path), { recursive: true, mode: 0o750 }));
  }

  /** A symbolic link entry, created at the end. */
  symlink(path: string, linkname: string): void {
    this.links.push({ path, target: safeLinkTarget(path, linkname) });
  }

  /** A file entry's header: the file must not have been named before. */
  headFile(path: string): void {
    if (this.headed.has(path)) throw new UnsafeEntryError(path, "the archive holds it twice");
    this.headed.add(path);
  }

  /** The file `path` opened for writing (created `wx` by whichever chunk comes first); `done` when finished with it. */
  async openFile(path: string): Promise<FileHandle> {
    let entry = this.handles.get(path);
    if (entry === undefined) {
      const target = join(this.root, path);
      const file = (async () => {
        await writeSafely(path, () => mkdir(join(target, ".."), { recursive: true, mode: 0o750 }));
        return writeSafely(path, () => open(target, "wx", 0o640));
      })();
      file.catch(() => undefined);
      entry = { file, users: 0 };
      this.handles.set(path, entry);
    }
    entry.users++;
    return entry.file;
  }

  /** A chunk is done writing `path`: records the fragment; the file is closed when no chunk uses it. */
  async doneWith(path: string, fragment: FilePiece | null): Promise<void> {
    if (fragment !== null) {
      const file = this.files.get(path) ?? { bytes: 0, fragments: [] };
      file.bytes += fragment.bytes;
      file.fragments.push(fragment);
      this.files.set(path, file);
    }
    const entry = this.handles.get(path)!;
    if (--entry.users > 0) return;
    const pieces = this.split.get(path);
    if (pieces !== undefined && (this.files.get(path)?.fragments.length ?? 0) < pieces) return;
    this.handles.delete(path);
    await (await entry.file.catch(() => undefined))?.close();
  }
}

/** The file data being written by a chunk: where, from which offset, hashed as it goes. */
interface Writing {
  path: string;
  file: FileHandle;
  start: number;
  offset: number;
  remaining: number;
  /** Bytes of the entry's data (its padding follows them). */
  entryBytes: number;
  hash: StreamHash;
  batch: Buffer[];
  batchBytes: number;
  /** Writes issued and not yet awaited, oldest first (at most WRITES_IN_FLIGHT). */
  writes: Array<Promise<unknown>>;
}

/** The parser of one chunk's tar bytes. */
class ChunkParser {
  private tarBytes = 0;
  private header = Buffer.alloc(BLOCK);
  private headerFill = 0;
  private skip = 0;
  private extended: {
    kind: "pax" | "global-pax" | "gnu-longname" | "gnu-longlink";
    data: Buffer;
    fill: number;
  } | null = null;
  private pending: Record<string, string> = {};
  private writing: Writing | null = null;
  private zeroBlocks = 0;
  private ready: Promise<void>;

  constructor(
    private readonly unpacker: ArchiveUnpacker,
    start: ChunkStart,
  ) {
    const continues = start.continues;
    this.ready = continues
      ? this.beginData(
          continues.path,
          continues.offset,
          continues.fileBytes - continues.offset,
          continues.fileBytes,
        )
      : Promise.resolve();
  }

  async push(data: Buffer): Promise<void> {
    await this.ready;
    this.tarBytes += data.length;
    for (let at = 0; at < data.length;) {
      if (this.skip > 0) {
        const take = Math.min(this.skip, data.length - at);
        this.skip -= take;
        at += take;
      } else if (this.writing) {
        at += await this.data(data, at);
      } else if (this.extended) {
        at += await this.extendedData(data, at);
      } else {
        const take = Math.min(BLOCK - this.headerFill, data.length - at);
        data.copy(this.header, this.headerFill, at, at + take);
        this.headerFill += take;
        at += take;
        if (this.headerFill === BLOCK) {
          this.headerFill = 0;
          await this.onHeader();
        }
      }
    }
  }

  async end(): Promise<ChunkEnd> {
    await this.ready;
    let endsInside: ChunkEnd["endsInside"] = null;
    if (this.writing) {
      const { path, offset, batchBytes } = this.writing;
      endsInside = { path, offset: offset + batchBytes };
      await this.closeWriting();
    } else if (this.headerFill > 0 || this.extended || this.skip > 0) {
      throw new TarFormatError("the stream ends inside a header or its padding (truncated)");
    }
    return { tarBytes: this.tarBytes, endsInside, sawEnd: this.zeroBlocks >= 2 };
  }

  /** Lets go of a file left open by a stream that broke off. */
  async release(): Promise<void> {
    if (this.writing) {
      const { path, writes } = this.writing;
      this.writing = null;
      // The file is closed only once no write to it is in flight.
      await Promise.allSettled(writes);
      await this.unpacker.doneWith(path, null);
    }
  }

  private async onHeader(): Promise<void> {
    if (isZeroBlock(this.header)) {
      this.zeroBlocks++;
      return;
    }
    if (this.zeroBlocks > 0) throw new TarFormatError("an entry after the end-of-archive blocks");
    const decoded = decodeHeader(this.header);
    if (decoded.kind !== "entry") {
      this.extended = { kind: decoded.kind, data: Buffer.alloc(decoded.size), fill: 0 };
      if (decoded.size === 0) await this.extendedData(Buffer.alloc(0), 0);
      return;
    }
    const header = applyExtended(decoded.header, this.pending);
    this.pending = {};
    await this.onEntry(header);
  }

  private async extendedData(data: Buffer, at: number): Promise<number> {
    const ext = this.extended!;
    const take = Math.min(ext.data.length - ext.fill, data.length - at);
    data.copy(ext.data, ext.fill, at, at + take);
    ext.fill += take;
    if (ext.fill === ext.data.length) {
      this.extended = null;
      this.skip = paddingAfter(ext.data.length);
      if (ext.kind === "pax") Object.assign(this.pending, decodePax(ext.data));
      else if (ext.kind === "gnu-longname") this.pending.path = decodeLongName(ext.data);
      else if (ext.kind === "gnu-longlink") this.pending.linkpath = decodeLongName(ext.data);
    }
    return take;
  }

  private async onEntry(header: TarHeader): Promise<void> {
    const path = safeEntryPath(header.name);
    switch (header.type) {
      case "directory":
        await this.unpacker.directory(path);
        return;
      case "symlink":
        if (path !== null) this.unpacker.symlink(path, header.linkname ?? "");
        return;
      case "file":
        if (path === null) throw new UnsafeEntryError(header.name, "a file entry without a name");
        this.unpacker.headFile(path);
        await this.beginData(path, 0, header.size, header.size);
        return;
      default:
        throw new UnsafeEntryError(
          header.name,
          `a "${header.typeflag}" entry; a datadir snapshot holds only files, directories and symbolic links`,
        );
    }
  }

  private async beginData(
    path: string,
    offset: number,
    remaining: number,
    entryBytes: number,
  ): Promise<void> {
    const file = await this.unpacker.openFile(path);
    this.writing = {
      path,
      file,
      start: offset,
      offset,
      remaining,
      entryBytes,
      hash: sha256Stream("VerifierInfrastructure"),
      batch: [],
      batchBytes: 0,
      writes: [],
    };
    if (remaining === 0) await this.closeWriting();
  }

  private async data(data: Buffer, at: number): Promise<number> {
    const w = this.writing!;
    const take = Math.min(w.remaining, data.length - at);
    const piece = data.subarray(at, at + take);
    await w.hash.update(piece);
    w.batch.push(piece);
    w.batchBytes += take;
    w.remaining -= take;
    if (w.batchBytes >= WRITE_BATCH_BYTES) await this.flush(w);
    if (w.remaining === 0) await this.closeWriting();
    return take;
  }

  /** Issues the write of the batch; waits for the oldest write in flight when there are too many. */
  private async flush(w: Writing): Promise<void> {
    const batch = w.batch;
    const position = w.offset;
    w.offset += w.batchBytes;
    w.batch = [];
    w.batchBytes = 0;
    if (batch.length === 0) return;
    const write = writeSafely(w.path, () => writeAllAt(w.file, batch, position));
    // Handled where it is awaited (below, in closeWriting or in release).
    write.catch(() => undefined);
    w.writes.push(write);
    if (w.writes.length > WRITES_IN_FLIGHT) await w.writes.shift();
  }

  /** The file's data in this chunk is written: records the fragment, skips the entry's padding if it ended. */
  private async closeWriting(): Promise<void> {
    const w = this.writing!;
    await this.flush(w);
    while (w.writes.length > 0) await w.writes.shift();
    this.writing = null;
    if (w.remaining === 0) this.skip = paddingAfter(w.entryBytes);
    const fragment = { offset: w.start, bytes: w.offset - w.start, sha256: await w.hash.digest() };
    await this.unpacker.doneWith(w.path, fragment);
  }
}

/** Runs a filesystem write; its failure is the scratch disk's (full, read-only), not the backup's. */
export async function writeSafely<T>(path: string, write: () => Promise<T>): Promise<T> {
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
