/**
 * `mysql-backup verify` against the real things: a backup of the lab replica taken by `runBackup` while
 * sysbench writes to the primary, restored by a real scratch `mariadbd`, with S3/SQS served by fauxqs.
 */
import { readFile } from "node:fs/promises";
import { hostname } from "node:os";
import { DeleteObjectCommand, GetObjectCommand, S3Client } from "@aws-sdk/client-s3";
import {
  GetQueueAttributesCommand,
  PurgeQueueCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  type SQSClient,
} from "@aws-sdk/client-sqs";
import { Upload } from "@aws-sdk/lib-storage";
import { $ } from "zx";
import {
  BACKUP_CREATED,
  parseBackupConfig,
  parseVerificationReport,
  parseVerifyConfig,
  verificationKey,
  type VerifyConfig,
} from "../../contracts";
import { backupDeps, runBackup, type BackupResult } from "../../hostscripts/backup";
import { memoryLogger } from "../../hostscripts/log";
import { fileSink } from "../../hostscripts/metrics";
import { runVerifier, type VerificationResult } from "../../hostscripts/verify";
import { labAwsClients, leftovers, sql } from "../../lab/lab";
import { processesUsing } from "../../lab/processes";
import { withLab } from "../support/lab";

jest.setTimeout(240_000);

const lab = withLab({ load: true });

async function verifyConfig(): Promise<VerifyConfig> {
  return parseVerifyConfig(JSON.parse(await readFile(lab().verifyConfigPath, "utf8")));
}

async function takeBackup(): Promise<BackupResult> {
  const lab_ = parseBackupConfig(JSON.parse(await readFile(lab().backupConfigPath, "utf8")));
  // 5 MiB parts, as the backup tests use: the emulator refuses a single PUT of more than about 10 MB.
  const config = { ...lab_, s3: { ...lab_.s3, partSizeMiB: 5 } };
  const deps = await backupDeps(config, memoryLogger());
  try {
    return await runBackup(config, deps);
  } finally {
    deps.s3.destroy();
    deps.sqs.destroy();
  }
}

/** Runs `verify --once` with real clients against the lab; returns the result and the log lines. */
async function verifyOnce(
  idleSeconds = 30,
  s3?: S3Client,
): Promise<{ result: VerificationResult; log: ReturnType<typeof memoryLogger> }> {
  const config = await verifyConfig();
  const clients = labAwsClients(lab());
  const log = memoryLogger();
  try {
    const result = await runVerifier(
      config,
      { once: true, idleSeconds },
      {
        ...clients,
        s3: s3 ?? clients.s3,
        metrics: fileSink(lab().metricsPath),
        log,
        $: $({ quiet: true }),
        now: () => new Date(),
        hostname: hostname(),
      },
    );
    return { result, log };
  } finally {
    clients.s3.destroy();
    clients.sqs.destroy();
  }
}

/** Nothing of a restore is left: no scratch directory, no scratch server. */
async function expectNoScratchLeft(): Promise<void> {
  expect((await leftovers(lab().dir)).scratch).toEqual([]);
  const scratchServers = (await processesUsing(lab().dir)).filter((p) => p.command.includes("/scratch/"));
  expect(scratchServers).toEqual([]);
}

async function queueDepth(sqs: SQSClient, queueUrl: string): Promise<number> {
  const attributes = await sqs.send(
    new GetQueueAttributesCommand({
      QueueUrl: queueUrl,
      AttributeNames: ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    }),
  );
  return (
    Number(attributes.Attributes?.ApproximateNumberOfMessages ?? 0) +
    Number(attributes.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0)
  );
}

