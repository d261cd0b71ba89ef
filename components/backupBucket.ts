import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { DEFAULT_PREFIX, normalizePrefix, schemaFor } from "../contracts";
import { accountKeyPolicy, backupBucketPolicy, replicationRolePolicy, s3AssumeRolePolicy } from "./iam";
import { ConfigError, requireInteger, requireOneOf } from "./validation";

/** Object lock retention mode; GOVERNANCE can be lifted by a privileged admin, COMPLIANCE by nobody. */
export type RetentionMode = "GOVERNANCE" | "COMPLIANCE";

/** How long backups stay and where they move while they age. */
export interface RetentionArgs {
  /** Object lock mode of the default retention. Defaults to "GOVERNANCE". */
  mode?: RetentionMode;
  /** Days every new object version is locked against deletion and overwrite. Defaults to 35. */
  days?: number;
  /** Days after which archives expire (must be ≥ `days`). Defaults to `days`. */
  expireDays?: number;
  /** Days after which archives move to STANDARD_IA (≥ 30, or 0 for never). Defaults to 30 when archives live longer, else 0. */
  infrequentAccessDays?: number;
  /**
   * Days after which archives move to GLACIER_IR (0 for never). Instant retrieval on purpose: the
   * verifier and a restore must read any backup without a thaw request. Defaults to 0.
   */
  glacierDays?: number;
  /** Days a noncurrent version is kept before it expires (once its lock ended). Defaults to 7. */
  noncurrentDays?: number;
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
  },
});

/** Arguments of {@link BackupBucket}. */
export interface BackupBucketArgs {
  /** Key prefix above `<cluster>/`; the lifecycle of archives applies below it. Defaults to "backups". */
  prefix?: string;
  /** Retention and lifecycle. Defaults to GOVERNANCE 35 days, expiry after 35, IA after 30. */
  retention?: RetentionArgs;
  /** A second region that receives a replica of every object version (off site twice). Defaults to none. */
  replicationRegion?: string;
  /** Let `pulumi destroy` empty the bucket. Defaults to false (backups survive a destroyed stack). */
  forceDestroy?: boolean;
  /** Tags for every taggable child. Defaults to none. */
  tags?: Record<string, string>;
}

/** The resolved retention, every default applied. */
export interface ResolvedRetention {
  mode: RetentionMode;
  days: number;
  expireDays: number;
  infrequentAccessDays: number;
  glacierDays: number;
  noncurrentDays: number;
}

/** Applies the defaults of {@link RetentionArgs} and rejects inconsistent values, naming the field. */
export function resolveRetention(r: RetentionArgs = {}, where = "retention"): ResolvedRetention {
  const spec = retentionSchema.properties;
  const mode = requireOneOf(`${where}.mode`, r.mode ?? "GOVERNANCE", spec.mode.enum);
  const days = requireInteger(`${where}.days`, r.days ?? 35, spec.days);
  const expireDays = requireInteger(`${where}.expireDays`, r.expireDays ?? days, {
    ...spec.expireDays,
    minimum: days,
  });
  const infrequentAccessDays = requireInteger(
    `${where}.infrequentAccessDays`,
    r.infrequentAccessDays ?? (expireDays > 30 ? 30 : 0),
    spec.infrequentAccessDays,
  );
  const glacierDays = requireInteger(`${where}.glacierDays`, r.glacierDays ?? 0, spec.glacierDays);
  const noncurrentDays = requireInteger(
    `${where}.noncurrentDays`,
    r.noncurrentDays ?? 7,
    spec.noncurrentDays,
  );
  if (infrequentAccessDays !== 0 && infrequentAccessDays < 30) {
    throw new ConfigError(
      `${where}.infrequentAccessDays`,
      `must be 0 (never) or at least 30 (an S3 minimum), got ${infrequentAccessDays}`,
    );
  }
  if (glacierDays !== 0 && infrequentAccessDays !== 0 && glacierDays < infrequentAccessDays + 30) {
    throw new ConfigError(
      `${where}.glacierDays`,
      `must be at least ${infrequentAccessDays + 30} (30 days after infrequentAccessDays) or 0, got ${glacierDays}`,
    );
  }
  for (const [field, value] of [
    ["infrequentAccessDays", infrequentAccessDays],
    ["glacierDays", glacierDays],
  ] as const) {
    if (value !== 0 && value >= expireDays) {
      throw new ConfigError(
        `${where}.${field}`,
        `(${value}) must be below expireDays (${expireDays}) or 0, or the transition never happens`,
      );
    }
  }
  return { mode, days, expireDays, infrequentAccessDays, glacierDays, noncurrentDays };
}

