import { mkdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { readLab } from "../lab/lab";
import { bundleHostScripts } from "../scripts/bundle";
import { PRODUCT_CHUNK_MIB, say } from "./benchlab";
import { deleteSnapshot, benchSnapshotDir, limitCommands, takeSnapshot, treeBytes } from "./limit";
import { mustRunMeasured } from "./measure";

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

interface SideRun {
  side: string;
  round: number;
  rawBytes: number;
  wallSeconds: number;
  cpuSeconds: number;
  peakRssMiB: number;
  archiveSeconds?: number;
  outputBytes?: number;
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const beforeAt = args.indexOf("--before");
  const before = beforeAt >= 0 ? resolve(args.splice(beforeAt, 2)[1]) : undefined;
  const chunkAt = args.indexOf("--chunk-mib");
  const chunkMiB = chunkAt >= 0 ? Number(args.splice(chunkAt, 2)[1]) : PRODUCT_CHUNK_MIB;
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
  const sides: Array<{ name: string; command: (data: string, out: string) => string }> = [
    { name: "plain tar | zstd -T0 -1", command: (data) => limitCommands(data).tarZstd },
    { name: "ours", command: (data, to) => `node ${ours.path} ${data} ${to} ${chunkMiB}` },
    ...(before
      ? [
          {
            name: "ours before",
            command: (data: string, to: string) => `node ${before} ${data} ${to} ${chunkMiB}`,
          },
        ]
      : []),
  ];
  const runs: SideRun[] = [];
  const startedAt = new Date().toISOString();
  const snapshots = benchSnapshotDir(lab.volume.mountPoint);
  for (let round = 1; round <= rounds; round++) {
    const order = round % 2 ? sides : [...sides].reverse();
    for (const side of order) {
      const snapshot = await takeSnapshot(
        lab.replica.socket,
        lab.replica.subvolume,
        snapshots,
        `ab-${round}`,
      );
      try {
        const data = join(snapshot, "data");
        const rawBytes = await treeBytes(data);
        const run = await mustRunMeasured(side.name, side.command(data, join(work, "chunks")));
        const last = run.stdout.trim().split("\n").pop() ?? "";
        const json = last.startsWith("{")
          ? (JSON.parse(last) as { seconds: number; bytes: number })
          : undefined;
        const result: SideRun = {
          side: side.name,
          round,
          rawBytes,
          wallSeconds: run.wallSeconds,
          cpuSeconds: run.cpuUserSeconds + run.cpuSysSeconds,
          peakRssMiB: run.peakRssBytes / 2 ** 20,
          archiveSeconds: json?.seconds,
          outputBytes: json ? json.bytes : Number(last),
        };
        runs.push(result);
        say(
          `round ${round} ${side.name}: ${result.wallSeconds.toFixed(2)} s wall, ` +
            `${(rawBytes / result.wallSeconds / 1e6).toFixed(0)} MB/s, ${result.cpuSeconds.toFixed(1)} CPU-s, ` +
            `${result.peakRssMiB.toFixed(0)} MiB`,
        );
      } finally {
        await deleteSnapshot(snapshot);
      }
    }
  }
  const summary = Object.fromEntries(
    sides.map(({ name }) => {
      const mine = runs.filter((r) => r.side === name);
      return [
        name,
        {
          wallSeconds: median(mine.map((r) => r.wallSeconds)),
          mbPerSecond: median(mine.map((r) => r.rawBytes / r.wallSeconds / 1e6)),
          cpuSeconds: median(mine.map((r) => r.cpuSeconds)),
          peakRssMiB: Math.max(...mine.map((r) => r.peakRssMiB)),
        },
      ];
    }),
  );
  const results = {
    startedAt,
    finishedAt: new Date().toISOString(),
    command: `tsx bench/archive-ab.ts ${dir} ${rounds}${before ? ` --before ${before}` : ""} --chunk-mib ${chunkMiB}`,
    chunkMiB,
    runs,
    summary,
  };
  console.log(JSON.stringify(summary, null, 2));
  if (out) await writeFile(out, `${JSON.stringify(results, null, 2)}\n`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
