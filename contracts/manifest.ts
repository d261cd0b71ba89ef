import {
  archiveV1Schema,
  archiveV2Schema,
  manifestFileSchema,
  splitFileSchema,
  type ArchiveV1,
  type ArchiveV2,
  type ArchivedFile,
  type ManifestFile,
} from "./archive";
import { BACKUP_ID_PATTERN, NAME_PATTERN } from "./keys";
import { RETENTION_CLASSES, type RetentionClass } from "./objectTags";
import { schemaFor } from "./schema";
import { ContractError, parser } from "./validate";

/** The format this release writes (contracts/archive.ts): chunks restored in parallel. */
export const MANIFEST_FORMAT_VERSION = 2;
/** The formats a restore reads: 1 (one archive object) and 2 (chunks). */
export const READABLE_MANIFEST_FORMATS = [1, 2] as const;

export type ServerFlavor = "mysql" | "mariadb";
export type SnapshotDriverName = "btrfs" | "lvm" | "zfs";

/**
 * How much of the server a backup stops while the snapshot is taken (DESIGN §1, docs/lock-modes.md):
 * `none` nothing (every table that holds data is crash-safe and the position is what the restored server
 * recovers to), `commit` only commits (MariaDB `BACKUP STAGE BLOCK_COMMIT`, MySQL `LOCK INSTANCE FOR
 * BACKUP`), `global` every write (`FLUSH TABLES WITH READ LOCK`).
 */
export type LockMode = "none" | "commit" | "global";
/** The lock modes, least blocking first. */
export const LOCK_MODES = ["none", "commit", "global"] as const satisfies readonly LockMode[];
/** The statement that took the lock; `none` when no lock was taken. */
export type LockMethod =
  "none" | "BACKUP STAGE BLOCK_COMMIT" | "LOCK INSTANCE FOR BACKUP" | "FLUSH TABLES WITH READ LOCK";
/** Where a lock mode came from: the backup config (`lockMode`) or the automatic choice. */
export type LockModeSource = "config" | "auto";

/**
 * Where the server stood: under the lock, everything a restore needs to rejoin the cluster. Without a lock
 * that holds commits (manifest `positionAfter` present) it is read just before the snapshot, a lower bound.
 */
export interface CapturedPosition {
  /** MariaDB `@@gtid_binlog_pos`: the GTIDs in this server's own binary log. */
  gtidBinlogPos: string | null;
  /** MariaDB `@@gtid_slave_pos`: the last GTID the replica applied per domain. */
  gtidSlavePos: string | null;
  /** MariaDB `@@gtid_current_pos`. */
  gtidCurrentPos: string | null;
  /** MySQL `@@gtid_executed`. */
  gtidExecuted: string | null;
  /** This server's own binary log coordinates, or null when log_bin is off. */
  binlog: { file: string; pos: number } | null;
  /** The replica's coordinates in its source's binary log, or null on a server that is not a replica. */
  source: { host: string; port: number; file: string; pos: number; usingGtid: string | null } | null;
}

/** Server settings a restore must reproduce for the datadir to start. */
export interface RestoreSettings {
  innodbPageSize: number;
  lowerCaseTableNames: number;
  /** `@@log_bin_basename` (absolute on the source host), or null when binary logging is off. */
  logBinBasename: string | null;
  /** `@@log_bin_index` (absolute on the source host), or null. */
  logBinIndex: string | null;
  /** `@@datadir` on the source host (absolute); below `snapshot.sourceRoot`. */
  datadir: string;
  innodbLogFileSize: number | null;
  innodbDataFilePath: string | null;
}

/** What `information_schema.TABLES.TABLE_TYPE` calls an object that holds data. */
export type TableType = "BASE TABLE" | "SYSTEM VERSIONED" | "SEQUENCE";

/**
 * One object that holds data, in the inventory taken with the snapshot (under the lock, or just before the
 * snapshot in lock mode `none`): base tables of every engine, system-versioned tables, sequences. Views hold
 * no data and are left out.
 */
export interface ManifestTable {
  schema: string;
  table: string;
  /** Empty when the server reports none. */
  engine: string;
  /** Absent in manifests written before sequences were inventoried: read as "BASE TABLE". */
  type?: TableType;
  /** True for a partitioned table (any partitioning, including `BY SYSTEM_TIME`). */
  partitioned?: boolean;
}

