/**
 * The verifier as a daemon against the lab's real MariaDB and the emulator: a restore that outlasts the
 * message's visibility timeout, a duplicate message (also one for objects written over after their
 * verdict), SIGTERM mid-restore and after a failed verdict (the real CLI, stopped), a backup of a server this
 * verifier cannot run, and a verdict whose metrics were lost.
 */
import { spawn } from "node:child_process";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import {
  ChangeMessageVisibilityCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
} from "@aws-sdk/client-sqs";
import { parseManifest, parseVerificationReport, verificationKey } from "../../contracts";
import { backupCreatedOf } from "../../hostscripts/backup/manifest";
import type { BackupResult } from "../../hostscripts/backup/run";
import { fileSink, type MetricsSink } from "../../hostscripts/common/metrics";
import { findServerBinary } from "../../hostscripts/common/server-binary";
import { labAwsClients } from "../../lab/lab";
import { processesUsing } from "../../lab/processes";
import { withLab } from "../support/lab";
import {
  expectNoScratchLeft,
  labVerifyConfig,
  queueDepth,
  readMetrics,
  runLabVerifier,
  takeBackup,
  withClients,
} from "./verify-support";

jest.setTimeout(240_000);

const lab = withLab();
const repo = resolve(__dirname, "..", "..");
const refOf = (backupId: string) => ({ prefix: "backups", cluster: "lab", host: "replica1", backupId });

test("a restore longer than the visibility timeout completes once: no other verifier receives the message", async () => {
  const backup = await takeBackup(lab());
  const base = await labVerifyConfig(lab());
  // A server whose start takes 8 s longer, like a long crash recovery: the lab's restore alone takes ~2 s.
  const slowServer = join(await mkdtemp(join(tmpdir(), "slow-mariadbd-")), "mariadbd");
  await writeFile(
    slowServer,
    `#!/bin/sh\n[ "$1" = --version ] || sleep 8\nexec ${await findServerBinary(undefined)} "$@"\n`,
    {
      mode: 0o755,
    },
  );
  // Below the schema's minimum on purpose: the heartbeat must carry a restore far past this timeout.
  const config = {
    ...base,
    sqs: { ...base.sqs, visibilityTimeoutSeconds: 3 },
    mysqld: { ...base.mysqld, binary: slowServer },
  };
  const stolen: string[] = [];
  const done = new AbortController();
  const thief = withClients(lab(), async ({ sqs }) => {
    // A second verifier starts polling once the first has the message (its scratch directory exists).
    while (!done.signal.aborted && (await readdir(lab().scratchDir)).length === 0) await sleep(50);
    while (!done.signal.aborted) {
      const got = await sqs.send(
        new ReceiveMessageCommand({ QueueUrl: lab().sqs.queueUrl, WaitTimeSeconds: 1, VisibilityTimeout: 1 }),
      );
      stolen.push(...(got.Messages ?? []).map((m) => m.MessageId ?? "?"));
    }
  });
  const { result } = await runLabVerifier(lab(), { config }).finally(() => done.abort());
  await thief;
  await rm(dirname(slowServer), { recursive: true });

  expect(result).toMatchObject({ outcome: "verified", backupId: backup.backupId, alreadyReported: false });
  console.log(`restore with a 3 s visibility timeout: ${JSON.stringify(result.timings)}`);
  expect(result.timings.restoreSeconds).toBeGreaterThan(2 * 3);
  expect(stolen).toEqual([]);
  expect(await withClients(lab(), ({ sqs }) => queueDepth(sqs, lab().sqs.queueUrl))).toBe(0);
  await expectNoScratchLeft(lab());
});

