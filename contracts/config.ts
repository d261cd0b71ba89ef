import { chainCheckSettingsSchema, type ChainCheckSettings } from "./chain-verdict";
import { drillSettingsSchema, type DrillSettings } from "./drill-verdict";
import { binlogArchiveConfigSchema, type BinlogArchiveConfig } from "./binlog-config";
import { NAME_PATTERN } from "./keys";
import { LOCK_MODES, type LockMode } from "./manifest";
import { schemaFor } from "./schema";
import { segmentCheckSettingsSchema, type SegmentCheckSettings } from "./segment-verdict";
import { parser } from "./validate";

/**
 * The config files the host scripts take with `--config FILE`. The ReplicaAgent and VerifierFleet
 * components render them, so their shape is a contract between the two sides.
 * No secret lives here: MySQL credentials come from an option file, AWS from the default chain.
 */

/** How to reach AWS (or, in the lab, a local emulator). */
export interface AwsSettings {
  /** Defaults to the SDK's chain (AWS_REGION, the instance's region). */
  region?: string;
  /** An S3/SQS-compatible endpoint; only for the lab. Defaults to AWS. */
  endpoint?: string;
  /** Path-style S3 addressing, which emulators need. Defaults to false. */
  forcePathStyle?: boolean;
  /** An ini credentials file to read instead of the default chain; only for the lab. */
  credentialsFile?: string;
}

/**
 * Where metrics go: CloudWatch in production; JSON lines in a file locally; or a Prometheus text file for
 * node_exporter's textfile collector (`path` ends in `.prom`, in the collector's directory; one file per
 * service), for estates that do not use CloudWatch.
 */
export type MetricsSink =
  { sink: "cloudwatch" } | { sink: "file"; path: string } | { sink: "prometheus"; path: string };

/** How to open a client session on the local server. */
export interface MysqlConnection {
  /**
   * A my.cnf-style file whose [client] group holds user, password, socket or host/port; a [mysql-backup]
   * group overrides it. Mode 0600.
   */
  optionFile: string;
}

export type SnapshotConfig =
  | {
      driver: "btrfs";
      /** The btrfs subvolume that holds the datadir (and its logs). */
      subvolume: string;
      /** Where snapshots are created; must be on the same btrfs filesystem. */
      snapshotDir: string;
    }
  | {
      driver: "lvm";
      /** `vg/lv` of the logical volume that holds the datadir. */
      volume: string;
      /** Snapshot size, e.g. `10G` or `20%ORIGIN`. */
      size: string;
      /** Where the snapshot is mounted read-only while it is archived. */
      mountDir: string;
    }
  | {
      driver: "zfs";
      /** The dataset that holds the datadir, e.g. `tank/mysql`. */
      dataset: string;
    };

/** `mysql-backup backup --config FILE`. */
export interface BackupConfig {
  /** The replication cluster: an S3 key segment and the `Cluster` metric dimension. */
  cluster: string;
  /** This replica: an S3 key segment and the `Host` metric dimension. */
  host: string;
  /** How the backup connects to the local server. */
  mysql: MysqlConnection;
  /** How the datadir's volume is snapshotted. */
  snapshot: SnapshotConfig;
  /**
   * Hard limit on how long the server stays locked (lock, position capture and snapshot); past it the
   * lock is released and the backup fails. Defaults to 5000.
   */
  lockTimeoutMs?: number;
  /**
   * How much of the server the backup stops while the snapshot is taken (docs/lock-modes.md): `none` (no
   * lock: only where every table that holds data is crash-safe and the server is configured crash-safe),
   * `commit` (only commits wait), `global` (FLUSH TABLES WITH READ LOCK), or `auto`, the least blocking mode
   * the server proves safe before each backup. A mode the server cannot prove is refused with an error
   * naming the setting or table that forbids it, never weakened. Defaults to "auto".
   */
  lockMode?: "auto" | LockMode;
  /** Where archives are written before upload; the newest `keepLocal` stay there. */
  localDir: string;
  /** How many local archives to keep, for fast restores. Defaults to 2. */
  keepLocal?: number;
  /**
   * zstd level and threads (0 = one per core), and `chunkMiB`: the most tar bytes one archive object (chunk)
   * holds; chunks are compressed on their own so a restore can unpack several at once, and each
   * stays well inside S3's and an emulator's object limits. Defaults to level 1, threads 0, chunkMiB 1024.
   */
  compression?: { level?: number; threads?: number; chunkMiB?: number };
  /**
   * The free-space check before archiving (refuses with DiskSpace, exit 13, instead of filling the
   * disk). `ratio`: archive bytes per data byte
   * to plan for; defaults to the last local backup's ratio × 1.25, else 1. `reserveMiB`: space to leave
   * free after the archive; defaults to 1024.
   */
  diskSpace?: { ratio?: number; reserveMiB?: number };
  /** Where the archive and its manifest are uploaded. */
  s3: {
    /** The backup bucket. */
    bucket: string;
    /** Key prefix above `<cluster>/`. Defaults to "backups". */
    prefix?: string;
    /** The KMS key for SSE-KMS; the bucket default is used when absent. */
    kmsKeyId?: string;
    /** Multipart part size in MiB. Defaults to 16 (raised when the archive could need more than 10,000 parts). */
    partSizeMiB?: number;
    /** Parts uploaded at once. Defaults to 4. */
    queueSize?: number;
  };
  /** Where `backup.created` is sent. */
  sqs: { queueUrl: string };
  /** How to reach AWS. Defaults to the SDK's chain. */
  aws?: AwsSettings;
  /** Where metrics go. Defaults to CloudWatch. */
  metrics?: MetricsSink;
  /** How `mysql-backup binlog` archives the binary log (contracts/binlog-config.ts). Defaults to its defaults. */
  binlog?: BinlogArchiveConfig;
}

