import type { S3Client } from "@aws-sdk/client-s3";
import { archiveKey, type BackupCreatedMessage, type BackupManifest, type BackupRef } from "../../contracts";
import { PipelineError, messageOf } from "../common/errors";
import { s3Failure } from "../common/s3";
import type { RangedDownloadOptions } from "../restore/download";
import type { Extraction } from "../restore/extract";
import { CheckFailure, ObjectProblem, downloadArchive, readManifest } from "../restore/objects";

/**
 * The backup's objects as the verifier fetches them (DESIGN §1 step 11), and whom it blames when they cannot
 * be used: a missing object or a manifest that is not this backup's fails "objects", a verdict; S3 failing
 * is the verifier's own infrastructure, and the message is retried.
 */

/** The hint when the verifier's S3 calls fail. */
export const VERIFIER_S3_HINT = "check the verifier's access to S3";
const GET_HINT =
  "check the verifier's network path to S3 and its IAM permissions (s3:GetObject, kms:Decrypt)";

/**
 * The manifest the message names, naming the same backup as the message and its key. A missing or invalid
 * manifest fails "objects": never verified.
 */
export async function fetchManifest(
  s3: S3Client,
  message: BackupCreatedMessage,
  ref: BackupRef,
): Promise<BackupManifest> {
  const manifest = await readManifest(s3, message.bucket, message.manifestKey).catch(rethrowForVerifier);
  const problems = [
    ...(["backupId", "cluster", "host"] as const)
      .filter((k) => manifest[k] !== ref[k])
      .map((k) => `its ${k} is "${manifest[k]}", the key says "${ref[k]}"`),
    ...(manifest.archive.key !== archiveKey(ref)
      ? [`its archive key "${manifest.archive.key}" is not "${archiveKey(ref)}"`]
      : []),
    ...(manifest.archive.sha256 !== message.archiveSha256
      ? [`its archive sha256 ${manifest.archive.sha256} differs from the message's ${message.archiveSha256}`]
      : []),
  ];
  if (problems.length > 0) {
    const where = `s3://${message.bucket}/${message.manifestKey}`;
    throw new CheckFailure("objects", `manifest.json at ${where}: ${problems.join("; ")}`);
  }
  return manifest;
}

/** Streams the archive through the hash, zstd and tar into `root`; a missing archive fails "objects". */
export async function downloadAndExtract(
  s3: S3Client,
  bucket: string,
  manifest: BackupManifest,
  root: string,
  options: RangedDownloadOptions,
): Promise<Extraction> {
  const key = manifest.archive.key;
  const downloaded = await downloadArchive(s3, bucket, key, root, options).catch(rethrowForVerifier);
  const { extraction, announcedBytes } = downloaded;
  // A body shorter than S3 announced is a broken download, not a broken backup.
  if (announcedBytes !== undefined && extraction.archive.bytes !== announcedBytes) {
    throw new PipelineError(
      "VerifierInfrastructure",
      `the download of s3://${bucket}/${key} ended after ${extraction.archive.bytes} of ${announcedBytes} bytes`,
      "check the verifier's network path to S3; the message will be retried",
    );
  }
  return extraction;
}

/** Rethrows an ObjectProblem as the verifier blames it (see the module comment); anything else as it is. */
function rethrowForVerifier(error: unknown): never {
  if (!(error instanceof ObjectProblem)) throw error;
  const { where, object } = error;
  switch (error.kind) {
    case "missing":
      throw new CheckFailure(
        "objects",
        object === "archive"
          ? `the archive ${where} is missing`
          : `manifest.json is missing at ${where}: the backup is incomplete (the manifest is uploaded last)`,
      );
    case "invalid":
      throw new CheckFailure(
        "objects",
        `manifest.json at ${where} is not a valid manifest: ${messageOf(error.cause)}`,
      );
    case "get failed":
      throw s3Failure(
        `download ${object === "archive" ? "the archive" : "manifest.json"} ${where}`,
        error.cause,
        GET_HINT,
      );
    case "read failed":
      throw s3Failure(`read ${where}`, error.cause, VERIFIER_S3_HINT);
  }
}
