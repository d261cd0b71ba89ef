import {
  BINLOG_DEFAULTS,
  DEFAULT_PREFIX,
  HEALTH_EXIT_CODE,
  NAME_PATTERN,
  clusterPrefix,
  hostPrefix,
  parseStatusReport,
  type ClusterStatus,
  type HealthReason,
  type HostStatus,
  type StatusConfig,
  type StatusReport,
} from "../../contracts";
import { PipelineError } from "../common/errors";
import { humanBytes, humanDuration, renderTable } from "../common/output";
import { judgeHost, worst, type HealthPolicy } from "./health";
import { archivedHosts, judgeArchives, withArchive } from "./pitr";
import type { StatusReader } from "./scan";

/**
 * `status` as a whole: which clusters and hosts to show (found in S3, expected by the config, narrowed by
 * `--cluster` / `--host`), their judgement, and the report in both forms (JSON and a table).
 */

/** `--cluster` and `--host`. */
export interface StatusFilter {
  cluster?: string;
  host?: string;
}

/** The alarms' defaults (components/alerting.ts: windowHours 26; the queue's oldest-message alarm: 6 h). */
export const STATUS_DEFAULTS = { windowHours: 26, verifyWithinHours: 6 } as const;

const namePattern = new RegExp(NAME_PATTERN);

/** Reads S3 and judges every cluster and host the filter selects; the report is validated before it returns. */
export async function collectStatus(
  reader: StatusReader,
  config: StatusConfig,
  filter: StatusFilter,
  now: Date,
): Promise<StatusReport> {
  for (const [flag, value] of Object.entries(filter)) {
    if (value !== undefined && !namePattern.test(value)) {
      throw new PipelineError(
        "Usage",
        `--${flag} "${value}" is not a valid name (${NAME_PATTERN})`,
        "mysql-backup status --help",
      );
    }
  }
  const root = reader.url;
  const expected = new Map((config.clusters ?? []).map((c) => [c.name, c]));
  const found = filter.cluster === undefined ? await reader.clusters() : [filter.cluster];
  const names = [...new Set([...found, ...(filter.cluster === undefined ? expected.keys() : [])])].sort();
  const clusters: ClusterStatus[] = [];
  for (const cluster of names) {
    const status = await clusterStatus(reader, config, cluster, filter, now);
    if (status !== null) clusters.push(status);
  }
  if (clusters.length === 0) {
    const what = [filter.cluster && `cluster ${filter.cluster}`, filter.host && `host ${filter.host}`]
      .filter(Boolean)
      .join(" and ");
    throw new PipelineError(
      "Usage",
      `no backups of ${what || "any cluster"} under ${root}`,
      found.length > 0 && filter.cluster === undefined
        ? `the clusters there are ${found.join(", ")}`
        : "check s3.bucket and s3.prefix in the config (they must match the replicas' backup.json)",
    );
  }
  const state = worst(clusters.map((c) => c.health));
  return parseStatusReport({
    formatVersion: 1,
    generatedAt: now.toISOString(),
    bucket: reader.bucket,
    prefix: reader.prefix,
    health: state,
    exitCode: HEALTH_EXIT_CODE[state],
    clusters,
    reads: { ...reader.counts },
  });
}

/** One cluster's hosts, judged; null when `--host` alone names a host this cluster does not have. */
async function clusterStatus(
  reader: StatusReader,
  config: StatusConfig,
  cluster: string,
  filter: StatusFilter,
  now: Date,
): Promise<ClusterStatus | null> {
  const { host } = filter;
  const expected = (config.clusters ?? []).find((c) => c.name === cluster);
  const policy: HealthPolicy = {
    windowHours: expected?.windowHours ?? config.windowHours ?? STATUS_DEFAULTS.windowHours,
    verifyWithinHours: config.verifyWithinHours ?? STATUS_DEFAULTS.verifyWithinHours,
  };
  const pitr = {
    expected: expected?.pitr?.enabled ?? false,
    rpoSeconds: expected?.pitr?.rpoSeconds ?? BINLOG_DEFAULTS.rpoSeconds,
  };
  const found = await reader.hosts(cluster);
  const archived = await archivedHosts(reader, cluster);
  const all = [...new Set([...found, ...archived, ...(expected?.hosts ?? [])])].sort();
  // A host named with its cluster is judged even without backups (critical); named alone, only where it is.
  const hosts = host === undefined ? all : all.includes(host) || filter.cluster !== undefined ? [host] : [];
  if (hosts.length === 0 && host !== undefined) return null;
  // A "directory" found in S3 is a host only if it holds backups or a binlog archive; one the config or
  // --host names always is.
  const named = new Set([...(expected?.hosts ?? []), ...(host === undefined ? [] : [host])]);
  const scanned = await reader.scanHosts(cluster, hosts);
  const archives = await judgeArchives(reader, cluster, scanned, archived, pitr, now);
  const scans = scanned.filter(
    (s) => s.backups.length > 0 || named.has(s.host) || (archives.get(s.host)?.status?.epochs ?? 0) > 0,
  );
  const judged: HostStatus[] = scans.map((scan) =>
    withArchive(
      judgeHost(scan, policy, now, {
        url: `s3://${reader.bucket}/${hostPrefix(reader.prefix, cluster, scan.host)}`,
        cluster,
      }),
      archives.get(scan.host),
    ),
  );
  const reasons: HealthReason[] =
    judged.length === 0
      ? [
          {
            state: "critical",
            message: `no backups of cluster ${cluster} under s3://${reader.bucket}/${clusterPrefix(reader.prefix, cluster)}: are its replicas installed (pulumi up) and their timers enabled?`,
          },
        ]
      : [];
  return {
    cluster,
    health: worst([...judged.map((h) => h.health), ...reasons.map((r) => r.state)]),
    windowHours: policy.windowHours,
    reasons,
    hosts: judged,
  };
}