/** `mysql-backup verify --config FILE`. */
export interface VerifyConfig {
  /** The verification queue. */
  sqs: {
    /** Its URL. */
    queueUrl: string;
    /** Long-poll wait. Defaults to 20. */
    waitTimeSeconds?: number;
    /**
     * Visibility on receive; must exceed the longest restore (the daemon also renews it every third of
     * it while a restore runs). Defaults to 3600.
     */
    visibilityTimeoutSeconds?: number;
  };
  /** Parent of the per-restore scratch directories (each removed after its restore). */
  scratchDir: string;
  /**
   * Restores run at once by the daemon, each in its own scratch directory below `scratchDir`. Size it to
   * the host's disk (each restore needs the datadir's size) and cores. Defaults to 1.
   */
  concurrency?: number;
  /**
   * How `verification.json` is written. The bucket policy denies uploads without SSE-KMS under the
   * bucket's key, so production configs name it. Defaults to SSE-KMS with the bucket's default key.
   */
  s3?: {
    kmsKeyId?: string;
    /**
     * Tag the backup's archive and manifest `verified=true|false` after each verdict (lifecycle rules and
     * people browsing the bucket can see it). Needs s3:PutObjectTagging. Off by default because the lab's
     * emulator does not implement tagging (it would store the tag request as the object); production
     * configs turn it on. Defaults to false.
     */
    tagObjects?: boolean;
  };
  mysqld?: {
    /** The server binary. Defaults to the first of mariadbd, mysqld on PATH. */
    binary?: string;
    /** The OS user the scratch server runs as. Defaults to "mysql". */
    user?: string;
    /** Seconds to wait for crash recovery. Defaults to 600. */
    startTimeoutSeconds?: number;
    /**
     * InnoDB buffer pool of the scratch server. Recovery and the table checks read the whole dataset
     * through it: too small and a multi-GB restore spends minutes evicting pages. Defaults to 512.
     */
    bufferPoolMiB?: number;
  };
  /**
   * How deep the "tables" check goes. `extended`: `CHECK TABLE … EXTENDED`, which reads every row
   * against every index (minutes per GB); plain `CHECK TABLE` plus the page checksums of "pages" is the
   * default. Defaults to false.
   */
  checks?: { extended?: boolean };
  /** How to reach AWS. Defaults to the SDK's chain. */
  aws?: AwsSettings;
  /** Where metrics go. Defaults to CloudWatch. */
  metrics?: MetricsSink;
  /**
   * How a backup is compared with the previous verified backup of its cluster (report field `drift`).
   * A table of at least `minRows` rows that loses more than `maxShrinkShare` of them is flagged, as is any
   * table that vanished. Defaults to maxShrinkShare 0.5, minRows 100.
   */
  drift?: { maxShrinkShare?: number; minRows?: number };
  /**
   * How archives are downloaded and unpacked: `workers` archive objects (chunks) at once, each through its own
   * hash + decompress + extract pass (the decompression in its own `zstd -d` process, hashing and tar parsing on
   * the command's one Node thread) (0 = one per core); ranged GETs of `partSizeMiB`,
   * `concurrency` in flight in all (shared among the workers, at least one each). Memory: about
   * (concurrency + workers) parts. Defaults to partSizeMiB 8, concurrency 4, workers 0.
   */
  download?: { partSizeMiB?: number; concurrency?: number; workers?: number };
  /**
   * Optional replication catch-up (check "replication"): the restored server replicates from this source
   * from the manifest's position and must apply what the source had logged when it started, within
   * `timeoutSeconds`. `optionFile` (mode 0600) holds `[client]` host, port, user and password of a
   * replication account on the source. Defaults to off; timeoutSeconds defaults to 600.
   */
  catchUp?: { optionFile: string; timeoutSeconds?: number };
  /** How `binlog.archived` messages are checked (contracts/segment-verdict.ts). Defaults as documented there. */
  segments?: SegmentCheckSettings;
  /** Whether the chain from the previous verified snapshot is proven (contracts/chain-verdict.ts). */
  chain?: ChainCheckSettings;
  /** Whether a restore to a random point between A and B follows each proven chain (contracts/drill-verdict.ts). */
  pitrDrill?: DrillSettings;
  /**
   * Where `mysql-backup restore` finds a cluster's backups. The verify daemon ignores it (it learns the
   * bucket from each message), so one file on a verifier host serves both commands. Required by `restore`.
   */
  restore?: RestoreSource;
}

