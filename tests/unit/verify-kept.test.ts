/**
 * The verified trees a verifier keeps for the next chain proof (hostscripts/verify/kept.ts), on the real
 * filesystem: what is kept is what `restore` makes of a snapshot (replication state gone, the binlog index
 * following the tree wherever it is taken), a taken tree is gone for every other taker, a cluster keeps only
 * the newest tree and its predecessor, a full volume keeps none, a cluster without a binlog archive keeps none,
 * and what a verifier stopped mid-keep is swept. The bucket is a stand-in that lists one binlog epoch per cluster (or
 * none), as S3 lists it.
 */
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { S3Client } from "@aws-sdk/client-s3";
import { epochPrefix, type BackupManifest, type BackupRef, type VerifyConfig } from "../../contracts";
import { memoryLogger } from "../../hostscripts/common/log";
import type { ListedBackup } from "../../hostscripts/restore/list";
import {
  hasKept,
  keepVerified,
  keepsVerified,
  keptDirOf,
  sweepIncoming,
  takeKept,
} from "../../hostscripts/verify/kept";

const BUCKET = "backups-bucket";
const SOURCE = "/srv/mnt/replica";

let scratch: string;
beforeEach(async () => {
  scratch = await mkdtemp(join(tmpdir(), "kept-"));
});
afterEach(async () => {
  await rm(scratch, { recursive: true, force: true });
});

const config = (chain: VerifyConfig["chain"] = {}): VerifyConfig =>
  ({ scratchDir: scratch, sqs: { queueUrl: "q" }, chain }) as VerifyConfig;

const refOf = (backupId: string, cluster = "orders"): BackupRef => ({
  prefix: "backups",
  cluster,
  host: "db2",
  backupId,
});

/** A bucket whose binlog archive holds one epoch of each of the clusters "orders" and "billing", or nothing. */
function bucket(archived: boolean): S3Client {
  const epochOf = (cluster: string) =>
    `${epochPrefix({ prefix: "backups", cluster, host: "db2", epoch: "20261130T080000Z-aaaaaa" })}epoch.json`;
  const send = async () => ({
    Contents: archived ? ["orders", "billing"].map((cluster) => ({ Key: epochOf(cluster) })) : [],
    IsTruncated: false,
  });
  return { send } as unknown as S3Client;
}

function manifestOf(backupId: string, rawBytes = 1): BackupManifest {
  return {
    formatVersion: 1,
    backupId,
    cluster: "orders",
    host: "db2",
    startedAt: "2026-11-30T02:00:00Z",
    completedAt: "2026-11-30T02:01:00Z",
    server: { flavor: "mariadb", version: "10.11.6", serverId: 2 },
    settings: {
      innodbPageSize: 16384,
      lowerCaseTableNames: 0,
      logBinBasename: `${SOURCE}/data/mysql-bin`,
      logBinIndex: `${SOURCE}/data/mysql-bin.index`,
      datadir: `${SOURCE}/data/`,
      innodbLogFileSize: null,
      innodbDataFilePath: null,
    },
    position: {
      gtidBinlogPos: "0-1-100",
      gtidSlavePos: "0-1-100",
      gtidCurrentPos: null,
      gtidExecuted: null,
      binlog: null,
      source: null,
    },
    lock: { method: "FLUSH TABLES WITH READ LOCK", ms: 3 },
    snapshot: { driver: "btrfs", name: "s", sourceRoot: SOURCE },
    tables: [],
    archive: {
      key: `backups/orders/db2/${backupId}/archive.tar.zst`,
      bytes: 1,
      sha256: "a".repeat(64),
      compression: "zstd",
      format: "tar",
      rawBytes,
    },
    files: [{ path: "data/ibdata1", bytes: 1, sha256: "b".repeat(64) }],
  } as BackupManifest;
}

/** A restored tree as a verification leaves it: binlog index mapped below it, the source's relay logs. */
async function verifiedTree(backupId: string): Promise<string> {
  const root = join(scratch, `${backupId}-work`, "root");
  await mkdir(join(root, "data"), { recursive: true });
  await writeFile(join(root, "data", "ibdata1"), "x");
  await writeFile(
    join(root, "data", "mysql-bin.index"),
    `${root}/data/mysql-bin.000001\n${root}/data/mysql-bin.000002\n./mysql-bin.000003\n`,
  );
  await writeFile(join(root, "data", "master.info"), "source");
  await writeFile(join(root, "data", "relay-log.info"), "relay");
  await writeFile(join(root, "data", "db2-relay-bin.000007"), "relay");
  return root;
}

const deps = (archived = true) => ({ s3: bucket(archived), $: undefined as never, log: memoryLogger() });
const listed = (backupId: string) => ({ backupId, host: "db2", verdict: "verified" }) as ListedBackup;

async function keep(
  backupId: string,
  options: { archived?: boolean; rawBytes?: number; cluster?: string } = {},
) {
  const root = await verifiedTree(backupId);
  const d = deps(options.archived);
  await keepVerified(
    config(),
    BUCKET,
    refOf(backupId, options.cluster),
    manifestOf(backupId, options.rawBytes),
    root,
    d,
  );
  return { root, log: d.log };
}

const A = "20261130T020000Z-aaaaaa";
const B = "20261201T020000Z-bbbbbb";
const C = "20261202T020000Z-cccccc";