/** How the server was held while the snapshot was taken. */
export interface ManifestLock {
  method: LockMethod;
  /** How long the lock was held (first lock statement to unlock returned); 0 when none was taken. */
  ms: number;
  /** Absent in manifests written before lock modes: FTWRL was `global`, LOCK INSTANCE FOR BACKUP `commit`. */
  mode?: LockMode;
  /** Whether the config named the mode or the automatic choice picked it. */
  chosenBy?: LockModeSource;
  /** Why this mode: the proof that allowed it, or what ruled out the weaker ones. */
  reason?: string;
}

/** What every manifest format says of a backup besides its archive. */
export interface ManifestCommon {
  backupId: string;
  cluster: string;
  host: string;
  startedAt: string;
  completedAt: string;
  server: { flavor: ServerFlavor; version: string; serverId: number };
  settings: RestoreSettings;
  position: CapturedPosition;
  /**
   * The position read just after the snapshot, present when nothing held commits while the snapshot was
   * taken (lock mode `none`; `commit` on MySQL, where LOCK INSTANCE FOR BACKUP lets commits through). The
   * backup's exact position is then the one its restored server recovers to (the verdict's
   * `position.recovered`), which must lie between `position` and this.
   */
  positionAfter?: CapturedPosition;
  lock: ManifestLock;
  /**
   * The snapshot the archive was read from. `sourceRoot` is the absolute path on the source host that
   * the archive's root stands for: a restore maps datadir, binlog and log paths below it to its own root.
   */
  snapshot: { driver: SnapshotDriverName; name: string; sourceRoot: string };
  tables: ManifestTable[];
  /**
   * The retention class the replica tagged the archive and this manifest with when it created them
   * (`retention=<class>`, contracts/objectTags.ts): `monthly` for the first backup of a UTC month that
   * completed, else `daily`. Absent in manifests written before the replica tagged: such objects carry no
   * retention tag, and the lifecycle keeps them as long as monthlies.
   */
  retention?: RetentionClass;
}

/** A manifest of format 1: one archive object, every file hashed whole. */
export interface BackupManifestV1 extends ManifestCommon {
  formatVersion: 1;
  archive: ArchiveV1;
  files: ManifestFile[];
}

/** A manifest of format 2: the archive in chunks, a file cut by a chunk boundary hashed in pieces. */
export interface BackupManifestV2 extends ManifestCommon {
  formatVersion: 2;
  archive: ArchiveV2;
  files: ArchivedFile[];
}

/** The single source of truth of a backup (DESIGN §3), in a format a restore reads. Uploaded last: no manifest, no backup. */
export type BackupManifest = BackupManifestV1 | BackupManifestV2;

const nullableString = { type: ["string", "null"] } as const;
const count = { type: "integer", minimum: 0 } as const;
const position = {
  type: "object",
  additionalProperties: false,
  required: ["gtidBinlogPos", "gtidSlavePos", "gtidCurrentPos", "gtidExecuted", "binlog", "source"],
  properties: {
    gtidBinlogPos: nullableString,
    gtidSlavePos: nullableString,
    gtidCurrentPos: nullableString,
    gtidExecuted: nullableString,
    binlog: {
      type: ["object", "null"],
      additionalProperties: false,
      required: ["file", "pos"],
      properties: { file: { type: "string", minLength: 1 }, pos: count },
    },
    source: {
      type: ["object", "null"],
      additionalProperties: false,
      required: ["host", "port", "file", "pos", "usingGtid"],
      properties: {
        host: { type: "string" },
        port: count,
        file: { type: "string" },
        pos: count,
        usingGtid: nullableString,
      },
    },
  },
} as const;

