import { mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { readLab } from "../lab/lab";
import { bundleHostScripts } from "../scripts/bundle";
import { PRODUCT_CHUNK_MIB } from "./benchlab";
import { benchSnapshotDir, deleteSnapshot, limitCommands, takeSnapshot, treeBytes } from "./limit";
import { alternate, report, runScript, summarize, takeOption, type Side } from "./side-by-side";

/**
 * `tsx bench/archive-ab.ts LAB_DIR [ROUNDS] [OUT.json] [--before BUNDLE] [--chunk-mib N]`: our archive step against plain
 * `tar | zstd -T0 -1`, like for like, on a lab left up by `npm run bench -- --keep-lab`. Each side runs on a
 * fresh read-only snapshot of the replica (cold page cache for its inodes), at the same priority, writing to
 * local disk only: ours is `bench/archive-only.ts` (the backup's `writeArchive`, every file's sha256, one zstd
 * per chunk, plus the upload's sha256 and CRC32s of the compressed bytes, without HTTP), so neither side pays
 * for the lab's S3 emulator, which the full backup shares two cores with. Chunks are the product's 1 GiB unless
 * `--chunk-mib` says otherwise (the lab's tests use 64). `--before` adds the same script
 * bundled from another tree (the code before a change). The sides alternate in order, round by round.
 */

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const beforeArg = takeOption(args, "--before");
  const before = beforeArg === undefined ? undefined : resolve(beforeArg);
  const chunkMiB = Number(takeOption(args, "--chunk-mib") ?? PRODUCT_CHUNK_MIB);
  const [dir, roundsArg, out] = args;
  if (!dir)
    throw new Error(
      "usage: tsx bench/archive-ab.ts LAB_DIR [ROUNDS] [OUT.json] [--before BUNDLE] [--chunk-mib N]",
    );
  const rounds = Number(roundsArg ?? 3);
  const lab = await readLab(dir);
  const work = join(dir, "bench-work", "archive-ab");
  await mkdir(work, { recursive: true });
  const ours = await bundleHostScripts({
    entry: join(__dirname, "archive-only.ts"),
    outfile: join(work, "archive-only.cjs"),
  });
  const snapshots = benchSnapshotDir(lab.volume.mountPoint);
  // Each run on a fresh snapshot of its own, deleted after it.
  const onSnapshot =
    (command: (data: string) => string): Side["run"] =>
    async (round, measure) => {
      const snapshot = await takeSnapshot(
        lab.replica.socket,
        lab.replica.subvolume,
        snapshots,
        `ab-${round}`,
      );
      try {
        const data = join(snapshot, "data");
        return await measure(command(data), await treeBytes(data));
      } finally {
        await deleteSnapshot(snapshot);
      }
    };
  const chunks = join(work, "chunks");
  const sides: Side[] = [
    { name: "plain tar | zstd -T0 -1", run: onSnapshot((data) => limitCommands(data).tarZstd) },
    { name: "ours", run: onSnapshot((data) => `node ${ours.path} ${data} ${chunks} ${chunkMiB}`) },
    ...(before
      ? [{ name: "ours before", run: onSnapshot((data) => `node ${before} ${data} ${chunks} ${chunkMiB}`) }]
      : []),
  ];
  const startedAt = new Date().toISOString();
  const runs = await alternate(sides, rounds);
  await report(
    {
      startedAt,
      finishedAt: new Date().toISOString(),
      command: `tsx bench/archive-ab.ts ${dir} ${rounds}${before ? ` --before ${before}` : ""} --chunk-mib ${chunkMiB}`,
      chunkMiB,
      runs: runs.map((run) => ({ ...run, ...ourArchive(run.lastLine) })),
      summary: summarize(sides, runs),
    },
    out,
  );
}

/** What our side printed (its archive step's seconds and compressed bytes), or plain's byte count. */
function ourArchive(line: string): { archiveSeconds?: number; outputBytes: number } {
  if (!line.startsWith("{")) return { outputBytes: Number(line) };
  const printed = JSON.parse(line) as { seconds: number; bytes: number };
  return { archiveSeconds: printed.seconds, outputBytes: printed.bytes };
}

runScript(main);
