import { availableParallelism } from "node:os";
import { HeadObjectCommand, type HeadObjectCommandOutput, type S3Client } from "@aws-sdk/client-s3";
import { archiveObjectsOf, isSplit, type BackupManifest, type VerifiedObject } from "../../contracts";
import { openRanged, type OpenedDownload, type RangedDownloadOptions } from "./download";
import { extractChunk, finishArchive, type ChunkExtraction, type Extraction } from "./extract";
import { ObjectProblem, differencesFrom, isNotThatVersion, type ObjectProblemKind } from "./objects";
import { ArchiveUnpacker, type ChunkStart } from "./untar";
import { isNotFound } from "../common/s3";

/**
 * Every object of a backup's archive downloaded, hashed, decompressed and unpacked into a scratch root, up
 * to `workers` at once (manifest format 2: each chunk on its own, in its own zstd; format 1: its one object).
 * Each is read as exactly one version — the pinned one when a verdict binds it — and described exactly
 * (version, ETag, size, sha256), so a verdict binds what it proved and `restore` fetches just that. The ranged
 * GETs (`concurrency` in all) are shared among the objects in flight.
 */

/** How the archive is fetched. */
export interface ArchiveDownloadOptions extends RangedDownloadOptions {
  /** Objects downloaded and unpacked at once; 0 = one per core. */
  workers: number;
  /** Exactly these versions (ETag, size, sha256), one per archive object in order; anything else is "not as verified". */
  pins?: Array<VerifiedObject | null>;
  /** Told of each object as it was read (the verdict binds them as they come, also when a later one fails). */
  onObject?: (index: number, object: VerifiedObject) => void;
}

/** The archive as downloaded and extracted, and each object exactly as it was read. */
export interface DownloadedArchive {
  extraction: Extraction;
  objects: VerifiedObject[];
}

/**
 * Downloads and unpacks the archive of `manifest` into `root`. Throws an ObjectProblem when an object cannot
 * be opened, when S3 holds one of another size than the manifest's (told by its first ranged GET, before its
 * download), when a download ends short of the size S3 announced, or when an object is not the pinned one
 * (every pinned object is looked at before anything is written, so a restore of a verified backup that was
 * written over since writes nothing); the other objects in flight are stopped then. Whether what arrived
 * matches the manifest is for `judgeObjects` to say.
 */
export async function downloadArchive(
  s3: S3Client,
  bucket: string,
  manifest: BackupManifest,
  root: string,
  options: ArchiveDownloadOptions,
): Promise<DownloadedArchive> {
  const layout = layoutOf(manifest);
  const objects = archiveObjectsOf(manifest);
  const workers = Math.min(objects.length, options.workers > 0 ? options.workers : availableParallelism());
  const concurrency = Math.max(1, Math.floor(options.concurrency / workers));
  const stop = new AbortController();
  const stopAll = () => stop.abort(options.signal?.reason);
  options.signal?.addEventListener("abort", stopAll, { once: true });
  if (options.pins) await checkPins(s3, bucket, objects, options.pins);
  const unpacker = new ArchiveUnpacker(root, layout.split);
  // One pool of part buffers for every object: at most (concurrency + workers) parts are ever held.
  const buffers: Buffer[] = [];
  const results: ChunkExtraction[] = [];
  const read: VerifiedObject[] = [];
  let next = 0;
  let firstFailure: { error: unknown } | undefined;
  const worker = async () => {
    for (let index = next++; index < objects.length && !stop.signal.aborted; index = next++) {
      const download = {
        ...options,
        concurrency,
        signal: stop.signal,
        buffers,
        pin: options.pins?.[index] ?? undefined,
      };
      const done = await fetchObject(
        s3,
        bucket,
        objects[index],
        index,
        unpacker,
        layout.starts[index],
        download,
      );
      results[index] = done.extraction;
      read[index] = done.object;
      options.onObject?.(index, done.object);
    }
  };
  try {
    // The first failure stops the other objects in flight; theirs (downloads cut off) only follow from it.
    await Promise.all(
      Array.from({ length: workers }, () =>
        worker().catch((error: unknown) => {
          firstFailure ??= { error };
          stopAll();
        }),
      ),
    );
    if (firstFailure) throw firstFailure.error;
    const unpackError =
      results.find((r) => r.unpackError !== null)?.unpackError ??
      (await finishArchive(
        unpacker,
        results.map((r) => r.end),
        layout.starts,
      ));
    return {
      extraction: { objects: results.map((r) => r.archive), files: unpacker.files, unpackError },
      objects: read,
    };
  } finally {
    options.signal?.removeEventListener("abort", stopAll);
    await unpacker.close();
  }
}

