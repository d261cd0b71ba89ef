import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { normalizePrefix, parseStatusConfig, type StatusConfig } from "../contracts";
import { backupObjectsArn, type PolicyDocument } from "./iam";

/**
 * The operators' read-only view: a role that `mysql-backup status` (and a person browsing the bucket) runs
 * with. It lists the backup prefix and reads its objects (manifests, verdicts, archives, through the
 * bucket's key), and nothing else: no write, no delete, no tag, no retention change, no queue. The stack's
 * account decides who may assume it (its IAM policies, e.g. an SSO permission set); the trust names the
 * account only.
 */

/** Inputs of the operator role's policy. */
export interface OperatorPolicyInput {
  bucketArn: string;
  keyArn: string;
  region: string;
  prefix: string;
}

/** List and read below the backup prefix, decrypt through S3; nothing that changes anything. */
export function operatorRolePolicy(input: OperatorPolicyInput): PolicyDocument {
  const prefix = normalizePrefix(input.prefix);
  return {
    Version: "2012-10-17",
    Statement: [
      {
        Sid: "ListBackups",
        Effect: "Allow",
        Action: "s3:ListBucket",
        Resource: input.bucketArn,
        Condition: { StringLike: { "s3:prefix": [`${prefix}/*`, `${prefix}/`] } },
      },
      {
        Sid: "ReadBackups",
        Effect: "Allow",
        Action: "s3:GetObject",
        Resource: backupObjectsArn(input.bucketArn, input.prefix),
      },
      {
        Sid: "DecryptThroughS3",
        Effect: "Allow",
        Action: "kms:Decrypt",
        Resource: input.keyArn,
        Condition: { StringEquals: { "kms:ViaService": `s3.${input.region}.amazonaws.com` } },
      },
    ],
  };
}

/** Trust: principals of the stack's own account whose IAM policies allow sts:AssumeRole on this role. */
export function accountAssumeRolePolicy(accountId: string, partition = "aws"): PolicyDocument {
  return {
    Version: "2012-10-17",
    Statement: [
      {
        Sid: "AccountAssumeRole",
        Effect: "Allow",
        Principal: { AWS: `arn:${partition}:iam::${accountId}:root` },
        Action: "sts:AssumeRole",
      },
    ],
  };
}

/** The clusters and replicas `status` must find backups of, as the stack declares them. */
export interface OperatorCluster {
  name: string;
  windowHours?: number;
  hosts: string[];
  /** Its point-in-time recovery, resolved (`resolvePitr`): whether archives are expected, and the RPO. */
  pitr: { enabled: boolean; rpoSeconds: number };
}

/** The `status.json` for this stack: its bucket and prefix, and every cluster and replica it deploys. */
export function renderStatusConfig(i: {
  bucketName: string;
  prefix: string;
  region: string;
  clusters: OperatorCluster[];
}): StatusConfig {
  return parseStatusConfig({
    s3: { bucket: i.bucketName, prefix: i.prefix },
    aws: { region: i.region },
    clusters: i.clusters.map((c) => ({
      name: c.name,
      ...(c.windowHours === undefined ? {} : { windowHours: c.windowHours }),
      hosts: c.hosts,
      pitr: c.pitr,
    })),
  } satisfies StatusConfig);
}

/** Arguments of {@link OperatorRole}. */
export interface OperatorRoleArgs {
  /** The backup bucket, by name (for the status config) and ARN (for the policy). */
  bucketName: pulumi.Input<string>;
  bucketArn: pulumi.Input<string>;
  /** ARN of the bucket's KMS key. */
  keyArn: pulumi.Input<string>;
  /** The bucket's region. */
  region: pulumi.Input<string>;
  /** Key prefix above `<cluster>/`. */
  prefix: string;
  /** The clusters and replicas of the stack. */
  clusters: OperatorCluster[];
  /** Tags for every taggable child. Defaults to none. */
  tags?: Record<string, string>;
}

/** The operators' read-only role, and the `status.json` that goes with it. */
export class OperatorRole extends pulumi.ComponentResource {
  /** ARN of the role (`aws sts assume-role`, or a profile's `role_arn`). */
  readonly roleArn: pulumi.Output<string>;
  /** The status config for this stack (JSON), to save as `status.json`. */
  readonly statusConfig: pulumi.Output<string>;

  constructor(name: string, args: OperatorRoleArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mysql-backup-pipeline:index:OperatorRole", name, {}, opts);
    const identity = aws.getCallerIdentityOutput({}, { parent: this });
    const partition = aws.getPartitionOutput({}, { parent: this });
    const role = new aws.iam.Role(
      `${name}-role`,
      {
        description: "Operators: list and read the backups (mysql-backup status); nothing else",
        assumeRolePolicy: pulumi
          .all([identity.accountId, partition.partition])
          .apply(([account, p]) => JSON.stringify(accountAssumeRolePolicy(account, p))),
        maxSessionDuration: 3600,
        tags: args.tags ?? {},
      },
      { parent: this },
    );
    new aws.iam.RolePolicy(
      `${name}-policy`,
      {
        role: role.id,
        policy: pulumi
          .all([args.bucketArn, args.keyArn, args.region])
          .apply(([bucketArn, keyArn, region]) =>
            JSON.stringify(operatorRolePolicy({ bucketArn, keyArn, region, prefix: args.prefix })),
          ),
      },
      { parent: this },
    );
    this.roleArn = role.arn;
    this.statusConfig = pulumi
      .all([args.bucketName, args.region])
      .apply(
        ([bucketName, region]) =>
          JSON.stringify(
            renderStatusConfig({ bucketName, region, prefix: args.prefix, clusters: args.clusters }),
            null,
            2,
          ) + "\n",
      );
    this.registerOutputs({ roleArn: this.roleArn, statusConfig: this.statusConfig });
  }
}
