import type * as aws from "@pulumi/aws";
import { normalizePrefix, schemaFor } from "../contracts";
import { RETENTION_TAG, type RetentionClass } from "../contracts/objectTags";
import { ConfigError, requireInteger, requireOneOf } from "./validation";

/** Object lock retention mode; GOVERNANCE can be lifted by a privileged admin, COMPLIANCE by nobody. */
export type RetentionMode = "GOVERNANCE" | "COMPLIANCE";

/**
 * The storage classes a backup may move to, with S3's minimum storage duration of each: an object that
 * leaves the class (moves on, or expires) earlier is billed for the whole minimum anyway.
 */
export const MINIMUM_STORAGE_DAYS = {
  STANDARD_IA: 30,
  GLACIER_IR: 90,
  GLACIER: 90,
  DEEP_ARCHIVE: 180,
} as const;

/** A storage class of {@link MINIMUM_STORAGE_DAYS}. */
export type StorageClass = keyof typeof MINIMUM_STORAGE_DAYS;

/** S3 moves an object to STANDARD_IA only once it is 30 days old. */
const INFREQUENT_ACCESS_MINIMUM_AGE = 30;

/**
 * Grandfather-father-son: the first backup of each UTC month, which the replica tags `retention=monthly`
 * when it creates it, is kept for `expireDays`, the others (`retention=daily`) for the retention's own
 * `expireDays`. Long-kept monthlies may move to colder classes.
 */
export interface MonthlyRetentionArgs {
  /** Days a monthly backup is kept; at least the dailies' `expireDays`. */
  expireDays: number;
  /** Days after which monthly archives move to STANDARD_IA (≥ 30, or 0 for never). Defaults to 0. */
  infrequentAccessDays?: number;
  /** Days after which monthly archives move to GLACIER_IR (instant retrieval; 0 for never). Defaults to 0. */
  glacierDays?: number;
  /**
   * Days after which monthly archives move to DEEP_ARCHIVE (0 for never). A restore from there needs a
   * thaw request first (hours), and the verifier cannot read them: use it only well after verification.
   * Defaults to 0.
   */
  deepArchiveDays?: number;
}

/** How long backups stay and where they move while they age. */
export interface RetentionArgs {
  /** Object lock mode of the default retention. Defaults to "GOVERNANCE". */
  mode?: RetentionMode;
  /** Days every new object version is locked against deletion and overwrite. Defaults to 35. */
  days?: number;
  /** Days after which archives expire (must be ≥ `days`). Defaults to `days`. */
  expireDays?: number;
  /**
   * Days after which archives move to STANDARD_IA (≥ 30, or 0 for never), and at least 30 days before they
   * leave it (IA's minimum storage). Defaults to 30 when archives live 60 days or more, else 0.
   */
  infrequentAccessDays?: number;
  /**
   * Days after which archives move to GLACIER_IR (0 for never), at least 90 days before they expire.
   * Instant retrieval on purpose: the verifier and a restore must read any backup without a thaw request.
   * Defaults to 0.
   */
  glacierDays?: number;
  /** Days a noncurrent version is kept before it expires (once its lock ended). Defaults to 7. */
  noncurrentDays?: number;
  /** Keep monthly backups longer than the others (grandfather-father-son). Defaults to none: all alike. */
  monthly?: MonthlyRetentionArgs;
}

/** A number of days; 36500 (100 years) is the longest default retention S3 Object Lock allows. */
const days = <Minimum extends 0 | 1>(minimum: Minimum) =>
  ({ type: "integer", minimum, maximum: 36500 }) as const;

/**
 * {@link RetentionArgs} as JSON. The stack config's `retention` key is validated with it and
 * resolveRetention checks against its bounds, so each bound is stated here only.
 */