test("a backup taken under write load is verified, with the GTID captured under the lock", async () => {
  const backup = await takeBackup();
  const { result } = await verifyOnce();

  expect(result.checks).toEqual([
    expect.objectContaining({ name: "objects", passed: true }),
    expect.objectContaining({ name: "startup", passed: true }),
    expect.objectContaining({ name: "position", passed: true }),
    expect.objectContaining({ name: "tables", passed: true }),
  ]);
  expect(result).toMatchObject({ outcome: "verified", verdict: "verified", failedCheck: null });
  console.log(`restore of ${backup.archiveBytes} archive bytes: ${JSON.stringify(result.timings)}`);
  expect(result.backupId).toBe(backup.backupId);
  expect(result.position.captured).toEqual(backup.position);
  expect(result.position.restored?.gtidBinlogPos).toBe(backup.position.gtidBinlogPos);
  expect(result.position.restored?.gtidSlavePos).toBe(backup.position.gtidSlavePos);
  expect(backup.position.gtidSlavePos).toMatch(/^0-1-\d+$/);

  // Every table of the inventory was checked and counted; the static extras keep their exact row counts.
  expect(result.tables).toHaveLength(backup.tables);
  for (const table of result.tables)
    expect(table).toMatchObject({ check: expect.stringMatching(/^OK$|support check/) });
  const legacy = result.tables.find((t) => t.table === "legacy_myisam");
  expect(legacy).toMatchObject({ engine: "MyISAM", rows: 500 });
  const sbtest = result.tables.filter((t) => t.table.startsWith("sbtest"));
  expect(sbtest).toHaveLength(lab().dataset.tables);
  for (const table of sbtest) expect(table.rows).toBe(lab().dataset.tableSize);

  const clients = labAwsClients(lab());
  try {
    const ref = { prefix: "backups", cluster: "lab", host: "replica1", backupId: backup.backupId };
    const stored = await clients.s3.send(
      new GetObjectCommand({ Bucket: lab().s3.bucket, Key: verificationKey(ref) }),
    );
    const report = parseVerificationReport(JSON.parse(await stored.Body!.transformToString()));
    expect(report).toMatchObject({ verdict: "verified", backupId: backup.backupId });
    expect(report.position.restored?.gtid).toBe(report.position.captured.gtid);
    expect(await queueDepth(clients.sqs, lab().sqs.queueUrl)).toBe(0);
  } finally {
    clients.s3.destroy();
    clients.sqs.destroy();
  }
  const metrics = (await readFile(lab().metricsPath, "utf8"))
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line));
  expect(metrics).toEqual(
    expect.arrayContaining([
      expect.objectContaining({ name: "VerificationSucceeded", value: 1, dimensions: { Cluster: "lab" } }),
      expect.objectContaining({ name: "RestoreSeconds", dimensions: { Cluster: "lab" } }),
      expect.objectContaining({ name: "BackupAgeAtVerificationSeconds", dimensions: { Cluster: "lab" } }),
    ]),
  );
  await expectNoScratchLeft();
  // The restore did not disturb the lab: the replica still answers.
  expect(await sql(lab(), "replica", "SELECT 1 AS ok")).toEqual([{ ok: 1 }]);
});

test("one flipped byte in the uploaded archive fails the backup on its sha256", async () => {
  const backup = await takeBackup();
  const clients = labAwsClients(lab());
  try {
    const bucket = lab().s3.bucket;
    const original = await clients.s3.send(new GetObjectCommand({ Bucket: bucket, Key: backup.archiveKey }));
    const bytes = Buffer.from(await original.Body!.transformToByteArray());
    bytes[Math.floor(bytes.length / 2)] ^= 0xff;
    // In 5 MiB parts: the emulator refuses a single PUT of more than about 10 MB.
    await new Upload({
      client: clients.s3,
      params: { Bucket: bucket, Key: backup.archiveKey, Body: bytes },
      partSize: 5 * 1024 * 1024,
    }).done();
  } finally {
    clients.s3.destroy();
    clients.sqs.destroy();
  }
  const { result } = await verifyOnce();
  expect(result).toMatchObject({ outcome: "failed", verdict: "failed", failedCheck: "objects" });
  expect(result.checks).toEqual([
    { name: "objects", passed: false, detail: expect.stringContaining("archive sha256 mismatch") },
  ]);
  await expectNoScratchLeft();
});

