/**
 * The IAM simulator harness of tests/infra: the policies the real prod stack registers, and one request
 * evaluated through @cloud-copilot/iam-simulate with the context AWS would attach to it.
 *
 * Two things AWS sets on every request that the simulator does not derive by itself, so the harness does:
 * `aws:PrincipalArn` (the role's ARN, for a request signed with the role's session), and, for S3 writes,
 * `s3:ObjectCreationOperation` (true for PutObject and CompleteMultipartUpload, false for
 * CreateMultipartUpload and UploadPart), which the cases state by naming the S3 operation they make.
 */
import { anonymousPrincipal, runSimulation, type Simulation } from "@cloud-copilot/iam-simulate";
import {
  ACCOUNT_ID,
  DEFAULT_REGION,
  simulateStack,
  type RegisteredResource,
} from "../../policies/stackSimulator";

export type Decision = "Allowed" | "Denied";
export type Context = Record<string, string | string[]>;
/**
 * A principal of the matrix: the two prod replicas, the verifier, the operators' read-only role, an account
 * administrator, anonymous.
 */
export type Who = "orders" | "billing" | "verifier" | "operator" | "admin" | "anonymous";

/** The documents under test, as the prod stack registers them. */
export interface Policies {
  bucketArn: string;
  keyArn: string;
  queueArn: string;
  logGroupArn: string;
  bucketPolicy: object;
  keyPolicy: object;
  roles: Record<Exclude<Who, "anonymous">, { arn: string; policy: object }>;
}

/** An administrator of the account: allowed everything by IAM, so only the bucket policy stands in the way. */
export const ADMIN_ARN = `arn:aws:iam::${ACCOUNT_ID}:role/administrator`;
const ADMIN_POLICY = { Version: "2012-10-17", Statement: [{ Effect: "Allow", Action: "*", Resource: "*" }] };

function findOne(resources: RegisteredResource[], type: string, nameSuffix: string): RegisteredResource {
  const found = resources.filter((r) => r.type === type && r.name.endsWith(nameSuffix));
  if (found.length !== 1) throw new Error(`expected one ${type} named *${nameSuffix}, found ${found.length}`);
  return found[0];
}

/** Runs the prod stack under the mocks and collects its IAM documents. */
export async function prodPolicies(): Promise<Policies> {
  const { resources, outputs } = await simulateStack("Pulumi.prod.yaml");
  const json = (r: RegisteredResource, field: string): object =>
    JSON.parse(r.inputs[field] as string) as object;
  const rolePolicy = (suffix: string) =>
    json(findOne(resources, "aws:iam/rolePolicy:RolePolicy", suffix), "policy");
  const roles = outputs.replicaRoleArns as Record<string, string>;
  return {
    bucketArn: `arn:aws:s3:::${outputs.bucketName as string}`,
    keyArn: outputs.kmsKeyArn as string,
    queueArn: (outputs.queueUrl as string).replace(
      /^https:\/\/sqs\.([^.]+)\.amazonaws\.com\/(\d+)\/(.+)$/,
      "arn:aws:sqs:$1:$2:$3",
    ),
    logGroupArn: `arn:aws:logs:${DEFAULT_REGION}:${ACCOUNT_ID}:log-group:${outputs.verifierLogGroupName as string}`,
    bucketPolicy: json(findOne(resources, "aws:s3/bucketPolicy:BucketPolicy", "-backups-policy"), "policy"),
    keyPolicy: json(findOne(resources, "aws:kms/key:Key", "-backups-key"), "policy"),
    roles: {
      orders: { arn: roles["orders/orders-db3"], policy: rolePolicy("-orders-orders-db3-policy") },
      billing: { arn: roles["billing/billing-db2"], policy: rolePolicy("-billing-billing-db2-policy") },
      verifier: { arn: outputs.verifierRoleArn as string, policy: rolePolicy("-verifier-policy") },
      operator: { arn: outputs.operatorRoleArn as string, policy: rolePolicy("-operators-policy") },
      admin: { arn: ADMIN_ARN, policy: ADMIN_POLICY },
    },
  };
}

/** The S3 operations the matrix names, with the IAM action each is authorised as and the context S3 sets. */
export const S3_WRITES = {
  PutObject: { action: "s3:PutObject", creates: true },
  CompleteMultipartUpload: { action: "s3:PutObject", creates: true },
  CreateMultipartUpload: { action: "s3:PutObject", creates: false },
  UploadPart: { action: "s3:PutObject", creates: false },
} as const;

/** One request: an IAM action, or an S3 write operation (its action and creation flag follow from it). */
export interface Request {
  who: Who;
  action: string;
  resource: string;
  context?: Context;
}

/**
 * Runs one request through the simulator against the identity policy of `who`, the bucket policy (S3) or
 * the key policy (KMS). A simulator validation error fails the test, never "denies"; so does a context key
 * the simulator ignored (the case would pass for the wrong reason).
 */
export async function decide(p: Policies, r: Request): Promise<Decision> {
  const write = S3_WRITES[r.action as keyof typeof S3_WRITES];
  const action = write?.action ?? r.action;
  const service = action.split(":")[0];
  const resourcePolicy = service === "s3" ? p.bucketPolicy : service === "kms" ? p.keyPolicy : undefined;
  const context: Context = {
    "aws:SecureTransport": "true",
    ...(service === "s3" ? { "s3:TlsVersion": "1.3" } : {}),
    ...(r.who === "anonymous" ? {} : { "aws:PrincipalArn": p.roles[r.who].arn }),
    ...(write ? { "s3:ObjectCreationOperation": String(write.creates) } : {}),
    ...r.context,
  };
  const simulation: Simulation = {
    request: {
      principal: r.who === "anonymous" ? anonymousPrincipal : p.roles[r.who].arn,
      action,
      resource: { resource: r.resource, accountId: ACCOUNT_ID },
      contextVariables: context,
    },
    identityPolicies:
      r.who === "anonymous" ? [] : [{ name: `${r.who}-policy`, policy: p.roles[r.who].policy }],
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    resourcePolicy,
    additionalSettings: { s3: { blockPublicAccess: true } },
  };
  const result = await runSimulation(simulation, {});
  if (result.resultType === "error")
    throw new Error(`simulator rejected the request: ${JSON.stringify(result.errors)}`);
  const ignored = result.resultType === "single" ? (result.result.ignoredContextKeys ?? []) : [];
  const meaningful = ignored.filter((k) => k in (r.context ?? {}));
  if (meaningful.length)
    throw new Error(`simulator ignored context keys ${meaningful.join(", ")} for ${action}`);
  return result.overallResult === "Allowed" ? "Allowed" : "Denied";
}