/** The key prefix `status` reads, from the config. */
export function statusPrefix(config: StatusConfig): string {
  return config.s3.prefix ?? DEFAULT_PREFIX;
}

const STATE_WORD = { ok: "OK", warning: "WARNING", critical: "CRITICAL" } as const;

/**
 * The report for people. The first line is the verdict a Nagios-style check shows ("CRITICAL: …"), then one
 * row per host, then every finding that is not ok with what to do.
 */
export function summarizeStatus(report: StatusReport): string {
  const hosts = report.clusters.flatMap((c) => c.hosts.map((h) => ({ cluster: c.cluster, ...h })));
  const count = (state: string) => hosts.filter((h) => h.health === state).length;
  const tally = (["ok", "warning", "critical"] as const)
    .filter((s) => count(s) > 0)
    .map((s) => `${count(s)} ${s}`)
    .join(", ");
  const first = hosts.find((h) => h.health === report.health && h.health !== "ok");
  const headline =
    `${STATE_WORD[report.health]}: ${hosts.length} host(s) in ${report.clusters.length} cluster(s)` +
    (tally ? `: ${tally}` : "") +
    (first ? ` — ${first.cluster}/${first.host}: ${first.reasons[0].message}` : "");
  const rows = hosts.map((h) => [
    h.cluster,
    h.host,
    h.health === "ok" ? "ok" : STATE_WORD[h.health],
    h.newestBackup?.backupId ?? "-",
    h.newestBackup ? humanDuration(h.newestBackup.ageSeconds) : "-",
    h.newestBackup ? humanBytes(h.newestBackup.archiveBytes) : "-",
    h.newestBackup ? `${Math.round(h.newestBackup.lockMs)} ms` : "-",
    h.newestVerified?.backupId ?? "-",
    h.newestVerified ? humanDuration(h.newestVerified.ageSeconds) : "-",
    h.newestVerified ? `${Math.round(h.newestVerified.restoreSeconds)} s` : "-",
    sinceText(h),
  ]);
  const table = renderTable(
    [
      "CLUSTER",
      "HOST",
      "HEALTH",
      "NEWEST BACKUP",
      "AGE",
      "SIZE",
      "LOCK",
      "NEWEST VERIFIED",
      "AGE",
      "RESTORE",
      "SINCE VERIFIED",
    ],
    rows,
  );
  const findings = [
    ...report.clusters.flatMap((c) =>
      c.reasons.map((r) => `${c.cluster}: ${STATE_WORD[r.state]} ${r.message}`),
    ),
    ...hosts.flatMap((h) =>
      h.reasons
        .filter((r) => r.state !== "ok")
        .map((r) => `${h.cluster}/${h.host}: ${STATE_WORD[r.state]} ${r.message}`),
    ),
  ];
  const archives = pitrTable(hosts);
  return [
    headline,
    "",
    table,
    ...(archives === null ? [] : ["", archives]),
    ...(findings.length > 0 ? ["", ...findings] : []),
  ].join("\n");
}

/** The binlog archives' table, or null when no host has one. */
function pitrTable(hosts: Array<HostStatus & { cluster: string }>): string | null {
  const rows = hosts.flatMap(({ cluster, host, binlog }) => {
    if (binlog === null) return [];
    const window = binlog.archivedWindow;
    return [
      [
        cluster,
        host,
        binlog.lagSeconds === null ? "-" : humanDuration(binlog.lagSeconds),
        `${binlog.rpoSeconds} s`,
        binlog.silentSeconds === null ? "-" : `${humanDuration(binlog.silentSeconds)} ago`,
        window === null ? "none" : `${window.from} (${window.fromBackupId})`,
        window === null ? "-" : humanDuration(window.seconds),
        binlog.provenWindow === null ? "not proven yet" : humanDuration(binlog.provenWindow.seconds),
        binlog.lastDrill === null
          ? "none yet"
          : `${binlog.lastDrill.verdict} ${binlog.lastDrill.verifiedAt}${binlog.lastDrill.rtoSeconds === null ? "" : `, RTO ${binlog.lastDrill.rtoSeconds} s`}`,
        `${binlog.gaps.filter((g) => g.resolvedBy === null).length} open / ${binlog.gaps.length}`,
      ],
    ];
  });
  if (rows.length === 0) return null;
  return renderTable(
    [
      "CLUSTER",
      "HOST",
      "BINLOG LAG",
      "RPO",
      "LAST UPLOAD",
      "RESTORABLE FROM",
      "WINDOW",
      "PROVEN",
      "LAST DRILL",
      "GAPS",
    ],
    rows,
  );
}

function sinceText(h: HostStatus): string {
  const counts = new Map<string, number>();
  for (const b of h.sinceVerified) counts.set(b.state, (counts.get(b.state) ?? 0) + 1);
  return [...counts].map(([state, n]) => `${n} ${state}`).join(", ") || "-";
}
