import { setTimeout as sleep } from "node:timers/promises";
import {
  ChangeMessageVisibilityCommand,
  DeleteMessageCommand,
  ReceiveMessageCommand,
  type Message,
  type SQSClient,
} from "@aws-sdk/client-sqs";
import {
  BINLOG_ARCHIVED,
  VERIFY_DEFAULTS,
  parseBackupCreated,
  parseBinlogArchived,
  parseManifestKey,
  type BackupCreatedMessage,
  type BackupRef,
  type VerifyConfig,
} from "../../contracts";
import { PipelineError, messageOf } from "../common/errors";
import { emptyResult, segmentResult, type VerificationResult } from "./result";
import { beginChain, endChainStart, proveChain } from "./chain";
import { runDrill } from "./drill";
import { sweepIncoming } from "./kept";
import { checkSegmentKeys, verifySegmentMessage } from "./segment";
import { verifyAndReport, type VerificationDeps } from "./verification";

/**
 * `mysql-backup verify` (DESIGN §1 steps 10–15): take one `backup.created` message at a time, restore the
 * backup into a scratch server, run the checks of §4, write `verification.json` and the metrics
 * (verification.ts).
 *
 * What happens to the message depends on the outcome:
 * - "verified" / "failed": a definitive verdict on the backup. The report and metrics are written, then
 *   the message is deleted. A verified backup first gets the proof of the point-in-time chain from the
 *   verified snapshot before it (chain.ts), with its own verdict.
 * - "unsupported": this verifier cannot run the backup's server (another flavor, a newer series). Said once:
 *   a report with that verdict, the failure metric (nobody has proven the backup), the message deleted.
 * - "rejected": the message itself is bad (not JSON, fails the schema, a manifest key outside the layout).
 *   No report can be trusted to a key the message made up, so none is written; the message is made
 *   visible again at once so it reaches the DLQ after the redrive count, where the DLQ alarm pages.
 * - "infrastructure": the verifier's host or AWS failed (S3 unreachable, scratch disk full, no server
 *   binary). Nothing is said about the backup; the message stays and is retried after its visibility timeout.
 * - "interrupted": SIGTERM arrived mid-restore. The scratch server is stopped, the scratch directory
 *   removed, and the message made visible again at once for another verifier; no verdict is written.
 * - "idle": `--once` found no message within the idle bound.
 * - "deferred": a `binlog.archived` message whose segment's predecessor is not in the archive yet; made
 *   visible again after `segments.deferSeconds` (segment.ts).
 *
 * `binlog.archived` messages share the queue: each segment is checked without a restore (segment.ts), its
 * verdict written once beside it, and the message deleted; "rejected" and "infrastructure" apply as above.
 *
 * At least once, one verdict: a message whose backup already has a `verification.json` returns that report
 * (`alreadyReported`) without restoring again, once the objects in S3 are still the ones it is bound to
 * (verification.ts), and the report is written only if none exists (a conditional write), so a duplicate
 * delivered to two verifiers at once cannot yield two verdicts. A redelivered message emits its stored
 * verdict's metrics again (the first handling may have died before they were sent).
 * While a restore runs the message's visibility is extended every third of its timeout, so a restore
 * may last longer than the timeout without another verifier receiving the message.
 */

/** What the verifier runs on: a verification's dependencies and the queue. */
export interface VerifierDeps extends VerificationDeps {
  sqs: SQSClient;
  /** SIGTERM: stops the daemon, and interrupts a running restore (its message is released). */
  signal?: AbortSignal;
}

/** How the verifier loop runs. */
export interface VerifierOptions {
  /**
   * Verify the next backup, then return: the `binlog.archived` messages received before it are handled on
   * the way (each reported to `onSegment`). Also returns once `idleSeconds` passed without a backup.
   */
  once: boolean;
  /** Called with the result of each `binlog.archived` message. */
  onSegment?: (result: VerificationResult) => void;
  /** With `once`: how long to keep polling an empty queue before giving up. Defaults to 60. */
  idleSeconds?: number;
}

/**
 * The verifier loop. With `once`, returns the result of the first message (or "idle"); otherwise runs
 * `config.concurrency` workers, each polling and restoring on its own, until `deps.signal` aborts, and
 * returns the last result any of them had.
 */
