import { createHash, randomBytes } from "node:crypto";
import { mkdir, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import { ARCHIVE_CHUNK_PATTERN, ARCHIVE_OBJECT } from "../contracts";
import type { Lab } from "../lab/lab";
import { treeBytes } from "./limit";
import { mustRunMeasured } from "./measure";
import { measured, type Measured } from "./results";

/**
 * Issue 16's side-by-side on the restore path: the archive of our newest backup unpacked by plain
 * `zstd -d | tar -x` from local disk (its chunks concatenated are one tar+zstd stream), and our `restore` of
 * the same backup from S3 — download, sha256 of every object and file, decompression, extraction — once with
 * one chunk at a time (one zstd stream, as a format 1 archive restores) and once on every core.
 */

/** Our restore of one backup with `workers` chunks at once (0 = one per core). */
export interface RestoreRun extends Measured {
  workers: number;
  /** The workers that ran (`workers`, or the cores when 0). */
  effectiveWorkers: number;
  /** Archive objects (chunks) of the backup. */
  objects: number;
  archiveBytes: number;
}

/** The newest backup directory under `backupsDir` with its archive objects, in order. */
export async function newestBackupArchive(
  backupsDir: string,
): Promise<{ dir: string; backupId: string; objects: string[] }> {
  const dirs: { dir: string; backupId: string; mtime: number; objects: string[] }[] = [];
  const chunk = new RegExp(ARCHIVE_CHUNK_PATTERN);
  const walk = async (path: string): Promise<void> => {
    for (const entry of await readdir(path, { withFileTypes: true })) {
      if (!entry.isDirectory()) continue;
      const full = join(path, entry.name);
      const names = await readdir(full);
      const objects = names.filter((n) => n === ARCHIVE_OBJECT || chunk.test(n)).sort();
      if (objects.length > 0)
        dirs.push({
          dir: full,
          backupId: entry.name,
          mtime: (await stat(join(full, objects[0]))).mtimeMs,
          objects: objects.map((n) => join(full, n)),
        });
      else await walk(full);
    }
  };
  await walk(backupsDir);
  const newest = dirs.sort((a, b) => b.mtime - a.mtime)[0];
  if (newest === undefined) throw new Error(`bench: no local archive under ${backupsDir}`);
  return newest;
}

/** Plain `zstd -d | tar -x` of our newest local archive (every chunk, in order) into `work`. */
export async function plainExtract(lab: Lab, work: string): Promise<Measured> {
  const { objects } = await newestBackupArchive(lab.backupsDir);
  const target = join(work, "plain-extract");
  await rm(target, { recursive: true, force: true });
  await mkdir(target);
  try {
    const run = await mustRunMeasured(
      "plain extract",
      `cat ${objects.join(" ")} | zstd -dc | tar -x -C ${target}`,
    );
    return measured(run, await treeBytes(target));
  } finally {
    await rm(target, { recursive: true, force: true });
  }
}

/** `mysql-backup restore` of our newest backup, one chunk at a time and then on every core. */
export async function restoreScaling(lab: Lab, cli: string, work: string): Promise<RestoreRun[]> {
  const { backupId, objects } = await newestBackupArchive(lab.backupsDir);
  const archiveBytes = (await Promise.all(objects.map((o) => stat(o)))).reduce((s, o) => s + o.size, 0);
  const base = JSON.parse(await readFile(lab.restoreConfigPath, "utf8")) as Record<string, unknown>;
  const runs: RestoreRun[] = [];
  for (const workers of [1, 0]) {
    const configPath = join(work, `restore-workers-${workers}.json`);
    const download = { ...((base.download as object | undefined) ?? {}), workers };
    await writeFile(configPath, `${JSON.stringify({ ...base, download }, null, 2)}\n`);
    const target = join(work, `restore-${workers}`);
    await rm(target, { recursive: true, force: true });
    try {
      const run = await mustRunMeasured(
        `restore with ${workers} workers`,
        `node ${cli} restore --config ${configPath} --target ${target} --backup ${backupId} --json`,
      );
      runs.push({
        ...measured(run, await treeBytes(target)),
        workers,
        effectiveWorkers: Math.min(objects.length, workers > 0 ? workers : availableParallelism()),
        objects: objects.length,
        archiveBytes,
      });
    } finally {
      await rm(target, { recursive: true, force: true });
    }
  }
  return runs;
}

/** What one core does per second with each checksum the pipeline computes (issue 16: the cheaper path). */
export interface HashRates {
  /** MB/s of SHA-256 (node's OpenSSL): the manifest's sha256s, and what S3 part checksums and SigV4 cost before. */
  sha256: number;
  /** MB/s of CRC32 (node's zlib): the S3 part checksums now. */
  crc32: number;
  /** Bytes hashed by each, in 1 MiB buffers. */
  bytes: number;
}

/** SHA-256 and CRC32 over the same 256 MiB of random bytes in 1 MiB buffers, on one core, best of three. */
export function hashRates(): HashRates {
  const buffer = randomBytes(1024 * 1024);
  const rounds = 256;
  const best = (run: () => void) => {
    let fastest = Infinity;
    for (let i = 0; i < 3; i++) {
      const started = performance.now();
      run();
      fastest = Math.min(fastest, (performance.now() - started) / 1000);
    }
    return (rounds * buffer.length) / fastest / 1e6;
  };
  return {
    sha256: best(() => {
      const hash = createHash("sha256");
      for (let i = 0; i < rounds; i++) hash.update(buffer);
      hash.digest();
    }),
    crc32: best(() => {
      let crc = 0;
      for (let i = 0; i < rounds; i++) crc = crc32(buffer, crc);
    }),
    bytes: rounds * buffer.length,
  };
}
