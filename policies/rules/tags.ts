import * as aws from "@pulumi/aws";
import type { ResourceValidationArgs, ResourceValidationPolicy } from "@pulumi/policy";

import { REQUIRED_TAG_KEYS } from "../../contracts/tags";
import { isRecord } from "./documents";

/**
 * Whether a resource type takes tags. Generated `@pulumi/aws` classes pass `args.tags` into their
 * registration exactly when the type is taggable, so the class itself is the list — no hand-kept
 * catalogue to fall behind the provider. Types of other packages count as taggable when they carry tags.
 */
export function isTaggable(type: string, props: Record<string, unknown>): boolean {
  const resourceClass = awsClassOf(type);
  if (!resourceClass) return props.tags !== undefined;
  return /resourceInputs\["tags"\]\s*=\s*args/.test(resourceClass.toString());
}

/** `aws:s3/bucket:Bucket` → `aws.s3.Bucket`; `undefined` for other packages or unknown tokens. */
function awsClassOf(type: string): { toString(): string } | undefined {
  const match = /^aws:([^/:]+)\/[^:]+:([A-Za-z0-9]+)$/.exec(type);
  if (!match) return undefined;
  const [, module, className] = match;
  const namespace: unknown = module === "index" ? aws : (aws as unknown as Record<string, unknown>)[module];
  if (typeof namespace !== "object" || namespace === null) return undefined;
  const candidate: unknown = (namespace as Record<string, unknown>)[className];
  return typeof candidate === "function" ? candidate : undefined;
}

/**
 * The tags a resource ends up with: its own `tags` (a map, or the Auto Scaling list of `{ key, value }`)
 * over the provider's `defaultTags`.
 */
function effectiveTags(args: Pick<ResourceValidationArgs, "props" | "provider">): Record<string, string> {
  const defaults = isRecord(args.provider?.props.defaultTags)
    ? args.provider.props.defaultTags.tags
    : undefined;
  const own = args.props.tags;
  const ownMap = Array.isArray(own)
    ? Object.fromEntries(own.filter(isRecord).map((t) => [String(t.key), String(t.value)]))
    : own;
  const tags: Record<string, string> = {};
  for (const source of [defaults, ownMap]) {
    if (!isRecord(source)) continue;
    for (const [key, value] of Object.entries(source)) if (typeof value === "string") tags[key] = value;
  }
  return tags;
}

/** Every taggable resource carries the pipeline's tags, so cost and incident tooling can find it. */
export const requiredTags: ResourceValidationPolicy = {
  name: "required-tags",
  description: `Every taggable resource carries the pipeline's tags (${REQUIRED_TAG_KEYS.join(", ")}).`,
  enforcementLevel: "mandatory",
  severity: "low",
  configSchema: {
    properties: {
      requiredTags: { type: "array", items: { type: "string" }, default: [...REQUIRED_TAG_KEYS] },
    },
  },
  validateResource: (args, report) => {
    if (!isTaggable(args.type, args.props)) {
      args.notApplicable(`resources of type '${args.type}' take no tags`);
      return;
    }
    const { requiredTags: keys = [...REQUIRED_TAG_KEYS] } = args.getConfig<{ requiredTags?: string[] }>();
    const tags = effectiveTags(args);
    const missing = keys.filter((key) => !tags[key]);
    if (missing.length > 0) {
      report(
        `Missing tags: ${missing.join(", ")}. Pass tags: pipelineTags(pipeline, environment) from contracts/tags.ts ` +
          `(for an Auto Scaling group, as { key, value, propagateAtLaunch: true } entries).`,
      );
    }
  },
};

/** Every tagging rule. */
export const tagRules = [requiredTags];
