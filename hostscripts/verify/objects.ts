import type { S3Client } from "@aws-sdk/client-s3";
import {
  archiveChunkKey,
  archiveKey,
  archiveObjectsOf,
  type BackupCreatedMessage,
  type BackupManifest,
  type BackupRef,
  type VerifiedObject,
  type VerifiedObjects,
} from "../../contracts";
import { PipelineError, messageOf } from "../common/errors";
import { createJsonOnce, getObjectOrNull, isAlreadyWritten, s3Call, s3Failure } from "../common/s3";
import type { Extraction } from "../restore/extract";
import { CheckFailure, ObjectProblem, readManifest } from "../restore/objects";
import { downloadArchive, type ArchiveDownloadOptions } from "../restore/parallel";

/**
 * The backup's objects as the verifier fetches them (DESIGN §1 step 11), and whom it blames when they cannot
 * be used: a missing object, a manifest that is not this backup's, or an archive whose size in S3 is not the
 * manifest's (an empty or truncated object) fails "objects", a verdict, at once; only S3 failing to answer
 * (network, IAM, KMS, 5xx) is the verifier's own infrastructure, and the message is retried. Each object is
 * read once, and `objects` records exactly what was read: the verdict is bound to it.
 */

/** The hint when the verifier's S3 calls fail. */
export const VERIFIER_S3_HINT = "check the verifier's access to S3";
const GET_HINT =
  "check the verifier's network path to S3 and its IAM permissions (s3:GetObject, s3:GetObjectVersion, kms:Decrypt)";

/**
 * The manifest the message names, naming the same backup as the message and its key. A missing or invalid
 * manifest fails "objects": never verified. What was read is recorded in `objects.manifest`.
 */
export async function fetchManifest(
  s3: S3Client,
  message: BackupCreatedMessage,
  ref: BackupRef,
  objects: VerifiedObjects,
): Promise<BackupManifest> {
  const { manifest, object } = await readManifest(s3, message.bucket, message.manifestKey).catch(
    (error: unknown) => rethrowForVerifier(error, objects),
  );
  objects.manifest = object;
  const keys = archiveObjectsOf(manifest).map((o) => o.key);
  const expectedKeys =
    manifest.formatVersion === 1 ? [archiveKey(ref)] : keys.map((_, index) => archiveChunkKey(ref, index));
  const problems = [
    ...(["backupId", "cluster", "host"] as const)
      .filter((k) => manifest[k] !== ref[k])
      .map((k) => `its ${k} is "${manifest[k]}", the key says "${ref[k]}"`),
    ...keys.flatMap((key, index) =>
      key !== expectedKeys[index] ? [`its archive key "${key}" is not "${expectedKeys[index]}"`] : [],
    ),
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

/**
 * Streams the archive's objects through the hash, zstd and tar into `root`, several at once, recording each
 * as it was read in `objects` (`archive` for format 1, `chunks` for format 2); a missing archive object, or
 * one whose size is not the manifest's, fails "objects".
 */
export async function downloadAndExtract(
  s3: S3Client,
  bucket: string,
  manifest: BackupManifest,
  root: string,
  options: Omit<ArchiveDownloadOptions, "pins" | "onObject">,
  objects: VerifiedObjects,
): Promise<Extraction> {
  if (manifest.formatVersion === 2) objects.chunks = manifest.archive.chunks.map(() => null);
  const record = (index: number, object: VerifiedObject) => {
    if (objects.chunks) objects.chunks[index] = object;
    else objects.archive = object;
  };
  const downloaded = await downloadArchive(s3, bucket, manifest, root, {
    ...options,
    onObject: record,
  }).catch((error: unknown) => rethrowForVerifier(error, objects));
  return downloaded.extraction;
}

/**
 * Rethrows an ObjectProblem as the verifier blames it (see the module comment), after recording what was
 * read of the object; anything else as it is.
 */
function rethrowForVerifier(error: unknown, objects: VerifiedObjects): never {
  if (!(error instanceof ObjectProblem)) throw error;
  const { where, object } = error;
  if (error.read !== undefined) {
    if (object === "manifest.json") objects.manifest = error.read;
    else if (objects.chunks) objects.chunks[error.index] = error.read;
    else objects.archive = error.read;
  }
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
    case "size differs":
      throw new CheckFailure(
        "objects",
        `the archive ${where} is not the one the manifest names: ${messageOf(error.cause)}`,
      );
    case "get failed":
    case "not as verified":
      throw s3Failure(
        `download ${object === "archive" ? "the archive" : "manifest.json"} ${where}`,
        error.cause,
        GET_HINT,
      );
    case "read failed":
      throw s3Failure(`read ${where}`, error.cause, VERIFIER_S3_HINT);
  }
}

/** An object's text, or null when it does not exist; S3 failing to answer is the verifier's infrastructure. */
export async function readObjectText(s3: S3Client, bucket: string, key: string): Promise<string | null> {
  return s3Call(
    `read s3://${bucket}/${key}`,
    async () => {
      const response = await getObjectOrNull(s3, bucket, key);
      return response === null ? null : ((await response.Body?.transformToString()) ?? "");
    },
    VERIFIER_S3_HINT,
  );
}

/**
 * A verdict this verifier (or another) already wrote (segment, chain, drill), or null when there is none. One
 * that does not parse as `what` throws: someone must look at it, and deleting it has the work done again.
 */
export async function readStoredVerdict<T>(
  s3: S3Client,
  bucket: string,
  key: string,
  parse: (value: unknown) => T,
  what: { name: string; redo: string },
): Promise<T | null> {
  const text = await readObjectText(s3, bucket, key);
  if (text === null) return null;
  try {
    return parse(JSON.parse(text));
  } catch (error) {
    throw new PipelineError(
      "VerifierInfrastructure",
      `s3://${bucket}/${key} exists but is not a valid ${what.name}: ${messageOf(error)}`,
      `delete it (or restore its previous version) to have ${what.redo}`,
      { cause: error },
    );
  }
}

/**
 * Creates a verdict (segment, chain, drill) once: null when this verifier wrote it, or the verdict another one
 * wrote first (a duplicate's verdict stands, read with `readStored`). Anything else is the verifier's trouble.
 */
export async function createVerdictOnce<T extends { bucket: string }>(
  s3: S3Client,
  verdict: T,
  key: string,
  kmsKeyId: string | undefined,
  readStored: () => Promise<T | null>,
): Promise<T | null> {
  try {
    await createJsonOnce(s3, verdict.bucket, key, verdict, kmsKeyId);
    return null;
  } catch (error) {
    const raced = isAlreadyWritten(error) ? await readStored() : null;
    if (raced === null)
      throw new PipelineError(
        "VerifierInfrastructure",
        `cannot write s3://${verdict.bucket}/${key}: ${messageOf(error)}`,
        VERIFIER_S3_HINT,
        { cause: error },
      );
    return raced;
  }
}
