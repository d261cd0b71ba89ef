import { mkdir, readFile, writeFile } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { createServer } from "node:net";
import { join } from "node:path";
import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3";
import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  SetQueueAttributesCommand,
  SQSClient,
} from "@aws-sdk/client-sqs";
import { isAlive, spawnDetached, tail, terminate, waitUntil } from "./processes";

/**
 * The S3/SQS emulator (fauxqs) run as its own detached process, as production talks to AWS over HTTP.
 * It listens on every interface (hard-coded in fauxqs); clients always use 127.0.0.1.
 */

/** The region the lab's clients sign for; queue URLs and ARNs carry it. */
export const LAB_REGION = "us-east-1";

/** Static fake credentials for the emulator, which accepts any. */
export interface StaticCredentials {
  accessKeyId: string;
  secretAccessKey: string;
}

/** A free TCP port on 127.0.0.1 at the time of asking. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Starts fauxqs on `port`, waits for `GET /health`; returns its pid. */
export async function startEmulator(labDir: string, port: number, timeoutMs = 30_000): Promise<number> {
  const cli = join(__dirname, "..", "node_modules", "fauxqs", "dist", "cli.js");
  const logFile = join(labDir, "log", "fauxqs.log");
  const pid = spawnDetached({
    command: process.execPath,
    // fauxqs ignores extra arguments; this one names the lab so `down` finds the process by its command line.
    args: [cli, `--lab-dir=${labDir}`],
    cwd: labDir,
    logFile,
    env: { ...process.env, FAUXQS_PORT: String(port), FAUXQS_LOGGER: "false" },
  });
  const healthy = await waitUntil(async () => {
    if (!(await isAlive(pid))) return true;
    return fetch(`http://127.0.0.1:${port}/health`).then(
      (response) => response.ok,
      () => false,
    );
  }, timeoutMs);
  if (!healthy || !(await isAlive(pid))) {
    throw new Error(
      `the S3/SQS emulator (fauxqs, pid ${pid}, port ${port}) did not become healthy within ` +
        `${timeoutMs / 1000}s; its log says:\n${await tail(logFile)}`,
    );
  }
  return pid;
}

/** Writes random fake credentials as the [default] profile of an ini file, mode 0600. */
export async function writeCredentialsFile(path: string): Promise<void> {
  const accessKeyId = `LAB${randomBytes(8).toString("hex").toUpperCase()}`;
  const secretAccessKey = randomBytes(20).toString("base64url");
  const ini = `[default]\naws_access_key_id = ${accessKeyId}\naws_secret_access_key = ${secretAccessKey}\n`;
  await writeFile(path, ini, { mode: 0o600, flag: "wx" });
}

/** Reads the [default] profile written by `writeCredentialsFile`. */
export async function readCredentialsFile(path: string): Promise<StaticCredentials> {
  const text = await readFile(path, "utf8");
  const value = (key: string) => new RegExp(`^${key}\\s*=\\s*(\\S+)`, "m").exec(text)?.[1];
  const accessKeyId = value("aws_access_key_id");
  const secretAccessKey = value("aws_secret_access_key");
  if (accessKeyId === undefined || secretAccessKey === undefined) {
    throw new Error(`${path} lacks aws_access_key_id or aws_secret_access_key in its [default] profile`);
  }
  return { accessKeyId, secretAccessKey };
}

/** S3 and SQS clients for the emulator at `endpoint`; `credentials` is called when a request is signed. */
export function emulatorClients(
  endpoint: string,
  credentials: () => Promise<StaticCredentials>,
): { s3: S3Client; sqs: SQSClient } {
  const common = { region: LAB_REGION, endpoint, credentials };
  return { s3: new S3Client({ ...common, forcePathStyle: true }), sqs: new SQSClient(common) };
}

/** What the lab creates in the emulator. */
export interface EmulatorResources {
  bucket: string;
  queueUrl: string;
  dlqUrl: string;
}

