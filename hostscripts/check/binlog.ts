import { constants } from "node:fs";
import { access, open } from "node:fs/promises";
import { join } from "node:path";
import type { S3Client } from "@aws-sdk/client-s3";
import {
  BINLOG_DEFAULTS,
  DEFAULT_PREFIX,
  binlogArchivePrefix,
  binlogCheckProbeKey,
  type BackupConfig,
} from "../../contracts";
import {
  binlogSettingProblems,
  listBinlogs,
  readBinlogEnd,
  readBinlogSettings,
  readReplicaLag,
  readServerFacts,
  type BinlogServerFacts,
} from "../common/binlog-server";
import { messageOf } from "../common/errors";
import type { Checklist } from "./findings";
import { checkS3Write } from "./aws";
import { checkWritableDir } from "./host";
import { isAccessDenied, quoteUser, type CheckSession } from "./mysql";
import { privilegeForStatement } from "./privileges";

/**
 * `check` on a replica whose cluster has point-in-time recovery (a `binlog` section in backup.json): what
 * `mysql-backup binlog` needs, proven with the archiver's own code (common/binlog-server.ts) — its settings
 * judgement (log_bin, log_slave_updates on a replica, gtid_mode, no binlog encryption, and, as warnings,
 * binlog_format, binlog_checksum, gtid_strict_mode), the statements of every poll (so a missing privilege
 * shows now, not as a silent archive), the binlog files readable from disk, its state directory, and a
 * create-only probe under the cluster's binlog prefix, as the archiver writes segments.
 */

/** What the binlog checks run against. */
export interface BinlogCheckDeps {
  openSession(): Promise<CheckSession>;
  /** Null when the AWS clients could not be built (`check` already failed `aws`). */
  s3: S3Client | null;
  now: Date;
  version: string;
}

/** Runs every archiver check; each finding is named `binlog.*`. */
export async function checkBinlogArchiver(
  list: Checklist,
  config: BackupConfig,
  deps: BinlogCheckDeps,
): Promise<void> {
  const facts = await list.attempt("binlog.settings", async () => {
    const session = await deps.openSession();
    try {
      return await checkServer(list, session);
    } catch (error) {
      // Reading the settings runs SHOW SLAVE STATUS (is this a replica?), as the archiver does.
      if (!isAccessDenied(error)) throw error;
      list.fail(
        "binlog.privileges",
        `the server refused the archiver's first statements: ${messageOf(error)}`,
        "GRANT the privilege the message names (MariaDB: SLAVE MONITOR and BINLOG MONITOR; MySQL: REPLICATION CLIENT) ON *.* to the backup user",
      );
      return null;
    } finally {
      await session.close();
    }
  });
  if (facts === undefined || facts === null) list.skip("binlog.files", "needs the server's binlog settings");
  else await list.attempt("binlog.files", () => checkFiles(list, facts.facts, facts.file));
  const stateDir = config.binlog?.stateDir ?? BINLOG_DEFAULTS.stateDir;
  await list.attempt(
    "binlog.state-dir",
    () => checkWritableDir(list, "binlog.state-dir", stateDir, "binlog.stateDir"),
    `set binlog.stateDir to a directory the archiver can create and write, off the datadir's volume (defaults to ${BINLOG_DEFAULTS.stateDir})`,
  );
  if (deps.s3 === null) {
    list.skip("binlog.s3.write", "no AWS clients");
    return;
  }
  const prefix = config.s3.prefix ?? DEFAULT_PREFIX;
  await checkS3Write(list, deps.s3, config, deps.now, deps.version, {
    check: "binlog.s3.write",
    key: binlogCheckProbeKey(prefix, config.cluster, config.host, deps.now),
    prefix: binlogArchivePrefix(prefix, config.cluster),
  });
}

/**
 * The settings (one finding per problem, with its fix), then the statements the archiver polls with; null
 * when the archiver would refuse the server.
 */
async function checkServer(
  list: Checklist,
  session: CheckSession,
): Promise<{ facts: BinlogServerFacts; file: string } | null> {
  const settings = await readBinlogSettings(session.query);
  const problems = binlogSettingProblems(settings);
  for (const p of problems) {
    // Finding names are dotted kebab-case (contracts/check.ts): binlog.binlog-format.
    const check = `binlog.${p.setting.replace(/_/g, "-")}`;
    if (p.severity === "refuse") list.fail(check, `${p.problem}: the archiver refuses to run`, p.fix);
    else list.warn(check, p.problem, p.fix);
  }
  if (problems.some((p) => p.severity === "refuse")) return null;
  const facts = await readServerFacts(session.query);
  const flavor = facts.server.flavor;
  list.pass(
    "binlog.settings",
    `${flavor} ${facts.server.version}: log_bin ON` +
      (settings.isReplica ? `, ${settings.replicaUpdatesName} ON` : "") +
      (flavor === "mysql" ? ", gtid_mode ON" : "") +
      `, binlog_format ${settings.binlogFormat}, binlog_checksum ${settings.binlogChecksum}, not encrypted; binlogs in ${facts.binlogDir}`,
  );
  const denied: string[] = [];
  const run = async <T>(statement: string, step: () => Promise<T>): Promise<T | null> => {
    try {
      return await step();
    } catch (error) {
      if (!isAccessDenied(error)) throw error;
      denied.push(privilegeForStatement(flavor, statement) ?? `(${messageOf(error)})`);
      return null;
    }
  };
  const end = await run(facts.statusStatement, () => readBinlogEnd(session.query, facts));
  await run("SHOW BINARY LOGS", () => listBinlogs(session.query));
  await run(facts.replicaStatusStatement, () => readReplicaLag(session.query, facts));
  if (denied.length > 0 || end === null) {
    const [row] = await session.query("SELECT CURRENT_USER() AS user");
    const user = String(row?.user ?? "the backup user");
    const grants = [...new Set(denied)].join(", ");
    list.fail(
      "binlog.privileges",
      `the server refused the archiver's polling statements to ${user}: it lacks ${grants}`,
      `GRANT ${grants} ON *.* TO ${quoteUser(user)};`,
    );
    return null;
  }
  list.pass(
    "binlog.privileges",
    `${facts.statusStatement}, SHOW BINARY LOGS and ${facts.replicaStatusStatement} answer (every poll runs them)`,
  );
  return { facts, file: end.file };
}

/** The archiver reads the binlog files from disk: the newest must be readable by this user and be a binlog. */
async function checkFiles(list: Checklist, facts: BinlogServerFacts, file: string): Promise<void> {
  const path = join(facts.binlogDir, file);
  try {
    await access(path, constants.R_OK);
    const handle = await open(path, "r");
    try {
      const { buffer, bytesRead } = await handle.read(Buffer.alloc(4), 0, 4, 0);
      if (bytesRead < 4 || !buffer.equals(Buffer.from([0xfe, 0x62, 0x69, 0x6e])))
        throw new Error(`${path} does not begin with a binlog's magic number`);
    } finally {
      await handle.close();
    }
  } catch (error) {
    list.fail(
      "binlog.files",
      `the archiver cannot read the binlog ${path}: ${messageOf(error)}`,
      "run the archiver (and check) as a user that can read the server's binlog directory (root, or the mysql group), on the server's own host",
    );
    return;
  }
  list.pass("binlog.files", `${path} is readable and a binlog (the archiver reads the files from disk)`);
}