/** The backups `mysql-backup restore` lists and restores: one cluster's, below `<prefix>/<cluster>/`. */
export interface RestoreSource {
  bucket: string;
  /** Key prefix above `<cluster>/`, as in the backup config. Defaults to "backups". */
  prefix?: string;
  cluster: string;
}

/** `mysql-backup restore --config FILE`: the verify config with its `restore` section set. */
export type RestoreConfig = VerifyConfig & { restore: RestoreSource };

/** {@link AwsSettings} as JSON; every config that reaches AWS embeds it. */
export const awsSettingsSchema = {
  type: "object",
  additionalProperties: false,
  properties: {
    region: { type: "string", minLength: 1 },
    endpoint: { type: "string", pattern: "^https?://" },
    forcePathStyle: { type: "boolean" },
    credentialsFile: { type: "string", minLength: 1 },
  },
} as const;
const aws = awsSettingsSchema;
const metrics = {
  type: "object",
  required: ["sink"],
  discriminator: { propertyName: "sink" },
  oneOf: [
    {
      type: "object",
      additionalProperties: false,
      required: ["sink"],
      properties: { sink: { const: "cloudwatch" } },
    },
    {
      type: "object",
      additionalProperties: false,
      required: ["sink", "path"],
      properties: { sink: { const: "file" }, path: { type: "string", minLength: 1 } },
    },
    {
      type: "object",
      additionalProperties: false,
      required: ["sink", "path"],
      // node_exporter reads only *.prom files of its directory.
      properties: { sink: { const: "prometheus" }, path: { type: "string", pattern: "^/.*\\.prom$" } },
    },
  ],
} as const;
const absolutePath = { type: "string", pattern: "^/" } as const;

export const backupConfigSchema = schemaFor<BackupConfig>()({
  type: "object",
  additionalProperties: false,
  required: ["cluster", "host", "mysql", "snapshot", "localDir", "s3", "sqs"],
  properties: {
    cluster: { type: "string", pattern: NAME_PATTERN },
    host: { type: "string", pattern: NAME_PATTERN },
    mysql: {
      type: "object",
      additionalProperties: false,
      required: ["optionFile"],
      properties: { optionFile: absolutePath },
    },
    snapshot: {
      type: "object",
      required: ["driver"],
      discriminator: { propertyName: "driver" },
      oneOf: [
        {
          additionalProperties: false,
          required: ["driver", "subvolume", "snapshotDir"],
          properties: { driver: { const: "btrfs" }, subvolume: absolutePath, snapshotDir: absolutePath },
        },
        {
          additionalProperties: false,
          required: ["driver", "volume", "size", "mountDir"],
          properties: {
            driver: { const: "lvm" },
            volume: { type: "string", pattern: "^[A-Za-z0-9+_.-]+/[A-Za-z0-9+_.-]+$" },
            size: { type: "string", pattern: "^\\d+([KMGTkmgt]|%(ORIGIN|FREE|VG))$" },
            mountDir: absolutePath,
          },
        },
        {
          additionalProperties: false,
          required: ["driver", "dataset"],
          properties: {
            driver: { const: "zfs" },
            dataset: { type: "string", pattern: "^[A-Za-z0-9_.:/-]+$" },
          },
        },
      ],
    },
    lockTimeoutMs: { type: "integer", minimum: 100, maximum: 60000 },
    lockMode: { enum: ["auto", ...LOCK_MODES] },
    localDir: absolutePath,
    keepLocal: { type: "integer", minimum: 0, maximum: 100 },
    compression: {
      type: "object",
      additionalProperties: false,
      properties: {
        level: { type: "integer", minimum: 1, maximum: 19 },
        threads: { type: "integer", minimum: 0, maximum: 256 },
        chunkMiB: { type: "integer", minimum: 1, maximum: 16384 },
      },
    },
    diskSpace: {
      type: "object",
      additionalProperties: false,
      properties: {
        ratio: { type: "number", exclusiveMinimum: 0, maximum: 2 },
        reserveMiB: { type: "integer", minimum: 0 },
      },
    },
    s3: {
      type: "object",
      additionalProperties: false,
      required: ["bucket"],
      properties: {
        bucket: { type: "string", pattern: "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$" },
        prefix: { type: "string", pattern: "^[A-Za-z0-9._/-]*$" },
        kmsKeyId: { type: "string", minLength: 1 },
        partSizeMiB: { type: "integer", minimum: 5, maximum: 5120 },
        queueSize: { type: "integer", minimum: 1, maximum: 64 },
      },
    },
    sqs: {
      type: "object",
      additionalProperties: false,
      required: ["queueUrl"],
      properties: { queueUrl: { type: "string", pattern: "^https?://" } },
    },
    aws,
    metrics,
    binlog: binlogArchiveConfigSchema,
  },
});

