import { createHash, randomBytes } from "node:crypto";
import { access, chown, mkdir, readFile, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  VERIFY_DEFAULTS,
  parseManifest,
  type BackupManifest,
  type BackupRef,
  type VerifyConfig,
} from "../../contracts";
import { freeBytes } from "../common/diskspace";
import { messageOf } from "../common/errors";
import type { Logger } from "../common/log";
import { listArchive } from "../restore/archive";
import type { ListedBackup } from "../restore/list";
import { restoredResultOf, type RestoreResult } from "../restore/restore";
import {
  mapSourcePath,
  removeReplicationState,
  rewriteBinlogIndex,
  rewriteRestoredBinlogIndex,
} from "../restore/scratch-server";
import type { RestoreAndCheckDeps } from "./restore-and-check";

/**
 * The newest verified snapshot's restored tree, kept on the scratch disk for the next chain proof of its
 * cluster (`chain.keepVerified`, issue 14): when B's message reaches the verifier that verified A, the proof
 * A → B replays onto A's tree instead of downloading and extracting A again, so B's chain verdict follows B's
 * own by the replay and the comparison. Only the files are kept (the scratch server is stopped cleanly after
 * A's checks, as ever): a day between snapshots costs disk, not an instance, and a restart of the verifier
 * keeps them. Any other verifier, a replaced instance or a full disk restores A again, as before.
 *
 * What is kept is exactly what `restore` makes of A: the objects A's verification proved, extracted, crash
 * recovered by its scratch server (which only read from it) and stripped of the source's replication state.
 * Each entry, `<scratchDir>/kept/<cluster key>-<backupId>/`, holds `root/` and A's `manifest.json`, and comes
 * into that directory whole by one rename; taking it is one rename too, so two workers can never both replay
 * onto the same tree. Per cluster at most B and its predecessor are kept (the proof A → B takes A); when the
 * scratch volume would keep less free than twice a tree's size, the oldest entries go first.
 */

/** Where the kept trees live, below the verifier's scratch directory. */
export const keptDirOf = (config: VerifyConfig): string => join(config.scratchDir, "kept");

const MANIFEST = "manifest.json";
const ROOT = "root";
const INCOMING = ".incoming-";

/** Entries of one cluster (bucket, prefix and name) share a key: names may hold any character S3 allows. */
function clusterKey(ref: Pick<BackupRef, "prefix" | "cluster">, bucket: string): string {
  return createHash("sha256").update(`${bucket}\0${ref.prefix}\0${ref.cluster}`).digest("hex").slice(0, 16);
}

const entryName = (key: string, backupId: string) => `${key}-${backupId}`;

/** Whether a verified tree of this message's cluster may be kept at all. */
export function keepsVerified(config: VerifyConfig): boolean {
  const chain = { ...VERIFY_DEFAULTS.chain, ...config.chain };
  // A catch-up replicates the restored server past its snapshot: that tree is no longer A's.
  return chain.enabled && chain.keepVerified && config.catchUp === undefined;
}

/**
 * Keeps the tree of a snapshot whose checks all passed (its scratch server stopped): moved out of the
 * verification's scratch directory, which is removed afterwards as ever. Never fails the verification: a tree
 * that cannot be kept is left where it is, and removed with the rest.
 */
export async function keepVerified(
  config: VerifyConfig,
  bucket: string,
  ref: BackupRef,
  manifest: BackupManifest,
  root: string,
  deps: RestoreAndCheckDeps & { log: Logger },
): Promise<void> {
  const log = deps.log.with({ kept: ref.backupId });
  const dir = keptDirOf(config);
  const incoming = join(dir, `${INCOMING}${ref.backupId}-${randomBytes(4).toString("hex")}`);
  try {
    if ((await listArchive(deps.s3, bucket, ref.prefix, ref.cluster)).length === 0) return;
    await mkdir(dir, { recursive: true, mode: 0o750 });
    await mkdir(incoming, { mode: 0o750 });
    // The tree is the scratch server's user's (the verification gave it): so is the way to it.
    const owner = await stat(root);
    await chown(incoming, owner.uid, owner.gid);
    // What `restore` leaves too: the source's relay logs and connection would start a replica of it.
    await removeReplicationState(
      mapSourcePath(manifest.snapshot.sourceRoot, root, manifest.settings.datadir),
    );
    await unmapBinlogIndex(manifest, root);
    await writeFile(join(incoming, MANIFEST), JSON.stringify(manifest), { mode: 0o640 });
    await rename(root, join(incoming, ROOT));
    const key = clusterKey(ref, bucket);
    // A redelivered snapshot's tree, kept already, stays as it was (the rename fails on the whole entry).
    await rename(incoming, join(dir, entryName(key, ref.backupId)));
    await prune(dir, key, ref.backupId, manifest.archive.rawBytes, log);
  } catch (error) {
    await rm(incoming, { recursive: true, force: true, maxRetries: 3 }).catch(() => undefined);
    log.warn(`the verified tree of ${ref.backupId} is not kept: ${messageOf(error)}`, {
      hint: "the next chain proof restores this snapshot again",
    });
  }
}

