import * as fs from "node:fs";
import * as path from "node:path";

import { PROJECT_ROOT, type RegisteredResource, simulateStack } from "./stackSimulator";
import type { ResourceRecord } from "./harness";

/**
 * The resources the real stack program registers for a stack config, under the shared mocks
 * (`policies/stackSimulator.ts`), with the id and outputs each one got back.
 *
 * Stack rules pair a bucket with its configuration resources by value, and those values (the bucket's
 * name, a role's id) are outputs the mocks computed, not inputs; the shared mocks record them per resource.
 */
export async function recordStack(
  stackConfigFile: string,
  overrides: Record<string, unknown> = {},
): Promise<ResourceRecord[]> {
  const run = await simulateStack(stackConfigFile, overrides);
  return run.resources.map(withOutputs);
}

/** The example stack configs next to `Pulumi.yaml` (`Pulumi.dev.yaml`, `Pulumi.prod.yaml`, …), sorted. */
export function exampleStackConfigs(root = PROJECT_ROOT): string[] {
  return fs
    .readdirSync(root)
    .filter((f) => /^Pulumi\.[^.]+\.yaml$/.test(f))
    .sort()
    .map((f) => path.join(root, f));
}

/**
 * Only what the mocks computed is kept as outputs: the echo of an input would hide a later change of
 * that input (the tests derive variants by changing inputs). Identity values are plain strings at the
 * top level of the serialised state; nested values keep the wire format's secret and resource
 * wrappers, which no rule needs, so only those strings are taken.
 */
function withOutputs(resource: RegisteredResource): ResourceRecord {
  const outputs = Object.fromEntries(
    Object.entries(resource.state).filter(([k, v]) => typeof v === "string" && !(k in resource.inputs)),
  );
  return {
    type: resource.type,
    name: resource.name,
    urn: resource.urn,
    inputs: resource.inputs,
    ...(resource.parent ? { parent: resource.parent } : {}),
    ...(resource.provider ? { provider: resource.provider } : {}),
    ...(resource.id ? { id: resource.id } : {}),
    outputs,
  };
}