export async function runVerifier(
  config: VerifyConfig,
  options: VerifierOptions,
  deps: VerifierDeps,
): Promise<VerificationResult> {
  const workers = options.once ? 1 : (config.concurrency ?? VERIFY_DEFAULTS.concurrency);
  const latest = { result: emptyResult("idle") };
  // A tree a verifier stopped while keeping it never came in whole (kept.ts); the whole ones stay for the chain.
  await sweepIncoming(config);
  await Promise.all(
    Array.from({ length: workers }, (_, i) =>
      runWorker(
        config,
        options,
        { ...deps, log: workers > 1 ? deps.log.with({ worker: i + 1 }) : deps.log },
        latest,
      ),
    ),
  );
  return latest.result;
}

/** One worker's loop: receive, handle, repeat; `latest` is shared by all workers. */
async function runWorker(
  config: VerifyConfig,
  options: VerifierOptions,
  deps: VerifierDeps,
  latest: { result: VerificationResult },
): Promise<void> {
  const idleUntil = deps.now().getTime() + (options.idleSeconds ?? 60) * 1000;
  while (!deps.signal?.aborted) {
    const message = await receiveOrWait(config, options, deps);
    if (message !== undefined) {
      latest.result = await handleMessage(config, message, deps);
      if (latest.result.segment !== null) options.onSegment?.(latest.result);
      if (options.once && latest.result.segment === null) return;
    }
    if (message === undefined || latest.result.segment !== null) {
      if (!options.once || deps.now().getTime() < idleUntil) continue;
      deps.log.info("no backup.created message arrived; nothing to verify", {
        queueUrl: config.sqs.queueUrl,
      });
      return;
    }
  }
}

/** A daemon outlives a queue outage: it logs, waits and polls again; `--once` reports the outage instead. */
async function receiveOrWait(
  config: VerifyConfig,
  options: VerifierOptions,
  deps: VerifierDeps,
): Promise<Message | undefined> {
  try {
    return await receiveOne(config, deps);
  } catch (error) {
    if (options.once || !(error instanceof PipelineError)) throw error;
    deps.log.error(error.message, { hint: error.hint, retry: `polling again in ${QUEUE_RETRY_SECONDS}s` });
    await sleep(QUEUE_RETRY_SECONDS * 1000, undefined, { signal: deps.signal }).catch(() => undefined);
    return undefined;
  }
}

/** How long the daemon waits after the queue could not be reached. */
const QUEUE_RETRY_SECONDS = 10;

/** One long poll of the queue; the message received stays invisible to others for the visibility timeout. */
async function receiveOne(config: VerifyConfig, deps: VerifierDeps): Promise<Message | undefined> {
  try {
    const received = await deps.sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: config.sqs.queueUrl,
        MaxNumberOfMessages: 1,
        WaitTimeSeconds: config.sqs.waitTimeSeconds ?? VERIFY_DEFAULTS.sqs.waitTimeSeconds,
        VisibilityTimeout: visibilityTimeout(config),
        MessageSystemAttributeNames: ["ApproximateReceiveCount"],
      }),
      { abortSignal: deps.signal },
    );
    return received.Messages?.[0];
  } catch (error) {
    if (deps.signal?.aborted) return undefined;
    throw new PipelineError(
      "VerifierInfrastructure",
      `cannot receive from the verification queue ${config.sqs.queueUrl}: ${messageOf(error)}`,
      "check the verifier's network path and IAM permissions for SQS",
      { cause: error },
    );
  }
}

/** Seconds a received message stays invisible to other verifiers. */
function visibilityTimeout(config: VerifyConfig): number {
  return config.sqs.visibilityTimeoutSeconds ?? VERIFY_DEFAULTS.sqs.visibilityTimeoutSeconds;
}

