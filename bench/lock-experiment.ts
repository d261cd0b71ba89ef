import { execFileSync } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import { labDown, labUp, startLoad, stopLoad } from "../lab/lab";
import { rootSession } from "../lab/mariadb";

/**
 * `npx tsx bench/lock-experiment.ts [DIR]`: does flushing the replica's filesystem (`sync -f`) right before
 * FTWRL shorten the lock window? Our lock window is almost all btrfs snapshot creation, which commits a
 * btrfs transaction and so waits for dirty data. On a small lab under 100 tx/s of writes it alternates
 * 10 × each: FTWRL + `btrfs subvolume snapshot -r` + UNLOCK as the backup does it now, and the same after
 * `sync -f <subvolume>`. Prints the lock ms of each try as JSON; removes its lab in every case.
 */

const TRIES = 20;

async function lockOnce(
  session: Awaited<ReturnType<typeof rootSession>>,
  subvolume: string,
  snapshot: string,
  presync: boolean,
): Promise<number> {
  if (presync) execFileSync("sync", ["-f", subvolume]);
  const started = performance.now();
  await session.query("FLUSH TABLES WITH READ LOCK");
  try {
    execFileSync("btrfs", ["subvolume", "snapshot", "-r", subvolume, snapshot]);
  } finally {
    await session.query("UNLOCK TABLES");
  }
  const lockMs = performance.now() - started;
  execFileSync("btrfs", ["subvolume", "delete", snapshot]);
  return Math.round(lockMs);
}

async function main(dir: string): Promise<void> {
  const lab = await labUp({ dir, tables: 4, tableSize: 50_000, imageSizeGiB: 4 });
  try {
    await startLoad(lab, { rate: 100, threads: 2 });
    await sleep(3_000);
    const session = await rootSession(lab.replica.socket);
    const lockMs: { asNow: number[]; afterSync: number[] } = { asNow: [], afterSync: [] };
    try {
      for (let i = 0; i < TRIES; i++) {
        const presync = i % 2 === 1;
        const ms = await lockOnce(
          session,
          lab.replica.subvolume,
          `${lab.snapshotDir}/lock-experiment-${i}`,
          presync,
        );
        (presync ? lockMs.afterSync : lockMs.asNow).push(ms);
        await sleep(1_500);
      }
    } finally {
      await session.end();
    }
    console.log(JSON.stringify(lockMs));
    await stopLoad(lab);
  } finally {
    await labDown(dir);
  }
}

main(process.argv[2] ?? "/tmp/mysql-backup-lock-experiment").catch((error: Error) => {
  console.error(`lock experiment failed: ${error.message}`);
  process.exit(1);
});
