import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { archiveObjectsOf, parseManifest } from "../contracts";
import { readLab } from "../lab/lab";
import { bundleHostScripts } from "../scripts/bundle";
import { say } from "./benchlab";
import { mustRunMeasured } from "./measure";

/**
 * `tsx bench/extract-ab.ts LAB_DIR BACKUP_ID [ROUNDS] [OUT.json] [--before BUNDLE]`: our restore's unpacking against plain
 * `zstd -d | tar -x`, like for like, from the chunk files of a backup the lab kept on local disk: ours is
 * `bench/extract-only.ts` (the restore's `extractChunk`: sha256 of the compressed bytes, zstd -d, our tar
 * parser, every file's sha256, then every file compared with the manifest) with one chunk at a time and with
 * one per core (and the same of another tree's bundle with `--before`); neither side downloads, so neither pays
 * for the lab's S3 emulator. The sides alternate in
 * order, round by round; the target is removed after each (outside the measured time).
 */

interface SideRun {
  side: string;
  round: number;
  wallSeconds: number;
  cpuSeconds: number;
  peakRssMiB: number;
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
  const [labDir, backupId, roundsArg, out] = args;
  if (!labDir || !backupId)
    throw new Error("usage: tsx bench/extract-ab.ts LAB_DIR BACKUP_ID [ROUNDS] [OUT.json] [--before BUNDLE]");
  const rounds = Number(roundsArg ?? 3);
  const lab = await readLab(labDir);
  const backup = join(lab.backupsDir, backupId);
  const manifest = parseManifest(JSON.parse(await readFile(join(backup, "manifest.json"), "utf8")));
  const chunks = archiveObjectsOf(manifest).map((o) => join(backup, basename(o.key)));
  const rawBytes = manifest.files.reduce((sum, file) => sum + file.bytes, 0);
  const work = join(labDir, "bench-work", "extract-ab");
  const target = join(work, "target");
  await mkdir(work, { recursive: true });
  const ours = await bundleHostScripts({
    entry: join(__dirname, "extract-only.ts"),
    outfile: join(work, "extract-only.cjs"),
  });
  const sides = [
    {
      name: "plain zstd -d | tar -x",
      command: `mkdir -p ${target} && cat ${chunks.join(" ")} | zstd -dc | tar -x -C ${target}`,
    },
    { name: "ours, 1 chunk at a time", command: `node ${ours.path} ${backup} ${target} 1` },
    { name: "ours, one chunk per core", command: `node ${ours.path} ${backup} ${target} 0` },
    ...(before
      ? [
          { name: "ours before, 1 chunk at a time", command: `node ${before} ${backup} ${target} 1` },
          { name: "ours before, one chunk per core", command: `node ${before} ${backup} ${target} 0` },
        ]
      : []),
  ];
  const runs: SideRun[] = [];
  const startedAt = new Date().toISOString();
  for (let round = 1; round <= rounds; round++) {
    const order = round % 2 ? sides : [...sides].reverse();
    for (const side of order) {
      await rm(target, { recursive: true, force: true });
      const run = await mustRunMeasured(side.name, side.command);
      await rm(target, { recursive: true, force: true });
      const result: SideRun = {
        side: side.name,
        round,
        wallSeconds: run.wallSeconds,
        cpuSeconds: run.cpuUserSeconds + run.cpuSysSeconds,
        peakRssMiB: run.peakRssBytes / 2 ** 20,
      };
      runs.push(result);
      say(
        `round ${round} ${side.name}: ${result.wallSeconds.toFixed(2)} s wall, ` +
          `${(rawBytes / result.wallSeconds / 1e6).toFixed(0)} MB/s, ${result.cpuSeconds.toFixed(1)} CPU-s, ` +
          `${result.peakRssMiB.toFixed(0)} MiB`,
      );
    }
  }
  const summary = Object.fromEntries(
    sides.map(({ name }) => {
      const mine = runs.filter((r) => r.side === name);
      return [
        name,
        {
          wallSeconds: median(mine.map((r) => r.wallSeconds)),
          mbPerSecond: median(mine.map((r) => rawBytes / r.wallSeconds / 1e6)),
          cpuSeconds: median(mine.map((r) => r.cpuSeconds)),
          peakRssMiB: Math.max(...mine.map((r) => r.peakRssMiB)),
        },
      ];
    }),
  );
  const results = {
    startedAt,
    finishedAt: new Date().toISOString(),
    command: `tsx bench/extract-ab.ts ${labDir} ${backupId} ${rounds}${before ? ` --before ${before}` : ""}`,
    rawBytes,
    chunks: chunks.length,
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
