/**
 * The real stack program (index.ts) under Pulumi mocks: the exact resource tree, every security
 * property asserted as the exact value or statement, tags, secrets, and config errors.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { REQUIRED_TAG_KEYS, parseStatusConfig } from "../../contracts";
import {
  MOCK_ROLE_CREATED,
  MOCK_SECRET_PREFIX,
  PROJECT_ROOT,
  readStackConfig,
  simulateStack,
  type RegisteredResource,
  type StackRun,
} from "../../policies/stackSimulator";

let dev: StackRun;
let prod: StackRun;

beforeAll(async () => {
  dev = await simulateStack("Pulumi.dev.yaml");
  prod = await simulateStack("Pulumi.prod.yaml");
}, 180_000);

const P = "mysql-backups-dev";

/** The dev stack's `verifier` config key, to change one field of in a variant. */
const devVerifier = (): Record<string, unknown> =>
  JSON.parse(readStackConfig("Pulumi.dev.yaml").config["mysql-backup-pipeline:verifier"]) as Record<
    string,
    unknown
  >;

function one(run: StackRun, type: string, name: string): RegisteredResource {
  const found = run.resources.filter((r) => r.type === type && r.name === name);
  if (found.length !== 1) throw new Error(`expected one ${type} ${name}, found ${found.length}`);
  return found[0];
}

function childrenOf(run: StackRun, type: string, name: string): string[] {
  const parent = one(run, type, name);
  return run.resources
    .filter((r) => r.parent === parent.urn)
    .map((r) => `${r.type} ${r.name}`)
    .sort();
}

const policyOf = (r: RegisteredResource): { Statement: Array<Record<string, unknown>> } =>
  JSON.parse(r.inputs.policy as string) as { Statement: Array<Record<string, unknown>> };
const statement = (r: RegisteredResource, sid: string): Record<string, unknown> | undefined =>
  policyOf(r).Statement.find((s) => s.Sid === sid);

