/**
 * `mysql-backup restore` on the worst day, against the lab: the real CLI lists the cluster's backups,
 * restores the newest verified one into a new datadir, and the server started on it rejoins the lab primary
 * as a replica with the printed statements, catches up and matches the primary's `CHECKSUM TABLE`. It
 * refuses objects that are not the ones verified, and tells a download cut short from a broken backup.
 */
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { Readable } from "node:stream";
import { GetObjectCommand, HeadObjectCommand } from "@aws-sdk/client-s3";
import { PurgeQueueCommand } from "@aws-sdk/client-sqs";
import { Upload } from "@aws-sdk/lib-storage";
import { $ } from "zx";
import { parseRestoreConfig } from "../../contracts";
import { ExitCode, PipelineError } from "../../hostscripts/common/errors";
import { memoryLogger } from "../../hostscripts/common/log";
import { chooseBackup, listBackups, type ListedBackup } from "../../hostscripts/restore/list";
import { restoreBackup, type RestoreResult } from "../../hostscripts/restore/restore";
import { labAwsClients, primaryGtid, stopLoad, type Lab } from "../../lab/lab";
import { freePort } from "../../lab/emulator";
import { chownToMysql, rootQuery, startServer, type ServerSpec } from "../../lab/mariadb";
import { terminate } from "../../lab/processes";
import { waitForCatchUp } from "../../lab/replication";
import { withLab } from "../support/lab";
import { labVerifyConfig, runLabVerifier, takeBackup, withClients } from "./verify-support";

jest.setTimeout(300_000);

const lab = withLab({ load: true });
const repo = resolve(__dirname, "..", "..");
const run = promisify(execFile);

/** Runs the real CLI; returns its exit code, the JSON result of `--json` and stderr. */
async function cli(args: string[]): Promise<{ code: number; json: unknown; stderr: string }> {
  const outcome = await run(process.execPath, [join(repo, "bin", "mysql-backup.js"), ...args, "--json"], {
    cwd: repo,
  }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => e,
  );
  return {
    code: outcome.code,
    json: JSON.parse(outcome.stdout.trim().split("\n").at(-1)!),
    stderr: outcome.stderr,
  };
}

/** The lab replica's replication account, from its master.info (the only place the lab keeps it). */
async function replicationAccount(l: Lab): Promise<{ user: string; password: string }> {
  const lines = (await readFile(join(l.replica.datadir, "master.info"), "utf8")).split("\n");
  // Line 4 host, 5 user, 6 password, 7 port: check the host and port to be sure the layout is that.
  expect([lines[3], Number(lines[6])]).toEqual(["127.0.0.1", l.primary.port]);
  return { user: lines[4], password: lines[5] };
}

