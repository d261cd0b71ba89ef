import { $ } from "zx";
import { parseRestoreConfig, type RestoreConfig } from "../../contracts";
import { createAwsClients } from "../common/aws";
import type { CommandOutcome, Subcommand } from "../common/command";
import { ExitCode, PipelineError } from "../common/errors";
import type { PitrTarget } from "./chain";
import { chooseBackup, listBackups, summarizeList } from "./list";
import { restoreToPoint, type PitrResult } from "./pitr";
import { parseUntil } from "./point";
import { restoreBackup, summarizeRestore } from "./restore";
import { describePitr, pitrSummary } from "./window";

/**
 * `mysql-backup restore`: `restore list` shows a cluster's backups, newest first, with the verifier's verdict
 * on each (list.ts); `restore --target DIR [--backup ID] [--force]` restores the newest verified backup, or
 * the named one, into DIR (restore.ts).
 */

/** The parsed arguments after `restore`. */
export type RestoreAction =
  | { action: "list" }
  | { action: "restore"; target: string; backupId: string | null; force: boolean; until: PitrTarget | null };

const usage =
  "usage: mysql-backup restore --config FILE list\n" +
  "       mysql-backup restore --config FILE --target DIR [--backup BACKUP_ID] [--force]\n" +
  "       mysql-backup restore --config FILE --target DIR --until TIME|latest | --until-gtid GTID [--backup BACKUP_ID] [--force]";

/** Reads `restore`'s own arguments (`flags.rest`). */
export function parseRestoreArgs(rest: string[]): RestoreAction {
  if (rest.length === 1 && rest[0] === "list") return { action: "list" };
  let target: string | null = null;
  let backupId: string | null = null;
  let force = false;
  let until: string | null = null;
  let untilGtid: string | null = null;
  for (let i = 0; i < rest.length; i++) {
    const [flag, inline] = rest[i].split(/=(.*)/s, 2);
    const value = () => inline ?? rest[++i];
    if (flag === "--target") target = value() ?? null;
    else if (flag === "--backup") backupId = value() ?? null;
    else if (flag === "--until") until = value() ?? null;
    else if (flag === "--until-gtid") untilGtid = value() ?? null;
    else if (flag === "--force" && inline === undefined) force = true;
    else throw new PipelineError("Usage", `restore: unexpected argument "${rest[i]}"`, usage);
  }
  if (target === null || !target.startsWith("/")) {
    throw new PipelineError("Usage", "restore needs --target DIR (an absolute path) or `list`", usage);
  }
  return { action: "restore", target, backupId, force, until: parseUntil(until, untilGtid) };
}

/** `mysql-backup restore`. */
export const restoreCommand: Subcommand<RestoreConfig> = {
  name: "restore",
  describe:
    "list a cluster's backups and restorable window, or restore one into a datadir, to any second (`--until`)",
  parseConfig: parseRestoreConfig,
  ownFlags: ["--target", "--backup", "--force", "--until", "--until-gtid"],
  async run(config, flags, log): Promise<CommandOutcome> {
    const action = parseRestoreArgs(flags.rest);
    const clients = await createAwsClients(config.aws);
    try {
      const backups = await listBackups(clients.s3, config.restore);
      if (action.action === "list") {
        const pitr = await pitrSummary(clients.s3, config, backups);
        return {
          exitCode: ExitCode.Ok,
          result: { backups, pitr },
          summary: `${summarizeList(config.restore.cluster, backups)}\n${describePitr(pitr)}`,
        };
      }
      const deps = { s3: clients.s3, log, $: $({ quiet: true }) };
      if (action.until !== null) {
        const result = await restoreToPoint(config, backups, { ...action, until: action.until }, deps);
        return { exitCode: ExitCode.Ok, result, summary: summarizePitr(result) };
      }
      const chosen = chooseBackup(backups, action.backupId, config.restore.cluster);
      const result = await restoreBackup(config, chosen, action.target, action.force, deps);
      return { exitCode: ExitCode.Ok, result, summary: summarizeRestore(result) };
    } finally {
      clients.s3.destroy();
      clients.sqs.destroy();
      clients.cloudwatch.destroy();
    }
  },
};

/** What a person reads after a point-in-time restore. */
function summarizePitr(result: PitrResult): string {
  const p = result.pitr;
  return [
    `point-in-time restore to ${p.until}: ${p.transactions} transactions from ${p.segments} archived segments replayed onto backup ${result.backupId} in ${p.replaySeconds}s (${p.replayRate} tx/s)`,
    `  from GTID ${p.startGtid} to ${p.reachedGtid}; last transaction ${p.lastGtid ?? "(none)"} committed ${p.lastCommitAt ?? "(snapshot)"}`,
    ...(p.lost ? [`  WARNING (--force): not restored, lost: ${p.lost}`] : []),
    "",
    summarizeRestore(result),
  ].join("\n");
}