/** Handles one message to its outcome; only a definitive verdict deletes it. */
async function handleMessage(
  config: VerifyConfig,
  sqsMessage: Message,
  deps: VerifierDeps,
): Promise<VerificationResult> {
  const receiveCount = sqsMessage.Attributes?.ApproximateReceiveCount;
  const log = deps.log.with({ messageId: sqsMessage.MessageId, receiveCount });
  if (typeOf(sqsMessage.Body) === BINLOG_ARCHIVED) return handleSegment(config, sqsMessage, { ...deps, log });
  let message: BackupCreatedMessage;
  let ref: BackupRef;
  try {
    message = parseBackupCreated(sqsMessage.Body);
    ref = checkManifestKey(message);
  } catch (error) {
    return reject(config, sqsMessage, messageOf(error), { ...deps, log });
  }
  const backupLog = log.with({ backupId: message.backupId, cluster: message.cluster, host: message.host });
  backupLog.info("verifying backup", { manifestKey: message.manifestKey });
  const heartbeat = keepInvisible(config, sqsMessage, { ...deps, log: backupLog });
  // The previous verified snapshot, restored alongside this one's verification where cores allow (chain.ts).
  const chainStart = await beginChain(config, message, ref, { ...deps, log: backupLog });
  try {
    const result = await verifyAndReport(
      config,
      message,
      ref,
      { ...deps, log: backupLog },
      { redelivered: Number(receiveCount ?? 1) > 1 },
    );
    // The chain from the previous verified snapshot, proven while the message is still held (chain.ts).
    if (result.verdict === "verified" && result.report !== null)
      result.chain = await proveChain(
        config,
        message,
        ref,
        result.report,
        { ...deps, log: backupLog },
        chainStart,
      );
    await endChainStart(chainStart);
    // Once per snapshot interval: a restore to a random second inside the chain just proven (drill.ts).
    if (result.chain?.verdict.verdict === "verified")
      result.drill = await runDrill(config, ref, result.chain.verdict, { ...deps, log: backupLog });
    heartbeat.stop();
    await deps.sqs.send(
      new DeleteMessageCommand({ QueueUrl: config.sqs.queueUrl, ReceiptHandle: sqsMessage.ReceiptHandle }),
    );
    return result;
  } catch (error) {
    heartbeat.stop();
    await endChainStart(chainStart);
    if (deps.signal?.aborted) return release(config, sqsMessage, message, { ...deps, log: backupLog });
    return unfinished(config, message, error, { ...deps, log: backupLog });
  }
}

/** The `type` of a message body, if it is a JSON object with one (the full parse says what else is wrong). */
function typeOf(body: string | undefined): unknown {
  try {
    return (JSON.parse(body ?? "") as { type?: unknown } | null)?.type;
  } catch {
    return undefined;
  }
}

/** A `binlog.archived` message: a verdict deletes it, a missing predecessor defers it (segment.ts). */
async function handleSegment(
  config: VerifyConfig,
  sqsMessage: Message,
  deps: VerifierDeps,
): Promise<VerificationResult> {
  let message;
  let ref;
  try {
    message = parseBinlogArchived(sqsMessage.Body);
    ref = checkSegmentKeys(message);
  } catch (error) {
    return reject(config, sqsMessage, messageOf(error), deps);
  }
  const log = deps.log.with({ cluster: message.cluster, host: message.host, segment: message.sequence });
  const receiveCount = Number(sqsMessage.Attributes?.ApproximateReceiveCount ?? 1);
  try {
    const result = await verifySegmentMessage(config, message, ref, { receiveCount }, { ...deps, log });
    if (result.outcome === "deferred") {
      const seconds = config.segments?.deferSeconds ?? VERIFY_DEFAULTS.segments.deferSeconds;
      await changeVisibility(config, sqsMessage, deps.sqs, seconds).catch((error: unknown) =>
        log.warn(`could not defer the message: ${messageOf(error)}`, {
          hint: "it becomes visible again after its visibility timeout",
        }),
      );
    } else
      await deps.sqs.send(
        new DeleteMessageCommand({ QueueUrl: config.sqs.queueUrl, ReceiptHandle: sqsMessage.ReceiptHandle }),
      );
    return segmentResult(result);
  } catch (error) {
    const failure = error instanceof PipelineError ? error : null;
    log.error(`the check of segment ${message.segmentKey} did not finish: ${messageOf(error)}`, {
      hint: failure?.hint ?? "look at the verifier's log; this may be a bug",
      retry: `the message is retried after its visibility timeout (${visibilityTimeout(config)}s)`,
    });
    return {
      ...emptyResult("infrastructure"),
      error: { message: messageOf(error), hint: failure?.hint ?? "look at the verifier's log" },
    };
  }
}

/** The manifest key's parts, which must follow the layout and name the message's cluster, host and backup. */
export function checkManifestKey(message: BackupCreatedMessage): BackupRef {
  const ref = parseManifestKey(message.manifestKey);
  const mismatched = (["cluster", "host", "backupId"] as const).filter((k) => ref[k] !== message[k]);
  if (mismatched.length > 0) {
    throw new Error(
      `manifestKey "${message.manifestKey}" does not match the message's ${mismatched
        .map((k) => `${k} "${message[k]}"`)
        .join(", ")}`,
    );
  }
  return ref;
}

