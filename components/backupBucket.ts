import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { DEFAULT_PREFIX } from "../contracts";
import { backupBucketPolicy } from "./bucketPolicy";
import { accountKeyPolicy, replicationRolePolicy, s3AssumeRolePolicy } from "./iam";
import {
  arrivingInInfrequentAccess,
  lifecycleRules,
  replicaStorageClass,
  resolveRetention,
  type ResolvedRetention,
  type RetentionArgs,
} from "./lifecycle";
import { physicalName } from "./names";

/** Arguments of {@link BackupBucket}. */
export interface BackupBucketArgs {
  /** Key prefix above `<cluster>/`; the lifecycle of archives applies below it. Defaults to "backups". */
  prefix?: string;
  /** Retention and lifecycle. Defaults to GOVERNANCE 35 days, expiry after 35, no transition. */
  retention?: RetentionArgs;
  /**
   * The only principal that may write verdicts (the verifier's role ARN); the bucket policy refuses them
   * to everyone else. Defaults to none: nobody may write a verdict.
   */
  verdictWriterArn?: pulumi.Input<string>;
  /** A second region that receives a replica of every object version (off site twice). Defaults to none. */
  replicationRegion?: string;
  /** Let `pulumi destroy` empty the bucket. Defaults to false (backups survive a destroyed stack). */
  forceDestroy?: boolean;
  /** Tags for every taggable child. Defaults to none. */
  tags?: Record<string, string>;
}

/**
 * The bucket that holds every backup: customer-managed KMS key with rotation, object lock with a
 * default retention, versioning, all public access blocked, owner-enforced ownership, SSE-KMS by
 * default with a bucket key, a policy that allows only TLS, SSE-KMS with the key, write-once backups and
 * verdicts from the verifier alone, lifecycle, and optional replication.
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
    const policy = { prefix: this.prefix, verdictWriterArn: args.verdictWriterArn };
    const source = lockedBucket(this, name, {
      key: this.key,
      policy,
      forceDestroy: args.forceDestroy ?? false,
      lifecycle: lifecycleRules(this.prefix, this.retention),
      retention: this.retention,
      tags,
    });
    this.bucket = source.bucket;
    if (args.replicationRegion) {
      const region = args.replicationRegion;
      const key = offSiteKey(this, name, region, tags);
      const arrivesIn = replicaStorageClass(this.retention);
      const offSite = lockedBucket(this, `${name}-replica`, {
        region,
        key,
        policy,
        forceDestroy: false,
        // Replicas arrive in STANDARD_IA already (when dailies live long enough for it); otherwise they age
        // and expire like the source.
        lifecycle: lifecycleRules(
          this.prefix,
          arrivesIn === "STANDARD_IA" ? arrivingInInfrequentAccess(this.retention) : this.retention,
        ),
        retention: this.retention,
        tags,
      });
      replication(this, name, { ...source, key: this.key }, { ...offSite, key, arrivesIn }, tags);
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
  /** What its policy protects besides TLS and encryption. */
  policy: BucketPolicyScope;
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
  const { versioning } = secureBucket(parent, name, {
    bucket,
    key: b.key,
    region: b.region,
    policy: b.policy,
  });
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

/** The write-once prefix and the verdict writer of a bucket's policy. */
interface BucketPolicyScope {
  prefix: string;
  verdictWriterArn?: pulumi.Input<string>;
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
  destination: ReplicationSide & { arrivesIn: string },
  tags: Record<string, string>,
): void {
  const roleName = `${name}-replication-role`;
  const role = new aws.iam.Role(
    roleName,
    {
      name: physicalName("aws:iam/role:Role", roleName),
      assumeRolePolicy: JSON.stringify(s3AssumeRolePolicy()),
      tags,
    },
    { parent },
  );
  const policyName = `${name}-replication-policy`;
  new aws.iam.RolePolicy(
    policyName,
    {
      name: physicalName("aws:iam/rolePolicy:RolePolicy", policyName),
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
            storageClass: destination.arrivesIn,
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
  b: { bucket: aws.s3.Bucket; key: aws.kms.Key; region?: string; policy: BucketPolicyScope },
): { versioning: aws.s3.BucketVersioning } {
  const { bucket, key } = b;
  const opts = { parent };
  const where = b.region ? { region: b.region } : {};
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
        .all([bucket.arn, key.arn, b.policy.verdictWriterArn])
        .apply(([bucketArn, keyArn, verdictWriterArn]) =>
          JSON.stringify(
            backupBucketPolicy({ bucketArn, keyArn, prefix: b.policy.prefix, verdictWriterArn }),
          ),
        ),
    },
    // The public access block must exist first, or S3 may judge the policy before it is in force.
    { ...opts, dependsOn: [publicAccess] },
  );
  return { versioning };
}
