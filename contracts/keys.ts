import { randomBytes } from "node:crypto";

/**
 * The S3 key layout (DESIGN §3): `<prefix>/<cluster>/<host>/<backupId>/<object>`.
 * IAM policies in components/ are derived from these functions, so the layout lives only here.
 */
/** The one archive object of a format 1 backup. */
export const ARCHIVE_OBJECT = "archive.tar.zst";
export const MANIFEST_OBJECT = "manifest.json";
export const VERIFICATION_OBJECT = "verification.json";
/**
 * The verdict on one binlog segment, beside it: `<sequence>-<stamp>.segment-verification.json` (contracts/
 * segment-verdict.ts). Declared here, not with the binlog layout, because the verdict list below needs it.
 */
export const SEGMENT_VERDICT_SUFFIX = ".segment-verification.json";
/** The proof of the point-in-time chain that ends at a snapshot, beside its `verification.json`. */
export const CHAIN_VERDICT_OBJECT = "chain-verification.json";
/** The point-in-time restore drill between the previous verified snapshot and this one, beside it too. */
export const DRILL_VERDICT_OBJECT = "pitr-drill.json";

/**
 * The names of every object only the verifier may write (its verdicts), as the last segment of their
 * key. IAM is derived from this list: the bucket policy and every host role deny writing these names to
 * anyone but the verifier's role. A new verdict kind (binlog segment and chain verdicts) adds its name
 * here, and falls under the same rule without touching components/. A `*` matches any run of characters
 * (IAM's wildcard), e.g. `*.segment-verification.json`.
 */
export const VERDICT_OBJECTS: readonly string[] = [
  VERIFICATION_OBJECT,
  `*${SEGMENT_VERDICT_SUFFIX}`,
  CHAIN_VERDICT_OBJECT,
  DRILL_VERDICT_OBJECT,
];

/** Whether an object key names a verdict (its last segment matches one of {@link VERDICT_OBJECTS}). */
export function isVerdictKey(key: string): boolean {
  const last = key.slice(key.lastIndexOf("/") + 1);
  return VERDICT_OBJECTS.some((pattern) =>
    new RegExp(`^${pattern.split("*").map(escapeRegex).join(".*")}$`).test(last),
  );
}

