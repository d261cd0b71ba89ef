import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { readLab } from "../lab/lab";
import { say } from "./benchlab";
import { loadAverageNow } from "./machine";
import { runMeasured } from "./measure";
import { measured, type Measured } from "./results";

/**
 * The restore half of bench/issue16.ts again, interleaved round by round so that the machine's load falls on
 * every variant alike: ours with 1 worker and with every core on a format 2 backup, ours on a format 1 backup
 * (one stream), the code before issue 16 on that format 1 backup, and plain `zstd -d | tar -x` of each archive.
 *
 *   tsx bench/issue16-restores.ts LAB_DIR V2_BACKUP_ID V1_BACKUP_ID BEFORE_CLI OUT_JSON [ROUNDS]
 */
async function main(): Promise<void> {
  const [dir, v2, v1, beforeCli, out, rounds = "2"] = process.argv.slice(2);
  const lab = await readLab(dir);
  const work = join(dir, "bench-work");
  const cli = join(work, "mysql-backup.cjs");
  const target = join(work, "restore-target");
  const restore = (what: string, bin: string, config: string, id: string) =>
    `rm -rf ${target} && node ${bin} restore --config ${config} --target ${target} --backup ${id} --json >/dev/null && du -sb --apparent-size ${target} && rm -rf ${target} # ${what}`;
  const plain = (id: string) =>
    `rm -rf ${target} && mkdir ${target} && cat ${join(lab.backupsDir, id)}/archive*.tar.zst | zstd -dc | tar -x -C ${target} && du -sb --apparent-size ${target} && rm -rf ${target}`;
  const variants: Record<string, string> = {
    "ours, format 2, 1 worker": restore("w1", cli, join(work, "restore-workers-1.json"), v2),
    "ours, format 2, every core": restore("w0", cli, join(work, "restore-workers-0.json"), v2),
    "ours, format 1 (one stream)": restore("v1", cli, lab.restoreConfigPath, v1),
    "before issue 16, format 1": restore("before", beforeCli, lab.restoreConfigPath, v1),
    "plain zstd -d | tar -x, format 2 chunks": plain(v2),
    "plain zstd -d | tar -x, format 1 archive": plain(v1),
  };
  const runs: Array<Measured & { variant: string; round: number }> = [];
  const load = [loadAverageNow()];
  for (let round = 1; round <= Number(rounds); round++) {
    for (const [variant, command] of Object.entries(variants)) {
      const run = await runMeasured(command);
      if (run.exitCode !== 0) throw new Error(`${variant}: ${run.stderrTail}`);
      const bytes = Number(run.stdout.trim().split("\n").at(-1)!.split(/\s/)[0]);
      runs.push({ variant, round, ...measured(run, bytes) });
      say(
        `${variant}: ${run.wallSeconds.toFixed(2)} s, CPU ${(run.cpuUserSeconds + run.cpuSysSeconds).toFixed(1)} s`,
      );
    }
    load.push(loadAverageNow());
  }
  await writeFile(out, `${JSON.stringify({ at: new Date().toISOString(), load, runs }, null, 2)}\n`);
}

main().catch((error: Error) => {
  console.error(error.message);
  process.exit(1);
});