test("a duplicate message yields one report and no second restore", async () => {
  const backup = await takeBackup(lab());
  // Its twin: SQS delivers at least once. (Not read off the queue: a receive counts as a delivery.)
  const body = await messageBodyOf(backup);
  await withClients(lab(), ({ sqs }) =>
    sqs.send(new SendMessageCommand({ QueueUrl: lab().sqs.queueUrl, MessageBody: body })),
  );
  const succeededBefore = (await readMetrics(lab())).filter((m) => m.name === "VerificationSucceeded").length;

  const first = await runLabVerifier(lab());
  expect(first.result).toMatchObject({ outcome: "verified", alreadyReported: false });
  const key = verificationKey(refOf(backup.backupId));
  const written = await withClients(lab(), async ({ s3 }) => {
    const object = await s3.send(new GetObjectCommand({ Bucket: lab().s3.bucket, Key: key }));
    return { body: await object.Body!.transformToString(), etag: object.ETag };
  });

  const second = await runLabVerifier(lab());
  expect(second.result).toMatchObject({
    outcome: "verified",
    alreadyReported: true,
    backupId: backup.backupId,
  });
  expect(second.result.report).toEqual(parseVerificationReport(JSON.parse(written.body)));
  // Nothing was restored the second time.
  expect(second.result.timings).toEqual(first.result.report!.timings);
  expect(second.log.lines).toEqual(
    expect.arrayContaining([
      expect.objectContaining({ message: expect.stringMatching(/not restoring it again/) }),
    ]),
  );
  expect(second.log.lines.some((l) => /^backup .* verified/.test(l.message))).toBe(false);

  await withClients(lab(), async ({ s3, sqs }) => {
    const head = await s3.send(new HeadObjectCommand({ Bucket: lab().s3.bucket, Key: key }));
    expect(head.ETag).toBe(written.etag);
    expect(await queueDepth(sqs, lab().sqs.queueUrl)).toBe(0);
  });
  const succeededAfter = (await readMetrics(lab())).filter((m) => m.name === "VerificationSucceeded").length;
  expect(succeededAfter - succeededBefore).toBe(1);
  await expectNoScratchLeft(lab());
});

test("SIGTERM mid-restore stops the scratch server, removes the scratch and releases the message", async () => {
  const backup = await takeBackup(lab());
  const cli = spawn(
    process.execPath,
    [join(repo, "bin", "mysql-backup.js"), "verify", "--config", lab().verifyConfigPath, "--once", "--json"],
    { cwd: repo, stdio: ["ignore", "pipe", "pipe"] },
  );
  let stdout = "";
  let stderr = "";
  cli.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  cli.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((done) => cli.once("exit", (code) => done(code)));

  // Mid-restore: the scratch server is up (or recovering) when the signal arrives.
  const deadline = Date.now() + 120_000;
  const scratchServer = async () =>
    (await processesUsing(lab().dir)).some(
      (p) => p.command.includes("/scratch/") && /mariadbd|mysqld/.test(p.command),
    );
  while (!(await scratchServer())) {
    if (Date.now() > deadline || cli.exitCode !== null)
      throw new Error(`no scratch server appeared:\n${stderr}`);
    await sleep(100);
  }
  cli.kill("SIGTERM");
  const code = await exited;

  expect(code).toBe(0);
  const result = JSON.parse(stdout.trim().split("\n").at(-1)!);
  expect(result).toMatchObject({ outcome: "interrupted", backupId: backup.backupId, reportKey: null });
  await expectNoScratchLeft(lab());
  await withClients(lab(), async ({ s3, sqs }) => {
    // Released: visible again at once, not after the 120 s visibility timeout.
    const again = await sqs.send(
      new ReceiveMessageCommand({ QueueUrl: lab().sqs.queueUrl, WaitTimeSeconds: 2 }),
    );
    expect(again.Messages?.map((m) => JSON.parse(m.Body!).backupId)).toEqual([backup.backupId]);
    const report = s3.send(
      new HeadObjectCommand({ Bucket: lab().s3.bucket, Key: verificationKey(refOf(backup.backupId)) }),
    );
    await expect(report).rejects.toMatchObject({ $metadata: { httpStatusCode: 404 } });
    await sqs.send(
      new ChangeMessageVisibilityCommand({
        QueueUrl: lab().sqs.queueUrl,
        ReceiptHandle: again.Messages![0].ReceiptHandle,
        VisibilityTimeout: 0,
      }),
    );
  });
  // The released backup is verified by the next verifier.
  const next = await runLabVerifier(lab());
  expect(next.result).toMatchObject({ outcome: "verified", backupId: backup.backupId });
  await withClients(lab(), async ({ sqs }) => expect(await queueDepth(sqs, lab().sqs.queueUrl)).toBe(0));
});

