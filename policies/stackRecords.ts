import * as fs from "node:fs";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";

import { PROJECT_ROOT, type RegisteredResource, simulateStack } from "../tests/support/pulumi-mocks";
import type { ResourceRecord } from "./harness";

/**
 * The resources the real stack program registers for a stack config, under the shared mocks
 * (`tests/support/pulumi-mocks.ts`), with the id and outputs each one got back.
 *
 * Stack rules pair a bucket with its configuration resources by value, and those values (the bucket's
 * name, a role's id) are outputs the mocks computed, not inputs. The mock monitor keeps what it
 * returned per URN (`getRegisteredResources()`, public on `MockMonitor`); it is read right after the
 * run, before any other run can replace the monitor.
 */
export async function recordStack(
  stackConfigFile: string,
  overrides: Record<string, unknown> = {},
): Promise<ResourceRecord[]> {
  const run = await simulateStack(stackConfigFile, overrides);
  const returned = registeredState();
  return run.resources.map((resource) => withOutputs(resource, returned.get(resource.urn)));
}

/** The example stack configs next to `Pulumi.yaml` (`Pulumi.dev.yaml`, `Pulumi.prod.yaml`, …), sorted. */
export function exampleStackConfigs(root = PROJECT_ROOT): string[] {
  return fs
    .readdirSync(root)
    .filter((f) => /^Pulumi\.[^.]+\.yaml$/.test(f))
    .sort()
    .map((f) => path.join(root, f));
}

interface ReturnedState {
  id: string | null;
  state: Record<string, unknown>;
}

function registeredState(): Map<string, ReturnedState> {
  const monitor = pulumi.runtime.getMonitor() as unknown as {
    getRegisteredResources?: () => Map<string, ReturnedState>;
  };
  if (typeof monitor?.getRegisteredResources !== "function") {
    throw new Error(
      "the Pulumi mock monitor no longer exposes getRegisteredResources(); record ids and outputs in tests/support/pulumi-mocks.ts instead",
    );
  }
  return monitor.getRegisteredResources();
}

/**
 * Only what the mocks computed is kept as outputs: the echo of an input would hide a later change of
 * that input (the tests derive variants by changing inputs). Identity values are plain strings at the
 * top level of the serialised state; nested values keep the wire format's secret and resource
 * wrappers, which no rule needs, so only those strings are taken.
 */
function withOutputs(resource: RegisteredResource, returned: ReturnedState | undefined): ResourceRecord {
  const outputs = Object.fromEntries(
    Object.entries(returned?.state ?? {}).filter(
      ([k, v]) => typeof v === "string" && !(k in resource.inputs),
    ),
  );
  return {
    type: resource.type,
    name: resource.name,
    urn: resource.urn,
    inputs: resource.inputs,
    ...(resource.parent ? { parent: resource.parent } : {}),
    ...(resource.provider ? { provider: resource.provider } : {}),
    ...(returned?.id ? { id: returned.id } : {}),
    outputs,
  };
}