test("restore list, then the newest verified backup rejoins the primary as a replica with equal checksums", async () => {
  const verified = await takeBackup(lab());
  expect((await runLabVerifier(lab())).result).toMatchObject({ outcome: "verified" });
  // A newer backup the verifier has not seen: the restore must still pick the verified one.
  const unverified = await takeBackup(lab());
  await withClients(lab(), ({ sqs }) => sqs.send(new PurgeQueueCommand({ QueueUrl: lab().sqs.queueUrl })));

  const work = await mkdtemp(join(tmpdir(), "restore-test-"));
  const config = join(work, "restore.json");
  await writeFile(
    config,
    JSON.stringify(
      parseRestoreConfig({
        ...(await labVerifyConfig(lab())),
        restore: { bucket: lab().s3.bucket, prefix: "backups", cluster: "lab" },
      }),
    ),
  );
  const listed = await cli(["restore", "--config", config, "list"]);
  expect(listed.code).toBe(0);
  expect(
    (listed.json as { backups: ListedBackup[] }).backups.map((b) => [b.backupId, b.host, b.verdict]),
  ).toEqual([
    [unverified.backupId, "replica1", null],
    [verified.backupId, "replica1", "verified"],
  ]);

  // A non-empty target is refused without --force, and nothing in it is touched.
  const target = join(lab().dir, "restored");
  await mkdir(target);
  await writeFile(join(target, "precious"), "keep me");
  const refused = await cli(["restore", "--config", config, "--target", target]);
  expect(refused.code).toBe(ExitCode.Usage);
  expect(refused.json).toMatchObject({
    message: expect.stringMatching(/target .* is not empty \(precious\)/),
  });
  expect(await readFile(join(target, "precious"), "utf8")).toBe("keep me");

  const restored = await cli(["restore", "--config", config, "--target", target, "--force"]);
  expect(restored.code).toBe(0);
  const result = restored.json as RestoreResult;
  expect(result).toMatchObject({
    backupId: verified.backupId,
    verdict: "verified",
    datadir: join(target, "data"),
  });
  console.log(`restore of ${result.archiveBytes} archive bytes into a datadir: ${result.seconds}s`);
  const binlog = join(result.datadir, "mysql-bin");
  expect(result.serverOptions).toEqual(
    expect.arrayContaining([`datadir=${result.datadir}`, `log_bin=${binlog}`]),
  );
  expect(result.replicationStatements).toEqual(
    expect.arrayContaining([
      `SET GLOBAL gtid_slave_pos = '${verified.position.gtidSlavePos}'`,
      `CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=${lab().primary.port}, MASTER_USER='<replication user>', MASTER_PASSWORD='<replication password>', MASTER_USE_GTID=slave_pos`,
    ]),
  );

  // Start the restored datadir as the lab starts its servers, with the printed datadir and binlog.
  const spec: ServerSpec = {
    name: "restored",
    serverId: 3,
    port: await freePort(),
    datadir: result.datadir,
    socket: join(lab().dir, "run", "restored.sock"),
    pidFile: join(lab().dir, "run", "restored.pid"),
    errorLog: join(lab().dir, "log", "restored.err"),
    binlogBasename: binlog,
    replica: true,
    tmpdir: join(lab().dir, "run", "restored.tmp"),
    labDir: lab().dir,
  };
  await mkdir(spec.tmpdir);
  await chownToMysql(spec.tmpdir);
  const pid = await startServer(spec);
  try {
    // The source replica's connection was not restored: nothing replicates until the statements run.
    expect(await rootQuery(spec.socket, "SHOW SLAVE STATUS")).toEqual([]);
    // It holds exactly the backup's position, and the primary has moved on under the load since.
    const [restoredAt] = await rootQuery(spec.socket, "SELECT @@gtid_slave_pos AS pos");
    expect(restoredAt.pos).toBe(verified.position.gtidSlavePos);
    expect(await primaryGtid(lab())).not.toBe(verified.position.gtidSlavePos);
    const account = await replicationAccount(lab());
    for (const statement of result.replicationStatements) {
      const filled = statement
        .replace("<replication user>", account.user)
        .replace("<replication password>", account.password);
      await rootQuery(spec.socket, filled);
    }
    await stopLoad(lab());
    await waitForCatchUp(lab().primary.socket, spec.socket, 120_000);
    const tables = Array.from({ length: lab().dataset.tables }, (_, i) => `sbtest.sbtest${i + 1}`).join(", ");
    const checksums = async (socket: string) =>
      (await rootQuery(socket, `CHECKSUM TABLE ${tables} EXTENDED`)).map((r) => [
        r.Table,
        String(r.Checksum),
      ]);
    const primary = await checksums(lab().primary.socket);
    expect(primary).toHaveLength(lab().dataset.tables);
    expect(await checksums(spec.socket)).toEqual(primary);
    const [status] = await rootQuery(spec.socket, "SHOW SLAVE STATUS");
    expect(status).toMatchObject({ Slave_IO_Running: "Yes", Slave_SQL_Running: "Yes", Last_SQL_Error: "" });
  } finally {
    await terminate([pid], 30_000);
    await rm(target, { recursive: true, force: true });
    await rm(work, { recursive: true, force: true });
  }
});

/** A restore config file for the lab's cluster; returns its path. */
async function restoreConfigFile(work: string): Promise<string> {
  const path = join(work, "restore.json");
  await writeFile(
    path,
    JSON.stringify(
      parseRestoreConfig({
        ...(await labVerifyConfig(lab())),
        restore: { bucket: lab().s3.bucket, prefix: "backups", cluster: "lab" },
      }),
    ),
  );
  return path;
}