describe("resource tree", () => {
  test("the pipeline composes exactly the six kinds of components (one agent per replica)", () => {
    expect(childrenOf(dev, "mysql-backup-pipeline:index:MysqlBackupPipeline", P)).toEqual(
      [
        `mysql-backup-pipeline:index:Alerting ${P}-alerts`,
        `mysql-backup-pipeline:index:BackupBucket ${P}-backups`,
        `mysql-backup-pipeline:index:OperatorRole ${P}-operators`,
        `mysql-backup-pipeline:index:ReplicaAgent ${P}-orders-orders-db2`,
        `mysql-backup-pipeline:index:VerificationQueue ${P}-verification`,
        `mysql-backup-pipeline:index:VerifierFleet ${P}-verifier`,
      ].sort(),
    );
    expect(
      childrenOf(prod, "mysql-backup-pipeline:index:MysqlBackupPipeline", "mysql-backups-prod").filter((c) =>
        c.includes("ReplicaAgent"),
      ),
    ).toEqual([
      "mysql-backup-pipeline:index:ReplicaAgent mysql-backups-prod-billing-billing-db2",
      "mysql-backup-pipeline:index:ReplicaAgent mysql-backups-prod-orders-orders-db3",
    ]);
  });

  test("BackupBucket children (no replication in dev)", () => {
    const b = `${P}-backups`;
    expect(childrenOf(dev, "mysql-backup-pipeline:index:BackupBucket", b)).toEqual(
      [
        `aws:kms/key:Key ${b}-key`,
        `aws:kms/alias:Alias ${b}-key-alias`,
        `aws:s3/bucket:Bucket ${b}-bucket`,
        `aws:s3/bucketVersioning:BucketVersioning ${b}-versioning`,
        `aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock ${b}-public-access`,
        `aws:s3/bucketOwnershipControls:BucketOwnershipControls ${b}-ownership`,
        `aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration ${b}-encryption`,
        `aws:s3/bucketPolicy:BucketPolicy ${b}-policy`,
        `aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration ${b}-object-lock`,
        `aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration ${b}-lifecycle`,
      ].sort(),
    );
  });

  test("BackupBucket with replication adds the off-site bucket, its key, protections and the replication role", () => {
    const b = "mysql-backups-prod-backups";
    const added = childrenOf(prod, "mysql-backup-pipeline:index:BackupBucket", b).filter((c) =>
      /replica|replication/.test(c),
    );
    expect(added).toEqual(
      [
        `aws:kms/key:Key ${b}-replica-key`,
        `aws:s3/bucket:Bucket ${b}-replica-bucket`,
        `aws:s3/bucketVersioning:BucketVersioning ${b}-replica-versioning`,
        `aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock ${b}-replica-public-access`,
        `aws:s3/bucketOwnershipControls:BucketOwnershipControls ${b}-replica-ownership`,
        `aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration ${b}-replica-encryption`,
        `aws:s3/bucketPolicy:BucketPolicy ${b}-replica-policy`,
        `aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration ${b}-replica-object-lock`,
        `aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration ${b}-replica-lifecycle`,
        `aws:iam/role:Role ${b}-replication-role`,
        `aws:iam/rolePolicy:RolePolicy ${b}-replication-policy`,
        `aws:s3/bucketReplicationConfig:BucketReplicationConfig ${b}-replication`,
      ].sort(),
    );
  });

  test("VerificationQueue children", () => {
    const q = `${P}-verification`;
    expect(childrenOf(dev, "mysql-backup-pipeline:index:VerificationQueue", q)).toEqual(
      [
        `aws:sqs/queue:Queue ${q}-queue`,
        `aws:sqs/queue:Queue ${q}-dlq`,
        `aws:sqs/redriveAllowPolicy:RedriveAllowPolicy ${q}-dlq-redrive-allow`,
        `aws:sqs/queuePolicy:QueuePolicy ${q}-queue-policy`,
        `aws:sqs/queuePolicy:QueuePolicy ${q}-dlq-policy`,
      ].sort(),
    );
  });

  test("VerifierFleet children", () => {
    const v = `${P}-verifier`;
    expect(childrenOf(dev, "mysql-backup-pipeline:index:VerifierFleet", v)).toEqual(
      [
        `aws:iam/role:Role ${v}-role`,
        `aws:iam/rolePolicy:RolePolicy ${v}-policy`,
        `aws:iam/instanceProfile:InstanceProfile ${v}-profile`,
        `aws:kms/key:Key ${v}-logs-key`,
        `aws:cloudwatch/logGroup:LogGroup ${v}-logs`,
        `aws:ec2/vpcEndpoint:VpcEndpoint ${v}-s3-endpoint`,
        `aws:s3/bucketObjectv2:BucketObjectv2 ${v}-bundle`,
        `aws:ec2/launchTemplate:LaunchTemplate ${v}-template`,
        `aws:autoscaling/group:Group ${v}-group`,
        `aws:autoscaling/policy:Policy ${v}-scale-out`,
        `aws:autoscaling/policy:Policy ${v}-scale-to-zero`,
        `aws:cloudwatch/metricAlarm:MetricAlarm ${v}-backlog-exceeds-fleet`,
        `aws:cloudwatch/metricAlarm:MetricAlarm ${v}-queue-idle`,
      ].sort(),
    );
  });

  test("ReplicaAgent children", () => {
    const a = `${P}-orders-orders-db2`;
    expect(childrenOf(dev, "mysql-backup-pipeline:index:ReplicaAgent", a)).toEqual(
      [
        `aws:iam/role:Role ${a}-role`,
        `aws:iam/rolePolicy:RolePolicy ${a}-policy`,
        `aws:iam/instanceProfile:InstanceProfile ${a}-profile`,
        `command:remote:Command ${a}-stage`,
        `command:remote:CopyToRemote ${a}-copy-mysql-backup-cjs`,
        `command:remote:CopyToRemote ${a}-copy-backup-json`,
        `command:remote:CopyToRemote ${a}-copy-mysql-backup-service`,
        `command:remote:CopyToRemote ${a}-copy-mysql-backup-timer`,
        `command:remote:CopyToRemote ${a}-copy-mysql-backup-binlog-service`,
        `command:remote:Command ${a}-install`,
        `command:remote:Command ${a}-check`,
      ].sort(),
    );
  });

  test("OperatorRole children: a role and its read-only policy", () => {
    const o = `${P}-operators`;
    expect(childrenOf(dev, "mysql-backup-pipeline:index:OperatorRole", o)).toEqual(
      [`aws:iam/role:Role ${o}-role`, `aws:iam/rolePolicy:RolePolicy ${o}-policy`].sort(),
    );
  });

  test("Alerting children: key, topic, policy, subscription, eleven alarms per cluster (four of its binlog archive, three of its point-in-time chain and drill) and one per replica, two queue alarms, dashboard", () => {
    const a = `${P}-alerts`;
    expect(childrenOf(dev, "mysql-backup-pipeline:index:Alerting", a)).toEqual(
      [
        `aws:kms/key:Key ${a}-key`,
        `aws:sns/topic:Topic ${a}-topic`,
        `aws:sns/topicPolicy:TopicPolicy ${a}-topic-policy`,
        `aws:sns/topicSubscription:TopicSubscription ${a}-email-0`,
        `aws:cloudwatch/metricAlarm:MetricAlarm ${a}-orders-no-verified-backup`,
        `aws:cloudwatch/metricAlarm:MetricAlarm ${a}-orders-verification-failed`,
        `aws:cloudwatch/metricAlarm:MetricAlarm ${a}-orders-backup-failed`,
        `aws:cloudwatch/metricAlarm:MetricAlarm ${a}-orders-backup-abandoned`,
        `aws:cloudwatch/metricAlarm:MetricAlarm ${a}-orders-orders-db2-backup-missing`,
        `aws:cloudwatch/metricAlarm:MetricAlarm ${a}-orders-binlog-lag`,
        `aws:cloudwatch/metricAlarm:MetricAlarm ${a}-orders-binlog-gap`,
        `aws:cloudwatch/metricAlarm:MetricAlarm ${a}-orders-binlog-silent`,
        `aws:cloudwatch/metricAlarm:MetricAlarm ${a}-orders-binlog-segment-failed`,
        `aws:cloudwatch/metricAlarm:MetricAlarm ${a}-orders-pitr-chain-failed`,
        `aws:cloudwatch/metricAlarm:MetricAlarm ${a}-orders-pitr-chain-silent`,
        `aws:cloudwatch/metricAlarm:MetricAlarm ${a}-orders-pitr-drill-failed`,
        `aws:cloudwatch/metricAlarm:MetricAlarm ${a}-dlq-not-empty`,
        `aws:cloudwatch/metricAlarm:MetricAlarm ${a}-oldest-message-too-old`,
        `aws:cloudwatch/dashboard:Dashboard ${a}-dashboard`,
      ].sort(),
    );
  });

  test("every child's name is derived from its component's name", () => {
    for (const run of [dev, prod]) {
      const byUrn = new Map(run.resources.map((r) => [r.urn, r]));
      for (const r of run.resources.filter((x) => x.parent)) {
        const parent = byUrn.get(r.parent!)!;
        expect({ child: r.name, prefixed: r.name.startsWith(`${parent.name}-`) }).toEqual({
          child: r.name,
          prefixed: true,
        });
      }
    }
  });

  test("every resource but the pipeline itself has a parent (nothing leaks to the stack root)", () => {
    const orphans = dev.resources.filter((r) => !r.parent).map((r) => r.name);
    expect(orphans).toEqual([P]);
  });

  test("stack outputs: bucket, queue, topic, roles, dashboard", () => {
    expect(Object.keys(dev.outputs).sort()).toEqual(
      [
        "alertTopicArn",
        "bucketName",
        "bundleSha256",
        "dashboardName",
        "deadLetterQueueUrl",
        "kmsKeyArn",
        "operatorRoleArn",
        "queueUrl",
        "replicaInstanceProfiles",
        "replicaRoleArns",
        "statusConfig",
        "verifierGroupName",
        "verifierLogGroupName",
        "verifierRoleArn",
        "verifierS3EndpointId",
      ].sort(),
    );
    expect(Object.keys(dev.outputs.replicaRoleArns as object)).toEqual(["orders/orders-db2"]);
    expect(dev.outputs.dashboardName).toBe(`${P}-alerts`);
  });

  test("statusConfig is the status.json of the stack: its bucket, every cluster with its replicas and PITR", () => {
    const config = parseStatusConfig(JSON.parse(prod.outputs.statusConfig as string));
    expect(config.s3).toEqual({ bucket: prod.outputs.bucketName, prefix: "backups" });
    expect(config.clusters?.map((c) => [c.name, c.hosts])).toEqual([
      ["orders", ["orders-db3"]],
      ["billing", ["billing-db2"]],
    ]);
    // PITR is on by default; billing asks for an RPO of 5 s: status judges each archive's lag by its own.
    expect(config.clusters?.map((c) => [c.name, c.pitr])).toEqual([
      ["orders", { enabled: true, rpoSeconds: 10 }],
      ["billing", { enabled: true, rpoSeconds: 5 }],
    ]);
  });
});

/** Whether a resource type accepts `tags`, read from the provider's own type declarations. */
function isTaggable(type: string): boolean {
  const [pkg, mod] = type.split(":");
  if (pkg !== "aws") return false;
  const [dir, file] = mod.split("/");
  const dts = path.join(PROJECT_ROOT, "node_modules", "@pulumi", "aws", dir, `${file}.d.ts`);
  const args = /export interface \w+Args \{([\s\S]*?)\n\}/.exec(fs.readFileSync(dts, "utf8"));
  return !!args && /\n\s+tags\?:/.test(args[1]);
}

