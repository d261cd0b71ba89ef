import { createHash } from "node:crypto";

/**
 * The archive of a backup as its manifest describes it (DESIGN §3), in both formats a restore reads.
 *
 * Format 1: one object, `archive.tar.zst`, a single zstd stream of a tar of the snapshot; every file with
 * its sha256.
 *
 * Format 2: the same single tar stream, cut into **chunks** of at most `chunkBytes` of tar, each compressed
 * on its own into an object `archive-NNNN.tar.zst` with its own size and sha256. Concatenated in order, the
 * objects are one valid tar+zstd stream (zstd decompresses concatenated frames), so a person can always
 * restore with `cat archive-*.tar.zst | zstd -d | tar -x`. Decompressed on their own, they let a restore run
 * on every core: a chunk that begins inside a file's data says so (`continues`: which file, at which byte),
 * so it can be unpacked without the chunks before it. A file cut by a chunk boundary is listed with its
 * **pieces** (offset, bytes, sha256 of each), one per chunk it lies in, instead of one sha256: each piece is
 * hashed where it is written, in parallel, and every byte of the file lies in exactly one piece at a fixed
 * offset, so the file is intact exactly when every piece is — the same SHA-256 collision resistance a
 * whole-file hash rests on. (A whole-file sha256 beside them would hash those bytes twice on the replica.)
 */

const sha256 = { type: "string", pattern: "^[0-9a-f]{64}$" } as const;
const count = { type: "integer", minimum: 0 } as const;
/** Relative, normalised paths only: an archive must never write outside its scratch directory. */
const relativePath = { type: "string", minLength: 1, pattern: "^(?!/)(?!.*(^|/)\\.\\.(/|$)).+$" } as const;

/** One file of the snapshot as archived, hashed whole. */
export interface ManifestFile {
  path: string;
  bytes: number;
  sha256: string;
}

/** One piece of a file that a chunk boundary cut (format 2): its place in the file and its sha256. */
export interface FilePiece {
  /** Byte offset of the piece in the file. */
  offset: number;
  bytes: number;
  sha256: string;
}

/** A file that lies in more than one chunk (format 2): its pieces in order, covering it exactly. */
export interface SplitFile {
  path: string;
  bytes: number;
  pieces: FilePiece[];
}

/** A file of a format 2 manifest: hashed whole, or in pieces when a chunk boundary cut it. */
export type ArchivedFile = ManifestFile | SplitFile;

/** Whether a file is listed in pieces. */
export function isSplit(file: ArchivedFile): file is SplitFile {
  return "pieces" in file;
}

/** The archive of a format 1 manifest: one object. */
export interface ArchiveV1 {
  key: string;
  /** Compressed size. */
  bytes: number;
  /** sha256 of the object. */
  sha256: string;
  compression: "zstd";
  format: "tar";
  /** Sum of the archived files' sizes, before compression. */
  rawBytes: number;
}

/** One object of a format 2 archive: a run of the tar stream, compressed on its own. */
export interface ArchiveChunk {
  key: string;
  /** Compressed size (the object's size). */
  bytes: number;
  /** sha256 of the object. */
  sha256: string;
  /** Where its tar bytes begin in the whole tar stream. */
  tarOffset: number;
  /** Its tar bytes (decompressed size). */
  tarBytes: number;
  /** Present when it begins inside a file's data: that file, and the byte of it the chunk begins with. */
  continues?: { path: string; offset: number };
}

/** The archive of a format 2 manifest: chunks of one tar stream. */
export interface ArchiveV2 {
  compression: "zstd";
  format: "tar";
  /** Compressed size of all chunks. */
  bytes: number;
  /** Sum of the archived files' sizes, before compression. */
  rawBytes: number;
  /** The archive's digest: sha256 of its chunks' sha256 digests (32 bytes each, in order); see chunkListDigest. */
  sha256: string;
  /** The most tar bytes a chunk holds (a chunk ends earlier only at the archive's end or before a header). */
  chunkBytes: number;
  chunks: ArchiveChunk[];
}

/**
 * The digest that stands for a format 2 archive (its `archive.sha256`, the message's `archiveSha256`): sha256
 * over the chunks' sha256 digests in order. It binds every chunk, so a message names the archive as exactly
 * as the sha256 of a single object does.
 */
export function chunkListDigest(chunks: ReadonlyArray<Pick<ArchiveChunk, "sha256">>): string {
  const digest = createHash("sha256");
  for (const chunk of chunks) digest.update(Buffer.from(chunk.sha256, "hex"));
  return digest.digest("hex");
}

