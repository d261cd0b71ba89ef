import {
  chainVerdictKey,
  drillVerdictKey,
  parseChainVerdict,
  parseDrillVerdict,
  type DrillVerdict,
  type ChainVerdict,
  type HealthReason,
  type RecoveryWindow,
} from "../../contracts";
import type { Read } from "../common/listing";
import type { HostScan, StatusReader } from "./scan";

/**
 * The proven recovery window in `status`: how far back the verifier proved the point-in-time chain (issue 14,
 * `chain-verification.json` beside each snapshot B, from the verified snapshot A before it). The listing says
 * which backups have a chain verdict, so nothing is read blindly: the newest judged chain of the cluster, then
 * back along its `from` while each link is verified, at most MAX_CHAIN_LINKS reads.
 */

/** Chain verdicts `status` follows back from the newest: a bound on the cost, not on the window's truth. */
export const MAX_CHAIN_LINKS = 8;

/** The cluster's proven window, and the newest chain's failure if it failed. */
export interface ProvenChain {
  /** From the oldest snapshot of the unbroken run of verified chains to the newest chain's B; null if none. */
  window: RecoveryWindow | null;
  /** The newest judged chain, when it failed: on-call must know the archive did not replay to B. */
  failed: ChainVerdict | null;
  /** The host of the newest judged chain's B (where its finding is shown). */
  host: string | null;
  /** `s3://bucket/key` of the newest judged chain verdict, for the finding. */
  url: string | null;
}

const valid = <T>(read: Read<T> | null): T | null => (read !== null && "value" in read ? read.value : null);

/** Reads the proven window of a cluster from its hosts' scans. */
export async function readProvenChain(
  reader: StatusReader,
  cluster: string,
  scans: HostScan[],
): Promise<ProvenChain> {
  const judged = scans
    .flatMap((s) =>
      s.backups.filter((b) => b.hasChainVerdict).map((b) => ({ host: s.host, backupId: b.backupId })),
    )
    .sort((a, b) => b.backupId.localeCompare(a.backupId));
  const key = (host: string, backupId: string) =>
    chainVerdictKey({ prefix: reader.prefix, cluster, host, backupId });
  const read = (host: string, backupId: string) =>
    reader.read(key(host, backupId), parseChainVerdict).then(valid);
  const newestRef = judged[0];
  if (newestRef === undefined) return { window: null, failed: null, host: null, url: null };
  const found = {
    host: newestRef.host,
    url: `s3://${reader.bucket}/${key(newestRef.host, newestRef.backupId)}`,
  };
  const newest = await read(newestRef.host, newestRef.backupId);
  if (newest === null) return { window: null, failed: null, ...found };
  if (newest.verdict === "failed") return { window: null, failed: newest, ...found };
  let oldest = newest;
  const listed = new Set(judged.map((j) => `${j.host}/${j.backupId}`));
  for (
    let links = 1;
    links < MAX_CHAIN_LINKS && listed.has(`${oldest.from.host}/${oldest.from.backupId}`);
    links++
  ) {
    const before = await read(oldest.from.host, oldest.from.backupId);
    if (before === null || before.verdict !== "verified" || before.to.backupId !== oldest.from.backupId)
      break;
    oldest = before;
  }
  const to = newest.to.takenAt;
  return {
    window: {
      from: oldest.from.takenAt,
      to,
      seconds: Math.round((Date.parse(to) - Date.parse(oldest.from.takenAt)) / 1000),
      fromBackupId: oldest.from.backupId,
      toGtid: newest.to.gtid,
    },
    failed: null,
    ...found,
  };
}

/** The finding of a failed newest chain, as the `pitr-chain-failed` alarm pages it. */
export function chainFailure(chain: ProvenChain): HealthReason[] {
  const f = chain.failed;
  if (f === null) return [];
  const detail = f.failure === null ? "" : `: ${f.failure.kind}: ${f.failure.detail}`;
  return [
    {
      state: "critical",
      message: `point-in-time chain ${f.from.backupId} → ${f.to.backupId} failed its proof${detail} — a restore between them may not give the data B holds; read ${chain.url} and docs/pitr-proof.md`,
    },
  ];
}

/** The cluster's newest drill (one read, where the listing shows `pitr-drill.json`), and its host and URL. */
export async function readLastDrill(
  reader: StatusReader,
  cluster: string,
  scans: HostScan[],
): Promise<{ verdict: DrillVerdict; host: string; url: string } | null> {
  const newest = scans
    .flatMap((s) =>
      s.backups.filter((b) => b.hasDrillVerdict).map((b) => ({ host: s.host, backupId: b.backupId })),
    )
    .sort((a, b) => b.backupId.localeCompare(a.backupId))[0];
  if (newest === undefined) return null;
  const key = drillVerdictKey({ prefix: reader.prefix, cluster, ...newest });
  const verdict = valid(await reader.read(key, parseDrillVerdict));
  return verdict === null ? null : { verdict, host: newest.host, url: `s3://${reader.bucket}/${key}` };
}

/** The finding of a failed newest drill, as the `pitr-drill-failed` alarm pages it. */
export function drillFailure(drill: { verdict: DrillVerdict; url: string }): HealthReason[] {
  const v = drill.verdict;
  if (v.failure === null) return [];
  return [
    {
      state: "critical",
      message: `point-in-time restore drill to ${v.point.at} from ${v.from.backupId} failed: ${v.failure.kind}: ${v.failure.detail} — read ${drill.url} and docs/pitr-proof.md`,
    },
  ];
}