function escapeRegex(text: string): string {
  return text.replace(/[.+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * The key segment below `<prefix>/<cluster>/` reserved for the cluster's binary log archive; no host may
 * be named so (its backups would share the prefix).
 */
export const BINLOGS_SEGMENT = "binlogs";

/** Cluster and host names become key segments and metric dimensions: keep them boring. */
export const NAME_PATTERN = "^[a-z0-9][a-z0-9._-]{0,62}$";
const name = new RegExp(NAME_PATTERN);

/** `20261124T020000Z-3fa9c1`: sorts by time (UTC), unique with a short random suffix. */
export const BACKUP_ID_PATTERN = "^\\d{8}T\\d{6}Z-[0-9a-f]{6}$";
const backupIdPattern = new RegExp(BACKUP_ID_PATTERN);

/** Identifies one backup of one host. */
export interface BackupRef {
  prefix: string;
  cluster: string;
  host: string;
  backupId: string;
}

export function newBackupId(now: Date = new Date(), random: Buffer = randomBytes(3)): string {
  const stamp = now
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d{3}Z$/, "Z");
  return `${stamp}-${random.toString("hex").slice(0, 6)}`;
}

/** The time a backup id was taken, from its own text. */
export function backupIdTime(backupId: string): Date {
  if (!backupIdPattern.test(backupId))
    throw new Error(`"${backupId}" is not a backup id (${BACKUP_ID_PATTERN})`);
  const [, y, mo, d, h, mi, s] = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z/.exec(backupId)!;
  return new Date(`${y}-${mo}-${d}T${h}:${mi}:${s}Z`);
}

/** The key prefix above `<cluster>/` when a config names none. */
export const DEFAULT_PREFIX = "backups";

/** A prefix without leading or trailing slashes (`/backups/` and `backups` are the same prefix). */
export function normalizePrefix(prefix: string): string {
  return prefix.replace(/^\/+|\/+$/g, "");
}

function checkSegment(kind: string, value: string): void {
  if (!name.test(value)) throw new Error(`${kind} "${value}" must match ${NAME_PATTERN}`);
}

/** `<prefix>/<cluster>/` — everything a cluster's replicas may write lives below it. */
export function clusterPrefix(prefix: string, cluster: string): string {
  checkSegment("cluster", cluster);
  const p = normalizePrefix(prefix);
  return p ? `${p}/${cluster}/` : `${cluster}/`;
}

export function hostPrefix(prefix: string, cluster: string, host: string): string {
  checkSegment("host", host);
  if (host === BINLOGS_SEGMENT)
    throw new Error(`host "${host}" is reserved for the binary log archive: rename the host`);
  return `${clusterPrefix(prefix, cluster)}${host}/`;
}

/**
 * `<prefix>/<cluster>/binlogs/` — where the cluster's binary log segments and their ledger go
 * (`…/binlogs/<source identity>/…`, DESIGN §3). A replica may only create objects here: it can neither
 * read, overwrite nor delete them.
 */
export function binlogPrefix(prefix: string, cluster: string): string {
  return `${clusterPrefix(prefix, cluster)}${BINLOGS_SEGMENT}/`;
}

export function backupPrefix(ref: BackupRef): string {
  if (!backupIdPattern.test(ref.backupId))
    throw new Error(`backup id "${ref.backupId}" must match ${BACKUP_ID_PATTERN}`);
  return `${hostPrefix(ref.prefix, ref.cluster, ref.host)}${ref.backupId}/`;
}

export const archiveKey = (ref: BackupRef): string => backupPrefix(ref) + ARCHIVE_OBJECT;

/**
 * The archive objects of a format 2 backup: `archive-0001.tar.zst`, `archive-0002.tar.zst`, … (numbered from
 * 1, at least four digits so they sort in order up to 9,999 chunks; more digits after that).
 */
export const ARCHIVE_CHUNK_PATTERN = "^archive-\\d{4,}\\.tar\\.zst$";

/** The object name of chunk `index` (0-based) of a format 2 archive. */
export function archiveChunkObject(index: number): string {
  if (!Number.isInteger(index) || index < 0) throw new Error(`chunk index ${index} must be a whole number`);
  return `archive-${String(index + 1).padStart(4, "0")}.tar.zst`;
}

/** The key of chunk `index` (0-based) of a format 2 archive. */
export const archiveChunkKey = (ref: BackupRef, index: number): string =>
  backupPrefix(ref) + archiveChunkObject(index);
export const manifestKey = (ref: BackupRef): string => backupPrefix(ref) + MANIFEST_OBJECT;
export const verificationKey = (ref: BackupRef): string => backupPrefix(ref) + VERIFICATION_OBJECT;

/**
 * Where `mysql-backup check` writes its create-only probe on a replica: below the host's own prefix, where
 * the backup writes, but outside the `<backupId>/` layout, so nothing that lists backups mistakes it for one.
 * The replica cannot delete it; the bucket's lifecycle expires it under its rule for untagged objects.
 */
export const CHECK_PROBE_DIR = "_check";

/** The probe key of one `check` run at `at` (`<prefix>/<cluster>/<host>/_check/<stamp>-<random>.json`). */
export function checkProbeKey(prefix: string, cluster: string, host: string, at: Date = new Date()): string {
  return `${hostPrefix(prefix, cluster, host)}${CHECK_PROBE_DIR}/${newBackupId(at)}.json`;
}

/** Reads a manifest key back into its parts; the verifier uses it to refuse keys outside the layout. */
export function parseManifestKey(key: string): BackupRef {
  const parts = key.split("/");
  if (parts.length < 4 || parts[parts.length - 1] !== MANIFEST_OBJECT) {
    throw new Error(
      `"${key}" is not a manifest key (<prefix>/<cluster>/<host>/<backupId>/${MANIFEST_OBJECT})`,
    );
  }
  const [cluster, host, backupId] = parts.slice(-4, -1);
  const ref = { prefix: parts.slice(0, -4).join("/"), cluster, host, backupId };
  if (manifestKey(ref) !== key) throw new Error(`"${key}" does not follow the key layout`);
  return ref;
}