describe("tags", () => {
  test("every taggable resource carries the pipeline's required tags", () => {
    for (const run of [dev, prod]) {
      const taggable = run.resources.filter((r) => r.custom && isTaggable(r.type));
      expect(taggable.length).toBeGreaterThan(20);
      for (const r of taggable) {
        const tags = r.inputs.tags;
        // Auto Scaling groups take a list of {key, value, propagateAtLaunch}.
        const keys = Array.isArray(tags)
          ? (tags as Array<{ key: string }>).map((t) => t.key)
          : Object.keys((tags as object) ?? {});
        expect({ resource: r.name, missing: REQUIRED_TAG_KEYS.filter((k) => !keys.includes(k)) }).toEqual({
          resource: r.name,
          missing: [],
        });
      }
    }
  });

  test("instances and their volumes are tagged at launch", () => {
    const lt = one(dev, "aws:ec2/launchTemplate:LaunchTemplate", `${P}-verifier-template`);
    const specs = lt.inputs.tagSpecifications as Array<{
      resourceType: string;
      tags: Record<string, string>;
    }>;
    expect(specs.map((s) => s.resourceType).sort()).toEqual(["instance", "volume"]);
    for (const s of specs)
      expect(Object.keys(s.tags)).toEqual(expect.arrayContaining([...REQUIRED_TAG_KEYS]));
  });
});

