/**
 * `mysql-backup verify` against the real things: a backup of the lab replica taken by `runBackup` while
 * sysbench writes to the primary, restored by a real scratch `mariadbd`, with S3/SQS served by fauxqs.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { PurgeQueueCommand, ReceiveMessageCommand, SendMessageCommand } from "@aws-sdk/client-sqs";
import { Upload } from "@aws-sdk/lib-storage";
import { BACKUP_CREATED, parseVerificationReport, verificationKey } from "../../contracts";
import { labAwsClients, sql } from "../../lab/lab";
import { withLab } from "../support/lab";
import {
  expectNoScratchLeft as expectNoScratchLeftIn,
  queueDepth,
  runLabVerifier,
  takeBackup as takeBackupOf,
} from "./verify-support";

jest.setTimeout(240_000);

const lab = withLab({ load: true });

const takeBackup = () => takeBackupOf(lab());
const verifyOnce = (idleSeconds = 30, s3?: S3Client) => runLabVerifier(lab(), { idleSeconds, s3 });
const expectNoScratchLeft = () => expectNoScratchLeftIn(lab());

test("a backup taken under write load is verified, with the GTID captured under the lock", async () => {
  const backup = await takeBackup();
  const { result } = await verifyOnce();

  expect(result.checks).toEqual([
    expect.objectContaining({ name: "objects", passed: true }),
    expect.objectContaining({ name: "startup", passed: true }),
    expect.objectContaining({ name: "position", passed: true }),
    expect.objectContaining({ name: "tables", passed: true }),
    expect.objectContaining({
      name: "pages",
      passed: true,
      detail: expect.stringMatching(/^innochecksum: all pages/),
    }),
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
    // Bound to exactly the objects it proved; the emulator keeps no versions, so ETag, size and sha256 bind.
    const manifestObject = await clients.s3.send(
      new GetObjectCommand({ Bucket: lab().s3.bucket, Key: backup.manifestKey }),
    );
    const manifestBytes = Buffer.from(await manifestObject.Body!.transformToByteArray());
    const chunks = [];
    for (const chunk of backup.chunks) {
      const head = await clients.s3.send(new HeadObjectCommand({ Bucket: lab().s3.bucket, Key: chunk.key }));
      chunks.push({
        key: chunk.key,
        versionId: null,
        etag: head.ETag,
        bytes: chunk.bytes,
        sha256: chunk.sha256,
      });
    }
    // The lab's archives come in several chunks, each bound on its own.
    expect(chunks.length).toBeGreaterThan(1);
    expect(report.objects).toEqual({
      manifest: {
        key: backup.manifestKey,
        versionId: null,
        etag: manifestObject.ETag,
        bytes: manifestBytes.length,
        sha256: createHash("sha256").update(manifestBytes).digest("hex"),
      },
      archive: null,
      chunks,
    });
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

test("one flipped byte in an uploaded archive chunk fails the backup on its sha256", async () => {
  const backup = await takeBackup();
  const key = backup.archiveKeys[1];
  const clients = labAwsClients(lab());
  try {
    const bucket = lab().s3.bucket;
    const original = await clients.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    const bytes = Buffer.from(await original.Body!.transformToByteArray());
    bytes[Math.floor(bytes.length / 2)] ^= 0xff;
    // In 5 MiB parts: the emulator refuses a single PUT of more than about 10 MB.
    await new Upload({
      client: clients.s3,
      params: { Bucket: bucket, Key: key, Body: bytes },
      partSize: 5 * 1024 * 1024,
    }).done();
  } finally {
    clients.s3.destroy();
    clients.sqs.destroy();
  }
  const { result } = await verifyOnce();
  expect(result).toMatchObject({ outcome: "failed", verdict: "failed", failedCheck: "objects" });
  expect(result.checks).toEqual([
    {
      name: "objects",
      passed: false,
      detail: expect.stringContaining(`archive chunk 2 of ${backup.chunks.length} sha256 mismatch`),
    },
  ]);
  await expectNoScratchLeft();
});

test('an archive object of 0 bytes, or shorter than its manifest says, fails "objects" at once', async () => {
  for (const keep of [0, 0.5]) {
    const backup = await takeBackup();
    const chunk = backup.chunks[0];
    const clients = labAwsClients(lab());
    try {
      const bucket = lab().s3.bucket;
      const original = await clients.s3.send(new GetObjectCommand({ Bucket: bucket, Key: chunk.key }));
      const bytes = Buffer.from(await original.Body!.transformToByteArray());
      const cut = bytes.subarray(0, Math.floor(bytes.length * keep));
      await new Upload({
        client: clients.s3,
        params: { Bucket: bucket, Key: chunk.key, Body: cut },
        partSize: 5 * 1024 * 1024,
      }).done();
      const { result } = await verifyOnce();
      // A verdict, not the verifier's own trouble: the message is not retried for hours.
      expect(result).toMatchObject({ outcome: "failed", verdict: "failed", failedCheck: "objects" });
      expect(result.checks).toEqual([
        {
          name: "objects",
          passed: false,
          detail: `the archive s3://${bucket}/${chunk.key} is not the one the manifest names: S3 holds ${cut.length} bytes, the manifest says ${chunk.bytes}`,
        },
      ]);
      expect(result.report?.objects?.chunks?.[0]).toMatchObject({ bytes: cut.length, sha256: null });
      expect(await queueDepth(clients.sqs, lab().sqs.queueUrl)).toBe(0);
    } finally {
      clients.s3.destroy();
      clients.sqs.destroy();
    }
  }
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
      // The first S3 call: is there a verdict already (a duplicate message)?
      /cannot read s3:\/\/mysql-backups-lab\/backups\/lab\/replica1\/.*\/verification.json: .*ECONNREFUSED/,
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
