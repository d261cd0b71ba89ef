import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { readLab, type Lab } from "../lab/lab";
import { say } from "./benchlab";
import { measureLimit } from "./limit";
import { loadAverageNow } from "./machine";
import { runMeasured } from "./measure";
import { backupCommand, buildCli, lastJsonLine, numberAt } from "./pipeline";
import { measured, type Measured } from "./results";
import { hashRates, newestBackupArchive, plainExtract, restoreScaling, type RestoreRun } from "./scaling";

/**
 * Issue 16 side by side, on a lab a bench run left up (`npm run bench -- --keep-lab`), without the
 * competitors: plain `tar | zstd -T0 -1` of a fresh snapshot, the backup of the code before issue 16 (a CLI
 * bundle built from another tree, `--before-cli`) and ours, then plain `zstd -d | tar -x` of each archive
 * and `restore` of each backup from the emulator, ours one chunk at a time and on every core. Writes
 * `--out` (JSON); prints what it measured.
 *
 *   tsx bench/issue16.ts --dir /tmp/mysql-backup-bench --before-cli /tmp/main-cli.cjs --out bench/results-issue16.json
 */

interface Backup extends Measured {
  code: "before" | "ours";
  backupId?: string;
  archiveSeconds?: number;
  rawBytes?: number;
  archiveBytes?: number;
}

async function backup(code: Backup["code"], cli: string, config: string): Promise<Backup> {
  const run = await runMeasured(backupCommand(cli, config));
  if (run.exitCode !== 0) throw new Error(`${code} backup failed: ${run.stderrTail}`);
  const result = lastJsonLine(run.stdout);
  const b: Backup = {
    code,
    ...measured(run),
    backupId: result?.backupId as string | undefined,
    archiveSeconds: numberAt(result, "archiveSeconds", "timings.archiveSeconds", "archive.seconds"),
    rawBytes: numberAt(result, "rawBytes", "archive.rawBytes"),
    archiveBytes: numberAt(result, "archiveBytes", "archive.bytes"),
  };
  say(
    `${code} backup ${b.backupId}: wall ${run.wallSeconds.toFixed(1)} s, archive ${b.archiveSeconds?.toFixed(1)} s, ` +
      `CPU ${(run.cpuUserSeconds + run.cpuSysSeconds).toFixed(1)} s`,
  );
  return b;
}

/** `restore` of `backupId` with `cli` and the lab's restore config (the before code reads format 1 only). */
async function restoreWith(lab: Lab, cli: string, backupId: string, work: string): Promise<Measured> {
  const target = join(work, "restore-before");
  const run = await runMeasured(
    `rm -rf ${target} && node ${cli} restore --config ${lab.restoreConfigPath} --target ${target} --backup ${backupId} --json && du -sb --apparent-size ${target} && rm -rf ${target}`,
  );
  if (run.exitCode !== 0) throw new Error(`restore of ${backupId} failed: ${run.stderrTail}`);
  const bytes = Number(run.stdout.trim().split("\n").at(-1)!.split(/\s/)[0]);
  return measured(run, bytes);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { dir: { type: "string" }, "before-cli": { type: "string" }, out: { type: "string" } },
  });
  if (!values.dir || !values["before-cli"] || !values.out)
    throw new Error("usage: tsx bench/issue16.ts --dir LAB --before-cli BUNDLE --out FILE");
  const lab = await readLab(values.dir);
  const work = join(values.dir, "bench-work");
  const { cli } = await buildCli(work);
  const ours = join(work, "backup.json");
  // The code before issue 16 knows no compression.chunkMiB.
  const config = JSON.parse(await readFile(ours, "utf8")) as { compression?: Record<string, unknown> };
  delete config.compression?.chunkMiB;
  const before = join(work, "backup-before.json");
  await writeFile(before, JSON.stringify(config, null, 2));
  const loadAtStart = loadAverageNow();
  const replica = {
    socket: lab.replica.socket,
    subvolume: lab.replica.subvolume,
    mountPoint: lab.volume.mountPoint,
  };
  const limits = [];
  say("limit: tar | zstd -T0 -1 of a fresh snapshot");
  limits.push((await measureLimit(replica, "before")).tarZstd);
  const backups: Backup[] = [];
  for (let i = 0; i < 2; i++) {
    backups.push(await backup("before", values["before-cli"], before));
    backups.push(await backup("ours", cli, ours));
  }
  limits.push((await measureLimit(replica, "after")).tarZstd);
  const newest = await newestBackupArchive(lab.backupsDir);
  say(`plain extract of ${newest.backupId} (${newest.objects.length} objects)`);
  const plain = await plainExtract(lab, work);
  say("restore, ours, one chunk at a time and on every core");
  const restores: RestoreRun[] = await restoreScaling(lab, cli, work);
  const beforeId = backups.filter((b) => b.code === "before").at(-1)!.backupId!;
  say(`restore of ${beforeId} (format 1) by the code before issue 16, and by ours`);
  const beforeRestore = await restoreWith(lab, values["before-cli"], beforeId, work);
  const oursOfV1 = await restoreWith(lab, cli, beforeId, work);
  const results = {
    at: new Date().toISOString(),
    loadAverage: { start: loadAtStart, end: loadAverageNow() },
    limits: limits.map(({ run, ...l }) => ({ ...l, ...measured(run, l.bytes) })),
    backups,
    plainExtract: plain,
    restores,
    beforeRestore,
    oursRestoreOfFormat1: oursOfV1,
    hashRates: hashRates(),
  };
  await writeFile(values.out, `${JSON.stringify(results, null, 2)}\n`);
  say(`wrote ${values.out}`);
}

main().catch((error: Error) => {
  console.error(error.message);
  process.exit(1);
});
