/**
 * Every binlog segment checked on arrival (issue 14, item 1), on the lab: the archiver beside the replica
 * announces each segment under sysbench load, and the real verifier judges it without a restore. Duplicate
 * and out-of-order messages give one verdict per segment; a segment flipped by one byte in S3 fails; a
 * segment whose predecessor's ledger entry is missing is deferred and judged once it is back, or judged a
 * gap when it never comes. Messages are taken off the queue by the test and sent back in the order a case
 * needs (the archiver keeps announcing meanwhile; what the test did not send back is not asserted on).
 */
import {
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import {
  DeleteMessageCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  type SQSClient,
} from "@aws-sdk/client-sqs";
import {
  BINLOG_ARCHIVED,
  parseSegmentVerdict,
  segmentVerdictKey,
  SEGMENT_VERDICT_SUFFIX,
  type BinlogArchivedMessage,
  type SegmentVerdict,
  type VerifyConfig,
} from "../../contracts";
import { checkSegmentKeys } from "../../hostscripts/verify/segment";
import type { VerificationResult } from "../../hostscripts/verify/result";
import { waitUntil } from "../../lab/processes";
import { withLab } from "../support/lab";
import {
  expectNoScratchLeft,
  labVerifyConfig,
  readMetrics,
  runLabVerifier,
  withClients,
} from "./verify-support";

jest.setTimeout(600_000);

const lab = withLab({ load: true, pitr: true });

/** Takes every binlog.archived message off the queue (deleting it); returns them by sequence. */
async function drain(sqs: SQSClient): Promise<BinlogArchivedMessage[]> {
  const taken: BinlogArchivedMessage[] = [];
  for (;;) {
    const { Messages = [] } = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: lab().sqs.queueUrl,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: 1,
      }),
    );
    if (Messages.length === 0) break;
    for (const m of Messages) {
      const body = JSON.parse(m.Body ?? "{}") as BinlogArchivedMessage;
      if (body.type === BINLOG_ARCHIVED) taken.push(body);
      await sqs.send(
        new DeleteMessageCommand({ QueueUrl: lab().sqs.queueUrl, ReceiptHandle: m.ReceiptHandle }),
      );
    }
  }
  return taken.sort((a, b) => a.epoch.localeCompare(b.epoch) || a.sequence - b.sequence);
}

/** Waits until `count` consecutive segments of one epoch were announced (and takes them off the queue). */
async function consecutive(sqs: SQSClient, count: number): Promise<BinlogArchivedMessage[]> {
  const seen: BinlogArchivedMessage[] = [];
  let run: BinlogArchivedMessage[] = [];
  const found = await waitUntil(
    async () => {
      seen.push(...(await drain(sqs)));
      const fresh = seen.filter((m) => m.sequence > 1).sort((a, b) => a.sequence - b.sequence);
      for (let i = 0; i + count <= fresh.length; i++) {
        const window = fresh.slice(i, i + count);
        if (window.every((m, k) => m.sequence === window[0].sequence + k && m.epoch === window[0].epoch)) {
          run = window;
          return true;
        }
      }
      return false;
    },
    180_000,
    2000,
  );
  if (!found) throw new Error(`no ${count} consecutive segments were announced within 180 s`);
  return run;
}

async function send(sqs: SQSClient, messages: BinlogArchivedMessage[]): Promise<void> {
  for (const m of messages)
    await sqs.send(new SendMessageCommand({ QueueUrl: lab().sqs.queueUrl, MessageBody: JSON.stringify(m) }));
}

/** The verifier until the queue stayed quiet for `idleSeconds`; the results of the segments it handled. */
async function verifySegments(config: VerifyConfig, idleSeconds = 8): Promise<VerificationResult[]> {
  const results: VerificationResult[] = [];
  await runLabVerifier(lab(), { config, idleSeconds, onSegment: (r) => results.push(r) });
  return results;
}

const of = (results: VerificationResult[], m: BinlogArchivedMessage) =>
  results.filter((r) => r.segment?.verdictKey === segmentVerdictKey(checkSegmentKeys(m)));

async function verdict(s3: S3Client, m: BinlogArchivedMessage): Promise<SegmentVerdict | null> {
  const key = segmentVerdictKey(checkSegmentKeys(m));
  try {
    const got = await s3.send(new GetObjectCommand({ Bucket: lab().s3.bucket, Key: key }));
    return parseSegmentVerdict(JSON.parse((await got.Body?.transformToString()) ?? ""));
  } catch {
    return null;
  }
}

async function getBytes(s3: S3Client, key: string): Promise<Buffer> {
  const got = await s3.send(new GetObjectCommand({ Bucket: lab().s3.bucket, Key: key }));
  return Buffer.from(await got.Body!.transformToByteArray());
}

async function put(s3: S3Client, key: string, body: Buffer): Promise<void> {
  await s3.send(new PutObjectCommand({ Bucket: lab().s3.bucket, Key: key, Body: body }));
}