describe("BackupBucket security", () => {
  const b = `${P}-backups`;
  test("customer-managed KMS key with rotation", () => {
    const key = one(dev, "aws:kms/key:Key", `${b}-key`);
    expect(key.inputs.enableKeyRotation).toBe(true);
    expect(key.inputs.deletionWindowInDays).toBe(30);
  });

  test("bucket is created with object lock enabled", () => {
    expect(one(dev, "aws:s3/bucket:Bucket", `${b}-bucket`).inputs.objectLockEnabled).toBe(true);
  });

  test("default retention from config (dev: GOVERNANCE 7 days; prod: COMPLIANCE 35 days)", () => {
    expect(
      one(dev, "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration", `${b}-object-lock`)
        .inputs,
    ).toMatchObject({
      objectLockEnabled: "Enabled",
      rule: { defaultRetention: { mode: "GOVERNANCE", days: 7 } },
    });
    expect(
      one(
        prod,
        "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration",
        "mysql-backups-prod-backups-object-lock",
      ).inputs.rule,
    ).toEqual({ defaultRetention: { mode: "COMPLIANCE", days: 35 } });
  });

  test("versioning enabled", () => {
    expect(
      one(dev, "aws:s3/bucketVersioning:BucketVersioning", `${b}-versioning`).inputs.versioningConfiguration,
    ).toEqual({
      status: "Enabled",
    });
  });

  test("all four public access blocks", () => {
    expect(
      one(dev, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", `${b}-public-access`).inputs,
    ).toMatchObject({
      blockPublicAcls: true,
      blockPublicPolicy: true,
      ignorePublicAcls: true,
      restrictPublicBuckets: true,
    });
  });

  test("ownership BucketOwnerEnforced (ACLs disabled)", () => {
    expect(
      one(dev, "aws:s3/bucketOwnershipControls:BucketOwnershipControls", `${b}-ownership`).inputs.rule,
    ).toEqual({
      objectOwnership: "BucketOwnerEnforced",
    });
  });

  test("default SSE-KMS with the bucket's key and a bucket key", () => {
    const sse = one(
      dev,
      "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
      `${b}-encryption`,
    );
    expect(sse.inputs.rules).toEqual([
      {
        applyServerSideEncryptionByDefault: {
          sseAlgorithm: "aws:kms",
          kmsMasterKeyId: dev.outputs.kmsKeyArn,
        },
        bucketKeyEnabled: true,
      },
    ]);
  });

  const bucketArn = (): string => `arn:aws:s3:::${dev.outputs.bucketName as string}`;
  const bucketPolicy = (): RegisteredResource => one(dev, "aws:s3/bucketPolicy:BucketPolicy", `${b}-policy`);

  test("bucket policy denies non-TLS requests", () => {
    expect(statement(bucketPolicy(), "DenyInsecureTransport")).toEqual({
      Sid: "DenyInsecureTransport",
      Effect: "Deny",
      Principal: "*",
      Action: "s3:*",
      Resource: [bucketArn(), `${bucketArn()}/*`],
      Condition: { Bool: { "aws:SecureTransport": "false" } },
    });
  });

  test("bucket policy denies TLS below 1.2", () => {
    expect(statement(bucketPolicy(), "DenyOutdatedTls")).toEqual({
      Sid: "DenyOutdatedTls",
      Effect: "Deny",
      Principal: "*",
      Action: "s3:*",
      Resource: [bucketArn(), `${bucketArn()}/*`],
      Condition: { NumericLessThan: { "s3:TlsVersion": "1.2" } },
    });
  });

  test("bucket policy denies uploads asking for other encryption or another key", () => {
    expect(statement(bucketPolicy(), "DenyEncryptionOtherThanKms")).toEqual({
      Sid: "DenyEncryptionOtherThanKms",
      Effect: "Deny",
      Principal: "*",
      Action: "s3:PutObject",
      Resource: `${bucketArn()}/*`,
      Condition: {
        StringNotEquals: { "s3:x-amz-server-side-encryption": "aws:kms" },
        Null: { "s3:x-amz-server-side-encryption": "false" },
      },
    });
    expect(statement(bucketPolicy(), "DenyOtherKmsKeys")).toEqual({
      Sid: "DenyOtherKmsKeys",
      Effect: "Deny",
      Principal: "*",
      Action: "s3:PutObject",
      Resource: `${bucketArn()}/*`,
      Condition: {
        StringNotEquals: { "s3:x-amz-server-side-encryption-aws-kms-key-id": dev.outputs.kmsKeyArn },
        Null: { "s3:x-amz-server-side-encryption-aws-kms-key-id": "false" },
      },
    });
  });

  test("lifecycle (prod, grandfather-father-son): dailies expire with their lock, monthlies move colder and stay 400 days", () => {
    const lifecycle = one(
      prod,
      "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
      "mysql-backups-prod-backups-lifecycle",
    );
    expect(lifecycle.inputs.rules).toEqual([
      // Untagged objects (verdicts, binlogs, backups of a replica that does not tag) live as long as monthlies.
      { id: "archives", status: "Enabled", filter: { prefix: "backups/" }, expiration: { days: 400 } },
      {
        id: "archives-daily",
        status: "Enabled",
        filter: { and: { prefix: "backups/", tags: { retention: "daily" } } },
        transitions: [],
        expiration: { days: 35 },
      },
      {
        id: "archives-monthly",
        status: "Enabled",
        filter: { and: { prefix: "backups/", tags: { retention: "monthly" } } },
        transitions: [
          { days: 30, storageClass: "STANDARD_IA" },
          { days: 90, storageClass: "GLACIER_IR" },
        ],
        expiration: { days: 400 },
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
        noncurrentVersionExpiration: { noncurrentDays: 7 },
        expiration: { expiredObjectDeleteMarker: true },
      },
    ]);
  });

  test("lifecycle (dev): one rule for every archive, no transition a 14-day life could not pay for", () => {
    const lifecycle = one(
      dev,
      "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
      `${b}-lifecycle`,
    );
    expect((lifecycle.inputs.rules as unknown[])[0]).toEqual({
      id: "archives",
      status: "Enabled",
      filter: { prefix: "backups/" },
      transitions: [],
      expiration: { days: 14 },
    });
  });

  test("the bucket is protected from deletion unless forceDestroy is set", () => {
    expect(one(dev, "aws:s3/bucket:Bucket", `${b}-bucket`).inputs.forceDestroy).toBe(true);
    expect(one(prod, "aws:s3/bucket:Bucket", "mysql-backups-prod-backups-bucket").inputs.forceDestroy).toBe(
      false,
    );
    expect(one(dev, "aws:s3/bucket:Bucket", `${b}-bucket`).options.protect).toBe(false);
    expect(one(prod, "aws:s3/bucket:Bucket", "mysql-backups-prod-backups-bucket").options.protect).toBe(true);
  });

  test("replication: every KMS-encrypted version goes to the second region, re-encrypted with its own key", () => {
    const rb = "mysql-backups-prod-backups";
    const replica = one(prod, "aws:s3/bucket:Bucket", `${rb}-replica-bucket`);
    expect(replica.inputs).toMatchObject({ region: "eu-central-1", objectLockEnabled: true });
    const replicaKey = one(prod, "aws:kms/key:Key", `${rb}-replica-key`);
    expect(replicaKey.inputs).toMatchObject({ region: "eu-central-1", enableKeyRotation: true });
    const config = one(prod, "aws:s3/bucketReplicationConfig:BucketReplicationConfig", `${rb}-replication`);
    const rules = config.inputs.rules as Array<Record<string, unknown>>;
    expect(rules).toHaveLength(1);
    expect(rules[0]).toMatchObject({
      status: "Enabled",
      sourceSelectionCriteria: { sseKmsEncryptedObjects: { status: "Enabled" } },
      destination: { storageClass: "STANDARD_IA" },
    });
    const destination = rules[0].destination as {
      encryptionConfiguration: { replicaKmsKeyId: string };
      bucket: string;
    };
    expect(destination.encryptionConfiguration.replicaKmsKeyId).toMatch(/^arn:aws:kms:eu-central-1:/);
    expect(destination.bucket).toMatch(/^arn:aws:s3:::mysql-backups-prod-backups-replica-bucket/);
    const replicaSse = one(
      prod,
      "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
      `${rb}-replica-encryption`,
    );
    expect(replicaSse.inputs.region).toBe("eu-central-1");
    const replicaLifecycle = one(
      prod,
      "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
      `${rb}-replica-lifecycle`,
    );
    const replicaRules = replicaLifecycle.inputs.rules as Array<Record<string, unknown>>;
    // Replicas arrive in STANDARD_IA: the monthlies' own move to it is dropped, the rest is the source's.
    expect(replicaRules.find((r) => r.id === "archives-monthly")).toMatchObject({
      transitions: [{ days: 90, storageClass: "GLACIER_IR" }],
      expiration: { days: 400 },
    });
    expect(replicaRules.map((r) => r.id)).toEqual([
      "archives",
      "archives-daily",
      "archives-monthly",
      "abort-incomplete-multipart-uploads",
      "noncurrent-versions",
    ]);
  });
});

describe("VerificationQueue security", () => {
  const q = `${P}-verification`;
  test("queue and DLQ encrypted", () => {
    expect(one(dev, "aws:sqs/queue:Queue", `${q}-queue`).inputs.sqsManagedSseEnabled).toBe(true);
    expect(one(dev, "aws:sqs/queue:Queue", `${q}-dlq`).inputs.sqsManagedSseEnabled).toBe(true);
  });

  test("redrive to the DLQ after maxReceiveCount (from config)", () => {
    const queue = one(dev, "aws:sqs/queue:Queue", `${q}-queue`);
    const redrive = JSON.parse(queue.inputs.redrivePolicy as string) as Record<string, unknown>;
    expect(redrive.maxReceiveCount).toBe(3);
    expect(redrive.deadLetterTargetArn).toMatch(new RegExp(`^arn:aws:sqs:eu-west-1:\\d{12}:${q}-dlq`));
  });

  test("DLQ accepts redrive from this queue only", () => {
    const allow = one(dev, "aws:sqs/redriveAllowPolicy:RedriveAllowPolicy", `${q}-dlq-redrive-allow`);
    const queueArn = (dev.outputs.queueUrl as string).replace(
      /^https:\/\/sqs\.([^.]+)\.amazonaws\.com\/(\d+)\/(.+)$/,
      "arn:aws:sqs:$1:$2:$3",
    );
    expect(JSON.parse(allow.inputs.redriveAllowPolicy as string)).toEqual({
      redrivePermission: "byQueue",
      sourceQueueArns: [queueArn],
    });
    expect(allow.inputs.queueUrl).toBe(dev.outputs.deadLetterQueueUrl);
  });

  test("visibility timeout above the longest restore (config: 2 h), long polling 20 s", () => {
    expect(one(dev, "aws:sqs/queue:Queue", `${q}-queue`).inputs).toMatchObject({
      visibilityTimeoutSeconds: 7200,
      receiveWaitTimeSeconds: 20,
    });
  });

  test("both queue policies deny non-TLS", () => {
    for (const suffix of ["queue", "dlq"]) {
      const policy = one(dev, "aws:sqs/queuePolicy:QueuePolicy", `${q}-${suffix}-policy`);
      expect(statement(policy, "DenyInsecureTransport")).toMatchObject({
        Effect: "Deny",
        Principal: "*",
        Action: "sqs:*",
        Condition: { Bool: { "aws:SecureTransport": "false" } },
      });
    }
  });
});

describe("VerifierFleet security and scaling", () => {
  const v = `${P}-verifier`;
  const template = (): RegisteredResource =>
    one(dev, "aws:ec2/launchTemplate:LaunchTemplate", `${v}-template`);

  test("IMDSv2 required with hop limit 1", () => {
    expect(template().inputs.metadataOptions).toEqual({
      httpEndpoint: "enabled",
      httpTokens: "required",
      httpPutResponseHopLimit: 1,
      instanceMetadataTags: "disabled",
    });
  });

  test("encrypted gp3 scratch volume sized from config, on the image's root device", () => {
    expect(template().inputs.blockDeviceMappings).toEqual([
      {
        deviceName: "/dev/xvda",
        ebs: { volumeSize: 50, volumeType: "gp3", encrypted: "true", deleteOnTermination: "true" },
      },
    ]);
  });

  test("the scratch volume's throughput is raised only where configured, with the IOPS gp3 requires for it", () => {
    const prodTemplate = one(
      prod,
      "aws:ec2/launchTemplate:LaunchTemplate",
      "mysql-backups-prod-verifier-template",
    );
    const ebs = (t: RegisteredResource) =>
      (t.inputs.blockDeviceMappings as Array<{ ebs: Record<string, unknown> }>)[0].ebs;
    expect(ebs(prodTemplate)).toMatchObject({ volumeSize: 500, throughput: 150, iops: 3000 });
    expect(ebs(template())).not.toHaveProperty("throughput");
    expect(ebs(template())).not.toHaveProperty("iops");
  });

  test("no public IP, detailed monitoring, and a shutdown from inside terminates the instance", () => {
    const nics = template().inputs.networkInterfaces as Array<Record<string, unknown>>;
    expect(nics).toHaveLength(1);
    expect(nics[0].associatePublicIpAddress).toBe("false");
    expect(nics[0].securityGroups).toEqual(["sg-0a1b2c3d4e5f60708"]);
    expect(template().inputs.monitoring).toEqual({ enabled: true });
    expect(template().inputs.instanceInitiatedShutdownBehavior).toBe("terminate");
  });

  test("AMI by lookup with an owner filter (dev), or by id; the root device name comes from the image either way", async () => {
    expect(template().inputs.imageId).toBe("ami-0mock0lookup0000");
    expect(dev.calls.filter((c) => c.token === "aws:ec2/getAmi:getAmi").map((c) => c.inputs)).toEqual([
      {
        owners: ["136693071363"],
        mostRecent: true,
        filters: [
          { name: "name", values: ["debian-12-amd64-*"] },
          { name: "state", values: ["available"] },
        ],
      },
    ]);
    const pinned = await simulateStack("Pulumi.dev.yaml", {
      verifier: { ...devVerifier(), ami: { id: "ami-0123456789abcdef0" } },
    });
    const pinnedTemplate = one(pinned, "aws:ec2/launchTemplate:LaunchTemplate", `${v}-template`);
    expect(pinnedTemplate.inputs.imageId).toBe("ami-0123456789abcdef0");
    expect(pinned.calls.filter((c) => c.token === "aws:ec2/getAmi:getAmi").map((c) => c.inputs)).toEqual([
      {
        filters: [
          { name: "image-id", values: ["ami-0123456789abcdef0"] },
          { name: "state", values: ["available"] },
        ],
      },
    ]);
    // The mocked image of a pinned id boots from /dev/sda1: the template follows the image, not a default.
    expect((pinnedTemplate.inputs.blockDeviceMappings as Array<{ deviceName: string }>)[0].deviceName).toBe(
      "/dev/sda1",
    );
  }, 60_000);

  test("Auto Scaling group from 0 to N in the private subnets, refreshed when the template changes, counting its instances", () => {
    const group = one(dev, "aws:autoscaling/group:Group", `${v}-group`);
    expect(group.inputs).toMatchObject({
      minSize: 0,
      maxSize: 1,
      vpcZoneIdentifiers: ["subnet-0a1b2c3d4e5f60708"],
      instanceRefresh: { strategy: "Rolling", preferences: { minHealthyPercentage: 0 } },
      enabledMetrics: ["GroupInServiceInstances", "GroupPendingInstances"],
      metricsGranularity: "1Minute",
    });
    expect(group.inputs.desiredCapacity).toBeUndefined();
    expect(group.inputs.mixedInstancesPolicy).toEqual({
      launchTemplate: {
        launchTemplateSpecification: { launchTemplateId: template().id, version: "1" },
        overrides: [{ instanceType: "t3.large" }],
      },
      instancesDistribution: {
        onDemandBaseCapacity: 0,
        onDemandPercentageAboveBaseCapacity: 100,
        onDemandAllocationStrategy: "prioritized",
        spotAllocationStrategy: "price-capacity-optimized",
      },
    });
  });

  test("Spot (prod): every instance on Spot, from any of several instance types", () => {
    const group = one(prod, "aws:autoscaling/group:Group", "mysql-backups-prod-verifier-group");
    const mixed = group.inputs.mixedInstancesPolicy as {
      launchTemplate: { overrides: unknown[] };
      instancesDistribution: Record<string, unknown>;
    };
    expect(mixed.launchTemplate.overrides).toEqual([
      { instanceType: "m6i.xlarge" },
      { instanceType: "m6a.xlarge" },
      { instanceType: "m5.xlarge" },
    ]);
    expect(mixed.instancesDistribution).toMatchObject({
      onDemandBaseCapacity: 0,
      onDemandPercentageAboveBaseCapacity: 0,
      spotAllocationStrategy: "price-capacity-optimized",
    });
    expect(
      one(prod, "aws:ec2/launchTemplate:LaunchTemplate", "mysql-backups-prod-verifier-template").inputs
        .instanceType,
    ).toBeUndefined();
  });

  test("scales out by step on the backlog beyond the instances running or booting, with a warm-up", () => {
    expect(one(dev, "aws:autoscaling/policy:Policy", `${v}-scale-out`).inputs).toEqual({
      autoscalingGroupName: one(dev, "aws:autoscaling/group:Group", `${v}-group`).state.name,
      policyType: "StepScaling",
      adjustmentType: "ChangeInCapacity",
      metricAggregationType: "Maximum",
      estimatedInstanceWarmup: 600,
      stepAdjustments: [
        { metricIntervalLowerBound: "0", metricIntervalUpperBound: "1", scalingAdjustment: 1 },
        { metricIntervalLowerBound: "1", metricIntervalUpperBound: "3", scalingAdjustment: 2 },
        { metricIntervalLowerBound: "3", scalingAdjustment: 4 },
      ],
    });
    const backlog = one(dev, "aws:cloudwatch/metricAlarm:MetricAlarm", `${v}-backlog-exceeds-fleet`);
    expect(backlog.inputs).toMatchObject({
      comparisonOperator: "GreaterThanOrEqualToThreshold",
      threshold: 1,
      evaluationPeriods: 1,
      treatMissingData: "notBreaching",
      alarmActions: [one(dev, "aws:autoscaling/policy:Policy", `${v}-scale-out`).state.arn],
    });
    const queries = backlog.inputs.metricQueries as Array<{
      id: string;
      expression?: string;
      metric?: { namespace: string; metricName: string };
    }>;
    // One message with one instance booting for it is no shortfall: the pending instance counts.
    expect(queries.find((q) => q.expression)?.expression).toBe(
      "FILL(visible, 0) + FILL(inflight, 0) - FILL(inservice, 0) - FILL(pending, 0)",
    );
    expect(
      queries.filter((q) => q.metric).map((q) => [q.id, q.metric!.namespace, q.metric!.metricName]),
    ).toEqual([
      ["visible", "AWS/SQS", "ApproximateNumberOfMessagesVisible"],
      ["inflight", "AWS/SQS", "ApproximateNumberOfMessagesNotVisible"],
      ["inservice", "AWS/AutoScaling", "GroupInServiceInstances"],
      ["pending", "AWS/AutoScaling", "GroupPendingInstances"],
    ]);
  });

  test("back to zero when the queue is idle (silence = idle)", () => {
    expect(one(dev, "aws:autoscaling/policy:Policy", `${v}-scale-to-zero`).inputs).toMatchObject({
      adjustmentType: "ExactCapacity",
      scalingAdjustment: 0,
    });
    const idle = one(dev, "aws:cloudwatch/metricAlarm:MetricAlarm", `${v}-queue-idle`);
    expect(idle.inputs).toMatchObject({
      comparisonOperator: "LessThanOrEqualToThreshold",
      threshold: 0,
      evaluationPeriods: 15,
      treatMissingData: "breaching",
    });
    const queries = idle.inputs.metricQueries as Array<{ id: string; expression?: string }>;
    expect(queries.find((q) => q.expression)?.expression).toBe("visible + inflight");
  });

  test("the bundle is one object, SSE-KMS encrypted, retained on delete, each upload a new version the template names", () => {
    const bundle = one(dev, "aws:s3/bucketObjectv2:BucketObjectv2", `${v}-bundle`);
    expect(bundle.inputs).toMatchObject({
      key: "artifacts/mysql-backup/mysql-backup.cjs",
      sourceHash: dev.outputs.bundleSha256,
      serverSideEncryption: "aws:kms",
      kmsKeyId: dev.outputs.kmsKeyArn,
      bucket: dev.outputs.bucketName,
      checksumAlgorithm: "SHA256",
    });
    expect(bundle.options.retainOnDelete).toBe(true);
  });

  test("logs go to an encrypted log group with a retention (prod: 365 days, dev: the 90-day default)", () => {
    const group = one(prod, "aws:cloudwatch/logGroup:LogGroup", "mysql-backups-prod-verifier-logs");
    const key = one(prod, "aws:kms/key:Key", "mysql-backups-prod-verifier-logs-key");
    expect(group.inputs).toMatchObject({
      name: "/mysql-backup/mysql-backups-prod-verifier",
      retentionInDays: 365,
      kmsKeyId: key.state.arn,
    });
    expect(one(dev, "aws:cloudwatch/logGroup:LogGroup", `${v}-logs`).inputs.retentionInDays).toBe(90);
    expect(key.inputs.enableKeyRotation).toBe(true);
    expect(statement(key, "AllowCloudWatchLogs")).toEqual({
      Sid: "AllowCloudWatchLogs",
      Effect: "Allow",
      Principal: { Service: "logs.eu-west-1.amazonaws.com" },
      Action: ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
      Resource: "*",
      Condition: {
        ArnEquals: {
          "kms:EncryptionContext:aws:logs:arn":
            "arn:aws:logs:eu-west-1:123456789012:log-group:/mysql-backup/mysql-backups-prod-verifier",
        },
      },
    });
  });

  test("S3 gateway endpoint: dev creates one on its subnet's route table; prod requires its existing one", () => {
    const created = one(dev, "aws:ec2/vpcEndpoint:VpcEndpoint", `${v}-s3-endpoint`);
    expect(created.inputs).toMatchObject({
      vpcId: "vpc-0a1b2c3d4e5f60708",
      serviceName: "com.amazonaws.eu-west-1.s3",
      vpcEndpointType: "Gateway",
      routeTableIds: ["rtb-0a1b2c3d4e5f60708"],
    });
    expect(prod.resources.some((r) => r.type === "aws:ec2/vpcEndpoint:VpcEndpoint")).toBe(false);
    expect(
      prod.calls.filter((c) => c.token === "aws:ec2/getVpcEndpoint:getVpcEndpoint").map((c) => c.inputs),
    ).toEqual([{ id: "vpce-0b1c2d3e4f5a60718" }]);
    expect(
      prod.calls
        .filter((c) => c.token === "aws:ec2/getRouteTable:getRouteTable")
        .map((c) => c.inputs.subnetId)
        .sort(),
    ).toEqual(["subnet-0b1c2d3e4f5a60718", "subnet-0c1d2e3f4a5b60728"]);
    expect(
      one(prod, "aws:ec2/launchTemplate:LaunchTemplate", "mysql-backups-prod-verifier-template").inputs
        .description,
    ).toBe("MySQL backup verifier (mariadb 10.11; S3 through vpce-0b1c2d3e4f5a60718)");
  });

  test("a verifier subnet the S3 endpoint does not serve fails the preview, naming it", async () => {
    await expect(
      simulateStack("Pulumi.dev.yaml", {
        verifier: { ...devVerifier(), subnetIds: ["subnet-0a1b2c3d4e5f60708", "subnet-0d1e2f3a4b5c60738"] },
      }),
    ).rejects.toThrow(
      /verifier\.s3Endpoint .* not on the route table of subnet-0d1e2f3a4b5c60738 \(rtb-0d1e2f3a4b5c60738\)/,
    );
  }, 60_000);
});

describe("ReplicaAgent installation", () => {
  const a = `${P}-orders-orders-db2`;
  const remote = (): RegisteredResource[] =>
    dev.resources.filter((r) => r.type.startsWith("command:remote:") && r.name.startsWith(a));

  test("the SSH private key is secret in every remote step and pinned host key is set", () => {
    expect(remote()).toHaveLength(8);
    for (const r of remote()) {
      expect(r.secretPaths).toContain("connection");
      const connection = r.inputs.connection as Record<string, unknown>;
      expect(connection).toMatchObject({
        host: "10.20.1.12",
        port: 22,
        user: "backup",
        hostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEGC1tdrRUOy8Jwh7kyi4KZV8XKWmSPEn9D74JtJhlB+",
        privateKey: `${MOCK_SECRET_PREFIX}mysql-backup-pipeline:sshPrivateKey`,
      });
    }
  });

  test("bastion via the connection proxy, with its own pinned host key", () => {
    const install = one(prod, "command:remote:Command", "mysql-backups-prod-orders-orders-db3-install");
    expect((install.inputs.connection as Record<string, unknown>).proxy).toMatchObject({
      host: "bastion.prod.example.com",
      port: 22,
      user: "jump",
      hostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILMgChHyw3a1mlDkJllzs7GqySS8W4cw6Nf3yJbQNjwK",
      privateKey: `${MOCK_SECRET_PREFIX}mysql-backup-pipeline:sshPrivateKey`,
    });
    const billing = one(prod, "command:remote:Command", "mysql-backups-prod-billing-billing-db2-install");
    expect((billing.inputs.connection as Record<string, unknown>).privateKey).toBe(
      `${MOCK_SECRET_PREFIX}mysql-backup-pipeline:billingSshKey`,
    );
  });

  test("commands log stderr only (stdout, which could echo file contents, is not logged)", () => {
    for (const r of remote().filter((x) => x.type === "command:remote:Command")) {
      expect(r.inputs.logging).toBe("stderr");
    }
  });

  test("every step re-runs only when the install hash changes", () => {
    const hashes = new Set(remote().map((r) => JSON.stringify(r.inputs.triggers)));
    expect(hashes.size).toBe(1);
    const [hash] = remote()[0].inputs.triggers as string[];
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
  });

  test("the install hash is stable across runs and changes when a shipped file changes", async () => {
    const hashOf = (run: StackRun): string =>
      (one(run, "command:remote:Command", `${a}-install`).inputs.triggers as string[])[0];
    const again = await simulateStack("Pulumi.dev.yaml");
    expect(hashOf(again)).toBe(hashOf(dev));
    const clusters = readStackConfig("Pulumi.dev.yaml").config["mysql-backup-pipeline:clusters"];
    const rescheduled = (JSON.parse(clusters) as Array<Record<string, unknown>>).map((c) => ({
      ...c,
      schedule: "*-*-* 03:00:00 UTC",
    }));
    const moved = await simulateStack("Pulumi.dev.yaml", { clusters: rescheduled });
    expect(hashOf(moved)).not.toBe(hashOf(dev));
  }, 60_000);

  test("install runs through sudo with the script on stdin, checks the bundle hash, sets owners and modes", () => {
    const install = one(dev, "command:remote:Command", `${a}-install`);
    expect(install.inputs.create).toBe("sudo -n sh -s");
    const script = install.inputs.stdin as string;
    expect(script).toContain(`echo "${dev.outputs.bundleSha256 as string}  `);
    expect(script).toMatch(
      /install -o root -g root -m 0755 \S+\/mysql-backup\.cjs \/usr\/local\/bin\/mysql-backup/,
    );
    expect(script).toMatch(
      /install -o root -g root -m 0640 \S+\/backup\.json \/etc\/mysql-backup\/backup\.json/,
    );
    expect(script).toContain("systemctl daemon-reload");
    expect(script).toContain("systemctl enable mysql-backup.timer");
    expect(install.options.deleteBeforeReplace).toBe(true);
    // Installs only after all four copies (plus the implicit dependencies of its inputs).
    expect(install.options.dependsOn).toEqual(
      expect.arrayContaining(
        remote()
          .filter((r) => r.type === "command:remote:CopyToRemote")
          .map((r) => r.urn),
      ),
    );
    // The uninstall removes the install it belongs to only (the marker holds the current install's hash).
    const [hash] = install.inputs.triggers as string[];
    expect(install.inputs.delete).toMatch(
      new RegExp(
        `^sudo -n sh -c 'set -eu\\n\\[ "\\$\\(cat /etc/mysql-backup/installed 2>/dev/null\\)" = "${hash}" \\] \\|\\| .*\\nsystemctl disable --now mysql-backup\\.timer`,
      ),
    );
  });

  test("after the install, `mysql-backup check` runs on the host, so `pulumi up` fails on a replica that could not back up", () => {
    const check = one(dev, "command:remote:Command", `${a}-check`);
    expect(check.inputs.create).toBe(
      "sudo -n /usr/local/bin/mysql-backup check --config /etc/mysql-backup/backup.json 1>&2",
    );
    // After the install (plus the implicit dependencies of its inputs).
    expect(check.options.dependsOn).toContain(one(dev, "command:remote:Command", `${a}-install`).urn);
    // Re-run with every install (a changed config is checked again); nothing to undo on delete.
    expect(check.inputs.triggers).toEqual(one(dev, "command:remote:Command", `${a}-install`).inputs.triggers);
    expect(check.inputs.delete).toBeUndefined();
  });

  test("no stack output holds a secret", () => {
    for (const run of [dev, prod]) {
      expect(JSON.stringify(run.outputs)).not.toContain(MOCK_SECRET_PREFIX);
      expect(run.secretOutputs).toEqual([]);
    }
  });

  test("no plain (non-secret) input of any resource holds a secret value", () => {
    for (const run of [dev, prod]) {
      for (const r of run.resources) {
        const plain = JSON.stringify(r.inputs, (k, v: unknown) =>
          k === "connection" && r.secretPaths.includes("connection") ? undefined : v,
        );
        expect({ resource: r.name, leaks: plain.includes(MOCK_SECRET_PREFIX) }).toEqual({
          resource: r.name,
          leaks: false,
        });
      }
    }
  });
});

describe("Alerting", () => {
  const a = `${P}-alerts`;
  test("topic encrypted with a key whose policy lets CloudWatch use it", () => {
    const key = one(dev, "aws:kms/key:Key", `${a}-key`);
    expect(statement(key, "AllowCloudWatchToPublish")).toEqual({
      Sid: "AllowCloudWatchToPublish",
      Effect: "Allow",
      Principal: { Service: "cloudwatch.amazonaws.com" },
      Action: ["kms:Decrypt", "kms:GenerateDataKey*"],
      Resource: "*",
      Condition: { StringEquals: { "aws:SourceAccount": "123456789012" } },
    });
    expect(key.inputs.enableKeyRotation).toBe(true);
    const topic = one(dev, "aws:sns/topic:Topic", `${a}-topic`);
    expect(topic.inputs.kmsMasterKeyId).toMatch(/^arn:aws:kms:/);
  });

  test("email subscription from config; HTTPS endpoints are secret", async () => {
    expect(one(dev, "aws:sns/topicSubscription:TopicSubscription", `${a}-email-0`).inputs).toMatchObject({
      protocol: "email",
      endpoint: "dba-oncall@example.com",
    });
    const paged = await simulateStack("Pulumi.prod.yaml", {
      alertHttpsEndpoints: ["https://events.pagerduty.com/integration/abc/enqueue"],
    });
    const https = one(
      paged,
      "aws:sns/topicSubscription:TopicSubscription",
      "mysql-backups-prod-alerts-https-0",
    );
    expect(https.inputs).toMatchObject({
      protocol: "https",
      endpoint: "https://events.pagerduty.com/integration/abc/enqueue",
    });
    expect(https.secretPaths).toContain("endpoint");
  }, 60_000);

  test("every alarm pages through the topic; state alarms also resolve, event alarms never do", () => {
    const topicArn = dev.outputs.alertTopicArn;
    const alarms = dev.resources.filter(
      (r) => r.type === "aws:cloudwatch/metricAlarm:MetricAlarm" && r.name.startsWith(a),
    );
    expect(alarms).toHaveLength(14);
    for (const alarm of alarms) expect(alarm.inputs.alarmActions).toEqual([topicArn]);
    const resolving = alarms
      .filter((x) => x.inputs.okActions !== undefined)
      .map((x) => x.name.slice(a.length + 1));
    expect(resolving.sort()).toEqual(
      [
        "dlq-not-empty",
        "oldest-message-too-old",
        "orders-no-verified-backup",
        "orders-orders-db2-backup-missing",
        "orders-binlog-lag",
        "orders-binlog-silent",
        "orders-pitr-chain-silent",
      ].sort(),
    );
    for (const alarm of alarms.filter((x) => x.inputs.okActions !== undefined))
      expect(alarm.inputs.okActions).toEqual([topicArn]);
    // A failed backup pages once: its alarm's return to OK (the next quiet 5 minutes) notifies nobody.
    for (const id of [
      "orders-verification-failed",
      "orders-backup-failed",
      "orders-backup-abandoned",
      "orders-binlog-gap",
    ])
      expect(
        one(dev, "aws:cloudwatch/metricAlarm:MetricAlarm", `${a}-${id}`).inputs.okActions,
      ).toBeUndefined();
  });

  test("silence is watched per replica and per cluster, each from when it was set up (no page in its first window)", () => {
    const created = Date.parse(MOCK_ROLE_CREATED) / 1000;
    for (const [id, dimensions, metricName] of [
      ["orders-orders-db2-backup-missing", { Cluster: "orders", Host: "orders-db2" }, "BackupSucceeded"],
      ["orders-no-verified-backup", { Cluster: "orders" }, "VerificationSucceeded"],
    ] as const) {
      const alarm = one(dev, "aws:cloudwatch/metricAlarm:MetricAlarm", `${a}-${id}`);
      expect(alarm.inputs).toMatchObject({
        evaluationPeriods: 26,
        datapointsToAlarm: 26,
        comparisonOperator: "LessThanThreshold",
        threshold: 1,
        treatMissingData: "breaching",
      });
      expect(alarm.inputs.metricQueries).toEqual([
        {
          id: "succeeded",
          returnData: false,
          metric: { namespace: "MysqlBackupPipeline", metricName, dimensions, period: 3600, stat: "Sum" },
        },
        {
          id: "grace",
          returnData: false,
          expression: `IF(EPOCH(TIME_SERIES(0)) < ${created}, 1, 0)`,
          label: "Hours before the window may start",
        },
        {
          id: "covered",
          returnData: true,
          expression: "MAX([grace, FILL(succeeded, 0)])",
          label: `${metricName} (or not yet due)`,
        },
      ]);
    }
    // The cluster's backups are watched through its replicas: one dead replica is one page, by its name.
    expect(dev.resources.some((r) => r.name === `${a}-orders-backup-missing`)).toBe(false);
  });
});

describe("config errors name the key", () => {
  const failsWith = async (overrides: Record<string, unknown>, message: RegExp): Promise<void> => {
    await expect(simulateStack("Pulumi.dev.yaml", overrides)).rejects.toThrow(message);
  };
  const devClusters = (): Array<Record<string, unknown>> =>
    JSON.parse(
      JSON.stringify([
        {
          name: "orders",
          flavor: "mariadb",
          version: "10.11",
          replicas: [
            {
              host: "orders-db2",
              address: "10.20.1.12",
              user: "backup",
              hostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEGC1tdrRUOy8Jwh7kyi4KZV8XKWmSPEn9D74JtJhlB+",
              snapshot: {
                driver: "btrfs",
                subvolume: "/var/lib/mysql",
                snapshotDir: "/var/lib/mysql-snapshots",
              },
            },
          ],
        },
      ]),
    ) as Array<Record<string, unknown>>;

  test("missing clusters", async () => {
    await failsWith({ clusters: undefined }, /mysql-backup-pipeline:clusters/);
  });

  test("replica without a pinned host key", async () => {
    const clusters = devClusters();
    delete (clusters[0].replicas as Array<Record<string, unknown>>)[0].hostKey;
    await failsWith(
      { clusters },
      /mysql-backup-pipeline:clusters"[\s\S]*0\.replicas\.0\.hostKey is required/,
    );
  });

  test("unknown snapshot driver", async () => {
    const clusters = devClusters();
    (clusters[0].replicas as Array<Record<string, unknown>>)[0].snapshot = { driver: "ext4" };
    await failsWith({ clusters }, /clusters[\s\S]*0\.replicas\.0\.snapshot/);
  });

  test("cluster name that cannot be a key segment", async () => {
    const clusters = devClusters();
    clusters[0].name = "Orders/EU";
    await failsWith({ clusters }, /clusters[\s\S]*0\.name/);
  });

  test("clusters of different server releases", async () => {
    const clusters = [
      ...devClusters(),
      { ...devClusters()[0], name: "billing", flavor: "mysql", version: "8.0" },
    ];
    await failsWith({ clusters }, /clusters\[1\]\.server is mysql 8\.0 but clusters\[0\] is mariadb 10\.11/);
  });

  test("retention transition after expiry", async () => {
    await failsWith(
      { retention: { days: 7, expireDays: 14, infrequentAccessDays: 30 } },
      /retention\.infrequentAccessDays/,
    );
  });

  test("visibility timeout beyond the SQS maximum", async () => {
    await failsWith(
      { queue: { visibilityTimeoutSeconds: 50000 } },
      /mysql-backup-pipeline:queue"[\s\S]*visibilityTimeoutSeconds must be <= 43200/,
    );
  });

  test("verifier without subnets", async () => {
    await failsWith(
      { verifier: { securityGroupIds: ["sg-0a1b2c3d"], s3Endpoint: { existing: "vpce-0a1b2c3d" } } },
      /mysql-backup-pipeline:verifier"[\s\S]*subnetIds is required/,
    );
  });

  test("verifier without an S3 endpoint (archives would go through NAT)", async () => {
    const { s3Endpoint: _dropped, ...verifier } = devVerifier();
    await failsWith({ verifier }, /mysql-backup-pipeline:verifier"[\s\S]*s3Endpoint is required/);
  });

  test("a host named like the cluster's binlog archive", async () => {
    const clusters = devClusters();
    (clusters[0].replicas as Array<Record<string, unknown>>)[0].host = "binlogs";
    await failsWith({ clusters }, /clusters\[0\]\.replicas\[0\]\.host "binlogs" is reserved/);
  });

  test("a log retention CloudWatch Logs does not offer", async () => {
    await failsWith(
      { verifier: { ...devVerifier(), logRetentionDays: 100 } },
      /mysql-backup-pipeline:verifier"[\s\S]*logRetentionDays must be one of 1, 3, 5, 7, 14, 30, 60, 90/,
    );
  });

  test("an environment too long for the bucket names derived from it", async () => {
    await failsWith({ environment: "e".repeat(19) }, /mysql-backup-pipeline:environment" must be 1-18/);
  });

  test("a transition whose class would be left before its minimum storage duration", async () => {
    await failsWith(
      { retention: { days: 7, expireDays: 40, infrequentAccessDays: 30 } },
      /retention\.infrequentAccessDays \(30\) leaves archives in STANDARD_IA for 10 days until retention\.expireDays \(40\), but STANDARD_IA bills at least 30/,
    );
  });

  test("missing SSH key secret named by a replica", async () => {
    const clusters = devClusters();
    (clusters[0].replicas as Array<Record<string, unknown>>)[0].sshKeyConfig = "doesNotExist";
    // `undefined` removes the stand-in the harness would otherwise provide for it.
    await failsWith({ clusters, doesNotExist: undefined }, /mysql-backup-pipeline:doesNotExist/);
  });

  test("a prefix that would overlap the artifacts", async () => {
    await failsWith(
      { prefix: "artifacts" },
      /prefix must be a non-empty key prefix outside "artifacts\/mysql-backup\/"/,
    );
  });

  test("environment that cannot name resources", async () => {
    await failsWith({ environment: "Prod EU" }, /mysql-backup-pipeline:environment/);
  });

  test("alert e-mail that is not an address", async () => {
    await failsWith({ alerts: { emails: ["on-call"] } }, /mysql-backup-pipeline:alerts"[\s\S]*emails\.0/);
  });
});
