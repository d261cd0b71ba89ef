import type { S3Client } from "@aws-sdk/client-s3";
import {
  VerifierMetric,
  metric,
  parseChainVerdict,
  type ChainVerdict,
  type MetricDatum,
  type RestoredTable,
} from "../../contracts";
import type { Session } from "../restore/pitr";
import { quoteIdentifier, readRestoredTables, tableChecksum } from "./checks";
import { readStoredVerdict } from "./objects";

/**
 * The parts of the chain proof (chain.ts) that do not restore: the checksums of the replayed server and their
 * comparison with snapshot B's, and the chain verdict's storage and metrics.
 */

/** Every data-holding table of the replayed server (sequences aside) with its content checksum. */
export async function replayedChecksums(conn: Session): Promise<Map<string, number | null>> {
  const found = new Map<string, number | null>();
  for (const table of await readRestoredTables(conn)) {
    if (table.type === "SEQUENCE") continue;
    const name = `${quoteIdentifier(table.schema)}.${quoteIdentifier(table.table)}`;
    found.set(`${table.schema}.${table.table}`, await tableChecksum(conn, name));
  }
  return found;
}

/** The tables B recorded a checksum for, compared with the replay; one phrase per table that differs. */
export function compareChecksums(
  recorded: RestoredTable[],
  replayed: Map<string, number | null>,
): { compared: number; differing: string[] } {
  const differing: string[] = [];
  let compared = 0;
  const inB = new Set<string>();
  for (const table of recorded) {
    const name = `${table.schema}.${table.table}`;
    inB.add(name);
    if (typeof table.checksum !== "number") continue;
    compared++;
    if (!replayed.has(name)) differing.push(`${name} (in B, missing after the replay)`);
    else if (replayed.get(name) !== table.checksum)
      differing.push(`${name} (checksum ${replayed.get(name)} after the replay, ${table.checksum} in B)`);
  }
  for (const name of replayed.keys())
    if (!inB.has(name)) differing.push(`${name} (after the replay, not in B)`);
  return { compared, differing };
}

/** The chain verdict already written, or null; one that is not valid throws (someone must look at it). */
export function readChainVerdict(s3: S3Client, bucket: string, key: string): Promise<ChainVerdict | null> {
  return readStoredVerdict(s3, bucket, key, parseChainVerdict, {
    name: "chain verdict",
    redo: "the chain proven again",
  });
}

/**
 * The chain verdict's data points (dimension Cluster): PitrChainVerified with PitrVerifiedUntilSeconds (how
 * old B, the newest proven point, is now), or PitrChainFailed.
 */
export function chainMetrics(verdict: ChainVerdict, now: Date): MetricDatum[] {
  const dimensions = { Cluster: verdict.cluster };
  if (verdict.verdict === "failed") return [metric(VerifierMetric.PitrChainFailed, 1, dimensions, now)];
  const age = Math.max(0, (now.getTime() - Date.parse(verdict.to.takenAt)) / 1000);
  return [
    metric(VerifierMetric.PitrChainVerified, 1, dimensions, now),
    metric(VerifierMetric.PitrVerifiedUntilSeconds, Math.round(age), dimensions, now),
  ];
}
