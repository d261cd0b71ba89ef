import { createHash } from "node:crypto";
import {
  GetObjectCommand,
  HeadObjectCommand,
  type GetObjectCommandOutput,
  type S3Client,
} from "@aws-sdk/client-s3";
import {
  archiveLayoutProblem,
  archiveObjectsOf,
  parseManifest,
  type BackupManifest,
  type CheckName,
  type CheckResult,
  type VerifiedObject,
} from "../../contracts";
import { messageOf } from "../common/errors";
import { isNotFound } from "../common/s3";
import { compareFiles, describeComparison, type Extraction } from "./extract";

/**
 * A backup's objects as both the verifier and `restore` read them (DESIGN §1 step 11): the manifest, parsed
 * and validated, and described exactly (version, ETag, size, sha256) so a verdict binds what it proved and
 * `restore` fetches just that (the archive's objects: parallel.ts); then the "objects" check of DESIGN §4 on
 * what arrived: each archive object's sha256 and size against the manifest, then every extracted file (or
 * piece of one) against its manifest entry.
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
 * its body (network, IAM, KMS: nothing is known about the backup); the manifest does not parse or fails its
 * schema; the archive's size in S3 is not the manifest's; or the object is not the version a verdict covers.
 */
export type ObjectProblemKind =
  "missing" | "get failed" | "read failed" | "invalid" | "size differs" | "not as verified";

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
    /** What was read of the object before the problem showed, when something was: a verdict binds it. */
    readonly read?: VerifiedObject,
    /** Which archive object (0-based: the chunk of a format 2 archive). */
    readonly index = 0,
  ) {
    super(`${object} ${where}: ${kind}: ${messageOf(cause)}`, { cause });
    this.name = "ObjectProblem";
  }
}

/** The manifest as read, and the exact object it was read from. */
export interface ReadManifest {
  manifest: BackupManifest;
  object: VerifiedObject;
}

/**
 * The manifest at `key`, parsed and validated against its schema, and the object it came from; with `pin`,
 * exactly that version (and ETag, size and sha256), else the current one. Throws an ObjectProblem.
 */
export async function readManifest(
  s3: S3Client,
  bucket: string,
  key: string,
  pin?: VerifiedObject,
): Promise<ReadManifest> {
  const where = `s3://${bucket}/${key}`;
  const problem = (kind: ObjectProblemKind, cause: unknown, read?: VerifiedObject) =>
    new ObjectProblem(kind, "manifest.json", where, cause, read);
  let response: GetObjectCommandOutput;
  try {
    response = await s3.send(
      new GetObjectCommand({
        Bucket: bucket,
        Key: key,
        VersionId: pin?.versionId ?? undefined,
        IfMatch: pin?.etag,
      }),
    );
  } catch (error) {
    if (pin !== undefined && isNotThatVersion(error)) throw problem("not as verified", error);
    throw problem(isNotFound(error) ? "missing" : "get failed", error);
  }
  if (response.Body === undefined) throw problem("missing", new Error("S3 returned no body"));
  let bytes: Uint8Array;
  try {
    bytes = await response.Body.transformToByteArray();
  } catch (error) {
    throw problem("read failed", error);
  }
  const object: VerifiedObject = {
    ...servedObject(key, response),
    bytes: bytes.length,
    sha256: createHash("sha256").update(bytes).digest("hex"),
  };
  const differences = pin === undefined ? [] : differencesFrom(pin, object);
  if (differences.length > 0) throw problem("not as verified", new Error(differences.join("; ")), object);
  let manifest: BackupManifest;
  try {
    manifest = parseManifest(JSON.parse(Buffer.from(bytes).toString("utf8")));
  } catch (error) {
    throw problem("invalid", error, object);
  }
  const layout = manifest.formatVersion === 2 ? archiveLayoutProblem(manifest.archive, manifest.files) : null;
  if (layout !== null) throw problem("invalid", new Error(`its archive layout is wrong: ${layout}`), object);
  return { manifest, object };
}