export const retentionSchema = schemaFor<RetentionArgs>()({
  type: "object",
  additionalProperties: false,
  properties: {
    mode: { enum: ["GOVERNANCE", "COMPLIANCE"] },
    days: days(1),
    expireDays: days(1),
    infrequentAccessDays: days(0),
    glacierDays: days(0),
    noncurrentDays: days(1),
    monthly: {
      type: "object",
      additionalProperties: false,
      required: ["expireDays"],
      properties: {
        expireDays: days(1),
        infrequentAccessDays: days(0),
        glacierDays: days(0),
        deepArchiveDays: days(0),
      },
    },
  },
});

/** One move to a colder class. */
export interface Transition {
  days: number;
  storageClass: StorageClass;
}

/** When the archives of one retention class move and expire. */
export interface Tiering {
  transitions: Transition[];
  expireDays: number;
}

/** The resolved retention, every default applied. */
export interface ResolvedRetention {
  mode: RetentionMode;
  days: number;
  noncurrentDays: number;
  /** Every backup (every daily one when `monthly` is set). */
  daily: Tiering;
  /** The monthly backups, when grandfather-father-son is on. */
  monthly?: Tiering;
}

/** Applies the defaults of {@link RetentionArgs} and rejects inconsistent values, naming the field. */
export function resolveRetention(r: RetentionArgs = {}, where = "retention"): ResolvedRetention {
  const spec = retentionSchema.properties;
  const mode = requireOneOf(`${where}.mode`, r.mode ?? "GOVERNANCE", spec.mode.enum);
  const lockDays = requireInteger(`${where}.days`, r.days ?? 35, spec.days);
  const expireDays = requireInteger(`${where}.expireDays`, r.expireDays ?? lockDays, {
    ...spec.expireDays,
    minimum: lockDays,
  });
  const ia = r.infrequentAccessDays ?? (expireDays >= 60 ? INFREQUENT_ACCESS_MINIMUM_AGE : 0);
  const daily = tiering(where, expireDays, [
    ["infrequentAccessDays", ia, "STANDARD_IA"],
    ["glacierDays", r.glacierDays ?? 0, "GLACIER_IR"],
  ]);
  const noncurrentDays = requireInteger(
    `${where}.noncurrentDays`,
    r.noncurrentDays ?? 7,
    spec.noncurrentDays,
  );
  return {
    mode,
    days: lockDays,
    noncurrentDays,
    daily,
    ...(r.monthly ? { monthly: monthlyTiering(`${where}.monthly`, r.monthly, expireDays) } : {}),
  };
}

function monthlyTiering(where: string, m: MonthlyRetentionArgs, dailyExpireDays: number): Tiering {
  const expireDays = requireInteger(`${where}.expireDays`, m.expireDays, {
    ...retentionSchema.properties.monthly.properties.expireDays,
    minimum: dailyExpireDays,
  });
  return tiering(where, expireDays, [
    ["infrequentAccessDays", m.infrequentAccessDays ?? 0, "STANDARD_IA"],
    ["glacierDays", m.glacierDays ?? 0, "GLACIER_IR"],
    ["deepArchiveDays", m.deepArchiveDays ?? 0, "DEEP_ARCHIVE"],
  ]);
}

/**
 * The transitions of one class, checked against S3's rules and its minimum storage durations: each class
 * is entered in the order given, IA only at 30 days or later, and no class is left (for the next or by
 * expiry) before its minimum, which S3 would bill anyway. 0 means never.
 */