/** Creates the bucket, and the verification queue with its DLQ wired both ways (redrive and redrive-allow). */
export async function createResources(
  clients: { s3: S3Client; sqs: SQSClient },
  names: {
    bucket: string;
    queue: string;
    dlq: string;
    visibilityTimeoutSeconds: number;
    maxReceiveCount: number;
  },
): Promise<EmulatorResources> {
  await clients.s3.send(new CreateBucketCommand({ Bucket: names.bucket }));
  const dlqUrl = await createQueue(clients.sqs, names.dlq, { MessageRetentionPeriod: "1209600" });
  const dlqArn = await queueArn(clients.sqs, dlqUrl);
  const queueUrl = await createQueue(clients.sqs, names.queue, {
    VisibilityTimeout: String(names.visibilityTimeoutSeconds),
    RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount: names.maxReceiveCount }),
  });
  await allowRedriveFrom(clients.sqs, dlqUrl, await queueArn(clients.sqs, queueUrl));
  return { bucket: names.bucket, queueUrl, dlqUrl };
}

/**
 * Lets only the verification queue redrive into the DLQ, as in production. fauxqs 1.9 rejects the
 * attribute as unknown (it implements no redrive-allow check): that one refusal is tolerated.
 */
async function allowRedriveFrom(sqs: SQSClient, dlqUrl: string, sourceArn: string): Promise<void> {
  const policy = JSON.stringify({ redrivePermission: "byQueue", sourceQueueArns: [sourceArn] });
  try {
    await sqs.send(
      new SetQueueAttributesCommand({ QueueUrl: dlqUrl, Attributes: { RedriveAllowPolicy: policy } }),
    );
  } catch (error) {
    // fauxqs names it in the query protocol's style, AWS in the JSON protocol's: accept both.
    if (!/(^|\.)InvalidAttributeName$/.test((error as Error).name)) throw error;
  }
}

async function createQueue(
  sqs: SQSClient,
  name: string,
  attributes: Record<string, string>,
): Promise<string> {
  const created = await sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: attributes }));
  if (created.QueueUrl === undefined) throw new Error(`the emulator returned no URL for queue ${name}`);
  return created.QueueUrl;
}

async function queueArn(sqs: SQSClient, queueUrl: string): Promise<string> {
  const got = await sqs.send(
    new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ["QueueArn"] }),
  );
  const arn = got.Attributes?.QueueArn;
  if (arn === undefined) throw new Error(`the emulator returned no ARN for queue ${queueUrl}`);
  return arn;
}

/** An emulator on its own, without servers or volumes: what tests and benchmarks of S3-only commands need. */
export interface StandaloneEmulator {
  endpoint: string;
  bucket: string;
  queueUrl: string;
  /** The fake static credentials (an ini file, mode 0600), as a config's `aws.credentialsFile`. */
  credentialsFile: string;
  clients: { s3: S3Client; sqs: SQSClient };
  /** Stops the emulator (SIGTERM, then SIGKILL) and destroys the clients. */
  stop(): Promise<void>;
}

/**
 * Starts fauxqs in `dir` (which must exist; its `log/` is created) with one bucket and one queue. The
 * process is detached like the lab's; `stop` ends it.
 */
export async function startStandaloneEmulator(
  dir: string,
  names: { bucket: string; queue: string } = { bucket: "mysql-backups-test", queue: "mysql-backup-verify" },
): Promise<StandaloneEmulator> {
  await mkdir(join(dir, "log"), { recursive: true });
  const port = await freePort();
  const pid = await startEmulator(dir, port);
  const endpoint = `http://127.0.0.1:${port}`;
  const credentialsFile = join(dir, "aws-credentials");
  try {
    await writeCredentialsFile(credentialsFile);
    const clients = emulatorClients(endpoint, () => readCredentialsFile(credentialsFile));
    await clients.s3.send(new CreateBucketCommand({ Bucket: names.bucket }));
    const queueUrl = await createQueue(clients.sqs, names.queue, {});
    return {
      endpoint,
      bucket: names.bucket,
      queueUrl,
      credentialsFile,
      clients,
      async stop() {
        clients.s3.destroy();
        clients.sqs.destroy();
        await terminate([pid], 10_000);
      },
    };
  } catch (error) {
    await terminate([pid], 10_000);
    throw error;
  }
}
