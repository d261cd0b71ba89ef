/**
 * The named points a backup (and the binlog archiver) passes, and the seam at them. A backup calls its checkpoint at each point and
 * waits for it; on hosts the checkpoint returns at once. The crash tests inject one that stops the process
 * at a point (tests/support/pausing-cli.ts), so they can `kill -9` it in a known state.
 */

/** The named points a run can be paused at, in the order a backup passes them. */
export const PAUSE_POINTS = [
  /** The run lock is held, nothing else done yet. */
  "started",
  /** Inside the lock window, before the snapshot: under the lock mode's lock (none in lock mode `none`). */
  "locked",
  /** The snapshot exists and the server is unlocked; nothing archived yet. */
  "snapshot",
  /** The archive is half written (`*.partial` on disk). */
  "archive",
  /** The multipart upload is started and at least one part is up. */
  "upload",
  /** Every part is up and the outbox (message and manifest) and `manifest.json` are staged; not completed yet. */
  "sealed",
  /** The multipart upload is completed (the archive is in S3); `upload.json` is still there. */
  "uploaded",
  /** The archive and manifest are in S3; `backup.created` not sent yet. */
  "signal",
  /** `backup.created` is sent; the outbox is still there. */
  "sent",
  /** An old local backup is renamed for removal (`<id>.pruning`) and not removed yet. */
  "pruning",
] as const;

/** The named points of the binlog archiver (`mysql-backup binlog`), in the order a segment passes them. */
export const BINLOG_PAUSE_POINTS = [
  /** A segment and its ledger draft are in the spool; the state does not name them yet. */
  "binlog-spooled",
  /** The state names the new segment; nothing of it is in S3 yet. */
  "binlog-committed",
  /** The segment is in S3, its ledger entry is not. */
  "binlog-segment-uploaded",
  /** The ledger entry is in S3 too; the spool still holds both. */
  "binlog-ledger-uploaded",
] as const;

/** One pause point, of a backup or of the binlog archiver. */
export type PausePoint = (typeof PAUSE_POINTS)[number] | (typeof BINLOG_PAUSE_POINTS)[number];

/** Called when a backup reaches `point`; the backup goes on once it resolves. */
export type Checkpoint = (point: PausePoint) => Promise<void>;

/** The checkpoint of a production run: returns at once. */
export const noCheckpoint: Checkpoint = () => Promise.resolve();