/** What S3 said of the object it served: its key, version and ETag. */
function servedObject(
  key: string,
  response: { VersionId?: string; ETag?: string },
): Pick<VerifiedObject, "key" | "versionId" | "etag"> {
  return { key, versionId: response.VersionId ?? null, etag: response.ETag ?? "" };
}

/** S3 refused the pinned version: it is gone (404, NoSuchVersion) or its ETag is another (412). */
export function isNotThatVersion(error: unknown): boolean {
  const e = error as { name?: string; $metadata?: { httpStatusCode?: number } };
  return isNotFound(error) || e.name === "NoSuchVersion" || e.$metadata?.httpStatusCode === 412;
}

/**
 * How `found` differs from the `expected` object, one phrase each: the version when both name one, the ETag,
 * the size, and the sha256 when both know it. Empty when it is the same object.
 */
export function differencesFrom(expected: VerifiedObject, found: VerifiedObject): string[] {
  const differences: string[] = [];
  if (expected.versionId !== null && found.versionId !== expected.versionId)
    differences.push(`version ${found.versionId ?? "(none)"} is not the verified ${expected.versionId}`);
  if (found.etag !== expected.etag)
    differences.push(`ETag ${found.etag} is not the verified ${expected.etag}`);
  if (found.bytes !== expected.bytes)
    differences.push(`${found.bytes} bytes are not the verified ${expected.bytes}`);
  if (expected.sha256 !== null && found.sha256 !== null && found.sha256 !== expected.sha256)
    differences.push(`sha256 ${found.sha256} is not the verified ${expected.sha256}`);
  return differences;
}

/** A person's description of an object: its version, ETag, size and sha256 where known. */
export function describeObject(object: VerifiedObject): string {
  return [
    `version ${object.versionId ?? "(unversioned)"}`,
    `ETag ${object.etag}`,
    `${object.bytes} bytes`,
    ...(object.sha256 !== null ? [`sha256 ${object.sha256}`] : []),
  ].join(", ");
}

/**
 * The current object at `key` as HEAD describes it (sha256 unknown), or null when there is none. Other
 * failures are thrown as S3 raised them.
 */
export async function currentObject(
  s3: S3Client,
  bucket: string,
  key: string,
): Promise<VerifiedObject | null> {
  try {
    const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    return { ...servedObject(key, head), bytes: head.ContentLength ?? 0, sha256: null };
  } catch (error) {
    if (isNotFound(error)) return null;
    throw error;
  }
}

/** The "objects" check: each archive object's sha256 first (a corrupt download explains everything after it). */
export function judgeObjects(manifest: BackupManifest, extraction: Extraction): CheckResult {
  const fail = (detail: string): never => {
    throw new CheckFailure("objects", detail);
  };
  const expected = archiveObjectsOf(manifest);
  const name = (index: number) =>
    manifest.formatVersion === 1 ? "archive" : `archive chunk ${index + 1} of ${expected.length}`;
  for (const [index, want] of expected.entries()) {
    const got = extraction.objects[index];
    if (got === undefined) fail(`${name(index)} ${want.key} was not read`);
    if (got.sha256 !== want.sha256)
      fail(
        `${name(index)} sha256 mismatch: downloaded ${got.sha256} (${got.bytes} bytes), manifest says ${want.sha256} (${want.bytes} bytes)`,
      );
    if (got.bytes !== want.bytes)
      fail(`${name(index)} size mismatch: downloaded ${got.bytes} bytes, manifest says ${want.bytes}`);
  }
  if (extraction.unpackError !== null) fail(`the archive cannot be unpacked: ${extraction.unpackError}`);
  const differences = describeComparison(compareFiles(manifest.files, extraction.files));
  if (differences !== null) fail(`files differ from the manifest: ${differences}`);
  const bytes = expected.reduce((sum, object) => sum + object.bytes, 0);
  const what =
    manifest.formatVersion === 1
      ? `archive sha256 ${expected[0].sha256} matches (${bytes} bytes)`
      : `all ${expected.length} archive chunks match their sha256 (${bytes} bytes, digest ${manifest.archive.sha256})`;
  return {
    name: "objects",
    passed: true,
    detail: `${what}; all ${manifest.files.length} files match their sha256`,
  };
}
