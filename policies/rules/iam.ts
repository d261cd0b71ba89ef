import * as aws from "@pulumi/aws";
import type {
  PolicyResource,
  ResourceValidationArgs,
  ResourceValidationPolicy,
  StackValidationPolicy,
} from "@pulumi/policy";

import { allows, isRecord, list, type Statement, statementsOf, UnreadableDocument } from "./documents";
import { configuring, identitiesOf } from "./pairing";
import { type ResourceClass, typeToken, validateEachOfType } from "./stack";

/** A policy document found in a resource, with where it lives for messages. */
interface FoundDocument {
  where: string;
  policy: unknown;
}

/** The resource types that carry IAM permission documents, and where in their inputs. */
const DOCUMENT_HOLDERS: {
  resourceClass: ResourceClass;
  documents: (props: Record<string, unknown>) => FoundDocument[];
}[] = [
  { resourceClass: aws.iam.Policy, documents: (p) => [{ where: "policy", policy: p.policy }] },
  { resourceClass: aws.iam.RolePolicy, documents: (p) => [{ where: "policy", policy: p.policy }] },
  { resourceClass: aws.iam.UserPolicy, documents: (p) => [{ where: "policy", policy: p.policy }] },
  { resourceClass: aws.iam.GroupPolicy, documents: (p) => [{ where: "policy", policy: p.policy }] },
  { resourceClass: aws.iam.Role, documents: inlinePoliciesOf },
];

function inlinePoliciesOf(props: Record<string, unknown>): FoundDocument[] {
  return list(props.inlinePolicies)
    .filter(isRecord)
    .filter((p) => p.policy !== undefined)
    .map((p, i) => ({ where: `inlinePolicies[${i}] (${String(p.name ?? "unnamed")})`, policy: p.policy }));
}

/** Allow on every resource of every action, or of every action but a few (`NotAction`). */
function grantsEverything(statement: Statement): boolean {
  const everyAction = statement.actions.includes("*") || statement.notActions.length > 0;
  const everyResource = statement.resources.includes("*") || statement.notResources.length > 0;
  return statement.effect === "Allow" && everyAction && everyResource;
}

/** No IAM document grants `*` (or `NotAction`) on `*`. */
export const iamNoStarOnStar: ResourceValidationPolicy = {
  name: "iam-no-star-on-star",
  description: 'IAM policies never allow every action ("*" or NotAction) on every resource ("*").',
  enforcementLevel: "mandatory",
  severity: "critical",
  validateResource: (args: ResourceValidationArgs, report) => {
    const holder = DOCUMENT_HOLDERS.find((h) => args.isType(h.resourceClass));
    if (!holder) {
      args.notApplicable(
        `Policy only applies to resources of types ${DOCUMENT_HOLDERS.map((h) => `'${typeToken(h.resourceClass)}'`).join(", ")}`,
      );
      return;
    }
    for (const document of holder.documents(args.props)) {
      for (const problem of starOnStarProblems(document)) report(problem);
    }
  },
};

function starOnStarProblems(document: FoundDocument): string[] {
  let statements: Statement[];
  try {
    statements = statementsOf(document.policy);
  } catch (error) {
    if (!(error instanceof UnreadableDocument)) throw error;
    return [
      `The document in ${document.where} cannot be read: ${error.message}. Give it as a JSON policy document.`,
    ];
  }
  return statements
    .filter(grantsEverything)
    .map(
      (s) =>
        `Statement ${s.sid ? `'${s.sid}' ` : ""}in ${document.where} allows ${s.notActions.length > 0 ? `every action except ${s.notActions.join(", ")}` : '"*"'} ` +
        `on every resource. List the actions the role needs and the ARNs it needs them on.`,
    );
}

/** Actions no host role may have: each one lets a compromised host destroy or unprotect backups. */
export const BACKUP_TAMPERING_ACTIONS = [
  "s3:DeleteObjectVersion",
  "s3:PutBucketObjectLockConfiguration",
  "s3:PutBucketPolicy",
  "s3:BypassGovernanceRetention",
];

/** AWS-managed policies that grant some of those actions; their documents are not in the stack. */
const BROAD_MANAGED_POLICIES = ["AdministratorAccess", "PowerUserAccess", "AmazonS3FullAccess"];

/** Services whose trust makes a role a host (instance) role. */
const HOST_SERVICES = ["ec2.amazonaws.com"];

