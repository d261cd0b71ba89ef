import { rm, unlink } from "node:fs/promises";
import { join } from "node:path";
import { archiveChunkKey, type BackupConfig } from "../../contracts";
import { messageOf } from "../common/errors";
import type { ProgressBar } from "../common/progress";
import { DEFAULT_CHUNK_BYTES, writeArchive, type ArchiveResult } from "./archive";
import { runThenRemoveSnapshot, type LockWindow } from "./freeze";
import { ChunkFeed } from "./growing";
import { uploadArchive, type ArchiveUpload, type UploadedChunk } from "./multipart";
import type { BackupRun } from "./run";
import type { Snapshot } from "../common/snapshot";
import { UPLOAD_RECORD, writeProgressFile } from "./staging";
import { archiveBoundFor } from "./upload";

/**
 * Steps 5–7 run together: the upload follows the archive's chunks as they are written, and the snapshot goes
 * as soon as the archive is complete. Before the uploads are completed, `seal` runs on the finished archive
 * and the uploaded chunks (it stages the publication). Whichever fails first stops the other; its error is
 * the one reported, and the backup's directory goes with it.
 */
export async function archiveAndUpload<T>(
  run: BackupRun,
  window: LockWindow,
  seal: (archive: ArchiveResult, uploaded: UploadedChunk[]) => Promise<T>,
): Promise<{ archive: ArchiveResult; upload: ArchiveUpload; sealed: T }> {
  const { deps } = run;
  const feed = new ChunkFeed();
  const stopArchive = new AbortController();
  const archiveBar = deps.progress.start("archive", window.dataBytes);
  const uploadBar = deps.progress.start("upload", window.dataBytes);
  const archiving = archiveSnapshot(run, window.frozen.snapshot, feed, stopArchive.signal, archiveBar)
    .catch((e: unknown) => {
      feed.fail(e instanceof Error ? e : new Error(messageOf(e)));
      throw e;
    })
    .finally(() => archiveBar.end());
  const sealing: { value?: T } = {};
  const sealAfterArchive = async (uploaded: UploadedChunk[]) => {
    sealing.value = await seal(await archiving, uploaded);
  };
  const uploading = uploadFollowing(run, feed, uploadBar, sealAfterArchive)
    .catch((e: unknown) => {
      // A failed archive fails the feed first (synchronously), so this is the upload's own failure.
      if (!feed.hasFailed) stopArchive.abort(e);
      throw e;
    })
    .finally(() => uploadBar.end());
  const [archived, uploaded] = await Promise.allSettled([archiving, uploading]);
  if (archived.status === "rejected" || uploaded.status === "rejected") {
    await rm(run.dir, { recursive: true, force: true });
    throw stopArchive.signal.aborted || archived.status === "fulfilled"
      ? (uploaded as PromiseRejectedResult).reason
      : archived.reason;
  }
  const archive = archived.value;
  const { upload } = uploaded.value;
  if (!("value" in sealing))
    throw new Error("the upload completed without staging the manifest; this is a bug");
  deps.log.info("archive written and uploaded, snapshot removed", {
    archiveBytes: archive.bytes,
    rawBytes: archive.rawBytes,
    files: archive.files.length,
    archiveSeconds: archive.seconds,
    chunks: upload.chunks,
    parts: upload.parts,
  });
  return { archive, upload, sealed: sealing.value as T };
}

/** The most tar bytes per chunk, from config `compression.chunkMiB`. */
function chunkBytesOf(config: BackupConfig): number {
  const chunkMiB = config.compression?.chunkMiB;
  return chunkMiB === undefined ? DEFAULT_CHUNK_BYTES : chunkMiB * 1024 * 1024;
}

/** Steps 5 and 6: the snapshot into the local chunk files, which `feed` hands to the upload; then the snapshot goes. */
function archiveSnapshot(
  { config, deps, backupId, dir }: BackupRun,
  snapshot: Snapshot,
  feed: ChunkFeed,
  signal: AbortSignal,
  bar: ProgressBar,
): Promise<ArchiveResult> {
  return runThenRemoveSnapshot(deps.driver, backupId, deps.log, async () =>
    writeArchive({
      root: (await deps.driver.open(snapshot)).path,
      dir,
      chunkBytes: chunkBytesOf(config),
      level: config.compression?.level,
      threads: config.compression?.threads,
      log: deps.log,
      onBytes: (bytes) => bar.advance(bytes),
      feed,
      signal,
      checkpoint: deps.checkpoint,
    }),
  );
}

/**
 * Step 7: the archive's chunks as they grow, each a multipart upload recorded in the backup's directory while
 * it is open (so the next run can abort it after a crash); `beforeComplete` runs once every part is up.
 */
function uploadFollowing(
  { config, deps, dir, ref, target }: BackupRun,
  feed: ChunkFeed,
  bar: ProgressBar,
  beforeComplete: (uploaded: UploadedChunk[]) => Promise<void>,
): Promise<{ upload: ArchiveUpload; chunks: UploadedChunk[] }> {
  return uploadArchive(
    deps.s3,
    target,
    {
      feed,
      keyOf: (index) => archiveChunkKey(ref, index),
      maxChunkBytes: archiveBoundFor(chunkBytesOf(config)),
    },
    deps.log,
    {
      started: (records) => writeProgressFile(dir, UPLOAD_RECORD, records),
      ended: () => unlink(join(dir, UPLOAD_RECORD)),
      partDone: (bytes) => bar.advance(bytes),
      checkpoint: deps.checkpoint,
      beforeComplete,
    },
  );
}