test("a kept tree is what restore makes of it, and follows its binlog index wherever it is taken", async () => {
  const { root } = await keep(A);
  const entries = await readdir(keptDirOf(config()));
  expect(entries).toEqual([expect.stringMatching(new RegExp(`^[0-9a-f]{16}-${A}$`))]);
  const entry = join(keptDirOf(config()), entries[0]!);
  expect((await readdir(entry)).sort()).toEqual(["manifest.json", "root"]);
  expect((await readdir(join(entry, "root", "data"))).sort()).toEqual(["ibdata1", "mysql-bin.index"]);
  expect(await readFile(join(entry, "root", "data", "mysql-bin.index"), "utf8")).toBe(
    `${SOURCE}/data/mysql-bin.000001\n${SOURCE}/data/mysql-bin.000002\n./mysql-bin.000003\n`,
  );
  await expect(readdir(root)).rejects.toThrow(/ENOENT/);
  expect(await hasKept(config(), BUCKET, refOf(B), listed(A))).toBe(true);

  const log = memoryLogger();
  const taken = await takeKept(config(), BUCKET, refOf(B), listed(A), B, log);
  expect(taken).not.toBeNull();
  expect(taken!.dir).toMatch(new RegExp(`^${scratch}/chain-${B}-[0-9a-f]{8}$`));
  const target = join(taken!.dir, "root");
  expect(taken!.restored).toMatchObject({ backupId: A, target, datadir: join(target, "data") });
  expect(taken!.restored.serverOptions).toContain(`log_bin=${target}/data/mysql-bin`);
  expect(await readFile(join(target, "data", "mysql-bin.index"), "utf8")).toBe(
    `${target}/data/mysql-bin.000001\n${target}/data/mysql-bin.000002\n./mysql-bin.000003\n`,
  );
  // Taken once: nothing is left for another taker.
  expect(await hasKept(config(), BUCKET, refOf(B), listed(A))).toBe(false);
  expect(await takeKept(config(), BUCKET, refOf(B), listed(A), B, log)).toBeNull();
  expect(await readdir(keptDirOf(config()))).toEqual([]);
});

test("a cluster keeps its newest tree and the one before it; other clusters keep theirs", async () => {
  await keep(A);
  await keep(A, { cluster: "billing" });
  await keep(B);
  await keep(C);
  const names = await readdir(keptDirOf(config()));
  expect(names.filter((n) => n.endsWith(A))).toHaveLength(1);
  expect(await hasKept(config(), BUCKET, refOf(C), listed(B))).toBe(true);
  expect(await hasKept(config(), BUCKET, refOf(C), listed(C))).toBe(true);
  expect(await hasKept(config(), BUCKET, refOf(B), listed(A))).toBe(false);
  expect(await hasKept(config(), BUCKET, refOf(B, "billing"), listed(A))).toBe(true);
  // B verified again (its message redelivered): what is kept stays, C's tree included, and no copy is left.
  const { log } = await keep(B);
  expect(log.lines.map((l) => l.message)).toEqual([
    expect.stringMatching(/the verified tree of .* is not kept/),
  ]);
  expect((await readdir(keptDirOf(config()))).sort()).toEqual(names.sort());
});

test("an older snapshot kept after a newer one (verified late) removes nothing a proof needs", async () => {
  await keep(A);
  await keep(C);
  await keep(B);
  const names = await readdir(keptDirOf(config()));
  expect(names.map((n) => n.slice(17)).sort()).toEqual([A, B, C]);
});

test("a scratch volume without room for twice a tree keeps none: the oldest trees go first", async () => {
  await keep(A, { cluster: "billing" });
  // A tree the volume cannot hold twice: every kept tree is removed, this one last.
  const { log } = await keep(B, { rawBytes: Number.MAX_SAFE_INTEGER / 4 });
  expect(await readdir(keptDirOf(config()))).toEqual([]);
  const removed = log.lines.filter((l) => /removing the kept tree/.test(l.message)).map((l) => l.message);
  expect(removed).toEqual([expect.stringContaining(A), expect.stringContaining(B)]);
});

test("nothing is kept for a cluster without a binlog archive, with a catch-up, or when switched off", async () => {
  const { root } = await keep(A, { archived: false });
  expect(await readdir(root)).toEqual(["data"]);
  expect(await readdir(keptDirOf(config())).catch(() => [])).toEqual([]);
  expect(keepsVerified(config())).toBe(true);
  expect(keepsVerified(config({ keepVerified: false }))).toBe(false);
  expect(keepsVerified(config({ enabled: false }))).toBe(false);
  expect(keepsVerified({ ...config(), catchUp: { optionFile: "/etc/x.cnf" } })).toBe(false);
  expect(await hasKept(config({ keepVerified: false }), BUCKET, refOf(B), listed(A))).toBe(false);
});

test("a kept tree that is not the snapshot asked for is removed, and the snapshot restored again", async () => {
  await keep(A);
  const entry = join(keptDirOf(config()), (await readdir(keptDirOf(config())))[0]!);
  await writeFile(join(entry, "manifest.json"), JSON.stringify(manifestOf(B)));
  const log = memoryLogger();
  expect(await takeKept(config(), BUCKET, refOf(C), listed(A), C, log)).toBeNull();
  expect(log.lines.map((l) => l.message)).toEqual([
    expect.stringMatching(new RegExp(`the kept tree of ${A} is unusable and removed: it holds ${B}`)),
  ]);
  expect((await readdir(scratch)).filter((n) => n.startsWith("chain-"))).toEqual([]);
});

test("what a verifier stopped mid-keep left is swept; whole entries stay", async () => {
  await keep(A);
  await mkdir(join(keptDirOf(config()), `.incoming-${B}-0a1b2c3d`, "root"), { recursive: true });
  await sweepIncoming(config());
  expect(await readdir(keptDirOf(config()))).toEqual([expect.stringMatching(new RegExp(`-${A}$`))]);
});
