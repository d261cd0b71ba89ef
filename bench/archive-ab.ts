import { mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { readLab } from "../lab/lab";
import { bundleHostScripts } from "../scripts/bundle";
import { PRODUCT_CHUNK_MIB } from "./benchlab";
import { backupCommand as competitorBackup, prepareBackup } from "./competitors";
import { benchSnapshotDir, deleteSnapshot, limitCommands, takeSnapshot, treeBytes } from "./limit";
import { alternate, report, runScript, summarize, takeOption, type Side } from "./side-by-side";

/**
 * `tsx bench/archive-ab.ts LAB_DIR [ROUNDS] [OUT.json] [--before BUNDLE] [--chunk-mib N] [--mariabackup]`: our archive step against plain
 * `tar | zstd -T0 -1`, like for like, on a lab left up by `npm run bench -- --keep-lab`. Each side runs on a
 * fresh read-only snapshot of the replica (cold page cache for its inodes), at the same priority, writing to
 * local disk only: ours is `bench/archive-only.ts` (the backup's `writeArchive`, every file's sha256, one zstd
 * per chunk, plus the upload's sha256 and CRC32s of the compressed bytes, without HTTP), so neither side pays
 * for the lab's S3 emulator, which the full backup shares two cores with. Chunks are the product's 1 GiB unless
 * `--chunk-mib` says otherwise (the lab's tests use 64). `--mariabackup` adds `mariabackup --backup | zstd` of the
 * running replica, as the main run has it, to local disk: the like-for-like side of "our backup's wall time ≤
 * mariabackup's", which the main run measures with our upload to the emulator on the same cores. `--before` adds the same script
 * bundled from another tree (the code before a change). The sides alternate in order, round by round.
 */

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const beforeArg = takeOption(args, "--before");
  const before = beforeArg === undefined ? undefined : resolve(beforeArg);
  const chunkMiB = Number(takeOption(args, "--chunk-mib") ?? PRODUCT_CHUNK_MIB);
  const withMariabackup = args.includes("--mariabackup");
  if (withMariabackup) args.splice(args.indexOf("--mariabackup"), 1);
  const [dir, roundsArg, out] = args;
  if (!dir)
    throw new Error(
      "usage: tsx bench/archive-ab.ts LAB_DIR [ROUNDS] [OUT.json] [--before BUNDLE] [--chunk-mib N] [--mariabackup]",
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
    ...(withMariabackup
      ? [
          {
            name: "mariabackup --backup | zstd -T0 -1",
            run: (async (_round, measure) => {
              // Of the running replica, as the main run's competitor: its copy, its redo log and zstd.
              await prepareBackup("mariabackup", work);
              const command = competitorBackup("mariabackup", { work, replicaSocket: lab.replica.socket });
              return measure(command, await treeBytes(lab.replica.datadir));
            }) satisfies Side["run"],
          },
        ]
      : []),
  ];
  const startedAt = new Date().toISOString();
  const runs = await alternate(sides, rounds);
  await report(
    {
      startedAt,
      finishedAt: new Date().toISOString(),
      command: `tsx bench/archive-ab.ts ${dir} ${rounds}${before ? ` --before ${before}` : ""} --chunk-mib ${chunkMiB}${withMariabackup ? " --mariabackup" : ""}`,
      chunkMiB,
      runs: runs.map((run) => ({ ...run, ...ourArchive(run.lastLine) })),
      summary: summarize(sides, runs),
    },
    out,
  );
}

/** What our side printed (its archive step's seconds and compressed bytes), plain's byte count, or nothing. */
function ourArchive(line: string): { archiveSeconds?: number; outputBytes?: number } {
  if (!line.startsWith("{")) return /^\d+$/.test(line) ? { outputBytes: Number(line) } : {};
  const printed = JSON.parse(line) as { seconds: number; bytes: number };
  return { archiveSeconds: printed.seconds, outputBytes: printed.bytes };
}

runScript(main);