test("a verified backup whose last archive chunk was written over since is refused, naming the verified and the current object", async () => {
  const backup = await takeBackup(lab());
  // The lab's archives have several chunks; the last is the one least likely to be looked at first.
  expect(backup.chunks.length).toBeGreaterThan(1);
  const chunk = backup.chunks.at(-1)!;
  expect((await runLabVerifier(lab())).result).toMatchObject({
    outcome: "verified",
    backupId: backup.backupId,
  });
  const verifiedEtag = await withClients(lab(), async ({ s3 }) => {
    const bucket = lab().s3.bucket;
    const original = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: chunk.key }));
    const bytes = Buffer.from(await original.Body!.transformToByteArray());
    bytes[bytes.length - 10] ^= 0xff;
    await new Upload({
      client: s3,
      params: { Bucket: bucket, Key: chunk.key, Body: bytes },
      partSize: 5 * 1024 * 1024,
    }).done();
    return original.ETag!;
  });
  const current = await withClients(
    lab(),
    async ({ s3 }) =>
      (await s3.send(new HeadObjectCommand({ Bucket: lab().s3.bucket, Key: chunk.key }))).ETag!,
  );
  expect(current).not.toBe(verifiedEtag);
  const work = await mkdtemp(join(tmpdir(), "restore-test-"));
  try {
    const target = join(work, "target");
    const refused = await cli([
      "restore",
      "--config",
      await restoreConfigFile(work),
      "--target",
      target,
      "--backup",
      backup.backupId,
    ]);
    expect(refused.code).toBe(ExitCode.VerificationFailed);
    const message = (refused.json as { message: string }).message;
    expect(message).toContain(`the archive s3://${lab().s3.bucket}/${chunk.key} is not the one verified on`);
    expect(message).toContain(
      `Verified: version (unversioned), ETag ${verifiedEtag}, ${chunk.bytes} bytes, sha256 ${chunk.sha256}`,
    );
    expect(message).toContain(`S3 holds now: version (unversioned), ETag ${current}, ${chunk.bytes} bytes`);
    // Every pinned object is looked at before anything is written: nothing of the archive was extracted.
    expect(await readdir(target)).toEqual([]);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
});

test("a download cut short is this host's trouble (exit 11), not a backup that fails its manifest", async () => {
  const backup = await takeBackup(lab());
  await withClients(lab(), ({ sqs }) => sqs.send(new PurgeQueueCommand({ QueueUrl: lab().sqs.queueUrl })));
  const config = parseRestoreConfig({
    ...(await labVerifyConfig(lab())),
    restore: { bucket: lab().s3.bucket, prefix: "backups", cluster: "lab" },
  });
  const work = await mkdtemp(join(tmpdir(), "restore-test-"));
  const { s3 } = labAwsClients(lab());
  // The network drops the first ranged part halfway; S3 announced the whole object.
  s3.middlewareStack.add(
    (next) => async (args) => {
      const input = args.input as { Key?: string; Range?: string };
      const answer = await next(args);
      if (input.Key === backup.archiveKeys[0] && input.Range?.startsWith("bytes=0-")) {
        const output = answer.output as { Body: { transformToByteArray(): Promise<Uint8Array> } };
        const bytes = await output.Body.transformToByteArray();
        output.Body = Object.assign(Readable.from([Buffer.from(bytes.subarray(0, bytes.length / 2))]), {
          transformToByteArray: () => Promise.reject(new Error("cut")),
        });
      }
      return answer;
    },
    { step: "initialize", name: "cutFirstPart" },
  );
  try {
    const chosen = chooseBackup(await listBackups(s3, config.restore), backup.backupId, "lab");
    const error = await restoreBackup(config, chosen, join(work, "target"), false, {
      s3,
      log: memoryLogger(),
      $: $({ quiet: true }),
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PipelineError);
    expect(error).toMatchObject({ kind: "VerifierInfrastructure", exitCode: 11 });
    // The cut part is read into its buffer whole before any byte of it goes on: its own length gives it away.
    expect((error as PipelineError).message).toMatch(
      /a ranged GET ended after \d+ of the \d+ bytes it announced/,
    );
  } finally {
    s3.destroy();
    await rm(work, { recursive: true, force: true });
  }
});
