/**
 * The `binlog` section of the replica's config (`backup.json`): how `mysql-backup binlog` archives the
 * server's binary log. The archiver shares everything else with the backup (cluster, host, the MySQL option
 * file, bucket, prefix, KMS key, queue, AWS settings, metrics), so one file describes a replica.
 */
export interface BinlogArchiveConfig {
  /**
   * The recovery point objective in seconds: the longest a committed transaction may wait before it is in
   * S3. The open segment is cut once its oldest transaction has waited half of it, which leaves the other
   * half for the upload and the next poll. Defaults to 10.
   */
  rpoSeconds?: number;
  /** How often the server's binlog end is read (`SHOW MASTER STATUS`), in ms. Defaults to 1000. */
  pollIntervalMs?: number;
  /** A segment is cut at this size even before its time is up, in MiB. Defaults to 64. */
  segmentMaxMiB?: number;
  /**
   * Local state and spool (segments written to disk before they are uploaded). Keep it off the datadir's
   * volume, so a host rebuilt from a snapshot does not come back with a stale state. Defaults to
   * /var/lib/mysql-backup/binlog.
   */
  stateDir?: string;
  /**
   * Where a chain begins when there is no local state: `oldest` archives every binlog the server still has,
   * `current` only what is committed from now on. Defaults to "oldest".
   */
  startFrom?: "oldest" | "current";
  /**
   * Reading stops while the spool holds this many MiB not yet uploaded (S3 unreachable): the binlog stays on
   * the server, the lag alarm fires. Defaults to 2048.
   */
  spoolMaxMiB?: number;
  /**
   * Send `binlog.archived` for every segment to `sqs.queueUrl`, where the verifier checks it. Leave it off
   * until the verifier fleet runs a release that consumes the message (it moves messages it does not know to
   * the DLQ). Defaults to false.
   */
  announce?: boolean;
  /**
   * How long the bucket keeps segments, in days (the lifecycle rule); the archived window the archiver
   * reports (PitrWindowSeconds) never exceeds it. Defaults to no limit.
   */
  retentionDays?: number;
}

/** The value of every `BinlogArchiveConfig` setting when the config leaves it out. */
export const BINLOG_DEFAULTS = {
  rpoSeconds: 10,
  pollIntervalMs: 1000,
  segmentMaxMiB: 64,
  stateDir: "/var/lib/mysql-backup/binlog",
  startFrom: "oldest",
  spoolMaxMiB: 2048,
  announce: false,
} as const satisfies Required<Omit<BinlogArchiveConfig, "retentionDays">>;

/** The JSON Schema of the `binlog` section; `backupConfigSchema` embeds it. */
export const binlogArchiveConfigSchema = {
  type: "object",
  additionalProperties: false,
  properties: {
    rpoSeconds: { type: "integer", minimum: 2, maximum: 3600 },
    pollIntervalMs: { type: "integer", minimum: 100, maximum: 60000 },
    segmentMaxMiB: { type: "integer", minimum: 1, maximum: 1024 },
    stateDir: { type: "string", pattern: "^/" },
    startFrom: { enum: ["oldest", "current"] },
    spoolMaxMiB: { type: "integer", minimum: 16 },
    announce: { type: "boolean" },
    retentionDays: { type: "integer", minimum: 1 },
  },
} as const;

/**
 * Seconds without a word from a cluster's archivers after which the archive counts as silent: the
 * `binlog-silent` alarm's five one-minute periods, and `status`'s limit on the time since the newest upload.
 */
export const BINLOG_SILENCE_SECONDS = 300;
