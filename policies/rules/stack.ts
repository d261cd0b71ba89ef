import type { PolicyResource, ReportViolation, StackValidation, StackValidationArgs } from "@pulumi/policy";
import type { Resource } from "@pulumi/pulumi";

/** A resource class of a Pulumi SDK, e.g. `aws.s3.Bucket`. */
// The policy SDK types resource classes the same way (constructor with any arguments).
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type ResourceClass = { new (...rest: any[]): Resource };

/**
 * The type token of a resource class (`aws:s3/bucket:Bucket`). Generated SDK classes carry it as the
 * static `__pulumiType`, which `@pulumi/policy` itself reads to match types; it is not in the typings.
 */
export function typeToken(resourceClass: ResourceClass): string {
  const token = (resourceClass as unknown as { __pulumiType?: unknown }).__pulumiType;
  if (typeof token !== "string")
    throw new Error(`${resourceClass.name} is not a generated Pulumi resource class`);
  return token;
}

/** Called once per resource of the rule's type, with every resource of the stack for pairing. */
export type EachResourceCheck = (
  resource: PolicyResource,
  stack: PolicyResource[],
  report: (message: string) => void,
  args: StackValidationArgs,
) => void;

/**
 * A stack validation that runs `check` for every resource of `resourceClass` and reports against that
 * resource's URN. Unlike `validateStackResourcesOfType`, `check` sees the whole stack, because the
 * settings of a bucket or a role live in separate resources. A stack with no such resource marks the
 * rule not applicable, with the reason, instead of passing silently.
 */
export function validateEachOfType(resourceClass: ResourceClass, check: EachResourceCheck): StackValidation {
  return (args: StackValidationArgs, reportViolation: ReportViolation) => {
    const matching = args.resources.filter((r) => r.isType(resourceClass));
    if (matching.length === 0) {
      args.notApplicable(`the stack has no resources of type '${typeToken(resourceClass)}'`);
    }
    for (const resource of matching) {
      check(resource, args.resources, (message) => reportViolation(message, resource.urn), args);
    }
  };
}
