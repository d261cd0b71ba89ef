import * as aws from "@pulumi/aws";
import type { PolicyResource, StackValidationPolicy } from "@pulumi/policy";

import { BINLOGS_SEGMENT } from "../../contracts/keys";
import { list } from "./documents";
import { configuring } from "./pairing";
import { validateEachOfType } from "./stack";

/**
 * Point-in-time recovery needs the binlog segments from a snapshot's position onwards for as long as that
 * snapshot is kept: a restore of the oldest snapshot to a point after it replays them. Binlog segments
 * (`<prefix>/<cluster>/binlogs/…`) carry no retention tag, so the lifecycle rules that can expire them are
 * the enabled rules without a tag filter whose prefix reaches the archive (empty, at most `<prefix>/<cluster>/`,
 * or inside `…/binlogs/`); S3 applies the shortest. The longest any backup is kept is the longest expiration
 * of any enabled rule. The first must not be shorter than the second.
 */
export const binlogRetentionCoversSnapshots: StackValidationPolicy = {
  name: "s3-binlog-retention-covers-snapshots",
  description:
    "Binlog segments (point-in-time recovery) are kept at least as long as the snapshots they roll forward.",
  enforcementLevel: "mandatory",
  severity: "high",
  validateStack: validateEachOfType(aws.s3.Bucket, (bucket, stack, report) => {
    const rules = lifecycleRules(stack, bucket);
    const snapshots = Math.max(0, ...rules.map(expirationDays).filter((d): d is number => d !== null));
    if (snapshots === 0) return;
    const binlogRules = rules.filter(reachesBinlogs);
    const expiring = binlogRules.map((r) => ({ id: String(r.id ?? "?"), days: expirationDays(r) }));
    const shortest = expiring
      .filter((r): r is { id: string; days: number } => r.days !== null)
      .sort((a, b) => a.days - b.days)[0];
    if (shortest === undefined || shortest.days >= snapshots) return;
    report(
      `Bucket '${bucket.name}' expires binlog segments after ${shortest.days} days (lifecycle rule '${shortest.id}'), ` +
        `but keeps snapshots up to ${snapshots} days: the oldest snapshots could no longer be rolled forward to a ` +
        `point in time. Remove rule '${shortest.id}' or set its expiration to at least ${snapshots} days, so the binlog ` +
        `archive (\`<prefix>/<cluster>/${BINLOGS_SEGMENT}/\`) outlives the longest-kept snapshot (components/lifecycle.ts).`,
    );
  }),
};

/** The bucket's enabled lifecycle rules. */
function lifecycleRules(stack: PolicyResource[], bucket: PolicyResource): Record<string, unknown>[] {
  return configuring(stack, "bucket", bucket)
    .filter((r) => r.isType(aws.s3.BucketLifecycleConfiguration))
    .flatMap((c) => list(c.props.rules))
    .filter((rule): rule is Record<string, unknown> => typeof rule === "object" && rule !== null)
    .filter((rule) => rule.status === "Enabled");
}

function expirationDays(rule: Record<string, unknown>): number | null {
  const expiration = rule.expiration as { days?: unknown } | undefined;
  return typeof expiration?.days === "number" && expiration.days > 0 ? expiration.days : null;
}

/** A rule without a tag filter whose prefix reaches `<prefix>/<cluster>/binlogs/`. */
function reachesBinlogs(rule: Record<string, unknown>): boolean {
  const filter = (rule.filter ?? {}) as {
    prefix?: unknown;
    tag?: unknown;
    and?: { tags?: unknown; prefix?: unknown };
  };
  if (filter.tag !== undefined || filter.and?.tags !== undefined) return false;
  const prefix = String(filter.prefix ?? filter.and?.prefix ?? (rule.prefix as string | undefined) ?? "");
  if (prefix.includes(`/${BINLOGS_SEGMENT}/`) || prefix.startsWith(`${BINLOGS_SEGMENT}/`)) return true;
  return prefix.split("/").filter(Boolean).length <= 2;
}

/** Every point-in-time recovery rule. */
export const pitrRules = [binlogRetentionCoversSnapshots];