const commonProperties = {
  backupId: { type: "string", pattern: BACKUP_ID_PATTERN },
  cluster: { type: "string", pattern: NAME_PATTERN },
  host: { type: "string", pattern: NAME_PATTERN },
  startedAt: { type: "string", format: "date-time" },
  completedAt: { type: "string", format: "date-time" },
  server: {
    type: "object",
    additionalProperties: false,
    required: ["flavor", "version", "serverId"],
    properties: {
      flavor: { enum: ["mysql", "mariadb"] },
      version: { type: "string", minLength: 1 },
      serverId: count,
    },
  },
  settings: {
    type: "object",
    additionalProperties: false,
    required: [
      "innodbPageSize",
      "lowerCaseTableNames",
      "logBinBasename",
      "logBinIndex",
      "datadir",
      "innodbLogFileSize",
      "innodbDataFilePath",
    ],
    properties: {
      innodbPageSize: { enum: [4096, 8192, 16384, 32768, 65536] },
      lowerCaseTableNames: { enum: [0, 1, 2] },
      logBinBasename: nullableString,
      logBinIndex: nullableString,
      datadir: { type: "string", minLength: 1 },
      innodbLogFileSize: { type: ["integer", "null"], minimum: 0 },
      innodbDataFilePath: nullableString,
    },
  },
  position,
  positionAfter: position,
  lock: {
    type: "object",
    additionalProperties: false,
    required: ["method", "ms"],
    properties: {
      method: {
        enum: [
          "none",
          "BACKUP STAGE BLOCK_COMMIT",
          "LOCK INSTANCE FOR BACKUP",
          "FLUSH TABLES WITH READ LOCK",
        ],
      },
      ms: { type: "number", minimum: 0 },
      mode: { enum: LOCK_MODES },
      chosenBy: { enum: ["config", "auto"] },
      reason: { type: "string", minLength: 1 },
    },
  },
  snapshot: {
    type: "object",
    additionalProperties: false,
    required: ["driver", "name", "sourceRoot"],
    properties: {
      driver: { enum: ["btrfs", "lvm", "zfs"] },
      name: { type: "string", minLength: 1 },
      sourceRoot: { type: "string", pattern: "^/" },
    },
  },
  tables: {
    type: "array",
    items: {
      type: "object",
      additionalProperties: false,
      required: ["schema", "table", "engine"],
      properties: {
        schema: { type: "string", minLength: 1 },
        table: { type: "string", minLength: 1 },
        engine: { type: "string" },
        type: { enum: ["BASE TABLE", "SYSTEM VERSIONED", "SEQUENCE"] },
        partitioned: { type: "boolean" },
      },
    },
  },
  retention: { enum: RETENTION_CLASSES },
} as const;

const commonRequired = [
  "formatVersion",
  "backupId",
  "cluster",
  "host",
  "startedAt",
  "completedAt",
  "server",
  "settings",
  "position",
  "lock",
  "snapshot",
  "archive",
  "files",
  "tables",
] as const;

export const manifestV1Schema = schemaFor<BackupManifestV1>()({
  $id: "https://mysql-backup-pipeline/manifest-v1.json",
  type: "object",
  additionalProperties: false,
  required: commonRequired,
  properties: {
    formatVersion: { const: 1 },
    ...commonProperties,
    archive: archiveV1Schema,
    files: { type: "array", minItems: 1, items: manifestFileSchema },
  },
});

export const manifestV2Schema = schemaFor<BackupManifestV2>()({
  $id: "https://mysql-backup-pipeline/manifest-v2.json",
  type: "object",
  additionalProperties: false,
  required: commonRequired,
  properties: {
    formatVersion: { const: 2 },
    ...commonProperties,
    archive: archiveV2Schema,
    files: { type: "array", minItems: 1, items: { oneOf: [manifestFileSchema, splitFileSchema] } },
  },
});

/** The lock mode of a manifest, also one written before lock modes existed. */
export function lockModeOf(manifest: Pick<BackupManifest, "lock">): LockMode {
  if (manifest.lock.mode !== undefined) return manifest.lock.mode;
  return manifest.lock.method === "FLUSH TABLES WITH READ LOCK" ? "global" : "commit";
}

const parsers = {
  1: parser("manifest.json (format 1)", manifestV1Schema),
  2: parser("manifest.json (format 2)", manifestV2Schema),
} as const;

/**
 * Validates a manifest (on write and on read) against the schema of its `formatVersion`; throws a
 * ContractError naming every bad key, or the format when it is not one this release reads.
 */
export function parseManifest(value: unknown): BackupManifest {
  const version = (value as { formatVersion?: unknown } | null)?.formatVersion;
  if (version === 1 || version === 2) return parsers[version](value);
  throw new ContractError("manifest.json", [
    `formatVersion must be one of ${READABLE_MANIFEST_FORMATS.join(", ")} (got ${JSON.stringify(version)}): ` +
      "a newer release wrote it; upgrade this host's mysql-backup",
  ]);
}

/** One object of a backup's archive: the single object of format 1, or a chunk of format 2. */
export interface ArchiveObject {
  key: string;
  bytes: number;
  sha256: string;
}

/** The objects of a manifest's archive, in order. */
export function archiveObjectsOf(manifest: BackupManifest): ArchiveObject[] {
  if (manifest.formatVersion === 1) {
    const { key, bytes, sha256 } = manifest.archive;
    return [{ key, bytes, sha256 }];
  }
  return manifest.archive.chunks.map(({ key, bytes, sha256 }) => ({ key, bytes, sha256 }));
}