export const verifyConfigSchema = schemaFor<VerifyConfig>()({
  type: "object",
  additionalProperties: false,
  required: ["sqs", "scratchDir"],
  properties: {
    sqs: {
      type: "object",
      additionalProperties: false,
      required: ["queueUrl"],
      properties: {
        queueUrl: { type: "string", pattern: "^https?://" },
        waitTimeSeconds: { type: "integer", minimum: 0, maximum: 20 },
        visibilityTimeoutSeconds: { type: "integer", minimum: 30, maximum: 43200 },
      },
    },
    checks: {
      type: "object",
      additionalProperties: false,
      properties: { extended: { type: "boolean" } },
    },
    scratchDir: absolutePath,
    concurrency: { type: "integer", minimum: 1, maximum: 16 },
    s3: {
      type: "object",
      additionalProperties: false,
      properties: { kmsKeyId: { type: "string", minLength: 1 }, tagObjects: { type: "boolean" } },
    },
    mysqld: {
      type: "object",
      additionalProperties: false,
      properties: {
        binary: { type: "string", minLength: 1 },
        user: { type: "string", minLength: 1 },
        startTimeoutSeconds: { type: "integer", minimum: 5, maximum: 86400 },
        bufferPoolMiB: { type: "integer", minimum: 32, maximum: 1048576 },
      },
    },
    aws,
    metrics,
    catchUp: {
      type: "object",
      additionalProperties: false,
      required: ["optionFile"],
      properties: {
        optionFile: absolutePath,
        timeoutSeconds: { type: "integer", minimum: 1, maximum: 86400 },
      },
    },
    download: {
      type: "object",
      additionalProperties: false,
      properties: {
        partSizeMiB: { type: "integer", minimum: 1, maximum: 1024 },
        concurrency: { type: "integer", minimum: 1, maximum: 64 },
        workers: { type: "integer", minimum: 0, maximum: 256 },
      },
    },
    segments: segmentCheckSettingsSchema,
    chain: chainCheckSettingsSchema,
    pitrDrill: drillSettingsSchema,
    drift: {
      type: "object",
      additionalProperties: false,
      properties: {
        maxShrinkShare: { type: "number", minimum: 0, maximum: 1 },
        minRows: { type: "integer", minimum: 0 },
      },
    },
    restore: {
      type: "object",
      additionalProperties: false,
      required: ["bucket", "cluster"],
      properties: {
        bucket: { type: "string", pattern: "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$" },
        prefix: { type: "string", pattern: "^[A-Za-z0-9._/-]*$" },
        cluster: { type: "string", pattern: NAME_PATTERN },
      },
    },
  },
});

export const restoreConfigSchema = schemaFor<RestoreConfig>()({
  ...verifyConfigSchema,
  required: [...verifyConfigSchema.required, "restore"],
});

export const parseBackupConfig = parser("backup config", backupConfigSchema);
export const parseVerifyConfig = parser("verify config", verifyConfigSchema);
export const parseRestoreConfig = parser("restore config", restoreConfigSchema);