/** No role that hosts assume may delete versions, change object lock or the bucket policy, or bypass retention. */
export const iamHostRoleCannotTamperWithBackups: StackValidationPolicy = {
  name: "iam-host-role-cannot-tamper-with-backups",
  description:
    "No host (EC2 instance) role is allowed s3:DeleteObjectVersion, s3:PutBucketObjectLockConfiguration, s3:PutBucketPolicy or s3:BypassGovernanceRetention.",
  enforcementLevel: "mandatory",
  severity: "critical",
  configSchema: {
    properties: {
      forbiddenActions: { type: "array", items: { type: "string" }, default: BACKUP_TAMPERING_ACTIONS },
    },
  },
  validateStack: validateEachOfType(aws.iam.Role, (role, stack, report, args) => {
    if (!isHostRole(role, stack)) return;
    const { forbiddenActions = BACKUP_TAMPERING_ACTIONS } = args.getConfig<{ forbiddenActions?: string[] }>();
    for (const document of documentsOfRole(role, stack)) {
      let statements: Statement[];
      try {
        statements = statementsOf(document.policy);
      } catch (error) {
        if (!(error instanceof UnreadableDocument)) throw error;
        report(
          `Host role '${role.name}': the document in ${document.where} cannot be read: ${error.message}.`,
        );
        continue;
      }
      const granted = forbiddenActions.filter((action) => statements.some((s) => allows(s, action)));
      if (granted.length > 0) {
        report(
          `Host role '${role.name}' is allowed ${granted.join(", ")} through ${document.where}. Remove these actions ` +
            `(and any wildcard such as "s3:*", "s3:Delete*" or "s3:PutBucket*" that covers them) from its statements.`,
        );
      }
    }
    for (const arn of managedPolicyArnsOf(role, stack)) {
      const broad = BROAD_MANAGED_POLICIES.find((name) => arn === `arn:aws:iam::aws:policy/${name}`);
      if (broad) {
        report(
          `Host role '${role.name}' has the AWS-managed policy ${broad} attached, which allows deleting object ` +
            `versions and changing the bucket policy. Detach it and grant only the actions the host needs.`,
        );
      }
    }
  }),
};

/** A role an EC2 instance assumes: trusted by the EC2 service, or in an instance profile. */
function isHostRole(role: PolicyResource, stack: PolicyResource[]): boolean {
  if (configuring(stack, "role", role).some((r) => r.isType(aws.iam.InstanceProfile))) return true;
  try {
    return statementsOf(role.props.assumeRolePolicy).some(
      (s) => s.effect === "Allow" && s.principals.some((p) => HOST_SERVICES.includes(p)),
    );
  } catch (error) {
    // An unreadable trust policy cannot prove the role is not a host role; treat it as one.
    if (error instanceof UnreadableDocument) return true;
    throw error;
  }
}

/** Inline policies, role policies and attached policies of the stack that apply to `role`. */
function documentsOfRole(role: PolicyResource, stack: PolicyResource[]): FoundDocument[] {
  const attached = configuring(stack, "role", role);
  const rolePolicies = attached
    .filter((r) => r.isType(aws.iam.RolePolicy))
    .map((r) => ({ where: `aws.iam.RolePolicy '${r.name}'`, policy: r.props.policy }));
  const managed = managedPolicyArnsOf(role, stack);
  const stackPolicies = stack
    .filter((r) => r.isType(aws.iam.Policy) && managed.some((arn) => identitiesOf(r).has(arn)))
    .map((r) => ({ where: `aws.iam.Policy '${r.name}'`, policy: r.props.policy }));
  const inline = inlinePoliciesOf(role.props).map((d) => ({ ...d, where: `the role's ${d.where}` }));
  return [...inline, ...rolePolicies, ...stackPolicies];
}

function managedPolicyArnsOf(role: PolicyResource, stack: PolicyResource[]): string[] {
  const attachments = configuring(stack, "role", role)
    .filter((r) => r.isType(aws.iam.RolePolicyAttachment))
    .map((r) => r.props.policyArn);
  return [...list(role.props.managedPolicyArns), ...attachments].filter(
    (a): a is string => typeof a === "string",
  );
}

/** Every IAM rule. */
export const iamRules = [iamNoStarOnStar, iamHostRoleCannotTamperWithBackups];