test("a backup whose manifest is gone is never verified", async () => {
  const backup = await takeBackup();
  const clients = labAwsClients(lab());
  try {
    await clients.s3.send(new DeleteObjectCommand({ Bucket: lab().s3.bucket, Key: backup.manifestKey }));
  } finally {
    clients.s3.destroy();
    clients.sqs.destroy();
  }
  const { result } = await verifyOnce();
  expect(result).toMatchObject({ outcome: "failed", verdict: "failed", failedCheck: "objects" });
  expect(result.checks[0].detail).toMatch(/manifest\.json is missing .*incomplete/);
  const metrics = (await readFile(lab().metricsPath, "utf8"))
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line));
  expect(metrics.at(-3)).toMatchObject({ name: "VerificationFailed", value: 1 });
  await expectNoScratchLeft();
});

test("a message that fails the schema is rejected clearly and reaches the DLQ after 3 receives", async () => {
  const clients = labAwsClients(lab());
  try {
    const body = JSON.stringify({
      type: BACKUP_CREATED,
      version: 1,
      bucket: lab().s3.bucket,
      backupId: "yesterday",
    });
    await clients.sqs.send(new SendMessageCommand({ QueueUrl: lab().sqs.queueUrl, MessageBody: body }));
    for (let receive = 1; receive <= 3; receive++) {
      const { result, log } = await verifyOnce(10);
      expect(result.outcome).toBe("rejected");
      expect(result.error?.message).toMatch(/manifestKey is required/);
      expect(result.error?.message).toMatch(/backupId must match/);
      expect(log.lines).toEqual(
        expect.arrayContaining([
          expect.objectContaining({
            level: "error",
            message: expect.stringMatching(/^rejected a message that is not a valid backup.created/),
            receiveCount: String(receive),
          }),
        ]),
      );
    }
    // The next receive finds the redrive count exceeded: the emulator moves the message to the DLQ.
    await clients.sqs.send(new ReceiveMessageCommand({ QueueUrl: lab().sqs.queueUrl, WaitTimeSeconds: 1 }));
    const dead = await clients.sqs.send(
      new ReceiveMessageCommand({ QueueUrl: lab().sqs.dlqUrl, WaitTimeSeconds: 2, MaxNumberOfMessages: 10 }),
    );
    expect(dead.Messages?.map((m) => m.Body)).toEqual([body]);
    expect(await queueDepth(clients.sqs, lab().sqs.queueUrl)).toBe(0);
  } finally {
    clients.s3.destroy();
    clients.sqs.destroy();
  }
});

test("when S3 cannot be reached the message stays for a retry and no verdict is given", async () => {
  const backup = await takeBackup();
  // A closed port: the verifier's S3 is down; its SQS still works.
  const unreachable = new S3Client({
    region: "us-east-1",
    endpoint: "http://127.0.0.1:9",
    forcePathStyle: true,
    maxAttempts: 1,
    credentials: { accessKeyId: "lab", secretAccessKey: "lab" },
  });
  const clients = labAwsClients(lab());
  try {
    const { result, log } = await verifyOnce(30, unreachable);
    expect(result).toMatchObject({ outcome: "infrastructure", verdict: null, backupId: backup.backupId });
    expect(result.error?.message).toMatch(
      /cannot download manifest.json s3:\/\/mysql-backups-lab\/.*ECONNREFUSED/,
    );
    expect(log.lines).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          level: "error",
          retry: expect.stringMatching(/stays in the queue and is retried/),
        }),
      ]),
    );
    // Not deleted: still in flight until its visibility timeout ends.
    expect(await queueDepth(clients.sqs, lab().sqs.queueUrl)).toBe(1);
    await expectNoScratchLeft();
    await clients.sqs.send(new PurgeQueueCommand({ QueueUrl: lab().sqs.queueUrl }));
  } finally {
    unreachable.destroy();
    clients.s3.destroy();
    clients.sqs.destroy();
  }
});
