import {
  BACKUP_CREATED,
  MANIFEST_FORMAT_VERSION,
  archiveLayoutProblem,
  chunkListDigest,
  parseManifest,
  type ArchiveV2,
  type BackupConfig,
  type BackupCreatedMessage,
  type BackupManifestV2,
  type RetentionClass,
} from "../../contracts";
import type { Dialect, LockPlan, ServerFacts } from "../common/dialect";
import type { ArchiveResult } from "./archive";
import { round } from "./durations";
import type { Frozen } from "./freeze";
import type { LockChoice } from "../common/lockmode";
import type { UploadedChunk } from "./multipart";

/**
 * What a backup publishes (steps 8–9): `manifest.json`, the single source of truth of the backup, and the
 * `backup.created` message that announces it.
 */

/** The manifest of a finished archive, validated against its schema (a bug here must fail, not upload). */
export function buildManifest(
  config: BackupConfig,
  parts: {
    backupId: string;
    startedAt: Date;
    completedAt: Date;
    facts: ServerFacts;
    dialect: Dialect;
    /** The lock mode and how it was taken. */
    lock: { choice: Pick<LockChoice, "chosenBy" | "reason">; plan: Pick<LockPlan, "mode" | "method"> };
    lockMs: number;
    frozen: Pick<Frozen, "position" | "positionAfter" | "tables" | "snapshot">;
    sourceRoot: string;
    archive: ArchiveResult;
    /** Every chunk as uploaded: its key, size and sha256. */
    uploaded: UploadedChunk[];
    /** The class the archive was tagged with at its creation; the manifest is tagged with it too. */
    retention: RetentionClass;
  },
): BackupManifestV2 {
  const archive = archiveOf(parts.archive, parts.uploaded);
  const problem = archiveLayoutProblem(archive, parts.archive.files);
  if (problem !== null) throw new Error(`the archive's layout is wrong (${problem}); this is a bug`);
  const manifest = parseManifest({
    formatVersion: MANIFEST_FORMAT_VERSION,
    backupId: parts.backupId,
    cluster: config.cluster,
    host: config.host,
    startedAt: parts.startedAt.toISOString(),
    completedAt: parts.completedAt.toISOString(),
    server: { flavor: parts.dialect.flavor, version: parts.dialect.version, serverId: parts.facts.serverId },
    settings: parts.facts.settings,
    position: parts.frozen.position,
    ...(parts.frozen.positionAfter !== null ? { positionAfter: parts.frozen.positionAfter } : {}),
    lock: {
      method: parts.lock.plan.method,
      ms: round(parts.lockMs),
      mode: parts.lock.plan.mode,
      chosenBy: parts.lock.choice.chosenBy,
      reason: parts.lock.choice.reason,
    },
    snapshot: {
      driver: config.snapshot.driver,
      name: parts.frozen.snapshot.name,
      sourceRoot: parts.sourceRoot,
    },
    archive,
    files: parts.archive.files,
    tables: parts.frozen.tables,
    retention: parts.retention,
  });
  if (manifest.formatVersion !== 2)
    throw new Error("buildManifest wrote another format than 2; this is a bug");
  return manifest;
}

/** The manifest's archive: the chunks as written (tar offsets) and as uploaded (key, size, sha256). */
export function archiveOf(written: ArchiveResult, uploaded: UploadedChunk[]): ArchiveV2 {
  if (uploaded.length !== written.chunks.length)
    throw new Error(`${written.chunks.length} chunks written, ${uploaded.length} uploaded; this is a bug`);
  const chunks = written.chunks.map((chunk, index) => {
    const up = uploaded[index];
    if (up.index !== chunk.index || up.bytes !== chunk.bytes)
      throw new Error(
        `chunk ${index + 1}: written ${chunk.bytes} bytes, uploaded ${up.bytes}; this is a bug`,
      );
    return {
      key: up.key,
      bytes: up.bytes,
      sha256: up.sha256,
      tarOffset: chunk.tarOffset,
      tarBytes: chunk.tarBytes,
      ...(chunk.continues ? { continues: chunk.continues } : {}),
    };
  });
  return {
    compression: "zstd",
    format: "tar",
    bytes: written.bytes,
    rawBytes: written.rawBytes,
    sha256: chunkListDigest(chunks),
    chunkBytes: written.chunkBytes,
    chunks,
  };
}

/** The `backup.created` message of a manifest stored at `bucket`/`manifestKey`. */
export function backupCreatedOf(
  manifest: BackupManifestV2,
  bucket: string,
  manifestKey: string,
): BackupCreatedMessage {
  return {
    type: BACKUP_CREATED,
    version: 1,
    bucket,
    manifestKey,
    backupId: manifest.backupId,
    cluster: manifest.cluster,
    host: manifest.host,
    createdAt: manifest.completedAt,
    archiveSha256: manifest.archive.sha256,
  };
}
