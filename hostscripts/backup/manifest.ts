import {
  BACKUP_CREATED,
  MANIFEST_FORMAT_VERSION,
  parseManifest,
  type BackupConfig,
  type BackupCreatedMessage,
  type BackupManifest,
} from "../../contracts";
import type { Dialect, LockPlan, ServerFacts } from "../common/dialect";
import type { ArchiveResult } from "./archive";
import { round } from "./durations";
import type { Frozen } from "./freeze";
import type { LockChoice } from "./lockmode";

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
    archiveKey: string;
  },
): BackupManifest {
  return parseManifest({
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
    archive: {
      key: parts.archiveKey,
      bytes: parts.archive.bytes,
      sha256: parts.archive.sha256,
      compression: "zstd",
      format: "tar",
      rawBytes: parts.archive.rawBytes,
    },
    files: parts.archive.files,
    tables: parts.frozen.tables,
  });
}

/** The `backup.created` message of a manifest stored at `bucket`/`manifestKey`. */
export function backupCreatedOf(
  manifest: BackupManifest,
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
