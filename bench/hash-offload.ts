import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { readLab, labAwsClients, type Lab } from "../lab/lab";
import { benchBackupConfig, clearRemote, say } from "./benchlab";
import { runMeasured, type CommandRun } from "./measure";
import { buildCli, lastJsonLine, numberAt } from "./pipeline";
import { report, runScript } from "./side-by-side";
import { median } from "./stall";

/**
 * `tsx bench/hash-offload.ts LAB_DIR [ROUNDS] [OUT]`: the SHA-256s of a backup and of a restore computed on a
 * worker thread (`hostscripts/common/hash-offload.ts`, the default from 2 cores) against inline on the main
 * thread (`MYSQL_BACKUP_HASH_INLINE=1`), side by side on a lab left up by `npm run bench -- --keep-lab`. Each
 * round runs both ways, in alternating order: a backup of the replica (no write load), then `restore` of that
 * backup from the emulator. Wall, CPU (every process of the command) and peak RSS of each, medians over rounds.
 */

type Way = "inline" | "worker";

interface WayRun {
  way: Way;
  round: number;
  backup: {
    wallSeconds: number;
    cpuSeconds: number;
    archiveSeconds?: number;
    peakRssBytes: number;
    rawBytes?: number;
  };
  restore: { wallSeconds: number; cpuSeconds: number; peakRssBytes: number };
}

const cpu = (run: CommandRun) => run.cpuUserSeconds + run.cpuSysSeconds;

async function oneWay(lab: Lab, cli: string, work: string, way: Way, round: number): Promise<WayRun> {
  const env = { ...process.env, MYSQL_BACKUP_HASH_INLINE: way === "inline" ? "1" : "0" };
  const backupConfig = await benchBackupConfig(lab, work, []);
  const backup = await runMeasured(`node ${cli} backup --config ${backupConfig} --json`, { env });
  const result = lastJsonLine(backup.stdout);
  const backupId = typeof result?.backupId === "string" ? result.backupId : undefined;
  if (backup.exitCode !== 0 || backupId === undefined)
    throw new Error(`backup (${way}) failed: exit ${backup.exitCode}\n${backup.stderrTail}`);
  const target = join(work, `restore-${way}`);
  await rm(target, { recursive: true, force: true });
  const restore = await runMeasured(
    `node ${cli} restore --config ${lab.restoreConfigPath} --target ${target} --backup ${backupId} --json`,
    { env },
  );
  await rm(target, { recursive: true, force: true });
  if (restore.exitCode !== 0)
    throw new Error(`restore (${way}) failed: exit ${restore.exitCode}\n${restore.stderrTail}`);
  const run: WayRun = {
    way,
    round,
    backup: {
      wallSeconds: backup.wallSeconds,
      cpuSeconds: cpu(backup),
      archiveSeconds: numberAt(result, "archiveSeconds"),
      rawBytes: numberAt(result, "rawBytes"),
      peakRssBytes: backup.peakRssBytes,
    },
    restore: {
      wallSeconds: restore.wallSeconds,
      cpuSeconds: cpu(restore),
      peakRssBytes: restore.peakRssBytes,
    },
  };
  say(
    `round ${round} ${way}: backup ${run.backup.wallSeconds.toFixed(1)} s wall (archive ${run.backup.archiveSeconds?.toFixed(1)}), ` +
      `${run.backup.cpuSeconds.toFixed(1)} CPU-s, ${(run.backup.peakRssBytes / 2 ** 20).toFixed(0)} MiB; ` +
      `restore ${run.restore.wallSeconds.toFixed(1)} s wall, ${run.restore.cpuSeconds.toFixed(1)} CPU-s, ` +
      `${(run.restore.peakRssBytes / 2 ** 20).toFixed(0)} MiB`,
  );
  return run;
}

async function main(): Promise<void> {
  const [dir, roundsArg, out] = process.argv.slice(2);
  if (!dir) throw new Error("usage: tsx bench/hash-offload.ts LAB_DIR [ROUNDS] [OUT.json]");
  const rounds = Number(roundsArg ?? 3);
  const lab = await readLab(dir);
  const work = join(dir, "bench-work", "hash-offload");
  await mkdir(work, { recursive: true });
  const { cli } = await buildCli(work);
  const { s3, sqs } = labAwsClients(lab);
  const runs: WayRun[] = [];
  const startedAt = new Date().toISOString();
  try {
    for (let round = 1; round <= rounds; round++) {
      const order: Way[] = round % 2 ? ["inline", "worker"] : ["worker", "inline"];
      for (const way of order) {
        await clearRemote(lab, s3, sqs);
        runs.push(await oneWay(lab, cli, work, way, round));
      }
    }
  } finally {
    await clearRemote(lab, s3, sqs).catch(() => undefined);
    s3.destroy();
    sqs.destroy();
  }
  const summary = Object.fromEntries(
    (["inline", "worker"] as Way[]).map((way) => {
      const mine = runs.filter((r) => r.way === way);
      return [
        way,
        {
          backupWall: median(mine.map((r) => r.backup.wallSeconds)),
          backupArchive: median(mine.map((r) => r.backup.archiveSeconds ?? NaN)),
          backupCpu: median(mine.map((r) => r.backup.cpuSeconds)),
          backupRssMiB: Math.max(...mine.map((r) => r.backup.peakRssBytes)) / 2 ** 20,
          restoreWall: median(mine.map((r) => r.restore.wallSeconds)),
          restoreCpu: median(mine.map((r) => r.restore.cpuSeconds)),
          restoreRssMiB: Math.max(...mine.map((r) => r.restore.peakRssBytes)) / 2 ** 20,
        },
      ];
    }),
  );
  const results = {
    startedAt,
    finishedAt: new Date().toISOString(),
    command: `tsx bench/hash-offload.ts ${dir} ${rounds}`,
    rawBytes: runs[0]?.backup.rawBytes,
    runs,
    summary,
  };
  await report(results, out);
}

runScript(main);
