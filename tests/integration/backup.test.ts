/**
 * `mysql-backup backup` against the real things: a MariaDB replica on btrfs applying sysbench writes from its
 * primary, real `btrfs`, `tar`-format streaming through real `zstd`, and the AWS SDK over HTTP against fauxqs.
 * The emulator ignores SSE, checksum, tagging and `If-None-Match` headers, so the test records what the
 * client sends, and plays S3's answer to a create-only write on a taken key (tests/support/create-only-s3.ts).
 */
import { createHash } from "node:crypto";
import { crc32 } from "node:zlib";
import { readFile, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { execFile } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import { GetObjectCommand, PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { DeleteMessageCommand, ReceiveMessageCommand } from "@aws-sdk/client-sqs";
import {
  ReplicaMetric,
  archiveLayoutProblem,
  backupIdTime,
  backupPrefix,
  chunkListDigest,
  parseBackupConfig,
  parseBackupCreated,
  parseManifest,
  type BackupConfig,
} from "../../contracts";
import { crc32Base64 } from "../../hostscripts/backup/checksums";
import { backupDeps } from "../../hostscripts/backup/command";
import { RETENTION_STATE, utcMonth } from "../../hostscripts/backup/retention-class";
import { runBackup, type BackupDeps, type BackupResult } from "../../hostscripts/backup/run";
import { PipelineError } from "../../hostscripts/common/errors";
import { memoryLogger } from "../../hostscripts/common/log";
import { btrfsDriver, runCommand, type RunCommand } from "../../hostscripts/common/snapshot";
import { labAwsClients, replicaStatus, sql, type Lab } from "../../lab/lab";
import { enforceCreateOnly } from "../support/create-only-s3";
import { withLab } from "../support/lab";

const run = promisify(execFile);
const lab = withLab({ load: true });
const LOCK_TIMEOUT_MS = 2000;

/** One request as the S3 client sent it. */
interface SentRequest {
  command: string;
  key?: string;
  headers: Record<string, string>;
  partNumber?: number;
}

async function labConfig(l: Lab): Promise<BackupConfig> {
  const config = parseBackupConfig(JSON.parse(await readFile(l.backupConfigPath, "utf8")));
  // 5 MiB parts (the S3 minimum) so the lab's archive goes up in several parts.
  return { ...config, s3: { ...config.s3, partSizeMiB: 5, queueSize: 2 }, lockTimeoutMs: LOCK_TIMEOUT_MS };
}

/** Records the headers of every S3 request once the SDK has finished building it. */
function recordRequests(s3: S3Client): SentRequest[] {
  const sent: SentRequest[] = [];
  s3.middlewareStack.add(
    (next, context) => async (args) => {
      const request = args.request as { headers?: Record<string, string> };
      const input = args.input as { Key?: string; PartNumber?: number };
      sent.push({
        command: String(context.commandName),
        key: input.Key,
        headers: { ...(request.headers ?? {}) },
        partNumber: input.PartNumber,
      });
      return next(args);
    },
    { step: "finalizeRequest", priority: "low", name: "recordSentHeaders" },
  );
  return sent;
}

async function sha256Of(
  s3: S3Client,
  bucket: string,
  key: string,
): Promise<{ sha256: string; bytes: number }> {
  const object = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const hash = createHash("sha256");
  let bytes = 0;
  for await (const chunk of object.Body as AsyncIterable<Buffer>) {
    hash.update(chunk);
    bytes += chunk.length;
  }
  return { sha256: hash.digest("hex"), bytes };
}

async function snapshotsLeft(l: Lab): Promise<string[]> {
  return (await readdir(l.snapshotDir)).filter((name) => name.startsWith("mysql-backup-"));
}

async function metricLines(l: Lab): Promise<Array<{ name: string; value: number; dimensions: object }>> {
  const text = await readFile(l.metricsPath, "utf8").catch(() => "");
  return text
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line));
}

/** The retention tag sent with the writes that create `key` (CreateMultipartUpload, PutObject). */
function tagsSent(sent: SentRequest[], key: string): string[] {
  return sent
    .filter((r) => r.key === key && ["CreateMultipartUploadCommand", "PutObjectCommand"].includes(r.command))
    .map((r) => r.headers["x-amz-tagging"]);
}

