/**
 * Fault injection: the backup's S3 and SQS traffic goes through a proxy on 127.0.0.1 in front of fauxqs that,
 * from a seeded random sequence, answers 503 SlowDown, answers 429, or drops the connection on about 30 % of
 * requests. The backup must still complete, and the object in S3 must have exactly the sha256 that the
 * manifest records for the local archive.
 */
import { createHash } from "node:crypto";
import { once } from "node:events";
import { readFile, readdir } from "node:fs/promises";
import {
  createServer,
  request as forward,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import type { AddressInfo } from "node:net";
import { GetObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { DeleteMessageCommand, ReceiveMessageCommand } from "@aws-sdk/client-sqs";
import { parseBackupConfig, parseBackupCreated, parseManifest, type BackupConfig } from "../../contracts";
import { backupDeps } from "../../hostscripts/backup/command";
import { runBackup } from "../../hostscripts/backup/run";
import { PipelineError } from "../../hostscripts/common/errors";
import { memoryLogger } from "../../hostscripts/common/log";
import { labAwsClients } from "../../lab/lab";
import { withLab } from "../support/lab";

const lab = withLab();
/** Share of requests that fail: 12 % SlowDown, 8 % 429, 10 % dropped connections. */
const FAULT_RATE = 0.3;

/** What the proxy did, by kind. */
interface FaultStats {
  requests: number;
  slowDown: number;
  tooMany: number;
  dropped: number;
  forwarded: number;
}

/** mulberry32: a small seeded generator, so every run injects the same sequence of faults. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The error body each service speaks: S3 XML, SQS JSON (the SDK picks the code from `__type`). */
function errorBody(req: IncomingMessage, code: string): { type: string; body: string } {
  if (req.headers["x-amz-target"]?.toString().startsWith("AmazonSQS")) {
    return { type: "application/x-amz-json-1.0", body: JSON.stringify({ __type: code, message: code }) };
  }
  return {
    type: "application/xml",
    body: `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${code}</Message></Error>`,
  };
}

function refuse(req: IncomingMessage, res: ServerResponse, status: number, code: string): void {
  const { type, body } = errorBody(req, code);
  res.writeHead(status, {
    "content-type": type,
    connection: "close",
    "content-length": Buffer.byteLength(body),
  });
  res.end(body);
  req.resume();
}

async function faultyProxy(
  upstream: URL,
  seed: number,
): Promise<{ server: Server; url: string; stats: FaultStats }> {
  const random = seeded(seed);
  const stats: FaultStats = { requests: 0, slowDown: 0, tooMany: 0, dropped: 0, forwarded: 0 };
  const server = createServer((req, res) => {
    stats.requests++;
    const faults = stats.slowDown + stats.tooMany + stats.dropped;
    // Random faults, topped up so at least 30 % of the requests so far have failed whatever the sample size.
    const r = faults < Math.floor(stats.requests * FAULT_RATE) ? random() * FAULT_RATE : random();
    if (r < 0.12) {
      stats.slowDown++;
      return refuse(req, res, 503, "SlowDown");
    }
    if (r < 0.2) {
      stats.tooMany++;
      return refuse(req, res, 429, "ThrottlingException");
    }
    if (r < FAULT_RATE) {
      stats.dropped++;
      req.socket.destroy();
      return;
    }
    stats.forwarded++;
    forwardTo(upstream, req, res);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  return { server, url: `http://127.0.0.1:${port}`, stats };
}

/** Passes one request on to `upstream` and its answer back. */
function forwardTo(upstream: URL, req: IncomingMessage, res: ServerResponse): void {
  const out = forward(
    { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
    (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    },
  );
  out.on("error", () => res.destroy());
  req.pipe(out);
}

async function sha256Of(s3: S3Client, bucket: string, key: string): Promise<string> {
  const object = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const hash = createHash("sha256");
  for await (const chunk of object.Body as AsyncIterable<Buffer>) hash.update(chunk);
  return hash.digest("hex");
}

test("a backup through an endpoint that fails 30 % of requests completes with the exact archive in S3", async () => {
  const base = parseBackupConfig(JSON.parse(await readFile(lab().backupConfigPath, "utf8")));
  const proxy = await faultyProxy(new URL(base.aws!.endpoint!), 20261124);
  try {
    const config: BackupConfig = {
      ...base,
      s3: { ...base.s3, partSizeMiB: 5, queueSize: 2 },
      aws: { ...base.aws, endpoint: proxy.url },
    };
    const result = await runBackup(config, await backupDeps(config, memoryLogger()));

    const direct = labAwsClients(lab());
    const manifest = parseManifest(
      JSON.parse(
        await (
          await direct.s3.send(new GetObjectCommand({ Bucket: config.s3.bucket, Key: result.manifestKey }))
        ).Body!.transformToString(),
      ),
    );
    expect(manifest.formatVersion).toBe(2);
    if (manifest.formatVersion !== 2) throw new Error("unreachable");
    for (const [index, chunk] of manifest.archive.chunks.entries()) {
      const local = createHash("sha256")
        .update(await readFile(result.localArchives[index]))
        .digest("hex");
      expect(chunk.sha256).toBe(local);
      expect(await sha256Of(direct.s3, config.s3.bucket, chunk.key)).toBe(chunk.sha256);
    }
    expect(result.upload.parts).toBeGreaterThanOrEqual(2);

    const got = await direct.sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: config.sqs.queueUrl,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: 1,
      }),
    );
    const messages = (got.Messages ?? []).map((m) => parseBackupCreated(m.Body!));
    expect(messages.map((m) => m.backupId)).toEqual([result.backupId]);
    for (const m of got.Messages ?? []) {
      await direct.sqs.send(
        new DeleteMessageCommand({ QueueUrl: config.sqs.queueUrl, ReceiptHandle: m.ReceiptHandle }),
      );
    }

    const { stats } = proxy;
    const faults = stats.slowDown + stats.tooMany + stats.dropped;
    expect(faults / stats.requests).toBeGreaterThanOrEqual(0.2);
    expect(stats.slowDown).toBeGreaterThan(0);
    expect(stats.tooMany).toBeGreaterThan(0);
    expect(stats.dropped).toBeGreaterThan(0);
  } finally {
    proxy.server.closeAllConnections();
    proxy.server.close();
  }
}, 180_000);

/** Forwards everything but answers 403 AccessDenied to every archive part after the first `allowed`. */
async function deniedAfterParts(upstream: URL, allowed: number): Promise<{ server: Server; url: string }> {
  let parts = 0;
  const server = createServer((req, res) => {
    if (/[?&]partNumber=/.test(req.url ?? "") && ++parts > allowed)
      return refuse(req, res, 403, "AccessDenied");
    forwardTo(upstream, req, res);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  return { server, url: `http://127.0.0.1:${port}` };
}

test("a part refused while the archive is being written stops the archive and leaves nothing behind", async () => {
  const base = parseBackupConfig(JSON.parse(await readFile(lab().backupConfigPath, "utf8")));
  const proxy = await deniedAfterParts(new URL(base.aws!.endpoint!), 1);
  const localBefore = await readdir(base.localDir).catch(() => []);
  try {
    const config: BackupConfig = {
      ...base,
      s3: { ...base.s3, partSizeMiB: 5, queueSize: 1 },
      aws: { ...base.aws, endpoint: proxy.url },
    };
    const error = await runBackup(config, await backupDeps(config, memoryLogger())).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PipelineError);
    expect((error as PipelineError).kind).toBe("UploadFailed");
    expect((error as PipelineError).message).toMatch(/archive-\d{4}\.tar\.zst failed: AccessDenied/);
    expect((await readdir(lab().snapshotDir)).filter((n) => n.startsWith("mysql-backup-"))).toEqual([]);
    expect(await readdir(base.localDir)).toEqual(localBefore);
  } finally {
    proxy.server.closeAllConnections();
    proxy.server.close();
  }
}, 180_000);
