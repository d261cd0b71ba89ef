import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { verifierRolePolicy } from "./hostPolicies";
import { ec2AssumeRolePolicy, logsKeyPolicy } from "./iam";
import { physicalName } from "./names";
import type { PipelineEndpoints } from "./replicaAgent";

/**
 * The name of a verifier fleet's role, derived from the fleet's name alone: the bucket policy names the
 * role (the only writer of verdicts) before the role exists, and the role's policy names the bucket.
 */
export function verifierRoleName(fleetName: string): string {
  return physicalName("aws:iam/role:Role", `${fleetName}-role`);
}

/** The log group of a verifier fleet: the verifier's and cloud-init's logs of every instance. */
export function verifierLogGroupName(fleetName: string): string {
  return `/mysql-backup/${fleetName}`;
}

/**
 * The log group, encrypted with its own key (whose policy lets CloudWatch Logs of this account and region
 * use it for this group only), kept `retentionDays`.
 */
export function logGroup(
  parent: pulumi.Resource,
  name: string,
  retentionDays: number,
  tags: Record<string, string>,
): aws.cloudwatch.LogGroup {
  const groupName = verifierLogGroupName(name);
  const identity = aws.getCallerIdentityOutput({}, { parent });
  const partition = aws.getPartitionOutput({}, { parent });
  const region = aws.getRegionOutput({}, { parent });
  const key = new aws.kms.Key(
    `${name}-logs-key`,
    {
      description: `Encrypts the logs of ${name}`,
      enableKeyRotation: true,
      deletionWindowInDays: 30,
      policy: pulumi
        .all([identity.accountId, partition.partition, region.region])
        .apply(([accountId, p, r]) =>
          JSON.stringify(logsKeyPolicy({ accountId, region: r, logGroupName: groupName, partition: p })),
        ),
      tags,
    },
    { parent },
  );
  return new aws.cloudwatch.LogGroup(
    `${name}-logs`,
    { name: groupName, retentionInDays: retentionDays, kmsKeyId: key.arn, tags },
    { parent },
  );
}

/** What the instance role's policy is scoped to. */
export interface RoleScope extends Pick<
  PipelineEndpoints,
  "bucketArn" | "keyArn" | "queueArn" | "region" | "prefix"
> {
  logGroupArn: pulumi.Input<string>;
}

/** The instances' role, with exactly the verifier's permissions, and its instance profile. */
export function instanceRole(
  parent: pulumi.Resource,
  name: string,
  scope: RoleScope,
  tags: Record<string, string>,
): { role: aws.iam.Role; profile: aws.iam.InstanceProfile } {
  const role = new aws.iam.Role(
    `${name}-role`,
    {
      name: verifierRoleName(name),
      description: "MySQL backup verifier: restores and checks backups",
      assumeRolePolicy: JSON.stringify(ec2AssumeRolePolicy()),
      tags,
    },
    { parent },
  );
  new aws.iam.RolePolicy(
    `${name}-policy`,
    {
      name: physicalName("aws:iam/rolePolicy:RolePolicy", `${name}-policy`),
      role: role.id,
      policy: pulumi
        .all([scope.bucketArn, scope.keyArn, scope.queueArn, scope.region, scope.logGroupArn])
        .apply(([bucketArn, keyArn, queueArn, region, logGroupArn]) =>
          JSON.stringify(
            verifierRolePolicy({ bucketArn, keyArn, queueArn, region, prefix: scope.prefix, logGroupArn }),
          ),
        ),
    },
    { parent },
  );
  const profile = new aws.iam.InstanceProfile(
    `${name}-profile`,
    {
      name: physicalName("aws:iam/instanceProfile:InstanceProfile", `${name}-profile`),
      role: role.name,
      tags,
    },
    { parent },
  );
  return { role, profile };
}
