import { BACKUP_ID_PATTERN, NAME_PATTERN } from "./keys";
import { schemaFor } from "./schema";
import { parser } from "./validate";

export const MANIFEST_FORMAT_VERSION = 1;

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

/** One file of the snapshot as archived. */
export interface ManifestFile {
  path: string;
  bytes: number;
  sha256: string;
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

/** The single source of truth of a backup (DESIGN §3). Uploaded last: no manifest, no backup. */
export interface BackupManifest {
  formatVersion: typeof MANIFEST_FORMAT_VERSION;
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
  archive: {
    key: string;
    bytes: number;
    sha256: string;
    compression: "zstd";
    format: "tar";
    /** Sum of the archived files' sizes, before compression. */
    rawBytes: number;
  };
  files: ManifestFile[];
  tables: ManifestTable[];
}

const sha256 = { type: "string", pattern: "^[0-9a-f]{64}$" } as const;
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

export const manifestSchema = schemaFor<BackupManifest>()({
  $id: "https://mysql-backup-pipeline/manifest-v1.json",
  type: "object",
  additionalProperties: false,
  required: [
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
  ],
  properties: {
    formatVersion: { const: MANIFEST_FORMAT_VERSION },
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
    archive: {
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
    },
    files: {
      type: "array",
      minItems: 1,
      items: {
        type: "object",
        additionalProperties: false,
        required: ["path", "bytes", "sha256"],
        properties: {
          // Relative, normalised paths only: an archive must never write outside its scratch directory.
          path: { type: "string", minLength: 1, pattern: "^(?!/)(?!.*(^|/)\\.\\.(/|$)).+$" },
          bytes: count,
          sha256,
        },
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
  },
});

/** The lock mode of a manifest, also one written before lock modes existed. */
export function lockModeOf(manifest: Pick<BackupManifest, "lock">): LockMode {
  if (manifest.lock.mode !== undefined) return manifest.lock.mode;
  return manifest.lock.method === "FLUSH TABLES WITH READ LOCK" ? "global" : "commit";
}

/** Validates a manifest (on write and on read); throws a ContractError naming every bad key. */
export const parseManifest = parser("manifest.json", manifestSchema);
