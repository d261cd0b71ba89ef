import { mkdir, readFile, rm } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { archiveObjectsOf, parseManifest } from "../contracts";
import { readLab } from "../lab/lab";
import { bundleHostScripts } from "../scripts/bundle";
import { alternate, report, runScript, summarize, takeOption, type Side } from "./side-by-side";

/**
 * `tsx bench/extract-ab.ts LAB_DIR BACKUP_ID [ROUNDS] [OUT.json] [--before BUNDLE]`: our restore's unpacking against plain
 * `zstd -d | tar -x`, like for like, from the chunk files of a backup the lab kept on local disk: ours is
 * `bench/extract-only.ts` (the restore's `extractChunk`: sha256 of the compressed bytes, zstd -d, our tar
 * parser, every file's sha256, then every file compared with the manifest) with one chunk at a time and with
 * one per core (and the same of another tree's bundle with `--before`); neither side downloads, so neither pays
 * for the lab's S3 emulator. The sides alternate in
 * order, round by round; the target is removed after each (outside the measured time).
 */

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const beforeArg = takeOption(args, "--before");
  const before = beforeArg === undefined ? undefined : resolve(beforeArg);
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
  // Each run into an empty target, removed after it (outside the measured time).
  const into =
    (command: string): Side["run"] =>
    async (_round, measure) => {
      await rm(target, { recursive: true, force: true });
      try {
        return await measure(command, rawBytes);
      } finally {
        await rm(target, { recursive: true, force: true });
      }
    };
  const sides: Side[] = [
    {
      name: "plain zstd -d | tar -x",
      run: into(`mkdir -p ${target} && cat ${chunks.join(" ")} | zstd -dc | tar -x -C ${target}`),
    },
    { name: "ours, 1 chunk at a time", run: into(`node ${ours.path} ${backup} ${target} 1`) },
    { name: "ours, one chunk per core", run: into(`node ${ours.path} ${backup} ${target} 0`) },
    ...(before
      ? [
          { name: "ours before, 1 chunk at a time", run: into(`node ${before} ${backup} ${target} 1`) },
          { name: "ours before, one chunk per core", run: into(`node ${before} ${backup} ${target} 0`) },
        ]
      : []),
  ];
  const startedAt = new Date().toISOString();
  const runs = await alternate(sides, rounds);
  await report(
    {
      startedAt,
      finishedAt: new Date().toISOString(),
      command: `tsx bench/extract-ab.ts ${labDir} ${backupId} ${rounds}${before ? ` --before ${before}` : ""}`,
      rawBytes,
      chunks: chunks.length,
      runs,
      summary: summarize(sides, runs),
    },
    out,
  );
}

runScript(main);