test("a backup of a server this verifier cannot run is reported unsupported once, not retried", async () => {
  const backup = await takeBackup(lab());
  // The same backup, as if taken on MySQL 8.4: no MariaDB can open that datadir.
  await withClients(lab(), async ({ s3 }) => {
    const object = await s3.send(new GetObjectCommand({ Bucket: lab().s3.bucket, Key: backup.manifestKey }));
    const manifest = parseManifest(JSON.parse(await object.Body!.transformToString()));
    const mysql = { ...manifest, server: { ...manifest.server, flavor: "mysql" as const, version: "8.4.3" } };
    await s3.send(
      new PutObjectCommand({ Bucket: lab().s3.bucket, Key: backup.manifestKey, Body: JSON.stringify(mysql) }),
    );
  });
  const failedBefore = (await readMetrics(lab())).filter((m) => m.name === "VerificationFailed").length;
  const { result } = await runLabVerifier(lab());
  expect(result).toMatchObject({
    outcome: "unsupported",
    verdict: "unsupported",
    failedCheck: null,
    checks: [],
  });
  expect(result.report?.unsupportedReason).toMatch(
    /taken on mysql 8\.4\.3; this verifier runs mariadb 10\.\d+/,
  );
  expect((await readMetrics(lab())).filter((m) => m.name === "VerificationFailed").length).toBe(
    failedBefore + 1,
  );
  await withClients(lab(), async ({ sqs }) => expect(await queueDepth(sqs, lab().sqs.queueUrl)).toBe(0));
  await expectNoScratchLeft(lab());
});

test("with concurrency 2 the daemon restores two backups at once, each in its own scratch directory", async () => {
  const backups = [await takeBackup(lab()), await takeBackup(lab())];
  const base = await labVerifyConfig(lab());
  const stop = new AbortController();
  const keys = backups.map((b) => verificationKey(refOf(b.backupId)));
  const scratchDirs = new Set<string>();
  const watcher = (async () => {
    // Stop the daemon once both verdicts are written; note the scratch directories seen meanwhile.
    while (!stop.signal.aborted) {
      for (const entry of await readdir(lab().scratchDir)) scratchDirs.add(entry);
      const written = await withClients(lab(), ({ s3 }) =>
        Promise.all(
          keys.map((Key) =>
            s3.send(new HeadObjectCommand({ Bucket: lab().s3.bucket, Key })).then(
              () => true,
              () => false,
            ),
          ),
        ),
      );
      if (written.every(Boolean)) stop.abort();
      else await sleep(100);
    }
  })();
  const { log } = await runLabVerifier(lab(), {
    config: { ...base, concurrency: 2 },
    once: false,
    signal: stop.signal,
  });
  await watcher;

  const started = log.lines.filter((l) => l.message === "verifying backup");
  expect(started.map((l) => l.worker).sort()).toEqual([1, 2]);
  expect(started.map((l) => l.backupId).sort()).toEqual(backups.map((b) => b.backupId).sort());
  // Both restores began before either finished.
  const firstVerdict = log.lines.findIndex((l) => /^backup .* verified/.test(l.message));
  expect(log.lines.indexOf(started[1])).toBeLessThan(firstVerdict);
  expect([...scratchDirs].filter((d) => backups.some((b) => d.startsWith(b.backupId)))).toHaveLength(2);
  await withClients(lab(), async ({ sqs }) => expect(await queueDepth(sqs, lab().sqs.queueUrl)).toBe(0));
  await expectNoScratchLeft(lab());
});