/** Where each object's tar stream begins, and the files listed in pieces (readManifest checked the layout). */
export function layoutOf(manifest: BackupManifest): { starts: ChunkStart[]; split: Map<string, number> } {
  if (manifest.formatVersion === 1) return { starts: [{}], split: new Map() };
  const sizes = new Map(manifest.files.map((file) => [file.path, file.bytes]));
  const starts = manifest.archive.chunks.map(({ continues }) =>
    continues ? { continues: { ...continues, fileBytes: sizes.get(continues.path)! } } : {},
  );
  const split = new Map(
    manifest.files.flatMap((file) => (isSplit(file) ? [[file.path, file.pieces.length]] : [])),
  );
  return { starts, split };
}

/** Every pinned object, as S3 describes it now (HEAD of the pinned version): refused when it is not the one pinned. */
async function checkPins(
  s3: S3Client,
  bucket: string,
  objects: Array<{ key: string }>,
  pins: Array<VerifiedObject | null>,
): Promise<void> {
  for (const [index, { key }] of objects.entries()) {
    const pin = pins[index];
    if (!pin) continue;
    const problem = (cause: unknown, read?: VerifiedObject) =>
      new ObjectProblem("not as verified", "archive", `s3://${bucket}/${key}`, cause, read, index);
    let head: HeadObjectCommandOutput;
    try {
      head = await s3.send(
        new HeadObjectCommand({ Bucket: bucket, Key: key, VersionId: pin.versionId ?? undefined }),
      );
    } catch (error) {
      if (isNotThatVersion(error)) throw problem(error);
      throw new ObjectProblem("get failed", "archive", `s3://${bucket}/${key}`, error, undefined, index);
    }
    const found = {
      key,
      versionId: head.VersionId ?? null,
      etag: head.ETag ?? "",
      bytes: head.ContentLength ?? 0,
      sha256: null,
    };
    const differences = differencesFrom(pin, found);
    if (differences.length > 0) throw problem(new Error(differences.join("; ")), found);
  }
}

/** One object: opened (its size and pin checked before its download), then hashed, decompressed and unpacked. */
async function fetchObject(
  s3: S3Client,
  bucket: string,
  expected: { key: string; bytes: number },
  index: number,
  unpacker: ArchiveUnpacker,
  start: ChunkStart,
  options: RangedDownloadOptions & { pin?: VerifiedObject },
): Promise<{ extraction: ChunkExtraction; object: VerifiedObject }> {
  const { key } = expected;
  const { pin } = options;
  const problem = (kind: ObjectProblemKind, cause: unknown, read?: VerifiedObject) =>
    new ObjectProblem(kind, "archive", `s3://${bucket}/${key}`, cause, read, index);
  let download: OpenedDownload;
  try {
    download = await openRanged(s3, bucket, key, options);
  } catch (error) {
    if (pin !== undefined && isNotThatVersion(error)) throw problem("not as verified", error);
    throw problem(isNotFound(error) ? "missing" : "get failed", error);
  }
  const announced = download.bytes;
  const opened: VerifiedObject = {
    key,
    versionId: download.versionId,
    etag: download.etag,
    bytes: announced ?? expected.bytes,
    sha256: null,
  };
  const refuse = (kind: ObjectProblemKind, why: string): never => {
    download.discard();
    throw problem(kind, new Error(why), opened);
  };
  const pinned = pin === undefined ? [] : differencesFrom({ ...pin, sha256: null }, opened);
  if (pinned.length > 0) refuse("not as verified", pinned.join("; "));
  if (announced !== undefined && announced !== expected.bytes)
    refuse("size differs", `S3 holds ${announced} bytes, the manifest says ${expected.bytes}`);
  const extraction = await extractChunk(download.body, unpacker, start);
  const object = { ...opened, bytes: extraction.archive.bytes, sha256: extraction.archive.sha256 };
  // A body shorter than S3 announced is a broken download, not a broken backup.
  if (announced !== undefined && extraction.archive.bytes !== announced) {
    throw problem(
      "read failed",
      new Error(
        `the download ended after ${extraction.archive.bytes} of the ${announced} bytes S3 announced`,
      ),
    );
  }
  const differences = pin === undefined ? [] : differencesFrom(pin, object);
  if (differences.length > 0) throw problem("not as verified", new Error(differences.join("; ")), object);
  return { extraction, object };
}
