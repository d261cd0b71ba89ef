import type { PolicyResource } from "@pulumi/policy";

/**
 * Pairing a resource with the separate resources that configure it, as `@pulumi/aws` 7 models S3
 * buckets (versioning, SSE, lifecycle … are resources of their own with a `bucket` input) and IAM
 * roles (`RolePolicy.role`, `RolePolicyAttachment.role`).
 *
 * A configuration resource belongs to a target when either
 * 1. the engine says its input depends on the target (`propertyDependencies[input]` holds the target:
 *    what `pulumi preview`/`up` provides, and robust even while ids are still unknown), or
 * 2. the input's value equals one of the target's identities: its `id`, `arn`, `name`, `bucket` or
 *    `url` output, or its URN (what the offline runner has: values as the mocks resolve them).
 */

/** Properties whose values identify a resource when another resource refers to it. */
const IDENTITY_PROPERTIES = ["id", "arn", "name", "bucket", "url"] as const;

/** Every value by which another resource's input may refer to `target`. */
export function identitiesOf(target: PolicyResource): Set<string> {
  const values = new Set<string>([target.urn]);
  for (const key of IDENTITY_PROPERTIES) {
    const value: unknown = target.props[key];
    if (typeof value === "string" && value.length > 0) values.add(value);
  }
  return values;
}

/** True when `resource`'s `input` refers to `target` (by dependency or by value). */
export function refersTo(resource: PolicyResource, input: string, target: PolicyResource): boolean {
  const dependencies = resource.propertyDependencies?.[input] ?? [];
  // When the engine knows the dependencies, they decide: the value may still be unknown in a preview.
  if (dependencies.length > 0) return dependencies.some((dep) => dep.urn === target.urn);
  const value: unknown = resource.props[input];
  return typeof value === "string" && identitiesOf(target).has(value);
}

/** The resources of `resources` that refer to `target` through `input`. */
export function configuring(
  resources: PolicyResource[],
  input: string,
  target: PolicyResource,
): PolicyResource[] {
  return resources.filter((r) => r.urn !== target.urn && refersTo(r, input, target));
}
