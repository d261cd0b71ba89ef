import { readdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { BACKUP_ID_PATTERN } from "../../contracts";
import { noCheckpoint, type Checkpoint } from "../common/checkpoint";
import type { Logger } from "../common/log";
import { syncDirectory } from "../common/durable";

const backupId = new RegExp(BACKUP_ID_PATTERN);

/** Local backups kept when the config does not say (`keepLocal`): the newest, and one before it. */
export const DEFAULT_KEEP_LOCAL = 2;

/**
 * The local backup directories to delete so that the newest `keep` remain. Only names that are backup
 * ids count (they sort by time), so nothing else a person put into the directory is ever touched.
 */
export function backupsToRemove(names: string[], keep: number): string[] {
  const backups = names.filter((name) => backupId.test(name)).sort();
  return backups.slice(0, Math.max(0, backups.length - keep));
}

/**
 * What a backup directory is renamed to before it is removed: a removal cut short leaves `<id>.pruning`,
 * which no run takes for a backup (not even an incomplete one) and the next repair finishes removing.
 */
export const PRUNING_SUFFIX = ".pruning";

/**
 * Deletes all but the newest `keep` local backups in `localDir`; returns what it deleted. `checkpoint` is
 * called at "pruning", between the rename and the removal.
 */
export async function pruneLocalBackups(
  localDir: string,
  keep: number,
  log: Logger,
  checkpoint: Checkpoint = noCheckpoint,
): Promise<string[]> {
  const entries = await readdir(localDir, { withFileTypes: true });
  const doomed = backupsToRemove(
    entries.filter((e) => e.isDirectory()).map((e) => e.name),
    keep,
  );
  for (const name of doomed) {
    const pruning = join(localDir, name + PRUNING_SUFFIX);
    await rename(join(localDir, name), pruning);
    await syncDirectory(localDir);
    await checkpoint("pruning");
    await rm(pruning, { recursive: true, force: true });
    log.info("removed an old local backup", { removed: name, keep });
  }
  return doomed;
}