/** The class a backup after `first` must have: daily within first's UTC month (a run at its turn is monthly). */
function classAfter(first: BackupResult, later: BackupResult): string {
  const month = (r: BackupResult) => utcMonth(backupIdTime(r.backupId));
  return month(later) === month(first) ? "daily" : "monthly";
}

async function gtidSlavePos(l: Lab): Promise<string> {
  const [row] = await sql(l, "replica", "SELECT @@gtid_slave_pos AS pos");
  return String(row.pos);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

describe("mysql-backup backup of a replica under write load", () => {
  let config: BackupConfig;
  let deps: BackupDeps;
  let sent: SentRequest[];
  let first: BackupResult;

  const base = () => config;

  beforeAll(async () => {
    config = await labConfig(lab());
    deps = await backupDeps(config, memoryLogger());
    sent = recordRequests(deps.s3);
  });

  test("uploads a valid manifest last, with an archive whose sha256 matches, and signals the queue", async () => {
    const before = await gtidSlavePos(lab());
    first = await runBackup(config, deps);

    const manifest = parseManifest(
      JSON.parse(
        await (
          await deps.s3.send(new GetObjectCommand({ Bucket: config.s3.bucket, Key: first.manifestKey }))
        ).Body!.transformToString(),
      ),
    );
    expect(manifest.backupId).toBe(first.backupId);
    // Format 2: the archive in chunks (the lab's are 64 MiB of tar), each object's sha256 in the manifest.
    expect(manifest.formatVersion).toBe(2);
    if (manifest.formatVersion !== 2) throw new Error("unreachable");
    expect(manifest.archive.chunks.map((c) => c.key)).toEqual(first.archiveKeys);
    expect(first.archiveKeys.length).toBeGreaterThan(1);
    expect(archiveLayoutProblem(manifest.archive, manifest.files)).toBeNull();
    for (const [index, chunk] of manifest.archive.chunks.entries()) {
      expect(await sha256Of(deps.s3, config.s3.bucket, chunk.key)).toEqual({
        sha256: chunk.sha256,
        bytes: chunk.bytes,
      });
      expect(chunk.sha256).toBe(
        createHash("sha256")
          .update(await readFile(first.localArchives[index]))
          .digest("hex"),
      );
    }
    expect(manifest.archive.sha256).toBe(chunkListDigest(manifest.archive.chunks));
    // The host's first backup: no month is taken yet, so it is the month's monthly, and now the month is.
    expect(first.retention).toBe("monthly");
    expect(manifest.retention).toBe("monthly");
    expect(JSON.parse(await readFile(join(config.localDir, RETENTION_STATE), "utf8"))).toEqual({
      month: utcMonth(new Date(manifest.startedAt)),
      backupId: first.backupId,
    });

    // The position was taken on a replica that had applied writes, under the lock. The lab's MyISAM and Aria
    // tables hold rows, so `auto` holds commits (BACKUP STAGE BLOCK_COMMIT) rather than taking no lock.
    expect(manifest.server.flavor).toBe("mariadb");
    expect(manifest.lock).toEqual({
      method: "BACKUP STAGE BLOCK_COMMIT",
      ms: first.lockMs,
      mode: "commit",
      chosenBy: "auto",
      reason: expect.stringContaining("lab_extras.legacy_myisam (MyISAM, 500 rows)"),
    });
    expect(first.lockMs).toBeGreaterThan(0);
    expect(first.lockMs).toBeLessThan(LOCK_TIMEOUT_MS);
    expect(manifest.position.gtidSlavePos).toMatch(/^0-1-\d+$/);
    expect(Number(manifest.position.gtidSlavePos!.split("-")[2])).toBeGreaterThanOrEqual(
      Number(before.split("-")[2]),
    );
    expect(manifest.position.source).toMatchObject({
      host: "127.0.0.1",
      port: lab().primary.port,
      usingGtid: "Slave_Pos",
    });
    expect(manifest.position.binlog?.file).toMatch(/^mysql-bin\.\d+$/);
    expect(manifest.snapshot).toEqual({
      driver: "btrfs",
      name: `mysql-backup-${first.backupId}`,
      sourceRoot: lab().replica.subvolume,
    });
    expect(manifest.settings.datadir).toBe(join(lab().replica.subvolume, "data"));
    expect(manifest.settings.logBinBasename).toBe(join(lab().replica.subvolume, "data", "mysql-bin"));
    expect(manifest.files.map((f) => f.path)).toEqual(
      expect.arrayContaining(["data/ibdata1", "data/sbtest/sbtest1.ibd"]),
    );
    expect(manifest.tables).toEqual(
      expect.arrayContaining([{ schema: "sbtest", table: "sbtest1", engine: "InnoDB", type: "BASE TABLE" }]),
    );
    expect(new Set(manifest.tables.map((t) => t.engine))).toEqual(new Set(["InnoDB", "MyISAM", "Aria"]));

    // backup.created names this manifest and archive.
    const received = await deps.sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: config.sqs.queueUrl,
        WaitTimeSeconds: 1,
        MaxNumberOfMessages: 10,
      }),
    );
    const messages = (received.Messages ?? []).map((m) => ({
      body: parseBackupCreated(m.Body),
      handle: m.ReceiptHandle,
    }));
    const ours = messages.find((m) => m.body.backupId === first.backupId);
    expect(ours?.body).toMatchObject({
      bucket: config.s3.bucket,
      manifestKey: first.manifestKey,
      archiveSha256: manifest.archive.sha256,
      cluster: config.cluster,
      host: config.host,
    });
    for (const m of messages) {
      await deps.sqs.send(
        new DeleteMessageCommand({ QueueUrl: config.sqs.queueUrl, ReceiptHandle: m.handle }),
      );
    }

    expect(await snapshotsLeft(lab())).toEqual([]);
    const metrics = await metricLines(lab());
    for (const name of [
      ReplicaMetric.BackupSucceeded,
      ReplicaMetric.LockMilliseconds,
      ReplicaMetric.BackupSeconds,
      ReplicaMetric.ArchiveBytes,
    ]) {
      expect(metrics).toContainEqual(
        expect.objectContaining({ name, dimensions: { Cluster: config.cluster, Host: config.host } }),
      );
    }
  }, 120_000);

  test("sends SSE-KMS and checksum headers on every part (CRC32) and on the manifest (SHA-256), the manifest last", async () => {
    // The run first looks for uploads an earlier, crashed run left open (none here), then writes.
    expect(sent[0].command).toBe("ListMultipartUploadsCommand");
    const ofThisBackup = sent.filter(
      (r) => !["GetObjectCommand", "ListMultipartUploadsCommand"].includes(r.command),
    );
    const commands = ofThisBackup.map((r) => r.command);
    const chunks = first.chunks.length;
    expect(commands[0]).toBe("CreateMultipartUploadCommand");
    expect(commands.filter((c) => c === "CreateMultipartUploadCommand")).toHaveLength(chunks);
    expect(commands.filter((c) => c === "UploadPartCommand")).toHaveLength(first.upload.parts);
    // Every upload stays open until every part of every chunk is up; then all complete, then the manifest.
    expect(commands.slice(-chunks - 1)).toEqual([
      ...Array.from({ length: chunks }, () => "CompleteMultipartUploadCommand"),
      "PutObjectCommand",
    ]);

    for (const create of ofThisBackup.filter((r) => r.command === "CreateMultipartUploadCommand")) {
      expect(create.headers["x-amz-server-side-encryption"]).toBe("aws:kms");
      expect(create.headers["x-amz-checksum-algorithm"]).toBe("CRC32");
      expect(create.headers["x-amz-checksum-type"]).toBe("FULL_OBJECT");
      // Every chunk is created with the backup's retention class, which the lifecycle keeps it by.
      expect(create.headers["x-amz-tagging"]).toBe("retention=monthly");
    }
    // Each part's checksum is the CRC32 of exactly that slice of its local chunk, sent unsigned (no SHA-256
    // of the body for SigV4); each completion carries the chunk's full CRC32 and size, and is create-only.
    const partSize = first.upload.partSizeBytes;
    const uploadParts = ofThisBackup.filter((r) => r.command === "UploadPartCommand");
    const completions = ofThisBackup.filter((r) => r.command === "CompleteMultipartUploadCommand");
    for (const [index, path] of first.localArchives.entries()) {
      const local = await readFile(path);
      const parts = uploadParts.filter((r) => r.key === first.archiveKeys[index]);
      expect(parts.map((r) => r.partNumber).sort((a, b) => a! - b!)).toEqual(
        Array.from({ length: Math.ceil(local.length / partSize) }, (_, i) => i + 1),
      );
      for (const part of parts) {
        const slice = local.subarray((part.partNumber! - 1) * partSize, part.partNumber! * partSize);
        expect(part.headers["x-amz-checksum-crc32"]).toBe(crc32Base64(crc32(slice) >>> 0));
        expect(part.headers["x-amz-content-sha256"]).toBe("UNSIGNED-PAYLOAD");
      }
      const completion = completions.find((r) => r.key === first.archiveKeys[index])!;
      expect(completion.headers["x-amz-checksum-crc32"]).toBe(crc32Base64(crc32(local) >>> 0));
      expect(completion.headers["x-amz-checksum-type"]).toBe("FULL_OBJECT");
      expect(completion.headers["x-amz-mp-object-size"]).toBe(String(local.length));
      // Create-only: S3 refuses to replace an object that exists (the bucket policy demands the header).
      expect(completion.headers["if-none-match"]).toBe("*");
    }
    const manifestPut = ofThisBackup[ofThisBackup.length - 1].headers;
    expect(manifestPut["if-none-match"]).toBe("*");
    expect(manifestPut["x-amz-server-side-encryption"]).toBe("aws:kms");
    expect(manifestPut["x-amz-checksum-sha256"]).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    expect(manifestPut["content-type"]).toBe("application/json");
    expect(manifestPut["x-amz-tagging"]).toBe("retention=monthly");
  });

  test("five more backups under load: lock window measured, newest two kept locally", async () => {
    const lockMs: number[] = [first.lockMs];
    for (let i = 0; i < 5; i++) {
      const result = await runBackup(config, deps);
      lockMs.push(result.lockMs);
      expect(result.retention).toBe(classAfter(first, result));
      for (const key of result.archiveKeys)
        expect(tagsSent(sent, key)).toEqual([`retention=${result.retention}`]);
      expect(tagsSent(sent, result.manifestKey)).toEqual([`retention=${result.retention}`]);
      expect(await snapshotsLeft(lab())).toEqual([]);
    }
    console.log(
      `lock ms over ${lockMs.length} backups under load: median ${median(lockMs)}, max ${Math.max(...lockMs)} (${lockMs.join(", ")})`,
    );
    expect(Math.max(...lockMs)).toBeLessThan(LOCK_TIMEOUT_MS);
    expect((await readdir(config.localDir)).filter((n) => /^\d{8}T\d{6}Z-/.test(n))).toHaveLength(2);
  }, 300_000);

  test("a hanging snapshot command: the lock is released within the timeout and replication goes on", async () => {
    const HANG = "60.123"; // a duration nobody else uses, to find a leftover process by it
    const hangingSnapshot: RunCommand = (argv, options) =>
      argv[0] === "btrfs" && argv[2] === "snapshot"
        ? runCommand(["sleep", HANG], options)
        : runCommand(argv, options);
    const hangingDeps = {
      ...deps,
      driver: btrfsDriver(config.snapshot as { subvolume: string; snapshotDir: string }, hangingSnapshot),
    };

    // Poll the replica's applied position throughout: the longest stall is how long replication was blocked.
    const samples: Array<{ t: number; pos: string }> = [];
    let polling = true;
    const poller = (async () => {
      while (polling) {
        samples.push({ t: performance.now(), pos: await gtidSlavePos(lab()) });
        await sleep(25);
      }
    })();
    await sleep(500);
    const started = performance.now();
    const error = await runBackup(config, hangingDeps).catch((e: unknown) => e);
    const failedAfterMs = performance.now() - started;
    await sleep(1500);
    polling = false;
    await poller;

    expect(error).toBeInstanceOf(PipelineError);
    expect((error as PipelineError).kind).toBe("LockTimeout");
    expect((error as PipelineError).message).toContain("btrfs snapshot");
    let stallMs = 0;
    let since = samples[0];
    for (const s of samples) {
      if (s.pos !== since.pos) since = s;
      else stallMs = Math.max(stallMs, s.t - since.t);
    }
    console.log(
      `hanging snapshot: replication stalled ${Math.round(stallMs)} ms (timeout ${LOCK_TIMEOUT_MS} ms); backup failed after ${Math.round(failedAfterMs)} ms`,
    );
    expect(stallMs).toBeGreaterThan(LOCK_TIMEOUT_MS / 2); // the lock really held replication…
    expect(stallMs).toBeLessThan(LOCK_TIMEOUT_MS + 1000); // …and no longer than the timeout allows

    expect(await snapshotsLeft(lab())).toEqual([]);
    const pgrep = await run("pgrep", ["-f", `sleep ${HANG}`]).then(
      (r) => r.stdout,
      () => "",
    );
    expect(pgrep).toBe("");
    const status = await replicaStatus(lab());
    expect(status).toMatchObject({ ioRunning: true, sqlRunning: true, lastError: "" });
    const metrics = await metricLines(lab());
    expect(metrics).toContainEqual(
      expect.objectContaining({
        name: ReplicaMetric.BackupFailed,
        value: 1,
        dimensions: { Cluster: config.cluster, Host: config.host },
      }),
    );
    expect((await readdir(config.localDir)).filter((n) => /^\d{8}T\d{6}Z-/.test(n))).toHaveLength(2);
  }, 120_000);

  test("a write whose answer is lost is retried, finds its own object there and succeeds", async () => {
    // The lock window is not under test here: a generous timeout keeps a slow snapshot on a busy host from failing it.
    const config = { ...base(), lockTimeoutMs: 30_000 };
    const log = memoryLogger();
    const lossy = await backupDeps(config, log);
    enforceCreateOnly(lossy.s3);
    const lost = loseFirstAnswer(lossy.s3, ["PutObjectCommand", "CompleteMultipartUploadCommand"]);
    const result = await runBackup(config, lossy);
    expect(lost).toEqual(["CompleteMultipartUploadCommand", "PutObjectCommand"]);
    const settled = log.lines.filter((l) => l.message.startsWith("the object was already written"));
    // The first completion's answer is lost (the chunks complete at once, so any of them may be first).
    expect(settled.map((l) => l.where)).toEqual([
      expect.stringMatching(new RegExp(`^s3://${config.s3.bucket}/.*/archive-\\d{4}\\.tar\\.zst$`)),
      `s3://${config.s3.bucket}/${result.manifestKey}`,
    ]);
    expect(settled[0].detail).toMatch(/ETag [0-9a-f]{32}-\d+ matches/);
    for (const chunk of result.chunks)
      expect((await sha256Of(lossy.s3, config.s3.bucket, chunk.key)).sha256).toBe(chunk.sha256);
    await drainQueue(config);
  }, 120_000);

  test("someone else's object at the manifest key fails the backup, and the next run abandons it with an alarm", async () => {
    const config = { ...base(), lockTimeoutMs: 30_000 };
    // A host whose month is not taken yet: the failed backup must leave it to the next one.
    await rm(join(config.localDir, RETENTION_STATE), { force: true });
    const log = memoryLogger();
    const forged = await backupDeps(config, log);
    enforceCreateOnly(forged.s3);
    const forgedSent = recordRequests(forged.s3);
    // Another writer gets to the manifest key first (as a replica could before keys were create-only).
    forged.s3.middlewareStack.add(
      (next, context) => async (args) => {
        const input = args.input as { Key?: string; IfNoneMatch?: string; Body?: unknown };
        if (
          context.commandName === "PutObjectCommand" &&
          input.Key?.endsWith("/manifest.json") &&
          input.IfNoneMatch
        )
          await putPlain(forged.s3, input.Key, '{"not": "this backup\'s manifest"}');
        return next(args);
      },
      { step: "initialize", name: "foreignWriter", priority: "high" },
    );
    const error = await runBackup(config, forged).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PipelineError);
    expect((error as PipelineError).kind).toBe("UploadFailed");
    expect((error as PipelineError).message).toMatch(
      /manifest\.json already holds an object that is not this backup's/,
    );
    const crashed = (await readdir(config.localDir))
      .filter((n) => /^\d{8}T\d{6}Z-[0-9a-f]{6}$/.test(n))
      .sort()
      .at(-1)!;
    expect(await readdir(join(config.localDir, crashed))).toContain("outbox.json");
    const crashedRef = { prefix: "backups", cluster: config.cluster, host: config.host, backupId: crashed };
    const chunkKeys = [...new Set(forgedSent.flatMap((r) => (r.key?.includes("/archive-") ? [r.key] : [])))];
    expect(chunkKeys.length).toBeGreaterThan(1);
    for (const key of chunkKeys) {
      expect(key.startsWith(backupPrefix(crashedRef))).toBe(true);
      expect(tagsSent(forgedSent, key)).toEqual(["retention=monthly"]);
    }
    expect(await readdir(config.localDir)).not.toContain(RETENTION_STATE);

    const nextLog = memoryLogger();
    const next = await backupDeps(config, nextLog);
    enforceCreateOnly(next.s3);
    const result = await runBackup(config, next);
    expect(result.retention).toBe("monthly");
    expect(JSON.parse(await readFile(join(config.localDir, RETENTION_STATE), "utf8"))).toMatchObject({
      backupId: result.backupId,
    });
    expect(nextLog.lines).toContainEqual(
      expect.objectContaining({
        level: "error",
        message: "abandoned a backup an earlier run had staged: it will never be verified",
        backupId: crashed,
        why: expect.stringMatching(/already holds an object that is not this backup's/),
      }),
    );
    expect(await metricLines(lab())).toContainEqual(
      expect.objectContaining({
        name: ReplicaMetric.BackupAbandoned,
        value: 1,
        dimensions: { Cluster: config.cluster },
      }),
    );
    const announced = await drainQueue(config);
    expect(announced).not.toContain(crashed);
    expect(await readdir(config.localDir)).not.toContain(crashed);
  }, 180_000);
});

