import { GetObjectCommand, type GetObjectCommandOutput, type S3Client } from "@aws-sdk/client-s3";
import { parseManifest, type BackupManifest, type CheckName, type CheckResult } from "../../contracts";
import { messageOf } from "../common/errors";
import { isNotFound } from "../common/s3";
import { openRanged, type OpenedDownload, type RangedDownloadOptions } from "./download";
import { compareFiles, describeComparison, extractArchive, type Extraction } from "./extract";

/**
 * A backup's objects as both the verifier and `restore` read them (DESIGN §1 step 11): the manifest, parsed
 * and validated, and the archive, downloaded, hashed and extracted in one pass; then the "objects" check of
 * DESIGN §4 on what arrived: the archive's sha256 and size against the manifest, then every extracted file
 * against its manifest entry.
 */

/** A verdict on the backup: the named check failed. The report says so and the message is deleted. */
export class CheckFailure extends Error {
  constructor(
    readonly check: CheckName,
    message: string,
  ) {
    super(message);
    this.name = "CheckFailure";
  }
}

/** One of the objects a backup consists of. */
export type BackupObject = "manifest.json" | "archive";

/**
 * What went wrong with an object: S3 has no such object; S3 refused or broke off the GET or the reading of
 * its body (network, IAM, KMS: nothing is known about the backup); or the manifest does not parse or fails
 * its schema.
 */
export type ObjectProblemKind = "missing" | "get failed" | "read failed" | "invalid";

/**
 * An object of the backup that could not be used. The verifier and `restore` blame each kind differently
 * (a verdict, or the host's infrastructure), so each turns it into its own error.
 */
export class ObjectProblem extends Error {
  constructor(
    readonly kind: ObjectProblemKind,
    readonly object: BackupObject,
    /** The object's `s3://bucket/key`. */
    readonly where: string,
    /** What S3, the JSON parser or the schema said; kept as `cause`. */
    cause: unknown,
  ) {
    super(`${object} ${where}: ${kind}: ${messageOf(cause)}`, { cause });
    this.name = "ObjectProblem";
  }
}

/** The manifest at `key`, parsed and validated against its schema; throws an ObjectProblem. */
export async function readManifest(s3: S3Client, bucket: string, key: string): Promise<BackupManifest> {
  const problem = (kind: ObjectProblemKind, cause: unknown) =>
    new ObjectProblem(kind, "manifest.json", `s3://${bucket}/${key}`, cause);
  let response: GetObjectCommandOutput;
  try {
    response = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  } catch (error) {
    throw problem(isNotFound(error) ? "missing" : "get failed", error);
  }
  if (response.Body === undefined) throw problem("missing", new Error("S3 returned no body"));
  let text: string;
  try {
    text = await response.Body.transformToString();
  } catch (error) {
    throw problem("read failed", error);
  }
  try {
    return parseManifest(JSON.parse(text));
  } catch (error) {
    throw problem("invalid", error);
  }
}

/** An archive as downloaded and extracted, with the size S3 announced for it (undefined when it did not say). */
export interface DownloadedArchive {
  extraction: Extraction;
  announcedBytes: number | undefined;
}

/**
 * Streams the archive at `key` through sha256, zstd and tar into `root`; throws an ObjectProblem when it
 * cannot be opened. Whether what arrived matches the manifest is for `judgeObjects` to say.
 */
export async function downloadArchive(
  s3: S3Client,
  bucket: string,
  key: string,
  root: string,
  options: RangedDownloadOptions,
): Promise<DownloadedArchive> {
  let download: OpenedDownload;
  try {
    download = await openRanged(s3, bucket, key, options);
  } catch (error) {
    throw new ObjectProblem(
      isNotFound(error) ? "missing" : "get failed",
      "archive",
      `s3://${bucket}/${key}`,
      error,
    );
  }
  return { extraction: await extractArchive(download.body, root), announcedBytes: download.bytes };
}

/** The "objects" check: the archive's sha256 first (a corrupt download explains everything after it). */
export function judgeObjects(manifest: BackupManifest, extraction: Extraction): CheckResult {
  const fail = (detail: string): never => {
    throw new CheckFailure("objects", detail);
  };
  const { archive } = extraction;
  if (archive.sha256 !== manifest.archive.sha256) {
    fail(
      `archive sha256 mismatch: downloaded ${archive.sha256} (${archive.bytes} bytes), manifest says ${manifest.archive.sha256} (${manifest.archive.bytes} bytes)`,
    );
  }
  if (archive.bytes !== manifest.archive.bytes) {
    fail(`archive size mismatch: downloaded ${archive.bytes} bytes, manifest says ${manifest.archive.bytes}`);
  }
  if (extraction.unpackError !== null) fail(`the archive cannot be unpacked: ${extraction.unpackError}`);
  const differences = describeComparison(compareFiles(manifest.files, extraction.files));
  if (differences !== null) fail(`files differ from the manifest: ${differences}`);
  return {
    name: "objects",
    passed: true,
    detail: `archive sha256 ${archive.sha256} matches (${archive.bytes} bytes); all ${manifest.files.length} files match their sha256`,
  };
}
