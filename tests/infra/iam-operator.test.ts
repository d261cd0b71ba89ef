/**
 * The operators' role (what `mysql-backup status` runs with) and the replica's queue probe, evaluated with
 * @cloud-copilot/iam-simulate against the policies the real prod stack registers: the operator lists and
 * reads the backups and can change nothing — no write, delete, version delete, tag, retention, policy or
 * queue action, no KMS use but decrypting through S3; a replica may read the queue's attributes (for
 * `check`) but still not receive or delete its messages.
 */
import { runSimulation, type Simulation } from "@cloud-copilot/iam-simulate";
import {
  ACCOUNT_ID,
  DEFAULT_REGION,
  simulateStack,
  type RegisteredResource,
} from "../../policies/stackSimulator";

type Decision = "Allowed" | "Denied";
type Context = Record<string, string | string[]>;

let bucketArn: string;
let keyArn: string;
let queueArn: string;
let bucketPolicy: object;
let keyPolicy: object;
let roles: Record<"operator" | "replica", { arn: string; policy: object }>;

function findOne(resources: RegisteredResource[], type: string, nameSuffix: string): RegisteredResource {
  const found = resources.filter((r) => r.type === type && r.name.endsWith(nameSuffix));
  if (found.length !== 1) throw new Error(`expected one ${type} named *${nameSuffix}, found ${found.length}`);
  return found[0];
}

beforeAll(async () => {
  const { resources, outputs } = await simulateStack("Pulumi.prod.yaml");
  const json = (r: RegisteredResource, field: string): object =>
    JSON.parse(r.inputs[field] as string) as object;
  bucketArn = `arn:aws:s3:::${outputs.bucketName as string}`;
  keyArn = outputs.kmsKeyArn as string;
  queueArn = (outputs.queueUrl as string).replace(
    /^https:\/\/sqs\.([^.]+)\.amazonaws\.com\/(\d+)\/(.+)$/,
    "arn:aws:sqs:$1:$2:$3",
  );
  bucketPolicy = json(findOne(resources, "aws:s3/bucketPolicy:BucketPolicy", "-backups-policy"), "policy");
  keyPolicy = json(findOne(resources, "aws:kms/key:Key", "-backups-key"), "policy");
  roles = {
    operator: {
      arn: outputs.operatorRoleArn as string,
      policy: json(findOne(resources, "aws:iam/rolePolicy:RolePolicy", "-operators-policy"), "policy"),
    },
    replica: {
      arn: (outputs.replicaRoleArns as Record<string, string>)["orders/orders-db3"],
      policy: json(
        findOne(resources, "aws:iam/rolePolicy:RolePolicy", "-orders-orders-db3-policy"),
        "policy",
      ),
    },
  };
}, 120_000);

async function decide(
  who: keyof typeof roles,
  action: string,
  resource: string,
  context: Context = {},
): Promise<Decision> {
  const service = action.split(":")[0];
  const simulation: Simulation = {
    request: {
      principal: roles[who].arn,
      action,
      resource: { resource, accountId: ACCOUNT_ID },
      contextVariables: {
        "aws:SecureTransport": "true",
        ...(service === "s3" ? { "s3:TlsVersion": "1.3" } : {}),
        ...context,
      },
    },
    identityPolicies: [{ name: `${who}-policy`, policy: roles[who].policy }],
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    resourcePolicy: service === "s3" ? bucketPolicy : service === "kms" ? keyPolicy : undefined,
    additionalSettings: { s3: { blockPublicAccess: true } },
  };
  const result = await runSimulation(simulation, {});
  if (result.resultType === "error")
    throw new Error(`simulator rejected the request: ${JSON.stringify(result.errors)}`);
  const ignored = result.resultType === "single" ? (result.result.ignoredContextKeys ?? []) : [];
  const meaningful = ignored.filter((k) => k in context);
  if (meaningful.length)
    throw new Error(`simulator ignored context keys ${meaningful.join(", ")} for ${action}`);
  return result.overallResult === "Allowed" ? "Allowed" : "Denied";
}

const object = (key: string) => `${bucketArn}/${key}`;
const backup = (name: string) => object(`backups/orders/orders-db3/20261124T020000Z-3fa9c1/${name}`);
const viaS3 = { "kms:ViaService": `s3.${DEFAULT_REGION}.amazonaws.com` };
const sseKms = () => ({
  "s3:x-amz-server-side-encryption": "aws:kms",
  "s3:x-amz-server-side-encryption-aws-kms-key-id": keyArn,
});

