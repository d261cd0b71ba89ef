import { createReadStream } from "node:fs";
import { mkdir, readFile, rm } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { basename, join } from "node:path";
import { archiveObjectsOf, parseManifest } from "../contracts";
import {
  compareFiles,
  describeComparison,
  extractChunk,
  finishArchive,
} from "../hostscripts/restore/extract";
import { layoutOf } from "../hostscripts/restore/parallel";
import { ArchiveUnpacker } from "../hostscripts/restore/untar";

/**
 * `node extract-only.cjs BACKUP_DIR TARGET [WORKERS]`: our restore's unpacking alone, from the chunk files of a
 * backup kept on local disk (`keepLocal`) instead of S3: the same `extractChunk` per chunk (sha256 of the
 * compressed bytes, `zstd -d`, our tar parser, every file's sha256, batched writes), up to WORKERS chunks at
 * once (0 = one per core, as `restore` does), then every file compared with the manifest. This is the like-for-like
 * side of plain `zstd -d | tar -x` from local disk (bench/extract-ab.ts): neither pays for the lab's S3
 * emulator, which serves a real restore's download on the same two cores. Prints one JSON line.
 */

async function main(): Promise<void> {
  const [dir, target, workersArg] = process.argv.slice(2);
  if (!dir || !target) throw new Error("usage: extract-only BACKUP_DIR TARGET [WORKERS]");
  const manifest = parseManifest(JSON.parse(await readFile(join(dir, "manifest.json"), "utf8")));
  const objects = archiveObjectsOf(manifest);
  const { starts, split } = layoutOf(manifest);
  const workers = Math.min(objects.length, Number(workersArg ?? 0) || availableParallelism());
  await rm(target, { recursive: true, force: true });
  await mkdir(target, { recursive: true });
  const started = performance.now();
  const unpacker = new ArchiveUnpacker(target, split);
  try {
    const results: Array<Awaited<ReturnType<typeof extractChunk>>> = [];
    let next = 0;
    const worker = async () => {
      for (let index = next++; index < objects.length; index = next++) {
        const path = join(dir, basename(objects[index].key));
        const source = createReadStream(path, { highWaterMark: 8 * 1024 * 1024 });
        results[index] = await extractChunk(source, unpacker, starts[index]);
      }
    };
    await Promise.all(Array.from({ length: workers }, worker));
    const unpackError =
      results.find((r) => r.unpackError !== null)?.unpackError ??
      (await finishArchive(
        unpacker,
        results.map((r) => r.end),
        starts,
      ));
    const objectsDiffer = results.filter((r, i) => r.archive.sha256 !== objects[i].sha256).length;
    const files = describeComparison(compareFiles(manifest.files, unpacker.files));
    const seconds = (performance.now() - started) / 1000;
    if (unpackError || objectsDiffer > 0 || files)
      throw new Error(`not the backup: ${unpackError ?? ""} ${objectsDiffer} objects differ; ${files ?? ""}`);
    const rawBytes = manifest.files.reduce((sum, file) => sum + file.bytes, 0);
    console.log(JSON.stringify({ seconds, rawBytes, objects: objects.length, workers }));
  } finally {
    await unpacker.close();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
