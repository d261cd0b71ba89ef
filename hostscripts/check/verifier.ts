import type { S3Client } from "@aws-sdk/client-s3";
import type { SQSClient } from "@aws-sdk/client-sqs";
import {
  DEFAULT_PREFIX,
  VERIFY_DEFAULTS,
  manifestKey,
  parseManifest,
  type VerifyConfig,
} from "../../contracts";
import { PipelineError } from "../common/errors";
import { BackupListing } from "../common/listing";
import { readOptionFile } from "../common/mysql";
import { humanBytes } from "../common/output";
import { findServerBinary, readServerBuild, whyCannotRun, type ServerBuild } from "../common/server-binary";
import type { RunCommand } from "../common/snapshot";
import { checkQueue } from "./aws";
import { Checklist } from "./findings";
import { freeBytes } from "../common/diskspace";
import { checkTools, checkWritableDir } from "./host";
import { checkMetrics } from "./replica";

/**
 * `check` on a verifier: the server binary and whether it can open the backups in the bucket (their newest
 * manifest per host, when the config names the bucket in its `restore` section), the tools of a restore,
 * the scratch directory and its room for `concurrency` restores, the queue.
 */

/** What the verifier check runs against. */
export interface VerifierCheckDeps {
  aws: { s3: S3Client; sqs: SQSClient } | null;
  awsProblem?: { message: string; hint: string };
  /** Where commands are looked up (the server binary too). */
  path: string[];
  /** Runs `id -u` for the scratch server's user. */
  run: RunCommand;
}

/** The newest backup of one host, and what it needs to be restored. */
interface NewestBackup {
  where: string;
  server: ServerBuild;
  rawBytes: number;
}

/** Runs every verifier check. */
export async function checkVerifier(config: VerifyConfig, deps: VerifierCheckDeps): Promise<Checklist> {
  const list = new Checklist();
  const concurrency = config.concurrency ?? VERIFY_DEFAULTS.concurrency;
  list.pass(
    "config",
    `verifier of ${config.sqs.queueUrl}, scratch ${config.scratchDir}, ${concurrency} restore(s) at once`,
  );
  const build = await list.attempt("server.binary", async () => {
    const binary = await findServerBinary(config.mysqld?.binary, deps.path.join(":")).catch(() => {
      throw new PipelineError(
        "VerifierInfrastructure",
        config.mysqld?.binary
          ? `mysqld.binary ${config.mysqld.binary} is not an executable server binary on this host`
          : `no mariadbd or mysqld on this host (searched ${deps.path.join(":")})`,
        "install the server package the backups need (mariadb-server / mysql-server), or point mysqld.binary at its server binary",
      );
    });
    const found = await readServerBuild(binary);
    list.pass("server.binary", `${binary} is ${found.flavor} ${found.version}`);
    return found;
  });
  await checkTools(
    list,
    "tools",
    [
      { command: "zstd", for: "extracting archives", package: "zstd" },
      {
        command: "innochecksum",
        for: "the pages check",
        package: "mariadb-server-core",
        optional: "without it the pages check passes with a note, unproven",
      },
    ],
    deps.path,
  );
  await list.attempt("server.user", () => checkServerUser(list, config, deps.run));
  const scratch = await list.attempt("files.scratch-dir", () =>
    checkWritableDir(list, "files.scratch-dir", config.scratchDir, "scratchDir"),
  );
  if (config.catchUp)
    await list.attempt("files.catch-up", () => checkCatchUpFile(list, config.catchUp!.optionFile));
  const newest = await checkBackups(list, config, deps, build);
  if (scratch !== undefined)
    await list.attempt("disk.scratch-dir", () => checkScratchSpace(list, scratch, concurrency, newest));
  if (deps.aws === null) {
    const problem = deps.awsProblem ?? {
      message: "no AWS clients",
      hint: "check the aws section of the config",
    };
    list.fail("aws", problem.message, problem.hint);
  } else {
    await checkQueue(list, deps.aws.sqs, config.sqs.queueUrl, "verifier");
  }
  await checkMetrics(list, config.metrics);
  return list;
}

