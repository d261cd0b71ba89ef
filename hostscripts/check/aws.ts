import { PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { GetQueueAttributesCommand, type SQSClient } from "@aws-sdk/client-sqs";
import { DEFAULT_PREFIX, checkProbeKey, hostPrefix, type BackupConfig } from "../../contracts";
import { messageOf } from "../common/errors";
import { isAlreadyWritten } from "../common/s3";
import type { Checklist } from "./findings";

/**
 * What `check` proves of AWS. On a replica: a create-only probe object written exactly as the backup writes
 * (below its own host's prefix, SSE-KMS with the configured key, an S3 SHA-256 checksum, `If-None-Match: *`),
 * then written again to see the second write refused; the queue answers. The probe stays behind (the
 * replica may not delete): one small JSON object per run under `<prefix>/<cluster>/<host>/_check/`, which
 * the bucket's lifecycle expires under its rule for untagged objects.
 */

/** An S3 or SQS error as the SDK raises it. */
interface AwsErrorFields {
  name?: string;
  message?: string;
  Code?: string;
  $metadata?: { httpStatusCode?: number };
}

/** What a failed write says about the config, for the person fixing it. */
export function explainWriteFailure(
  error: unknown,
  where: { bucket: string; prefix: string; kmsKeyId?: string },
): { detail: string; fix: string } {
  const e = error as AwsErrorFields;
  const code = e.name ?? e.Code ?? "";
  const text = `${code}: ${messageOf(error)}`;
  const key = where.kmsKeyId ?? "the bucket's default key";
  if (code === "NoSuchBucket") {
    return {
      detail: `bucket ${where.bucket} does not exist (${text})`,
      fix: "set s3.bucket to the stack's bucketName (pulumi stack output bucketName)",
    };
  }
  if (code.startsWith("KMS.") || /\bkms:/i.test(messageOf(error))) {
    return {
      detail: `S3 refused to encrypt with the KMS key ${key}: this host's role cannot use it (${text})`,
      fix: "set s3.kmsKeyId to the stack's kmsKeyArn, and check that the role may kms:GenerateDataKey and kms:Decrypt it via S3",
    };
  }
  if (code === "AccessDenied" || e.$metadata?.httpStatusCode === 403) {
    return {
      detail: `this host may not write under s3://${where.bucket}/${where.prefix} (${text})`,
      fix: "a replica's role creates objects only below its own <prefix>/<cluster>/<host>/ and its cluster's <prefix>/<cluster>/binlogs/: check s3.prefix, cluster and host against the stack's config",
    };
  }
  return {
    detail: `cannot write to s3://${where.bucket}/${where.prefix}: ${text}`,
    fix: "check the network path to S3 (VPC endpoint, proxy) and aws.region",
  };
}

/** Where a probe goes and which finding it makes. Defaults to the backup's: `s3.write` below the host's prefix. */
export interface ProbeTarget {
  check: string;
  /** The probe's key, and the prefix the role must be allowed to create objects below. */
  key: string;
  prefix: string;
}

/** The replica's S3 write path, proven with a probe object. */
export async function checkS3Write(
  list: Checklist,
  s3: S3Client,
  config: Pick<BackupConfig, "cluster" | "host" | "s3">,
  now: Date,
  version: string,
  target?: ProbeTarget,
): Promise<void> {
  const prefix = config.s3.prefix ?? DEFAULT_PREFIX;
  const { check, key } = target ?? {
    check: "s3.write",
    key: checkProbeKey(prefix, config.cluster, config.host, now),
  };
  const where = {
    bucket: config.s3.bucket,
    prefix: target?.prefix ?? hostPrefix(prefix, config.cluster, config.host),
    kmsKeyId: config.s3.kmsKeyId,
  };
  const put = () =>
    s3.send(
      new PutObjectCommand({
        Bucket: config.s3.bucket,
        Key: key,
        Body: JSON.stringify({
          probe: "mysql-backup check",
          cluster: config.cluster,
          host: config.host,
          at: now.toISOString(),
          version,
        }),
        ContentType: "application/json",
        ServerSideEncryption: "aws:kms",
        ...(config.s3.kmsKeyId ? { SSEKMSKeyId: config.s3.kmsKeyId } : {}),
        ChecksumAlgorithm: "SHA256",
        IfNoneMatch: "*",
      }),
    );
  try {
    await put();
  } catch (error) {
    const { detail, fix } = explainWriteFailure(error, where);
    list.fail(check, detail, fix);
    return;
  }
  const encryption = `SSE-KMS with ${config.s3.kmsKeyId ?? "the bucket's default key"}`;
  try {
    await put();
    list.warn(
      check,
      `wrote s3://${config.s3.bucket}/${key} (${encryption}), but a second create-only write of it was accepted: this endpoint does not honour If-None-Match, so objects can be overwritten`,
      "use S3 itself (or an endpoint that supports conditional writes)",
    );
  } catch (error) {
    if (!isAlreadyWritten(error)) {
      list.fail(
        check,
        `the second write of the probe failed unexpectedly: ${messageOf(error)}`,
        "run check again",
      );
      return;
    }
    list.pass(
      check,
      `created s3://${config.s3.bucket}/${key} (${encryption}, SHA-256 checksum); writing it again was refused (create-only)`,
    );
  }
}

/** The queue answers this host: it exists, the URL is right, the network path works. */
export async function checkQueue(
  list: Checklist,
  sqs: SQSClient,
  queueUrl: string,
  role: "replica" | "verifier",
): Promise<void> {
  try {
    const answer = await sqs.send(
      new GetQueueAttributesCommand({
        QueueUrl: queueUrl,
        AttributeNames: ["QueueArn", "ApproximateNumberOfMessages"],
      }),
    );
    const waiting = answer.Attributes?.ApproximateNumberOfMessages ?? "?";
    list.pass(
      "sqs.queue",
      `${answer.Attributes?.QueueArn ?? queueUrl} answers (${waiting} message(s) waiting)` +
        (role === "replica"
          ? "; SendMessage itself is not sent (the verifiers would take it for a backup)"
          : ""),
    );
  } catch (error) {
    const e = error as AwsErrorFields;
    const code = e.name ?? "";
    const missing = /NonExistentQueue|QueueDoesNotExist/.test(code);
    list.fail(
      "sqs.queue",
      missing
        ? `queue ${queueUrl} does not exist (${code})`
        : `cannot reach queue ${queueUrl}: ${code}: ${messageOf(error)}`,
      missing
        ? "set sqs.queueUrl to the stack's queueUrl (pulumi stack output queueUrl)"
        : "check the network path to SQS and the role's sqs:GetQueueAttributes on the queue",
    );
  }
}
