import { createHash } from "node:crypto";
import * as pulumi from "@pulumi/pulumi";
import { ConfigError } from "./validation";

/**
 * AWS's length limits of the names the stack derives, by resource type token. Every name the stack
 * registers is checked against this table by the tests (for the longest names the config schema
 * accepts), and a type missing from it fails them: a new resource type must state its limit here.
 * `null`: the type has no name of its own (its identity is another resource's, or an id AWS assigns).
 */
export const NAME_LIMITS: Readonly<Record<string, number | null>> = {
  "aws:iam/role:Role": 64,
  "aws:iam/instanceProfile:InstanceProfile": 128,
  "aws:iam/rolePolicy:RolePolicy": 128,
  "aws:sqs/queue:Queue": 80,
  "aws:sns/topic:Topic": 256,
  "aws:cloudwatch/metricAlarm:MetricAlarm": 255,
  "aws:cloudwatch/dashboard:Dashboard": 255,
  "aws:cloudwatch/logGroup:LogGroup": 512,
  "aws:ec2/launchTemplate:LaunchTemplate": 128,
  "aws:autoscaling/group:Group": 255,
  "aws:autoscaling/policy:Policy": 255,
  "aws:kms/alias:Alias": 256,
  "aws:s3/bucket:Bucket": 63,
  "aws:s3/bucketObjectv2:BucketObjectv2": 1024,
  "aws:kms/key:Key": null,
  "aws:sns/topicPolicy:TopicPolicy": null,
  "aws:sns/topicSubscription:TopicSubscription": null,
  "aws:sqs/queuePolicy:QueuePolicy": null,
  "aws:sqs/redriveAllowPolicy:RedriveAllowPolicy": null,
  "aws:s3/bucketPolicy:BucketPolicy": null,
  "aws:s3/bucketVersioning:BucketVersioning": null,
  "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": null,
  "aws:s3/bucketOwnershipControls:BucketOwnershipControls": null,
  "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": null,
  "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration": null,
  "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": null,
  "aws:s3/bucketReplicationConfig:BucketReplicationConfig": null,
  "aws:ec2/vpcEndpoint:VpcEndpoint": null,
};

/**
 * The suffix Pulumi's auto-naming appends to a logical name (`-` and 7 random characters), for the
 * types the stack leaves to auto-naming.
 */
export const AUTONAME_SUFFIX_LENGTH = 8;

/** Characters of the stable hash that ends every explicit name (`-` and 8 hex digits). */
const HASH_SUFFIX_LENGTH = 9;

/**
 * A short, stable physical name for `logical` within the limit of its resource `type`: the logical name (truncated when
 * it is too long) and 8 hex digits of a hash of the stack and the full logical name. Stable across runs
 * (another resource can name it before it exists: the bucket policy names the verifier's role), unique
 * per stack (two stacks of one account never collide), and readable. Used where AWS's limit is below
 * what the config allows (IAM: 64 characters for a role, and names carry cluster and host).
 */
export function physicalName(type: string, logical: string): string {
  const limit = NAME_LIMITS[type];
  if (!limit) throw new Error(`${type} has no name limit in NAME_LIMITS: state it before naming one`);
  const scope = `${pulumi.getProject()}/${pulumi.getStack()}`;
  const hash = createHash("sha256").update(`${scope}\n${logical}`).digest("hex").slice(0, 8);
  const head = logical.slice(0, limit - HASH_SUFFIX_LENGTH).replace(/[-_.]+$/, "");
  return `${head}-${hash}`;
}

/**
 * The longest name a pipeline may have: its children's logical names (up to
 * `-backups-replica-bucket`, 23 characters) plus Pulumi's suffix must fit the 63 characters of a bucket.
 */
export const MAX_PIPELINE_NAME_LENGTH = 63 - AUTONAME_SUFFIX_LENGTH - "-backups-replica-bucket".length;

/** Refuses a pipeline name whose auto-named children would exceed AWS's limits. */
export function checkPipelineName(name: string): string {
  if (name.length > MAX_PIPELINE_NAME_LENGTH) {
    throw new ConfigError(
      "environment",
      `makes the pipeline name "${name}" ${name.length} characters long; at most ${MAX_PIPELINE_NAME_LENGTH} fit S3's 63-character bucket names: choose a shorter environment`,
    );
  }
  return name;
}
