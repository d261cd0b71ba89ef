import { $ } from "zx";
import { parseRestoreConfig, type RestoreConfig } from "../../contracts";
import { createAwsClients } from "../common/aws";
import type { CommandFlags, CommandOutcome, FlagSpecs, FlagValues, Subcommand } from "../common/command";
import { ExitCode, PipelineError } from "../common/errors";
import type { PitrTarget } from "../common/pitr-chain";
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
  until: {
    type: "string",
    value: "TIME|latest",
    describe:
      "replay the archived binlog onto the snapshot up to this second (ISO 8601, UTC unless an offset is given) or to the newest archived transaction",
  },
  "until-gtid": {
    type: "string",
    value: "GTID",
    describe: "replay up to and including this GTID (MariaDB domain-server-seq list, or a MySQL GTID set)",
  },
} as const satisfies FlagSpecs;

/** Reads `restore`'s own arguments: `list`, or `--target DIR [--backup ID] [--force] [--until T | --until-gtid G]`. */
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
  return {
    action: "restore",
    target,
    backupId: options.backup ?? null,
    force: options.force === true,
    until: parseUntil(options.until ?? null, options["until-gtid"] ?? null),
  };
}

/** `mysql-backup restore`. */
export const restoreCommand: Subcommand<RestoreConfig, typeof restoreFlags> = {
  name: "restore",
  describe:
    "list a cluster's backups and restorable window, or restore one into a datadir, to any second (`--until`)",
  synopsis: [
    "--config FILE list [--json]",
    "--config FILE --target DIR [--backup BACKUP_ID] [--force] [--json]",
    "--config FILE --target DIR --until TIME|latest | --until-gtid GTID [--backup BACKUP_ID] [--force] [--json]",
  ],
  configDescribe: "a verify config with its `restore` section (RestoreConfig)",
  flags: restoreFlags,
  positionals: [
    {
      name: "list",
      describe: "list the cluster's backups, newest first, with their verdicts, and the restorable window",
    },
  ],
  examples: [
    {
      command: "mysql-backup restore --config /etc/mysql-backup/verify.json list",
      describe: "every backup of the cluster with its verdict and drift",
    },
    {
      command: "mysql-backup restore --config /etc/mysql-backup/verify.json --target /var/lib/mysql",
      describe: "restore the newest verified backup and print the statement that rejoins the cluster",
    },
    {
      command:
        'mysql-backup restore --config /etc/mysql-backup/verify.json --target /var/lib/mysql --until "2026-11-30 16:30:05"',
      describe:
        "restore the newest verified snapshot before that second and replay the archived binlog up to it",
    },
  ],
  parseConfig: parseRestoreConfig,
  async run(config, flags, log): Promise<CommandOutcome> {
    const action = parseRestoreArgs(flags);
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
