import { archiveChunkKey, type ArchivedFile } from "../../contracts";
import type { ArchiveResult } from "../../hostscripts/backup/archive";
import type { UploadedChunk } from "../../hostscripts/backup/multipart";

/**
 * What `buildManifest` takes of an archive of one chunk, for tests that build a manifest by hand: the archive
 * as written (`archive`) and its chunk as uploaded (`uploaded`), under the layout's key for `backupId`.
 */
export function oneChunkArchive(
  where: { cluster: string; host: string; backupId: string },
  archive: { bytes: number; rawBytes: number; files: ArchivedFile[]; sha256?: string },
): { archive: ArchiveResult; uploaded: UploadedChunk[] } {
  const tarBytes = archive.files.reduce((sum, file) => sum + 512 + Math.ceil(file.bytes / 512) * 512, 1024);
  return {
    archive: {
      chunks: [{ index: 0, path: "/x/archive-0001.tar.zst", bytes: archive.bytes, tarOffset: 0, tarBytes }],
      chunkBytes: 1024 * 1024 * 1024,
      bytes: archive.bytes,
      rawBytes: archive.rawBytes,
      tarBytes,
      files: archive.files,
      directories: 0,
      symlinks: 0,
      skipped: [],
      seconds: 1,
    },
    uploaded: [
      {
        index: 0,
        key: archiveChunkKey({ prefix: "backups", ...where }, 0),
        bytes: archive.bytes,
        sha256: archive.sha256 ?? "a".repeat(64),
      },
    ],
  };
}
