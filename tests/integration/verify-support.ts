/**
 * What the verifier's integration tests share: a backup of the lab replica, `verify --once` with real
 * clients, and the assertions that nothing of a restore is left and how deep the queue is.
 */
import { readFile, readdir } from "node:fs/promises";
import { basename, join } from "node:path";
import { hostname } from "node:os";
import type { S3Client } from "@aws-sdk/client-s3";
import { GetQueueAttributesCommand, type SQSClient } from "@aws-sdk/client-sqs";
import { $ } from "zx";
import { parseBackupConfig, parseVerifyConfig, type VerifyConfig } from "../../contracts";
import { backupDeps } from "../../hostscripts/backup/command";
import { runBackup, type BackupResult } from "../../hostscripts/backup/run";
import { memoryLogger, type MemoryLine } from "../../hostscripts/common/log";
import { fileSink, type MetricsSink } from "../../hostscripts/common/metrics";
import { runVerifier, type VerifierDeps } from "../../hostscripts/verify/daemon";
import type { VerificationResult } from "../../hostscripts/verify/result";
import { labAwsClients, leftovers, type Lab } from "../../lab/lab";
import { processesUsing } from "../../lab/processes";

/** The lab's verify config, as the CLI would read it. */
export async function labVerifyConfig(lab: Lab): Promise<VerifyConfig> {
  return parseVerifyConfig(JSON.parse(await readFile(lab.verifyConfigPath, "utf8")));
}

/**
 * A real backup of the lab replica (it sends its backup.created message); `prepare` may add a middleware to
 * its S3 client.
 */
export async function takeBackup(lab: Lab, prepare?: (s3: S3Client) => void): Promise<BackupResult> {
  const config = parseBackupConfig(JSON.parse(await readFile(lab.backupConfigPath, "utf8")));
  const deps = await backupDeps(config, memoryLogger());
  prepare?.(deps.s3);
  try {
    return await runBackup(config, deps);
  } finally {
    deps.s3.destroy();
    deps.sqs.destroy();
  }
}

/** Runs the verifier with real clients against the lab; returns the result and the log lines. */
export async function runLabVerifier(
  lab: Lab,
  options: {
    config?: VerifyConfig;
    idleSeconds?: number;
    once?: boolean;
    signal?: AbortSignal;
    /** Stands in for the lab's S3 client (e.g. one with a middleware). */
    s3?: S3Client;
    /** Stands in for the lab's metrics file. */
    metrics?: MetricsSink;
    /** Receives the result of each binlog.archived message handled on the way. */
    onSegment?: (result: VerificationResult) => void;
    /** Sees each log line as the verifier writes it. */
    onLog?: (line: MemoryLine) => void;
  } = {},
): Promise<{ result: VerificationResult; log: ReturnType<typeof memoryLogger> }> {
  const config = options.config ?? (await labVerifyConfig(lab));
  const clients = labAwsClients(lab);
  const log = memoryLogger(options.onLog);
  const deps: VerifierDeps = {
    ...clients,
    s3: options.s3 ?? clients.s3,
    metrics: options.metrics ?? fileSink(lab.metricsPath),
    log,
    $: $({ quiet: true }),
    now: () => new Date(),
    hostname: hostname(),
    signal: options.signal,
  };
  try {
    const result = await runVerifier(
      config,
      { once: options.once ?? true, idleSeconds: options.idleSeconds ?? 30, onSegment: options.onSegment },
      deps,
    );
    if (result.outcome === "failed" || result.outcome === "infrastructure") {
      // Said where a test's diff shows only the outcome: which check failed, and why.
      const failed = result.checks.filter((c) => !c.passed);
      console.log(
        `verifier: ${result.backupId ?? "?"} ${result.outcome} (${result.failedCheck ?? "-"}): ${JSON.stringify({ failed, error: result.error })}`,
      );
    }
    return { result, log };
  } finally {
    clients.s3.destroy();
    clients.sqs.destroy();
  }
}

/**
 * Nothing of a restore is left: no scratch directory but the verified trees kept for the next chain proof, no
 * scratch server. Returns the kept entries' names.
 */
export async function expectNoScratchLeft(lab: Lab): Promise<string[]> {
  const scratch = (await leftovers(lab.dir)).scratch;
  expect(scratch.filter((path) => basename(path) !== "kept")).toEqual([]);
  const scratchServers = (await processesUsing(lab.dir)).filter((p) => p.command.includes("/scratch/"));
  expect(scratchServers).toEqual([]);
  // The verified trees kept for the next chain proof (kept.ts): whole entries only, a manifest beside the tree.
  const keptDir = scratch.find((path) => basename(path) === "kept");
  const kept = keptDir === undefined ? [] : await readdir(keptDir);
  for (const entry of kept)
    expect((await readdir(join(keptDir!, entry))).sort()).toEqual(["manifest.json", "root"]);
  return kept;
}

/** Messages in the queue, visible or in flight. */
export async function queueDepth(sqs: SQSClient, queueUrl: string): Promise<number> {
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

/** The metric lines written so far. */
export async function readMetrics(lab: Lab): Promise<Array<{ name: string; value: number }>> {
  const text = await readFile(lab.metricsPath, "utf8").catch(() => "");
  return text
    .trim()
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line));
}

/** Test S3/SQS clients for the lab, destroyed after `use`. */
export async function withClients<T>(
  lab: Lab,
  use: (clients: { s3: S3Client; sqs: SQSClient }) => Promise<T>,
): Promise<T> {
  const clients = labAwsClients(lab);
  try {
    return await use(clients);
  } finally {
    clients.s3.destroy();
    clients.sqs.destroy();
  }
}
