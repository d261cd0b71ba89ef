import { dirname } from "node:path";
import type { S3Client } from "@aws-sdk/client-s3";
import type { SQSClient } from "@aws-sdk/client-sqs";
import {
  DEFAULT_LOCK_TIMEOUT_MS,
  DEFAULT_PREFIX,
  type BackupConfig,
  type MetricsSink,
} from "../../contracts";
import { checkDiskSpace } from "../common/diskspace";
import { humanBytes } from "../common/output";
import type { SnapshotDriver } from "../common/snapshot";
import { checkQueue, checkS3Write } from "./aws";
import { checkBinlogArchiver } from "./binlog";
import { Checklist } from "./findings";
import { checkTools, checkWritableDir, nearestExisting } from "./host";
import { checkMysql, type CheckSession } from "./mysql";

/**
 * `check` on a replica: everything `mysql-backup backup` will need, proven in the order the backup needs it,
 * with the backup's own code wherever it exists (the dialect's position read, the driver's `prove`, the
 * free-space estimate). Nothing is locked and no snapshot is taken.
 */

/** What the replica check runs against; the command builds the production ones. */
export interface ReplicaCheckDeps {
  openSession(): Promise<CheckSession>;
  driver: SnapshotDriver;
  /** Null when the AWS clients could not be built (the reason is in `awsProblem`). */
  aws: { s3: S3Client; sqs: SQSClient } | null;
  awsProblem?: { message: string; hint: string };
  /** Where commands are looked up. */
  path: string[];
  now: Date;
  /** The CLI's version, written into the probe. */
  version: string;
}

/** The packages that carry the commands a backup starts (Debian names). */
const PACKAGE: Record<string, string> = {
  btrfs: "btrfs-progs",
  sync: "coreutils",
  lvcreate: "lvm2",
  lvs: "lvm2",
  lvremove: "lvm2",
  mount: "mount",
  umount: "mount",
  findmnt: "util-linux",
  blkid: "util-linux",
  zfs: "zfsutils-linux",
  zstd: "zstd",
  ionice: "util-linux",
};

/** Runs every replica check. */
export async function checkReplica(config: BackupConfig, deps: ReplicaCheckDeps): Promise<Checklist> {
  const list = new Checklist();
  list.pass(
    "config",
    `backup of ${config.cluster}/${config.host}: ${config.snapshot.driver} snapshots, s3://${config.s3.bucket}/${config.s3.prefix ?? DEFAULT_PREFIX}/, lock timeout ${config.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS} ms`,
  );
  const server = await checkMysql(list, {
    optionFile: config.mysql.optionFile,
    openSession: deps.openSession,
    lockMode: config.lockMode,
  });
  await checkTools(
    list,
    "tools",
    [
      ...deps.driver.tools.map((command) => ({
        command,
        for: `the ${deps.driver.name} snapshot`,
        package: PACKAGE[command] ?? command,
      })),
      { command: "zstd", for: "the archive", package: "zstd" },
      {
        command: "ionice",
        for: "yielding the disk after the lock",
        package: "util-linux",
        optional: "without it only the CPU priority drops after the lock",
      },
    ],
    deps.path,
  );
  const proven =
    server === undefined
      ? (list.skip("snapshot.volume", "the server's paths need a session"), false)
      : await list.attempt("snapshot.volume", async () => {
          const { facts } = server;
          await deps.driver.prove({
            datadir: facts.settings.datadir,
            logBinBasename: facts.settings.logBinBasename,
            innodbLogDir: facts.innodbLogDir,
            innodbUndoDir: facts.innodbUndoDir,
            innodbDataHomeDir: facts.innodbDataHomeDir,
            ariaLogDir: facts.ariaLogDir,
          });
          list.pass(
            "snapshot.volume",
            `the datadir, redo and undo logs, system tablespace${facts.settings.logBinBasename ? " and binary logs" : ""} are on the ${deps.driver.name} volume ${deps.driver.sourceRoot}`,
          );
          return true;
        });
  const localDir = await list.attempt("files.local-dir", () =>
    checkWritableDir(list, "files.local-dir", config.localDir, "localDir"),
  );
  if (proven === true && localDir !== undefined) {
    await list.attempt("disk.local-dir", async () => {
      const space = await checkDiskSpace(
        await nearestExisting(config.localDir),
        deps.driver.sourceRoot,
        config.diskSpace,
      );
      list.pass(
        "disk.local-dir",
        `${humanBytes(space.freeBytes)} free in ${config.localDir}; an archive of ${humanBytes(space.dataBytes)} of data needs ${humanBytes(space.archiveBytes)} (ratio ${space.ratio.toFixed(2)}) plus the ${humanBytes(space.reserveBytes)} reserve`,
      );
    });
  } else {
    list.skip("disk.local-dir", "needs the snapshotted volume and localDir");
  }
  await checkAws(list, config, deps);
  if (config.binlog !== undefined)
    await checkBinlogArchiver(list, config, {
      openSession: deps.openSession,
      s3: deps.aws?.s3 ?? null,
      now: deps.now,
      version: deps.version,
    });
  await checkMetrics(list, config.metrics);
  return list;
}

async function checkAws(list: Checklist, config: BackupConfig, deps: ReplicaCheckDeps): Promise<void> {
  if (deps.aws === null) {
    const problem = deps.awsProblem ?? {
      message: "no AWS clients",
      hint: "check the aws section of the config",
    };
    list.fail("aws", problem.message, problem.hint);
    list.skip("s3.write", "no AWS clients");
    list.skip("sqs.queue", "no AWS clients");
    return;
  }
  await checkS3Write(list, deps.aws.s3, config, deps.now, deps.version);
  await checkQueue(list, deps.aws.sqs, config.sqs.queueUrl, "replica");
}

/** Where metrics go; a file sink's directory must be writable. */
export async function checkMetrics(list: Checklist, sink: MetricsSink | undefined): Promise<void> {
  if (sink === undefined || sink.sink === "cloudwatch") {
    list.pass(
      "metrics",
      "CloudWatch (PutMetricData is not probed: a probe datum would be a real data point)",
    );
    return;
  }
  await list.attempt("metrics", () =>
    checkWritableDir(list, "metrics", dirname(sink.path), `the ${sink.sink} sink's directory`),
  );
}
