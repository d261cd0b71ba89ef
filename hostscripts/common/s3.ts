import {
  GetObjectCommand,
  PutObjectCommand,
  type GetObjectCommandOutput,
  type S3Client,
} from "@aws-sdk/client-s3";
import { PipelineError, messageOf } from "./errors";

/**
 * What the commands tell apart in S3's answers (an object that is not there, a conditional write that lost),
 * and how a call that failed is reported: a host that cannot reach S3 says nothing about a backup.
 */

/** The parts of an AWS SDK error these checks read: S3's error code and the HTTP status. */
interface S3ErrorFields {
  name?: string;
  $metadata?: { httpStatusCode?: number };
}

/** S3 answered that the object does not exist (`NoSuchKey`, 404). */
export function isNotFound(error: unknown): boolean {
  const e = error as S3ErrorFields;
  return e.name === "NoSuchKey" || e.$metadata?.httpStatusCode === 404;
}

/** S3 refused a conditional write (`If-None-Match: *`) because the object exists: someone wrote it first. */
export function isAlreadyWritten(error: unknown): boolean {
  const e = error as S3ErrorFields;
  return e.name === "PreconditionFailed" || e.$metadata?.httpStatusCode === 412;
}

/** GetObject's response, or null when the object does not exist; any other failure is thrown as S3 raised it. */
export async function getObjectOrNull(
  s3: S3Client,
  bucket: string,
  key: string,
): Promise<GetObjectCommandOutput | null> {
  try {
    return await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  } catch (error) {
    if (isNotFound(error)) return null;
    throw error;
  }
}

const ACCESS_HINT = "check this host's access to S3 (network, IAM, KMS)";

/**
 * An S3 call that failed, for on-call: "cannot <what>: <what S3 said>". It is this host's access to S3, not
 * the backup, that failed (exit code VerifierInfrastructure).
 */
export function s3Failure(what: string, error: unknown, hint = ACCESS_HINT): PipelineError {
  return new PipelineError("VerifierInfrastructure", `cannot ${what}: ${messageOf(error)}`, hint, {
    cause: error,
  });
}

/** Runs an S3 call; its failure becomes an `s3Failure`, never a verdict on the backup. */
export async function s3Call<T>(what: string, call: () => Promise<T>, hint = ACCESS_HINT): Promise<T> {
  try {
    return await call();
  } catch (error) {
    throw s3Failure(what, error, hint);
  }
}

/**
 * Creates a verifier's JSON verdict (verification, segment or chain) with SSE-KMS and a SHA-256 checksum, only
 * when none is there yet: one verdict per object it judges, so S3 refuses the write (412, `isAlreadyWritten`)
 * when another verifier got there first.
 */
export async function createJsonOnce(
  s3: S3Client,
  bucket: string,
  key: string,
  value: unknown,
  kmsKeyId: string | undefined,
): Promise<void> {
  await s3.send(
    new PutObjectCommand({
      Bucket: bucket,
      Key: key,
      Body: JSON.stringify(value, null, 2) + "\n",
      ContentType: "application/json",
      ServerSideEncryption: "aws:kms",
      SSEKMSKeyId: kmsKeyId,
      ChecksumAlgorithm: "SHA256",
      IfNoneMatch: "*",
    }),
  );
}