/** Whether this verifier keeps A's tree for the chain proof of its cluster (it may still be gone when taken). */
export async function hasKept(
  config: VerifyConfig,
  bucket: string,
  ref: Pick<BackupRef, "prefix" | "cluster">,
  from: ListedBackup,
): Promise<boolean> {
  if (!keepsVerified(config)) return false;
  const entry = join(keptDirOf(config), entryName(clusterKey(ref, bucket), from.backupId));
  return access(join(entry, MANIFEST)).then(
    () => true,
    () => false,
  );
}

/** A kept tree taken for a chain proof: its directory is the caller's to remove. */
export interface TakenTree {
  /** The directory taken (removed when the proof ends). */
  dir: string;
  /** What `restore` would have returned for it. */
  restored: RestoreResult;
}

/**
 * Takes A's kept tree for the chain proof ending at `to`, moved to a scratch directory of the proof's own;
 * null when this verifier keeps none for A (another verifier verified it, or it was pruned).
 */
export async function takeKept(
  config: VerifyConfig,
  bucket: string,
  ref: Pick<BackupRef, "prefix" | "cluster">,
  from: ListedBackup,
  to: string,
  log: Logger,
): Promise<TakenTree | null> {
  if (!keepsVerified(config)) return null;
  const entry = join(keptDirOf(config), entryName(clusterKey(ref, bucket), from.backupId));
  const dir = join(config.scratchDir, `chain-${to}-${randomBytes(4).toString("hex")}`);
  const started = performance.now();
  try {
    await rename(entry, dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    log.warn(`the kept tree of ${from.backupId} cannot be taken: ${messageOf(error)}`, {
      hint: "it is restored again",
    });
    return null;
  }
  try {
    const manifest = parseManifest(JSON.parse(await readFile(join(dir, MANIFEST), "utf8")));
    if (manifest.backupId !== from.backupId) throw new Error(`it holds ${manifest.backupId}`);
    const root = join(dir, ROOT);
    await rewriteRestoredBinlogIndex(manifest, { root, logBinIndex: indexOf(manifest, root) });
    const seconds = Math.round(performance.now() - started) / 1000;
    return { dir, restored: restoredResultOf(manifest, from, root, 0, seconds) };
  } catch (error) {
    await rm(dir, { recursive: true, force: true, maxRetries: 3 });
    log.warn(`the kept tree of ${from.backupId} is unusable and removed: ${messageOf(error)}`, {
      hint: "it is restored again",
    });
    return null;
  }
}

const indexOf = (manifest: BackupManifest, root: string): string | null =>
  manifest.settings.logBinIndex === null
    ? null
    : mapSourcePath(manifest.snapshot.sourceRoot, root, manifest.settings.logBinIndex);

/**
 * The binlog index names its files by absolute path below the tree's scratch root (the verification mapped
 * them there, and its server added one): back to the source's paths, which the taker maps to where the tree
 * is then, as `restore` does.
 */
async function unmapBinlogIndex(manifest: BackupManifest, root: string): Promise<void> {
  const index = indexOf(manifest, root);
  if (index === null) return;
  const text = await readFile(index, "utf8");
  await writeFile(
    index,
    rewriteBinlogIndex(text, (path) => mapSourcePath(root, manifest.snapshot.sourceRoot, path)),
  );
}

/**
 * Keeps per cluster only `backupId` and the newest entry before it, then frees the scratch volume down to
 * twice a tree's size (the next verification and proof need that room): the oldest trees first, `backupId`'s
 * own last.
 */
async function prune(dir: string, key: string, backupId: string, treeBytes: number, log: Logger) {
  const names = (await readdir(dir)).filter((n) => !n.startsWith(INCOMING)).sort(byBackupId);
  const ours = names.filter((n) => n.startsWith(`${key}-`));
  const kept = entryName(key, backupId);
  // Older than the predecessor: no proof needs them. Newer ones (a redelivered older snapshot) stay.
  const predecessor = ours.filter((n) => n < kept).at(-1) ?? kept;
  const doomed = ours.filter((n) => n < predecessor);
  const rest = names.filter((n) => !doomed.includes(n));
  // Oldest snapshot first, the one just kept last.
  const evictable = [...rest.filter((n) => n !== kept), kept];
  for (;;) {
    for (const name of doomed.splice(0)) await discard(dir, name);
    const free = await freeBytes(dir);
    if (free >= 2 * treeBytes) return;
    const next = evictable.shift();
    if (next === undefined) return;
    log.info(`removing the kept tree ${next}: the scratch volume has ${free} bytes free`, {
      needs: 2 * treeBytes,
    });
    doomed.push(next);
  }
}

/**
 * Removes an entry, claimed first by one rename (as a taker claims it), so that a proof never replays onto a
 * tree half removed; gone already, it was taken.
 */
async function discard(dir: string, name: string): Promise<void> {
  const claimed = join(dir, `${INCOMING}discarded-${name}-${randomBytes(4).toString("hex")}`);
  try {
    await rename(join(dir, name), claimed);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
    throw error;
  }
  await rm(claimed, { recursive: true, force: true, maxRetries: 3 });
}

/** Entry names sort by their snapshot's time: the backup id after the 16-character key. */
const byBackupId = (a: string, b: string) => a.slice(17).localeCompare(b.slice(17));

/** Removes what a verifier stopped mid-keep left: entries that never came in whole. */
export async function sweepIncoming(config: VerifyConfig): Promise<void> {
  const dir = keptDirOf(config);
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const name of names.filter((n) => n.startsWith(INCOMING)))
    await rm(join(dir, name), { recursive: true, force: true, maxRetries: 3 });
}