export const manifestFileSchema = {
  type: "object",
  additionalProperties: false,
  required: ["path", "bytes", "sha256"],
  properties: { path: relativePath, bytes: count, sha256 },
} as const;

export const splitFileSchema = {
  type: "object",
  additionalProperties: false,
  required: ["path", "bytes", "pieces"],
  properties: {
    path: relativePath,
    bytes: count,
    pieces: {
      type: "array",
      minItems: 2,
      items: {
        type: "object",
        additionalProperties: false,
        required: ["offset", "bytes", "sha256"],
        // A piece holds at least one byte: a chunk never ends right after a file's header (chunks.ts).
        properties: { offset: count, bytes: { type: "integer", minimum: 1 }, sha256 },
      },
    },
  },
} as const;

export const archiveV1Schema = {
  type: "object",
  additionalProperties: false,
  required: ["key", "bytes", "sha256", "compression", "format", "rawBytes"],
  properties: {
    key: { type: "string", minLength: 1 },
    bytes: count,
    sha256,
    compression: { const: "zstd" },
    format: { const: "tar" },
    rawBytes: count,
  },
} as const;

export const archiveV2Schema = {
  type: "object",
  additionalProperties: false,
  required: ["compression", "format", "bytes", "rawBytes", "sha256", "chunkBytes", "chunks"],
  properties: {
    compression: { const: "zstd" },
    format: { const: "tar" },
    bytes: count,
    rawBytes: count,
    sha256,
    chunkBytes: { type: "integer", minimum: 1048576 },
    chunks: {
      type: "array",
      minItems: 1,
      items: {
        type: "object",
        additionalProperties: false,
        required: ["key", "bytes", "sha256", "tarOffset", "tarBytes"],
        properties: {
          key: { type: "string", minLength: 1 },
          bytes: count,
          sha256,
          tarOffset: count,
          tarBytes: count,
          continues: {
            type: "object",
            additionalProperties: false,
            required: ["path", "offset"],
            properties: { path: relativePath, offset: count },
          },
        },
      },
    },
  },
} as const;

/**
 * Why a format 2 archive's layout cannot be right, or null: chunks must follow each other in the tar stream
 * from 0, the archive's digest and sizes must be their sum and digest, a file's pieces must cover it exactly
 * in order, and every piece after a file's first must be where a chunk continues it (and the reverse). The
 * schema cannot say this; a restore relies on it to unpack chunks on their own.
 */
export function archiveLayoutProblem(archive: ArchiveV2, files: ArchivedFile[]): string | null {
  let tarOffset = 0;
  let bytes = 0;
  for (const [index, chunk] of archive.chunks.entries()) {
    if (chunk.tarOffset !== tarOffset)
      return `chunk ${index + 1} starts at tar byte ${chunk.tarOffset}, the chunks before it end at ${tarOffset}`;
    if (chunk.tarBytes > archive.chunkBytes)
      return `chunk ${index + 1} holds ${chunk.tarBytes} tar bytes, more than chunkBytes ${archive.chunkBytes}`;
    tarOffset += chunk.tarBytes;
    bytes += chunk.bytes;
  }
  if (bytes !== archive.bytes) return `the chunks hold ${bytes} bytes, archive.bytes says ${archive.bytes}`;
  if (chunkListDigest(archive.chunks) !== archive.sha256)
    return "archive.sha256 is not the digest of the chunks' sha256s";
  const continued = new Set(
    archive.chunks.flatMap((c) => (c.continues ? [`${c.continues.path}@${c.continues.offset}`] : [])),
  );
  let rawBytes = 0;
  for (const file of files) {
    rawBytes += file.bytes;
    if (!isSplit(file)) continue;
    let next = 0;
    for (const piece of file.pieces) {
      if (piece.offset !== next) return `${file.path}: a piece starts at ${piece.offset}, expected ${next}`;
      if (next > 0 && !continued.delete(`${file.path}@${next}`))
        return `${file.path}: no chunk continues it at byte ${next}`;
      next += piece.bytes;
    }
    if (next !== file.bytes) return `${file.path}: its pieces cover ${next} of its ${file.bytes} bytes`;
  }
  if (continued.size > 0) return `a chunk continues a file that has no piece there: ${[...continued][0]}`;
  if (rawBytes !== archive.rawBytes)
    return `the files hold ${rawBytes} bytes, archive.rawBytes says ${archive.rawBytes}`;
  return null;
}