test("duplicate and out-of-order announcements: one verdict per segment, every one verified", async () => {
  await withClients(lab(), async ({ s3, sqs }) => {
    const messages = await consecutive(sqs, 4);
    // Newest first, each one twice.
    await send(
      sqs,
      [...messages].reverse().flatMap((m) => [m, m]),
    );
    const results = await verifySegments(await labVerifyConfig(lab()));
    for (const m of messages) {
      const handled = of(results, m);
      expect(handled.map((r) => [r.outcome, r.alreadyReported]).sort()).toEqual([
        ["verified", false],
        ["verified", true],
      ]);
      const stored = await verdict(s3, m);
      expect(stored).toMatchObject({ verdict: "verified", failedCheck: null, sequence: m.sequence });
      expect(stored!.object).toMatchObject({ key: m.segmentKey, sha256: m.sha256 });
      expect(stored!.checks.map((c) => c.name)).toEqual([
        "ledger",
        "object",
        "events",
        "continuity",
        "times",
      ]);
      expect(stored!.transactions).toBeGreaterThan(0);
    }
    const epochDir = messages[0].segmentKey.slice(0, messages[0].segmentKey.lastIndexOf("/") + 1);
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: lab().s3.bucket, Prefix: epochDir }));
    const verdictKeys = (listed.Contents ?? [])
      .map((o) => o.Key!)
      .filter((k) => k.endsWith(SEGMENT_VERDICT_SUFFIX));
    for (const m of messages)
      expect(verdictKeys.filter((k) => k === segmentVerdictKey(checkSegmentKeys(m)))).toHaveLength(1);
    const metrics = await readMetrics(lab());
    expect(metrics.filter((d) => d.name === "SegmentVerified").length).toBeGreaterThanOrEqual(
      messages.length,
    );
  });
  await expectNoScratchLeft(lab());
});

test("a segment flipped by one byte in S3 fails on arrival, and pages", async () => {
  await withClients(lab(), async ({ s3, sqs }) => {
    const [m] = await consecutive(sqs, 1);
    const original = await getBytes(s3, m.segmentKey);
    const flipped = Buffer.from(original);
    flipped[Math.floor(flipped.length / 2)] ^= 0x01;
    await put(s3, m.segmentKey, flipped);
    try {
      await send(sqs, [m]);
      const [result] = of(await verifySegments(await labVerifyConfig(lab())), m);
      expect(result).toMatchObject({ outcome: "failed", verdict: "failed" });
      const stored = await verdict(s3, m);
      expect(stored).toMatchObject({ verdict: "failed", failedCheck: "object" });
      expect(stored!.checks.at(-1)!.detail).toMatch(
        /sha256 [0-9a-f]{64}; the ledger says \d+ bytes with [0-9a-f]{64}/,
      );
      expect((await readMetrics(lab())).some((d) => d.name === "SegmentFailed" && d.value === 1)).toBe(true);
    } finally {
      await put(s3, m.segmentKey, original);
    }
  });
});

test("a missing predecessor defers the segment until it is back; one that never comes is a gap", async () => {
  const config: VerifyConfig = {
    ...(await labVerifyConfig(lab())),
    segments: { maxDeferrals: 1, deferSeconds: 2 },
  };
  await withClients(lab(), async ({ s3, sqs }) => {
    const [first, second, third] = await consecutive(sqs, 3);
    await send(sqs, [first]);
    expect(of(await verifySegments(config, 5), first)[0]).toMatchObject({ outcome: "verified" });
    // The predecessor's ledger entry goes away for a while: the next segment waits for it.
    const firstLedger = await getBytes(s3, first.ledgerKey);
    await s3.send(new DeleteObjectCommand({ Bucket: lab().s3.bucket, Key: first.ledgerKey }));
    await send(sqs, [second]);
    const waiting = of(await verifySegments(config, 1), second);
    expect(waiting.map((r) => r.outcome)).toEqual(["deferred"]);
    expect(await verdict(s3, second)).toBeNull();
    await put(s3, first.ledgerKey, firstLedger);
    expect(of(await verifySegments(config, 6), second)).toEqual([
      expect.objectContaining({ outcome: "verified", alreadyReported: false }),
    ]);
    // The second's ledger entry never comes back: after one deferral the third is judged, a gap.
    const secondLedger = await getBytes(s3, second.ledgerKey);
    await s3.send(new DeleteObjectCommand({ Bucket: lab().s3.bucket, Key: second.ledgerKey }));
    try {
      await send(sqs, [third]);
      const judged = of(await verifySegments(config, 6), third);
      expect(judged.map((r) => r.outcome)).toEqual(["deferred", "failed"]);
      expect(await verdict(s3, third)).toMatchObject({
        verdict: "failed",
        failedCheck: "continuity",
        checks: expect.arrayContaining([
          expect.objectContaining({ detail: expect.stringContaining(`${second.ledgerKey} is missing`) }),
        ]),
      });
    } finally {
      await put(s3, second.ledgerKey, secondLedger);
    }
  });
  await expectNoScratchLeft(lab());
});