/** The lifecycle rules of the bucket (pure, so tests assert them as data). */
export function lifecycleRules(
  prefix: string,
  r: ResolvedRetention,
): aws.types.input.s3.BucketLifecycleConfigurationRule[] {
  const p = normalizePrefix(prefix);
  const transitions = [
    ...(r.infrequentAccessDays ? [{ days: r.infrequentAccessDays, storageClass: "STANDARD_IA" }] : []),
    ...(r.glacierDays ? [{ days: r.glacierDays, storageClass: "GLACIER_IR" }] : []),
  ];
  return [
    {
      id: "archives",
      status: "Enabled",
      filter: { prefix: p ? `${p}/` : "" },
      transitions,
      expiration: { days: r.expireDays },
    },
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

/**
 * The bucket that holds every backup: customer-managed KMS key with rotation, object lock with a
 * default retention, versioning, all public access blocked, owner-enforced ownership, SSE-KMS by
 * default with a bucket key, a TLS-only and KMS-only policy, lifecycle, and optional replication.
 */
export class BackupBucket extends pulumi.ComponentResource {
  /** The bucket. */
  readonly bucket: aws.s3.Bucket;
  /** The customer-managed key every object is encrypted with. */
  readonly key: aws.kms.Key;
  /** The bucket's name, as backup.json names it. */
  readonly bucketName: pulumi.Output<string>;
  /** The bucket's ARN, which the IAM policies scope. */
  readonly bucketArn: pulumi.Output<string>;
  /** ARN of the bucket key; uploads name it in their SSE header. */
  readonly keyArn: pulumi.Output<string>;
  /** The key prefix above `<cluster>/`. */
  readonly prefix: string;
  /** The retention in force. */
  readonly retention: ResolvedRetention;
  /** The off-site replica bucket, when `replicationRegion` is set. */
  readonly replicaBucket?: aws.s3.Bucket;

  constructor(name: string, args: BackupBucketArgs = {}, opts?: pulumi.ComponentResourceOptions) {
    super("mysql-backup-pipeline:index:BackupBucket", name, {}, opts);
    this.prefix = args.prefix ?? DEFAULT_PREFIX;
    this.retention = resolveRetention(args.retention);
    const tags = args.tags ?? {};

    this.key = backupKey(this, name, tags);
    const source = lockedBucket(this, name, {
      key: this.key,
      forceDestroy: args.forceDestroy ?? false,
      lifecycle: lifecycleRules(this.prefix, this.retention),
      retention: this.retention,
      tags,
    });
    this.bucket = source.bucket;
    if (args.replicationRegion) {
      const region = args.replicationRegion;
      const key = offSiteKey(this, name, region, tags);
      const offSite = lockedBucket(this, `${name}-replica`, {
        region,
        key,
        forceDestroy: false,
        // Replicas arrive in STANDARD_IA already; otherwise they age and expire like the source.
        lifecycle: lifecycleRules(this.prefix, { ...this.retention, infrequentAccessDays: 0 }),
        retention: this.retention,
        tags,
      });
      replication(this, name, { ...source, key: this.key }, { ...offSite, key }, tags);
      this.replicaBucket = offSite.bucket;
    }

    this.bucketName = this.bucket.bucket;
    this.bucketArn = this.bucket.arn;
    this.keyArn = this.key.arn;
    this.registerOutputs({ bucketName: this.bucketName, bucketArn: this.bucketArn, keyArn: this.keyArn });
  }
}

/** The customer-managed key of the backups, rotated, under IAM policies of this account, and its alias. */
function backupKey(parent: pulumi.Resource, name: string, tags: Record<string, string>): aws.kms.Key {
  const identity = aws.getCallerIdentityOutput({}, { parent });
  const partition = aws.getPartitionOutput({}, { parent });
  const key = new aws.kms.Key(
    `${name}-key`,
    {
      description: `Encrypts the MySQL backups of ${name}`,
      enableKeyRotation: true,
      deletionWindowInDays: 30,
      policy: pulumi
        .all([identity.accountId, partition.partition])
        .apply(([account, p]) => JSON.stringify(accountKeyPolicy(account, p))),
      tags,
    },
    { parent },
  );
  new aws.kms.Alias(
    `${name}-key-alias`,
    { name: `alias/${name}-backups`, targetKeyId: key.keyId },
    { parent },
  );
  return key;
}

/** The off-site replica's own key, in its region. */
function offSiteKey(
  parent: pulumi.Resource,
  name: string,
  region: string,
  tags: Record<string, string>,
): aws.kms.Key {
  const identity = aws.getCallerIdentityOutput({}, { parent });
  return new aws.kms.Key(
    `${name}-replica-key`,
    {
      region,
      description: `Encrypts the off-site replica of the MySQL backups of ${name}`,
      enableKeyRotation: true,
      deletionWindowInDays: 30,
      policy: identity.accountId.apply((account) => JSON.stringify(accountKeyPolicy(account))),
      tags,
    },
    { parent },
  );
}

/** What {@link lockedBucket} builds a bucket from. */
interface LockedBucketInput {
  /** The region of the bucket; the provider's when absent. */
  region?: string;
  /** Its default encryption key. */
  key: aws.kms.Key;
  /** Let `pulumi destroy` empty it; otherwise it is also protected. */
  forceDestroy: boolean;
  /** Its lifecycle rules. */
  lifecycle: aws.types.input.s3.BucketLifecycleConfigurationRule[];
  /** Its default object lock retention (mode and days). */
  retention: ResolvedRetention;
  /** Tags for the bucket. */
  tags: Record<string, string>;
}

/** A bucket with every protection of {@link secureBucket}, a default object lock retention and its lifecycle. */
function lockedBucket(
  parent: pulumi.Resource,
  name: string,
  b: LockedBucketInput,
): { bucket: aws.s3.Bucket; versioning: aws.s3.BucketVersioning } {
  const where = b.region ? { region: b.region } : {};
  const bucket = new aws.s3.Bucket(
    `${name}-bucket`,
    { ...where, objectLockEnabled: true, forceDestroy: b.forceDestroy, tags: b.tags },
    { parent, protect: !b.forceDestroy },
  );
  const { versioning } = secureBucket(parent, name, bucket, b.key, b.region ?? "");
  new aws.s3.BucketObjectLockConfiguration(
    `${name}-object-lock`,
    {
      ...where,
      bucket: bucket.bucket,
      objectLockEnabled: "Enabled",
      rule: { defaultRetention: { mode: b.retention.mode, days: b.retention.days } },
    },
    { parent, dependsOn: [versioning] },
  );
  new aws.s3.BucketLifecycleConfiguration(
    `${name}-lifecycle`,
    { ...where, bucket: bucket.bucket, rules: b.lifecycle },
    { parent, dependsOn: [versioning] },
  );
  return { bucket, versioning };
}

/** One side of the replication: a bucket, its key, and its versioning, which replication needs first. */
interface ReplicationSide {
  bucket: aws.s3.Bucket;
  key: aws.kms.Key;
  versioning: aws.s3.BucketVersioning;
}

/** S3 replication of every object version (with its retention) to the off-site bucket, and its role. */
function replication(
  parent: pulumi.Resource,
  name: string,
  source: ReplicationSide,
  destination: ReplicationSide,
  tags: Record<string, string>,
): void {
  const role = new aws.iam.Role(
    `${name}-replication-role`,
    { assumeRolePolicy: JSON.stringify(s3AssumeRolePolicy()), tags },
    { parent },
  );
  new aws.iam.RolePolicy(
    `${name}-replication-policy`,
    {
      role: role.id,
      policy: pulumi
        .all([source.bucket.arn, source.key.arn, destination.bucket.arn, destination.key.arn])
        .apply(([sourceBucketArn, sourceKeyArn, destinationBucketArn, destinationKeyArn]) =>
          JSON.stringify(
            replicationRolePolicy({ sourceBucketArn, sourceKeyArn, destinationBucketArn, destinationKeyArn }),
          ),
        ),
    },
    { parent },
  );
  new aws.s3.BucketReplicationConfig(
    `${name}-replication`,
    {
      bucket: source.bucket.bucket,
      role: role.arn,
      rules: [
        {
          id: "off-site",
          status: "Enabled",
          filter: {},
          deleteMarkerReplication: { status: "Disabled" },
          sourceSelectionCriteria: { sseKmsEncryptedObjects: { status: "Enabled" } },
          destination: {
            bucket: destination.bucket.arn,
            storageClass: "STANDARD_IA",
            encryptionConfiguration: { replicaKmsKeyId: destination.key.arn },
          },
        },
      ],
    },
    { parent, dependsOn: [source.versioning, destination.versioning] },
  );
}

/** Versioning, public access block, ownership, default SSE-KMS and the bucket policy for one bucket. */
function secureBucket(
  parent: pulumi.Resource,
  name: string,
  bucket: aws.s3.Bucket,
  key: aws.kms.Key,
  region: string,
): { versioning: aws.s3.BucketVersioning } {
  const opts = { parent };
  const where = region ? { region } : {};
  const versioning = new aws.s3.BucketVersioning(
    `${name}-versioning`,
    { ...where, bucket: bucket.bucket, versioningConfiguration: { status: "Enabled" } },
    opts,
  );
  const publicAccess = new aws.s3.BucketPublicAccessBlock(
    `${name}-public-access`,
    {
      ...where,
      bucket: bucket.bucket,
      blockPublicAcls: true,
      blockPublicPolicy: true,
      ignorePublicAcls: true,
      restrictPublicBuckets: true,
    },
    opts,
  );
  new aws.s3.BucketOwnershipControls(
    `${name}-ownership`,
    { ...where, bucket: bucket.bucket, rule: { objectOwnership: "BucketOwnerEnforced" } },
    opts,
  );
  new aws.s3.BucketServerSideEncryptionConfiguration(
    `${name}-encryption`,
    {
      ...where,
      bucket: bucket.bucket,
      rules: [
        {
          applyServerSideEncryptionByDefault: { sseAlgorithm: "aws:kms", kmsMasterKeyId: key.arn },
          bucketKeyEnabled: true,
        },
      ],
    },
    opts,
  );
  new aws.s3.BucketPolicy(
    `${name}-policy`,
    {
      ...where,
      bucket: bucket.bucket,
      policy: pulumi
        .all([bucket.arn, key.arn])
        .apply(([bucketArn, keyArn]) => JSON.stringify(backupBucketPolicy({ bucketArn, keyArn }))),
    },
    // The public access block must exist first, or S3 may judge the policy before it is in force.
    { ...opts, dependsOn: [publicAccess] },
  );
  return { versioning };
}
