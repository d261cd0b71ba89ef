import { $ } from "zx";
import { parseRestoreConfig, type RestoreConfig } from "../../contracts";
import { createAwsClients } from "../common/aws";
import type { CommandFlags, CommandOutcome, FlagSpecs, FlagValues, Subcommand } from "../common/command";
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

/** `restore`'s own flags. */
const restoreFlags = {
  target: {
    type: "string",
    value: "DIR",
    describe: "restore into DIR (absolute; must be empty unless --force)",
  },
  backup: {
    type: "string",
    value: "BACKUP_ID",
    describe: "restore this backup instead of the newest verified one",
  },
  force: { type: "boolean", describe: "empty a non-empty DIR first (stop any server using it)" },
} as const satisfies FlagSpecs;

/** Reads `restore`'s own arguments: `list`, or `--target DIR [--backup ID] [--force]`. */
export function parseRestoreArgs(
  flags: Pick<CommandFlags<FlagValues<typeof restoreFlags>>, "options" | "positionals">,
): RestoreAction {
  const { options, positionals } = flags;
  const hint =
    "mysql-backup restore --help shows both forms: `restore --config FILE list` and `--target DIR`";
  if (positionals.length > 0) {
    if (positionals[0] !== "list") {
      throw new PipelineError("Usage", `restore: unexpected argument "${positionals[0]}"`, hint);
    }
    const given = Object.keys(options);
    if (given.length > 0) {
      throw new PipelineError(
        "Usage",
        `restore list takes no ${given.map((f) => `--${f}`).join(", ")}`,
        hint,
      );
    }
    return { action: "list" };
  }
  const target = options.target ?? null;
  if (target === null || !target.startsWith("/")) {
    throw new PipelineError("Usage", "restore needs --target DIR (an absolute path) or `list`", hint);
  }
  return { action: "restore", target, backupId: options.backup ?? null, force: options.force === true };
}

/** `mysql-backup restore`. */
export const restoreCommand: Subcommand<RestoreConfig, typeof restoreFlags> = {
  name: "restore",
  describe:
    "list a cluster's backups, or restore one into a datadir (`restore list`, `restore --target DIR`)",
  synopsis: [
    "--config FILE list [--json]",
    "--config FILE --target DIR [--backup BACKUP_ID] [--force] [--json]",
  ],
  configDescribe: "a verify config with its `restore` section (RestoreConfig)",
  flags: restoreFlags,
  positionals: [{ name: "list", describe: "list the cluster's backups, newest first, with their verdicts" }],
  examples: [
    {
      command: "mysql-backup restore --config /etc/mysql-backup/verify.json list",
      describe: "every backup of the cluster with its verdict and drift",
    },
    {
      command: "mysql-backup restore --config /etc/mysql-backup/verify.json --target /var/lib/mysql",
      describe: "restore the newest verified backup and print the statement that rejoins the cluster",
    },
  ],
  parseConfig: parseRestoreConfig,
  async run(config, flags, log): Promise<CommandOutcome> {
    const action = parseRestoreArgs(flags);
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
