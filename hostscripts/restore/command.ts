import { $ } from "zx";
import { parseRestoreConfig, type RestoreConfig } from "../../contracts";
import { createAwsClients } from "../common/aws";
import type { CommandOutcome, Subcommand } from "../common/command";
import { ExitCode, PipelineError } from "../common/errors";
import { chooseBackup, listBackups, summarizeList } from "./list";
import { restoreBackup, summarizeRestore } from "./restore";

/**
 * `mysql-backup restore`: `restore list` shows a cluster's backups, newest first, with the verifier's verdict
 * on each (list.ts); `restore --target DIR [--backup ID] [--force]` restores the newest verified backup, or
 * the named one, into DIR (restore.ts).
 */

/** The parsed arguments after `restore`. */
export type RestoreAction =
  { action: "list" } | { action: "restore"; target: string; backupId: string | null; force: boolean };

const usage =
  "usage: mysql-backup restore --config FILE list\n" +
  "       mysql-backup restore --config FILE --target DIR [--backup BACKUP_ID] [--force]";

/** Reads `restore`'s own arguments (`flags.rest`). */
export function parseRestoreArgs(rest: string[]): RestoreAction {
  if (rest.length === 1 && rest[0] === "list") return { action: "list" };
  let target: string | null = null;
  let backupId: string | null = null;
  let force = false;
  for (let i = 0; i < rest.length; i++) {
    const [flag, inline] = rest[i].split(/=(.*)/s, 2);
    const value = () => inline ?? rest[++i];
    if (flag === "--target") target = value() ?? null;
    else if (flag === "--backup") backupId = value() ?? null;
    else if (flag === "--force" && inline === undefined) force = true;
    else throw new PipelineError("Usage", `restore: unexpected argument "${rest[i]}"`, usage);
  }
  if (target === null || !target.startsWith("/")) {
    throw new PipelineError("Usage", "restore needs --target DIR (an absolute path) or `list`", usage);
  }
  return { action: "restore", target, backupId, force };
}

/** `mysql-backup restore`. */
export const restoreCommand: Subcommand<RestoreConfig> = {
  name: "restore",
  describe:
    "list a cluster's backups, or restore one into a datadir (`restore list`, `restore --target DIR`)",
  parseConfig: parseRestoreConfig,
  ownFlags: ["--target", "--backup", "--force"],
  async run(config, flags, log): Promise<CommandOutcome> {
    const action = parseRestoreArgs(flags.rest);
    const clients = await createAwsClients(config.aws);
    try {
      const backups = await listBackups(clients.s3, config.restore);
      if (action.action === "list") {
        return {
          exitCode: ExitCode.Ok,
          result: backups,
          summary: summarizeList(config.restore.cluster, backups),
        };
      }
      const chosen = chooseBackup(backups, action.backupId, config.restore.cluster);
      const result = await restoreBackup(config, chosen, action.target, action.force, {
        s3: clients.s3,
        log,
        $: $({ quiet: true }),
      });
      return { exitCode: ExitCode.Ok, result, summary: summarizeRestore(result) };
    } finally {
      clients.s3.destroy();
      clients.sqs.destroy();
      clients.cloudwatch.destroy();
    }
  },
};