/**
 * Lets each named command through once but loses its answer (a connection reset after S3 acted): the caller
 * retries a write that went through. Returns the commands whose answer was lost, in order.
 */
function loseFirstAnswer(s3: S3Client, commands: string[]): string[] {
  const lost: string[] = [];
  s3.middlewareStack.add(
    (next, context) => async (args) => {
      const output = await next(args);
      const command = String(context.commandName);
      if (commands.includes(command) && !lost.includes(command)) {
        lost.push(command);
        throw Object.assign(new Error("socket hang up"), { code: "ECONNRESET" });
      }
      return output;
    },
    { step: "initialize", name: "loseFirstAnswer", priority: "low" },
  );
  return lost;
}

/** A plain PutObject, as a writer that is not this tool would make it. */
async function putPlain(s3: S3Client, key: string, body: string): Promise<void> {
  await s3.send(new PutObjectCommand({ Bucket: lab().s3.bucket, Key: key, Body: body }));
}

/** Takes every message off the queue; returns their backup ids. */
async function drainQueue(config: BackupConfig): Promise<string[]> {
  const clients = labAwsClients(lab());
  const ids: string[] = [];
  try {
    for (;;) {
      const got = await clients.sqs.send(
        new ReceiveMessageCommand({
          QueueUrl: config.sqs.queueUrl,
          MaxNumberOfMessages: 10,
          WaitTimeSeconds: 0,
        }),
      );
      if (!got.Messages?.length) return ids;
      for (const m of got.Messages) {
        ids.push(parseBackupCreated(m.Body).backupId);
        await clients.sqs.send(
          new DeleteMessageCommand({ QueueUrl: config.sqs.queueUrl, ReceiptHandle: m.ReceiptHandle }),
        );
      }
    }
  } finally {
    clients.s3.destroy();
    clients.sqs.destroy();
  }
}