async function checkServerUser(list: Checklist, config: VerifyConfig, run: RunCommand): Promise<void> {
  const user = config.mysqld?.user ?? VERIFY_DEFAULTS.mysqld.user;
  const answer = await run(["id", "-u", user]);
  if (answer.exitCode !== 0) {
    list.fail(
      "server.user",
      `the scratch server runs as mysqld.user "${user}", which does not exist on this host`,
      `install the server package (it creates "mysql"), or set mysqld.user to an existing user`,
    );
    return;
  }
  list.pass("server.user", `the scratch server runs as ${user} (uid ${answer.stdout.trim()})`);
}

/** The catch-up option file as the verifier reads it (mode 0600, a user); the replication itself is not tried. */
async function checkCatchUpFile(list: Checklist, path: string): Promise<void> {
  const options = await readOptionFile(path);
  list.pass(
    "files.catch-up",
    `${path}: replication user ${options.user} at ${options.host ?? options.socket}`,
  );
}

/**
 * With a `restore` section: the newest complete backup of every host of every cluster in that bucket and
 * prefix, and whether this verifier's server can open each (reading the manifests also proves the role may
 * list, read and decrypt). Returns those backups, or null when there is no bucket to look in.
 */
async function checkBackups(
  list: Checklist,
  config: VerifyConfig,
  deps: VerifierCheckDeps,
  build: ServerBuild | undefined,
): Promise<NewestBackup[] | null> {
  if (config.restore === undefined || deps.aws === null) {
    list.skip(
      "server.backups",
      "the config names no bucket (its restore section): each backup's server is checked when it is verified",
    );
    return null;
  }
  const listing = new BackupListing(
    deps.aws.s3,
    config.restore.bucket,
    config.restore.prefix ?? DEFAULT_PREFIX,
  );
  const newest = await list.attempt("server.backups", () => newestBackups(listing));
  if (newest === undefined) return null;
  if (build === undefined) {
    list.skip("server.backups", "no server binary to compare with");
    return newest;
  }
  const refused = newest
    .map((b) => ({ b, why: whyCannotRun(build, b.server) }))
    .filter((r) => r.why !== null);
  if (newest.length === 0) {
    list.warn(
      "server.backups",
      `no complete backup in ${listing.url} yet`,
      "check again after the first backup",
    );
  } else if (refused.length > 0) {
    list.fail(
      "server.backups",
      refused.map((r) => `${r.b.where}: ${r.why}`).join("; "),
      "install the server those backups need on this verifier (VerifierFleet `server`), or set mysqld.binary to it",
    );
  } else {
    const servers = [...new Set(newest.map((b) => `${b.server.flavor} ${b.server.version}`))].join(", ");
    list.pass(
      "server.backups",
      `${build.flavor} ${build.version} can open the newest backup of all ${newest.length} host(s) in ${listing.url} (${servers})`,
    );
  }
  return newest;
}

async function newestBackups(listing: BackupListing): Promise<NewestBackup[]> {
  const found: NewestBackup[] = [];
  for (const cluster of await listing.clusters()) {
    for (const host of await listing.hosts(cluster)) {
      const newest = (await listing.backups(cluster, host)).find((b) => b.complete);
      if (newest === undefined) continue;
      const key = manifestKey({ prefix: listing.prefix, cluster, host, backupId: newest.backupId });
      const read = await listing.read(key, parseManifest);
      if (read === null || !("value" in read)) continue;
      const m = read.value;
      found.push({
        where: `${cluster}/${host} ${m.backupId}`,
        server: m.server,
        rawBytes: m.archive.rawBytes,
      });
    }
  }
  return found;
}

/** The scratch volume must hold `concurrency` of the largest datadir the verifier may restore. */
async function checkScratchSpace(
  list: Checklist,
  dir: string,
  concurrency: number,
  newest: NewestBackup[] | null,
): Promise<void> {
  const free = await freeBytes(dir);
  if (newest === null || newest.length === 0) {
    list.pass("disk.scratch-dir", `${humanBytes(free)} free (no backup to size it against)`);
    return;
  }
  const largest = newest.reduce((a, b) => (b.rawBytes > a.rawBytes ? b : a));
  const needed = largest.rawBytes * concurrency;
  const detail = `${humanBytes(free)} free; ${concurrency} restore(s) of the largest datadir (${largest.where}, ${humanBytes(largest.rawBytes)}) need ${humanBytes(needed)}`;
  if (free < needed) {
    list.fail(
      "disk.scratch-dir",
      detail,
      "grow the scratch volume (VerifierFleet scratchVolumeGiB) or lower concurrency",
    );
  } else {
    list.pass("disk.scratch-dir", detail);
  }
}
