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
    const parent = { parent: this };
    const identity = aws.getCallerIdentityOutput({}, parent);
    const partition = aws.getPartitionOutput({}, parent);

    this.key = new aws.kms.Key(
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
      parent,
    );
    new aws.kms.Alias(
      `${name}-key-alias`,
      { name: `alias/${name}-backups`, targetKeyId: this.key.keyId },
      parent,
    );

    this.bucket = new aws.s3.Bucket(
      `${name}-bucket`,
      { objectLockEnabled: true, forceDestroy: args.forceDestroy ?? false, tags },
      { ...parent, protect: !(args.forceDestroy ?? false) },
    );
    const secured = secureBucket(name, this.bucket, this.key, this, "");
    new aws.s3.BucketObjectLockConfiguration(
      `${name}-object-lock`,
      {
        bucket: this.bucket.bucket,
        objectLockEnabled: "Enabled",
        rule: { defaultRetention: { mode: this.retention.mode, days: this.retention.days } },
      },
      { ...parent, dependsOn: [secured.versioning] },
    );
    new aws.s3.BucketLifecycleConfiguration(
      `${name}-lifecycle`,
      { bucket: this.bucket.bucket, rules: lifecycleRules(this.prefix, this.retention) },
      { ...parent, dependsOn: [secured.versioning] },
    );

    if (args.replicationRegion) {
      this.replicaBucket = this.replicate(name, args.replicationRegion, secured.versioning, tags);
    }

    this.bucketName = this.bucket.bucket;
    this.bucketArn = this.bucket.arn;
    this.keyArn = this.key.arn;
    this.registerOutputs({ bucketName: this.bucketName, bucketArn: this.bucketArn, keyArn: this.keyArn });
  }

  /** A second bucket in another region with the same protections, and S3 replication into it. */
  private replicate(
    name: string,
    region: string,
    sourceVersioning: aws.s3.BucketVersioning,
    tags: Record<string, string>,
  ): aws.s3.Bucket {
    const parent = { parent: this };
    const identity = aws.getCallerIdentityOutput({}, parent);
    const key = new aws.kms.Key(
      `${name}-replica-key`,
      {
        region,
        description: `Encrypts the off-site replica of the MySQL backups of ${name}`,
        enableKeyRotation: true,
        deletionWindowInDays: 30,
        policy: identity.accountId.apply((account) => JSON.stringify(accountKeyPolicy(account))),
        tags,
      },
      parent,
    );
    const bucket = new aws.s3.Bucket(
      `${name}-replica-bucket`,
      { region, objectLockEnabled: true, forceDestroy: false, tags },
      { ...parent, protect: true },
    );
    const secured = secureBucket(`${name}-replica`, bucket, key, this, region);
    new aws.s3.BucketObjectLockConfiguration(
      `${name}-replica-object-lock`,
      {
        region,
        bucket: bucket.bucket,
        objectLockEnabled: "Enabled",
        rule: { defaultRetention: { mode: this.retention.mode, days: this.retention.days } },
      },
      { ...parent, dependsOn: [secured.versioning] },
    );
    // Replicas arrive in STANDARD_IA already; otherwise they age and expire like the source.
    new aws.s3.BucketLifecycleConfiguration(
      `${name}-replica-lifecycle`,
      {
        region,
        bucket: bucket.bucket,
        rules: lifecycleRules(this.prefix, { ...this.retention, infrequentAccessDays: 0 }),
      },
      { ...parent, dependsOn: [secured.versioning] },
    );
    const role = new aws.iam.Role(
      `${name}-replication-role`,
      { assumeRolePolicy: JSON.stringify(s3AssumeRolePolicy()), tags },
      parent,
    );
    new aws.iam.RolePolicy(
      `${name}-replication-policy`,
      {
        role: role.id,
        policy: pulumi
          .all([this.bucket.arn, this.key.arn, bucket.arn, key.arn])
          .apply(([sourceBucketArn, sourceKeyArn, destinationBucketArn, destinationKeyArn]) =>
            JSON.stringify(
              replicationRolePolicy({
                sourceBucketArn,
                sourceKeyArn,
                destinationBucketArn,
                destinationKeyArn,
              }),
            ),
          ),
      },
      parent,
    );
    new aws.s3.BucketReplicationConfig(
      `${name}-replication`,
      {
        bucket: this.bucket.bucket,
        role: role.arn,
        rules: [
          {
            id: "off-site",
            status: "Enabled",
            filter: {},
            deleteMarkerReplication: { status: "Disabled" },
            sourceSelectionCriteria: { sseKmsEncryptedObjects: { status: "Enabled" } },
            destination: {
              bucket: bucket.arn,
              storageClass: "STANDARD_IA",
              encryptionConfiguration: { replicaKmsKeyId: key.arn },
            },
          },
        ],
      },
      { ...parent, dependsOn: [sourceVersioning, secured.versioning] },
    );
    return bucket;
  }
}

/** Versioning, public access block, ownership, default SSE-KMS and the bucket policy for one bucket. */
function secureBucket(
  name: string,
  bucket: aws.s3.Bucket,
  key: aws.kms.Key,
  parent: pulumi.Resource,
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