const cases: Array<[string, keyof typeof roles, string, () => string, (() => Context) | null, Decision]> = [
  // What `status` needs.
  [
    "operator lists the backup prefix",
    "operator",
    "s3:ListBucket",
    () => bucketArn,
    () => ({ "s3:prefix": "backups/" }),
    "Allowed",
  ],
  [
    "operator lists a cluster",
    "operator",
    "s3:ListBucket",
    () => bucketArn,
    () => ({ "s3:prefix": "backups/orders/" }),
    "Allowed",
  ],
  ["operator reads a manifest", "operator", "s3:GetObject", () => backup("manifest.json"), null, "Allowed"],
  [
    "operator reads a verdict",
    "operator",
    "s3:GetObject",
    () => backup("verification.json"),
    null,
    "Allowed",
  ],
  ["operator decrypts through S3", "operator", "kms:Decrypt", () => keyArn, () => viaS3, "Allowed"],
  // Nothing it could change.
  ["operator PutObject", "operator", "s3:PutObject", () => backup("verification.json"), sseKms, "Denied"],
  ["operator DeleteObject", "operator", "s3:DeleteObject", () => backup("archive.tar.zst"), null, "Denied"],
  [
    "operator DeleteObjectVersion",
    "operator",
    "s3:DeleteObjectVersion",
    () => backup("archive.tar.zst"),
    null,
    "Denied",
  ],
  [
    "operator PutObjectTagging",
    "operator",
    "s3:PutObjectTagging",
    () => backup("archive.tar.zst"),
    null,
    "Denied",
  ],
  [
    "operator PutObjectRetention",
    "operator",
    "s3:PutObjectRetention",
    () => backup("archive.tar.zst"),
    null,
    "Denied",
  ],
  [
    "operator BypassGovernanceRetention",
    "operator",
    "s3:BypassGovernanceRetention",
    () => backup("archive.tar.zst"),
    null,
    "Denied",
  ],
  ["operator PutBucketPolicy", "operator", "s3:PutBucketPolicy", () => bucketArn, null, "Denied"],
  [
    "operator PutLifecycleConfiguration",
    "operator",
    "s3:PutLifecycleConfiguration",
    () => bucketArn,
    null,
    "Denied",
  ],
  [
    "operator lists outside the backup prefix",
    "operator",
    "s3:ListBucket",
    () => bucketArn,
    () => ({ "s3:prefix": "artifacts/" }),
    "Denied",
  ],
  [
    "operator reads the verifier bundle",
    "operator",
    "s3:GetObject",
    () => object("artifacts/mysql-backup/x.cjs"),
    null,
    "Denied",
  ],
  ["operator encrypts with the key", "operator", "kms:GenerateDataKey", () => keyArn, () => viaS3, "Denied"],
  ["operator decrypts outside S3", "operator", "kms:Decrypt", () => keyArn, null, "Denied"],
  ["operator sends to the queue", "operator", "sqs:SendMessage", () => queueArn, null, "Denied"],
  ["operator purges the queue", "operator", "sqs:PurgeQueue", () => queueArn, null, "Denied"],
  // The replica's `check`: the queue answers, its messages stay the verifiers'.
  [
    "replica reads the queue's attributes",
    "replica",
    "sqs:GetQueueAttributes",
    () => queueArn,
    null,
    "Allowed",
  ],
  ["replica receives from the queue", "replica", "sqs:ReceiveMessage", () => queueArn, null, "Denied"],
  ["replica deletes a message", "replica", "sqs:DeleteMessage", () => queueArn, null, "Denied"],
  [
    "replica writes its check probe below its own prefix",
    "replica",
    "s3:PutObject",
    () => object("backups/orders/orders-db3/_check/20261124T020000Z-3fa9c1.json"),
    sseKms,
    "Allowed",
  ],
];

test.each(cases)("%s", async (_name, who, action, resource, context, expected) => {
  expect(await decide(who, action, resource(), context?.() ?? {})).toBe(expected);
});

test("the operator's trust names the stack's account only, and its policy allows no write of any kind", async () => {
  const { resources } = await simulateStack("Pulumi.prod.yaml");
  const role = findOne(resources, "aws:iam/role:Role", "-operators-role");
  expect(JSON.parse(role.inputs.assumeRolePolicy as string)).toEqual({
    Version: "2012-10-17",
    Statement: [
      {
        Sid: "AccountAssumeRole",
        Effect: "Allow",
        Principal: { AWS: `arn:aws:iam::${ACCOUNT_ID}:root` },
        Action: "sts:AssumeRole",
      },
    ],
  });
  const actions = (
    roles.operator.policy as { Statement: Array<{ Action: string | string[] }> }
  ).Statement.flatMap((s) => (Array.isArray(s.Action) ? s.Action : [s.Action]));
  expect(actions.sort()).toEqual(["kms:Decrypt", "s3:GetObject", "s3:ListBucket"]);
}, 60_000);
