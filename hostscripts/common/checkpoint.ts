/**
 * The named points a backup (and the binlog archiver) passes, and the seam at them. A backup calls its checkpoint at each point and
 * waits for it; on hosts the checkpoint returns at once. The crash tests inject one that stops the process
 * at a point (tests/support/pausing-cli.ts), so they can `kill -9` it in a known state.
 */

/** The named points a run can be paused at, in the order a backup passes them. */
export const PAUSE_POINTS = [
  /** The run lock is held, nothing else done yet. */
  "started",
  /** Under the server lock (FTWRL / LOCK INSTANCE), before the snapshot. */
  "locked",
  /** The snapshot exists and the server is unlocked; nothing archived yet. */
  "snapshot",
  /** The archive is half written (`*.partial` on disk). */
  "archive",
  /** The multipart upload is started and at least one part is up. */
  "upload",
  /** The archive and manifest are in S3; `backup.created` not sent yet. */
  "signal",
  /** Binlog archiver: a segment and its ledger draft are in the spool; the state does not name them yet. */
  "binlog-spooled",
  /** Binlog archiver: the state names the new segment; nothing of it is in S3 yet. */
  "binlog-committed",
  /** Binlog archiver: the segment is in S3, its ledger entry is not. */
  "binlog-segment-uploaded",
  /** Binlog archiver: the ledger entry is in S3 too; the spool still holds both. */
  "binlog-ledger-uploaded",
] as const;

/** One pause point. */
export type PausePoint = (typeof PAUSE_POINTS)[number];

/** Called when a backup reaches `point`; the backup goes on once it resolves. */
export type Checkpoint = (point: PausePoint) => Promise<void>;

/** The checkpoint of a production run: returns at once. */
export const noCheckpoint: Checkpoint = () => Promise.resolve();
