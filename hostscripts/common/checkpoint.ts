import { writeFile } from "node:fs/promises";

/**
 * A TEST HOOK, for the crash-safety tests only: with `MYSQL_BACKUP_PAUSE_AT=<point>` (and
 * `MYSQL_BACKUP_PAUSE_MARKER=<file>`), a backup that reaches that point writes the marker file and stops
 * there, so a test can `kill -9` it in a known state. Production units never set these variables; unset,
 * `pauseAt` does nothing.
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
] as const;

/** One pause point. */
export type PausePoint = (typeof PAUSE_POINTS)[number];

/** Stops here forever (until killed) when the test hook names this point; otherwise returns at once. */
export async function pauseAt(point: PausePoint): Promise<void> {
  if (process.env.MYSQL_BACKUP_PAUSE_AT !== point) return;
  const marker = process.env.MYSQL_BACKUP_PAUSE_MARKER;
  if (marker) await writeFile(marker, `${point} ${process.pid}\n`);
  await new Promise<never>(() => setInterval(() => undefined, 60_000));
}