test("the archive's chunks are downloaded as ranged parts, several chunks and parts at once, and verified", async () => {
  const backup = await takeBackup(lab());
  const base = await labVerifyConfig(lab());
  // Observes (does not answer) the archive's GETs: their ranges per chunk, and how many were in flight at once.
  const ranges = new Map<string, string[]>(backup.archiveKeys.map((key) => [key, []]));
  const inFlight = new Map<string, number>();
  let mostInFlight = 0;
  let mostChunksAtOnce = 0;
  const s3 = labAwsClients(lab()).s3;
  // The emulator keeps no versions: this plays S3's version id on each chunk's first answer (what a versioned
  // bucket sends), and records the version every later range asks for.
  const versionOf = (key: string) => `3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY-${key.slice(-12, -8)}`;
  const unpinned: string[] = [];
  s3.middlewareStack.add(
    (next) => async (args) => {
      const input = args.input as { Key?: string; Range?: string; VersionId?: string };
      const key = input.Key ?? "";
      if (!ranges.has(key)) return next(args);
      ranges.get(key)!.push(input.Range ?? "(whole)");
      if (!input.Range?.startsWith("bytes=0-") && input.VersionId !== versionOf(key)) unpinned.push(key);
      inFlight.set(key, (inFlight.get(key) ?? 0) + 1);
      mostInFlight = Math.max(
        mostInFlight,
        [...inFlight.values()].reduce((a, b) => a + b, 0),
      );
      mostChunksAtOnce = Math.max(mostChunksAtOnce, [...inFlight.values()].filter((n) => n > 0).length);
      try {
        const answer = await next(args);
        if (input.Range?.startsWith("bytes=0-"))
          (answer.output as { VersionId?: string }).VersionId = versionOf(key);
        return answer;
      } finally {
        inFlight.set(key, inFlight.get(key)! - 1);
      }
    },
    { step: "initialize", name: "observeRanges" },
  );
  try {
    const { result } = await runLabVerifier(lab(), {
      config: { ...base, download: { partSizeMiB: 1, concurrency: 4, workers: 2 } },
      s3,
    });
    expect(result).toMatchObject({ outcome: "verified", backupId: backup.backupId });
    console.log(
      `download+extract of ${backup.chunks.length} chunks in 1 MiB parts, 2 chunks and 4 parts at once: ${result.timings.downloadExtractSeconds}s`,
    );
    // Every range after a chunk's first is pinned to the version its first was served from, and the verdict
    // binds that version of every chunk.
    expect(unpinned).toEqual([]);
    expect(result.report?.objects?.chunks).toEqual(
      backup.chunks.map((chunk) =>
        expect.objectContaining({ key: chunk.key, versionId: versionOf(chunk.key), sha256: chunk.sha256 }),
      ),
    );
  } finally {
    s3.destroy();
  }
  const mib = 1024 * 1024;
  for (const chunk of backup.chunks) {
    const got = ranges.get(chunk.key)!;
    const parts = Math.ceil(chunk.bytes / mib);
    expect(got).toHaveLength(parts);
    // The first range asks for a whole part (the size is not known yet); a later one ends at the chunk's end.
    expect(got[0]).toBe(`bytes=0-${mib - 1}`);
    if (parts > 1) expect(got.at(-1)).toBe(`bytes=${(parts - 1) * mib}-${chunk.bytes - 1}`);
  }
  expect(mostChunksAtOnce).toBe(2);
  expect(mostInFlight).toBeGreaterThan(2);
  expect(mostInFlight).toBeLessThanOrEqual(4);
});

test('a duplicate message for a backup written over after its verdict fails "objects" and pages; the stored verdict stands', async () => {
  const backup = await takeBackup(lab());
  const body = await messageBodyOf(backup);
  const first = await runLabVerifier(lab());
  expect(first.result).toMatchObject({ outcome: "verified", backupId: backup.backupId });
  const key = verificationKey(refOf(backup.backupId));
  const stored = await withClients(lab(), async ({ s3 }) =>
    (await s3.send(new GetObjectCommand({ Bucket: lab().s3.bucket, Key: key }))).Body!.transformToString(),
  );
  // Someone writes a new archive over the verified one (same size, one byte flipped), and the message comes again.
  await withClients(lab(), async ({ s3, sqs }) => {
    const original = await s3.send(
      new GetObjectCommand({ Bucket: lab().s3.bucket, Key: backup.archiveKeys[1] }),
    );
    const bytes = Buffer.from(await original.Body!.transformToByteArray());
    bytes[100] ^= 0xff;
    await new Upload({
      client: s3,
      params: { Bucket: lab().s3.bucket, Key: backup.archiveKeys[1], Body: bytes },
      partSize: 5 * 1024 * 1024,
    }).done();
    await sqs.send(new SendMessageCommand({ QueueUrl: lab().sqs.queueUrl, MessageBody: body }));
  });
  const failedBefore = (await readMetrics(lab())).filter((m) => m.name === "VerificationFailed").length;

  const second = await runLabVerifier(lab());
  expect(second.result).toMatchObject({
    outcome: "failed",
    verdict: "failed",
    failedCheck: "objects",
    backupId: backup.backupId,
    alreadyReported: true,
  });
  expect(second.result.checks[0].detail).toMatch(
    new RegExp(
      `^the objects changed after the verdict "verified" of .*: archive chunk 2 s3://${lab().s3.bucket}/${backup.archiveKeys[1]}: ETag "[^"]+" is not the verified "[^"]+" \\(the verdict covers version \\(unversioned\\), ETag .*, sha256 ${backup.chunks[1].sha256}\\)$`,
    ),
  );
  expect(second.result.timings.restoreSeconds).toBe(0);
  expect((await readMetrics(lab())).filter((m) => m.name === "VerificationFailed").length).toBe(
    failedBefore + 1,
  );
  await withClients(lab(), async ({ s3, sqs }) => {
    const after = await s3.send(new GetObjectCommand({ Bucket: lab().s3.bucket, Key: key }));
    expect(await after.Body!.transformToString()).toBe(stored);
    expect(await queueDepth(sqs, lab().sqs.queueUrl)).toBe(0);
  });
});

