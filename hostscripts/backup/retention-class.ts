import { readFile } from "node:fs/promises";
import { join } from "node:path";
import {
  BACKUP_ID_PATTERN,
  MANIFEST_OBJECT,
  RETENTION_TAG,
  parseManifest,
  type BackupManifest,
  type RetentionClass,
} from "../../contracts";
import { messageOf } from "../common/errors";
import type { Logger } from "../common/log";
import { writeDurably } from "../common/durable";

/**
 * Grandfather-father-son on the replica (docs/infrastructure.md): every backup's archive and manifest are
 * tagged, when they are created, with the retention class the bucket's lifecycle keeps them by. The first
 * backup of a UTC month that completes is `monthly`, every other one `daily`. The month of a backup is the
 * month it started in (its id's). Which month already has its monthly is kept in `<localDir>/retention.json`,
 * recorded only once a monthly backup is complete (its manifest is in S3): a backup that fails leaves the
 * month to the next one. When the state is missing or cannot be read, the backup is `monthly`: a doubt costs
 * one more long-kept backup, never one fewer.
 */

/** The state file in `localDir`. */
export const RETENTION_STATE = "retention.json";

/** What `retention.json` holds: the latest UTC month whose monthly backup is complete. */
export interface RetentionState {
  /** `YYYY-MM`, UTC. */
  month: string;
  /** The monthly backup that completed it. */
  backupId: string;
}

/** A backup's class and why, for the log. */
export interface RetentionDecision {
  retention: RetentionClass;
  why: string;
}

const monthPattern = /^\d{4}-(0[1-9]|1[0-2])$/;
const backupIdPattern = new RegExp(BACKUP_ID_PATTERN);

/** The UTC month of `date`, `YYYY-MM` (sorts as it counts). */
export function utcMonth(date: Date): string {
  return `${date.getUTCFullYear()}-${String(date.getUTCMonth() + 1).padStart(2, "0")}`;
}

/** The class of a backup started at `startedAt`, given the state (null when missing or unreadable). */
export function retentionClassFor(state: RetentionState | null, startedAt: Date): RetentionDecision {
  const month = utcMonth(startedAt);
  if (state?.month === month)
    return { retention: "daily", why: `${month} has its monthly backup, ${state.backupId}` };
  return { retention: "monthly", why: `no backup of ${month} (UTC) has completed as monthly yet` };
}

/**
 * The state in `localDir`; null when there is none, or (with a warning) when it cannot be read, is not a
 * state, or names a month after `now`'s (the clock went back, or the file was edited).
 */
export async function readRetentionState(
  localDir: string,
  now: Date,
  log: Logger,
): Promise<RetentionState | null> {
  const path = join(localDir, RETENTION_STATE);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    return unreadable(log, path, messageOf(e));
  }
  let state: Partial<RetentionState>;
  try {
    state = JSON.parse(text) as Partial<RetentionState>;
  } catch (e) {
    return unreadable(log, path, `not JSON: ${messageOf(e)}`);
  }
  if (typeof state?.month !== "string" || !monthPattern.test(state.month))
    return unreadable(log, path, `"month" must be YYYY-MM, got ${JSON.stringify(state?.month)}`);
  if (typeof state.backupId !== "string" || !backupIdPattern.test(state.backupId))
    return unreadable(log, path, `"backupId" must be a backup id, got ${JSON.stringify(state.backupId)}`);
  if (state.month > utcMonth(now))
    return unreadable(log, path, `it names ${state.month}, after the current month ${utcMonth(now)}`);
  return { month: state.month, backupId: state.backupId };
}

function unreadable(log: Logger, path: string, why: string): null {
  log.warn("cannot use the retention state; this backup is monthly (keeps more, never less)", {
    path,
    error: why,
    hint: "nothing to do: the next monthly backup that completes rewrites the file",
  });
  return null;
}

/**
 * Decides the class of a backup started at `startedAt`, after counting the backups the crash repair just
 * completed (their manifests are in S3 now: `completed` names them, each with its `manifest.json` in
 * `localDir`).
 */
export async function decideRetention(
  localDir: string,
  completed: string[],
  startedAt: Date,
  log: Logger,
): Promise<RetentionClass> {
  for (const backupId of completed) {
    const path = join(localDir, backupId, MANIFEST_OBJECT);
    const manifest = await readFile(path, "utf8")
      .then((text) => parseManifest(JSON.parse(text)))
      .catch((e: unknown) =>
        log.warn("cannot read a repaired backup's manifest", { path, error: messageOf(e) }),
      );
    if (manifest) await recordCompleted(localDir, manifest, startedAt, log);
  }
  const decision = retentionClassFor(await readRetentionState(localDir, startedAt, log), startedAt);
  log.info(`retention class ${decision.retention}`, { retention: decision.retention, why: decision.why });
  return decision.retention;
}

/**
 * Records a complete backup (its manifest in S3): a monthly one makes its month taken, unless the state
 * already names that month or a later one. A failure is logged and otherwise ignored: the backup is
 * complete, and the worst outcome is one more monthly.
 */
export async function recordCompleted(
  localDir: string,
  manifest: Pick<BackupManifest, "backupId" | "startedAt" | "retention">,
  now: Date,
  log: Logger,
): Promise<void> {
  if (manifest.retention !== "monthly") return;
  const month = utcMonth(new Date(manifest.startedAt));
  const state = await readRetentionState(localDir, now, log);
  if (state !== null && state.month >= month) return;
  const recorded: RetentionState = { month, backupId: manifest.backupId };
  await writeDurably(join(localDir, RETENTION_STATE), JSON.stringify(recorded) + "\n").catch((e: unknown) =>
    log.warn("could not record the month's monthly backup; the next backup is monthly too", {
      path: join(localDir, RETENTION_STATE),
      error: messageOf(e),
    }),
  );
}

/**
 * The `Tagging` parameter (a URL-encoded tag set, as S3 expects it) that creates an object with its
 * retention class; none when the class is unknown.
 */
export function retentionTagging(retention: RetentionClass | undefined): { Tagging?: string } {
  return retention ? { Tagging: new URLSearchParams({ [RETENTION_TAG]: retention }).toString() } : {};
}