/** A verification that did not finish: logged for on-call; the message stays and is retried. */
function unfinished(
  config: VerifyConfig,
  message: BackupCreatedMessage,
  error: unknown,
  deps: VerifierDeps,
): VerificationResult {
  const failure =
    error instanceof PipelineError
      ? error
      : new PipelineError(
          "VerifierInfrastructure",
          messageOf(error),
          "look at the verifier's log; this may be a bug",
          {
            cause: error,
          },
        );
  deps.log.error(`verification of ${message.backupId} did not finish: ${failure.message}`, {
    hint: failure.hint,
    retry: `the message stays in the queue and is retried after its visibility timeout (${visibilityTimeout(config)}s); after the redrive count it moves to the DLQ`,
  });
  return {
    ...emptyResult("infrastructure"),
    backupId: message.backupId,
    manifestKey: message.manifestKey,
    error: { message: failure.message, hint: failure.hint },
  };
}

/**
 * Extends the message's visibility every third of its timeout while its restore runs, so no other verifier
 * receives it meanwhile. A failed extension is logged, not fatal: a second verifier that gets the message
 * finds the verdict already written (or writes the same one).
 */
function keepInvisible(
  config: VerifyConfig,
  sqsMessage: Message,
  deps: Pick<VerifierDeps, "sqs" | "log">,
): { stop(): void } {
  const timeout = visibilityTimeout(config);
  const timer = setInterval(
    () => {
      changeVisibility(config, sqsMessage, deps.sqs, timeout).catch((error: unknown) =>
        deps.log.warn(`could not extend the message's visibility: ${messageOf(error)}`, {
          hint: "another verifier may receive it; it will find this verifier's verdict or write the same one",
        }),
      );
    },
    Math.max(1, Math.floor(timeout / 3)) * 1000,
  );
  return { stop: () => clearInterval(timer) };
}

/** SIGTERM mid-restore: the scratch is gone by now; the message is made visible again for another verifier. */
async function release(
  config: VerifyConfig,
  sqsMessage: Message,
  message: BackupCreatedMessage,
  deps: VerifierDeps,
): Promise<VerificationResult> {
  await makeVisible(config, sqsMessage, deps, {
    failed: "could not release the message",
    hint: "it becomes visible again after its visibility timeout",
  });
  const why = `stopped by a signal while verifying ${message.backupId}`;
  const hint = "nothing was written; the message was released and another verifier restores the backup";
  deps.log.warn(why, { hint });
  return {
    ...emptyResult("interrupted"),
    backupId: message.backupId,
    manifestKey: message.manifestKey,
    error: { message: why, hint },
  };
}

/** Makes a bad message visible again at once so it reaches the DLQ after the redrive count. */
async function reject(
  config: VerifyConfig,
  sqsMessage: Message,
  why: string,
  deps: VerifierDeps,
): Promise<VerificationResult> {
  const hint =
    "the message is left in the queue and moves to the DLQ after the redrive count; fix the sender and delete it from the DLQ";
  deps.log.error(`rejected a message that is not a valid backup.created or binlog.archived: ${why}`, {
    hint,
    body: (sqsMessage.Body ?? "").slice(0, 300),
  });
  await makeVisible(config, sqsMessage, deps, {
    failed: "could not make the rejected message visible again",
    hint: "it becomes visible after its visibility timeout instead",
  });
  return { ...emptyResult("rejected"), error: { message: why, hint } };
}

/**
 * Makes the message visible again at once. A failure is only logged (`warning` says what it means): the
 * message becomes visible anyway when its visibility timeout ends.
 */
async function makeVisible(
  config: VerifyConfig,
  sqsMessage: Message,
  deps: Pick<VerifierDeps, "sqs" | "log">,
  warning: { failed: string; hint: string },
): Promise<void> {
  await changeVisibility(config, sqsMessage, deps.sqs, 0).catch((error: unknown) =>
    deps.log.warn(`${warning.failed}: ${messageOf(error)}`, { hint: warning.hint }),
  );
}

/** Sets the message's visibility timeout to `seconds` from now; 0 makes it visible at once. */
function changeVisibility(
  config: VerifyConfig,
  sqsMessage: Message,
  sqs: SQSClient,
  seconds: number,
): Promise<unknown> {
  return sqs.send(
    new ChangeMessageVisibilityCommand({
      QueueUrl: config.sqs.queueUrl,
      ReceiptHandle: sqsMessage.ReceiptHandle,
      VisibilityTimeout: seconds,
    }),
  );
}