test("a stored verdict whose metrics failed is emitted again when its message comes back", async () => {
  const backup = await takeBackup(lab());
  const base = await labVerifyConfig(lab());
  // A short visibility timeout, so the message the first attempt leaves comes back at once.
  const config = { ...base, sqs: { ...base.sqs, visibilityTimeoutSeconds: 2 } };
  const sink = fileSink(lab().metricsPath);
  let refused = 0;
  const failsOnce: MetricsSink = {
    put: (data) =>
      refused++ === 0
        ? Promise.reject(new Error("PutMetricData: Rate exceeded (Throttling)"))
        : sink.put(data),
  };
  const succeeded = async () =>
    (await readMetrics(lab())).filter((m) => m.name === "VerificationSucceeded").length;
  const before = await succeeded();

  const first = await runLabVerifier(lab(), { config, metrics: failsOnce });
  expect(first.result).toMatchObject({ outcome: "infrastructure", backupId: backup.backupId });
  expect(first.result.error?.message).toMatch(
    /cannot emit the verification metrics: PutMetricData: Rate exceeded/,
  );
  expect(await succeeded()).toBe(before);

  const second = await runLabVerifier(lab(), { config, metrics: failsOnce });
  expect(second.result).toMatchObject({
    outcome: "verified",
    backupId: backup.backupId,
    alreadyReported: true,
  });
  expect(second.log.lines).toContainEqual(
    expect.objectContaining({ message: `emitted the metrics of ${backup.backupId}'s stored verdict again` }),
  );
  expect(await succeeded()).toBe(before + 1);
  await withClients(lab(), async ({ sqs }) => expect(await queueDepth(sqs, lab().sqs.queueUrl)).toBe(0));
});

test("the daemon, stopped by SIGTERM after it reported a failed backup, exits 0", async () => {
  const backup = await takeBackup(lab());
  await withClients(lab(), ({ s3 }) =>
    s3.send(new DeleteObjectCommand({ Bucket: lab().s3.bucket, Key: backup.manifestKey })),
  );
  const cli = spawn(
    process.execPath,
    [join(repo, "bin", "mysql-backup.js"), "verify", "--config", lab().verifyConfigPath, "--json"],
    { cwd: repo, stdio: ["ignore", "pipe", "pipe"] },
  );
  let stdout = "";
  let stderr = "";
  cli.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  cli.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((done) => cli.once("exit", (code) => done(code)));
  // Once the failed verdict is written and the message deleted, the daemon polls on.
  const deadline = Date.now() + 60_000;
  while (
    !/"message":"backup [^"]+ failed/.test(stderr) ||
    (await withClients(lab(), ({ sqs }) => queueDepth(sqs, lab().sqs.queueUrl))) > 0
  ) {
    if (Date.now() > deadline || cli.exitCode !== null)
      throw new Error(`no failed verdict appeared:\n${stderr}`);
    await sleep(100);
  }
  cli.kill("SIGTERM");
  expect(await exited).toBe(0);
  const result = JSON.parse(stdout.trim().split("\n").at(-1)!);
  expect(result).toMatchObject({ outcome: "failed", failedCheck: "objects", backupId: backup.backupId });
});

/** The body of the backup.created message of `backup`, as the backup sent it. */
async function messageBodyOf(backup: BackupResult): Promise<string> {
  return withClients(lab(), async ({ s3 }) => {
    const object = await s3.send(new GetObjectCommand({ Bucket: lab().s3.bucket, Key: backup.manifestKey }));
    const manifest = parseManifest(JSON.parse(await object.Body!.transformToString()));
    if (manifest.formatVersion !== 2) throw new Error("the backup wrote a manifest of format 1");
    return JSON.stringify(backupCreatedOf(manifest, lab().s3.bucket, backup.manifestKey));
  });
}
