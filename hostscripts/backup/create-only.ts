import { createHash } from "node:crypto";
import { HeadObjectCommand, type HeadObjectCommandOutput, type S3Client } from "@aws-sdk/client-s3";
import { PipelineError, messageOf } from "../common/errors";
import type { Logger } from "../common/log";
import { isAlreadyWritten, isNotFound } from "../common/s3";

/**
 * Create-only writes (DESIGN §3): every object a replica writes goes up with `If-None-Match: *` (on the
 * PutObject of the manifest, on the CompleteMultipartUpload of the archive), so S3 never replaces an object
 * that exists, and the bucket policy refuses replica writes without the header. A retry after a write whose
 * answer was lost then finds the key taken: S3 answers 412, or NoSuchUpload when the completion it retries
 * already went through. That is success when the object there is the one this host meant to write, which
 * HEAD tells by its size and checksum (the one S3 keeps since every write sends it: SHA-256 of the manifest,
 * the full-object CRC32 of an archive object; an ETag that is an MD5 where S3 gives no checksum, as the lab's
 * emulator). Someone else's object there is never success: the
 * backup cannot be completed under that key, and it is tamper evidence. When HEAD cannot tell (no
 * s3:GetObject or kms:Decrypt on the host's prefix, or no checksum), the write counts as done and the log
 * says so: the verifier checks the archive against the manifest and the manifest against the message.
 */

/** What this host meant to write at a key, as S3 will describe it. */
export interface IntendedObject {
  bytes: number;
  /**
   * The checksum S3 keeps, base64: the SHA-256 of a single PutObject's body, or the full-object CRC32 of a
   * multipart upload.
   */
  checksum: { algorithm: "SHA256" | "CRC32"; value: string };
  /** The ETag S3 gives when it is an MD5 (no SSE-KMS), as the emulator gives it; a fallback only. */
  etag: string | null;
}

/** Who holds a taken key: this host's object, someone else's, nobody, or it cannot be told. */
export type Holder = "ours" | "foreign" | "absent" | "unconfirmed";

/** What HEAD said of a taken key. */
export interface HolderFinding {
  holder: Holder;
  /** What was compared, for the log and the error. */
  detail: string;
}

/** The intended object of a single PutObject of `body`. */
export function intendedBody(body: string): IntendedObject {
  const bytes = Buffer.from(body, "utf8");
  return {
    bytes: bytes.length,
    checksum: { algorithm: "SHA256", value: createHash("sha256").update(bytes).digest("base64") },
    etag: createHash("md5").update(bytes).digest("hex"),
  };
}

/**
 * The intended object of a multipart upload: its full-object CRC32 (base64, as S3 keeps it), and its ETag
 * when the parts' ETags are MD5s (the MD5 of their digests, then `-<parts>`).
 */
export function intendedMultipart(
  parts: Array<{ bytes: number; etag?: string }>,
  fullObjectCrc32: string,
): IntendedObject {
  const etags = createHash("md5");
  let md5s = true;
  for (const part of parts) {
    const hex = part.etag?.replaceAll('"', "") ?? "";
    if (/^[0-9a-f]{32}$/.test(hex)) etags.update(Buffer.from(hex, "hex"));
    else md5s = false;
  }
  return {
    bytes: parts.reduce((sum, part) => sum + part.bytes, 0),
    checksum: { algorithm: "CRC32", value: fullObjectCrc32 },
    etag: md5s ? `${etags.digest("hex")}-${parts.length}` : null,
  };
}

/** S3 refused a create-only write because the key is taken, or a completion of an upload it no longer knows. */
export function isTaken(error: unknown): boolean {
  return isAlreadyWritten(error) || (error as { name?: string }).name === "NoSuchUpload";
}

/** Who holds `key`, by its HEAD (with checksums) against what this host meant to write there. */
export async function holderOf(
  s3: S3Client,
  bucket: string,
  key: string,
  intended: IntendedObject,
): Promise<HolderFinding> {
  let head: HeadObjectCommandOutput;
  try {
    head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key, ChecksumMode: "ENABLED" }));
  } catch (error) {
    if (isNotFound(error)) return { holder: "absent", detail: "S3 has no object there" };
    return { holder: "unconfirmed", detail: `HEAD failed: ${messageOf(error)}` };
  }
  const size = `${head.ContentLength} bytes (this host wrote ${intended.bytes})`;
  if (head.ContentLength !== intended.bytes) return { holder: "foreign", detail: size };
  const { algorithm, value } = intended.checksum;
  // A composite checksum of a multipart object reads `<checksum of checksums>-<parts>`: not comparable.
  const stored = algorithm === "SHA256" ? head.ChecksumSHA256 : head.ChecksumCRC32;
  const checksum = stored !== undefined && !/-\d+$/.test(stored) ? stored : undefined;
  if (checksum !== undefined)
    return checksum === value
      ? { holder: "ours", detail: `${size}, ${algorithm} checksum ${checksum} matches` }
      : { holder: "foreign", detail: `${algorithm} checksum ${checksum}, this host's is ${value}` };
  const etag = head.ETag?.replaceAll('"', "");
  if (intended.etag !== null && etag === intended.etag)
    return { holder: "ours", detail: `${size}, ETag ${etag} matches (S3 gave no checksum)` };
  return {
    holder: "unconfirmed",
    detail: `${size}; S3 gave no checksum, and ETag ${etag} is not an MD5 of ours`,
  };
}

/** A key this host was to create holds someone else's object. */
export class ForeignObject extends PipelineError {
  constructor(where: string, detail: string) {
    super(
      "UploadFailed",
      `${where} already holds an object that is not this backup's (${detail}): this backup cannot be completed under that key`,
      "replicas can only create objects below their own prefix, so someone else wrote it (or another host runs with this host's name): " +
        "find who in CloudTrail before trusting anything below this host's prefix; the next backup gets a new key",
    );
    this.name = "ForeignObject";
  }
}

/**
 * Settles a create-only write S3 refused as taken (`refusal`): returns when the object there is this host's,
 * or when that cannot be told (logged); throws ForeignObject when it is someone else's, and `refusal` when
 * nothing is there after all.
 */
export async function settleTaken(
  s3: S3Client,
  target: { bucket: string; key: string },
  intended: IntendedObject,
  refusal: unknown,
  log: Logger,
): Promise<void> {
  const where = `s3://${target.bucket}/${target.key}`;
  const { holder, detail } = await holderOf(s3, target.bucket, target.key, intended);
  switch (holder) {
    case "ours":
      log.info("the object was already written: a retry after an answer that was lost", { where, detail });
      return;
    case "unconfirmed":
      log.warn("the key is taken and this host cannot tell whether the object there is its own", {
        where,
        detail,
        refusal: messageOf(refusal),
        hint:
          "going on: the verifier checks the archive against the manifest and the manifest against the message; " +
          "grant the replica s3:GetObject and kms:Decrypt on its own prefix so it can tell",
      });
      return;
    case "foreign":
      throw new ForeignObject(where, detail);
    case "absent":
      throw refusal;
  }
}