function tiering(where: string, expireDays: number, steps: Array<[string, number, StorageClass]>): Tiering {
  const transitions: Array<Transition & { field: string }> = [];
  for (const [field, value, storageClass] of steps) {
    const day = requireInteger(`${where}.${field}`, value, days(0));
    if (day === 0) continue;
    if (storageClass === "STANDARD_IA" && day < INFREQUENT_ACCESS_MINIMUM_AGE) {
      throw new ConfigError(
        `${where}.${field}`,
        `must be 0 (never) or at least ${INFREQUENT_ACCESS_MINIMUM_AGE} (S3 moves objects to STANDARD_IA only once they are 30 days old), got ${day}`,
      );
    }
    const previous = transitions[transitions.length - 1];
    if (previous && day <= previous.days) {
      throw new ConfigError(
        `${where}.${field}`,
        `(${day}) must come after ${where}.${previous.field} (${previous.days}): archives move to colder classes only`,
      );
    }
    transitions.push({ field, days: day, storageClass });
  }
  transitions.forEach((t, i) => {
    const next = transitions[i + 1];
    const leaves = next?.days ?? expireDays;
    const minimum = MINIMUM_STORAGE_DAYS[t.storageClass];
    if (leaves - t.days < minimum) {
      const until = next ? `${where}.${next.field} (${next.days})` : `${where}.expireDays (${expireDays})`;
      throw new ConfigError(
        `${where}.${t.field}`,
        `(${t.days}) leaves archives in ${t.storageClass} for ${leaves - t.days} days until ${until}, but ${t.storageClass} bills at least ${minimum}: set it to 0 (never) or keep archives there ${minimum} days`,
      );
    }
  });
  return {
    transitions: transitions.map(({ days: d, storageClass }) => ({ days: d, storageClass })),
    expireDays,
  };
}

/** The same retention for a bucket whose objects arrive in STANDARD_IA already (the off-site replica). */
export function arrivingInInfrequentAccess(r: ResolvedRetention): ResolvedRetention {
  const skipIa = (t: Tiering): Tiering => ({
    ...t,
    transitions: t.transitions.filter((x) => x.storageClass !== "STANDARD_IA"),
  });
  return { ...r, daily: skipIa(r.daily), ...(r.monthly ? { monthly: skipIa(r.monthly) } : {}) };
}

/**
 * The storage class the off-site replica receives objects in: STANDARD_IA, unless dailies expire before its
 * 30-day minimum storage (then it would bill more than STANDARD).
 */
export function replicaStorageClass(r: ResolvedRetention): "STANDARD_IA" | "STANDARD" {
  return r.daily.expireDays >= MINIMUM_STORAGE_DAYS.STANDARD_IA ? "STANDARD_IA" : "STANDARD";
}

type LifecycleRule = aws.types.input.s3.BucketLifecycleConfigurationRule;

/**
 * The lifecycle rules of the bucket (pure, so tests assert them as data). With grandfather-father-son,
 * dailies and monthlies are told apart by their retention tag; objects without one (verdicts, binlog
 * segments, backups of a replica that does not tag) fall under a catch-all that keeps them as long as the
 * monthlies and never moves them, so nothing is lost early or billed a minimum it does not use. Where two
 * rules apply, S3 honours the shorter expiration: a daily expires with the dailies.
 */
export function lifecycleRules(prefix: string, r: ResolvedRetention): LifecycleRule[] {
  const p = normalizePrefix(prefix);
  const under = p ? `${p}/` : "";
  const tagged = (c: RetentionClass, t: Tiering): LifecycleRule => ({
    id: `archives-${c}`,
    status: "Enabled",
    filter: { and: { prefix: under, tags: { [RETENTION_TAG]: c } } },
    transitions: t.transitions,
    expiration: { days: t.expireDays },
  });
  const archives: LifecycleRule[] = r.monthly
    ? [
        {
          id: "archives",
          status: "Enabled",
          filter: { prefix: under },
          expiration: { days: r.monthly.expireDays },
        },
        tagged("daily", r.daily),
        tagged("monthly", r.monthly),
      ]
    : [
        {
          id: "archives",
          status: "Enabled",
          filter: { prefix: under },
          transitions: r.daily.transitions,
          expiration: { days: r.daily.expireDays },
        },
      ];
  return [
    ...archives,
    {
      id: "abort-incomplete-multipart-uploads",
      status: "Enabled",
      filter: {},
      abortIncompleteMultipartUpload: { daysAfterInitiation: 1 },
    },
    {
      id: "noncurrent-versions",
      status: "Enabled",
      filter: {},
      noncurrentVersionExpiration: { noncurrentDays: r.noncurrentDays },
      expiration: { expiredObjectDeleteMarker: true },
    },
  ];
}
