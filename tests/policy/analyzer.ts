import { type ChildProcess, spawn } from "node:child_process";
import * as path from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as analyzerRpc from "@pulumi/pulumi/proto/analyzer_grpc_pb";
import * as analyzer from "@pulumi/pulumi/proto/analyzer_pb";
import { Empty } from "google-protobuf/google/protobuf/empty_pb";
import { Struct } from "google-protobuf/google/protobuf/struct_pb";

import type { ResourceRecord } from "../../policies/harness";

/**
 * The real policy pack, served the way the Pulumi CLI serves it: `policies/index.ts` runs in its own
 * process (cwd `policies/`, where `PolicyPack` reads the version), prints its gRPC port, and answers
 * the analyzer protocol of `@pulumi/policy`. Tests play the engine's part over that protocol.
 */

const POLICIES_DIR = path.resolve(__dirname, "..", "..", "policies");
const TSX = path.resolve(__dirname, "..", "..", "node_modules", ".bin", "tsx");

/** One diagnostic the pack returned. */
export interface Diagnostic {
  policyName: string;
  urn: string;
  enforcementLevel: string;
  message: string;
}

/** What one analyze call returned. */
export interface Analysis {
  diagnostics: Diagnostic[];
  notApplicable: { policyName: string; reason: string }[];
}

/** A running pack and a client connected to it. */
export interface ServedPack {
  client: analyzerRpc.AnalyzerClient;
  stop(): void;
}

/** Starts `policies/index.ts` and connects to the port it prints. */
export async function servePolicyPack(): Promise<ServedPack> {
  const child = spawn(TSX, ["index.ts"], { cwd: POLICIES_DIR, stdio: ["ignore", "pipe", "pipe"] });
  const port = await portOf(child);
  const client = new analyzerRpc.AnalyzerClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return {
    client,
    stop: () => {
      client.close();
      child.kill();
    },
  };
}

function portOf(child: ChildProcess): Promise<number> {
  return new Promise((resolve, reject) => {
    let stdout = "";
    let stderr = "";
    child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdout?.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
      const match = /^(\d+)\s*$/m.exec(stdout);
      if (match) resolve(Number(match[1]));
    });
    child.on("exit", (code) =>
      reject(new Error(`policies/index.ts exited with ${code} before serving: ${stderr || stdout}`)),
    );
  });
}

/** The policies the pack declares, with their levels, as the CLI lists them. */
export function analyzerInfo(client: analyzerRpc.AnalyzerClient): Promise<{ name: string; level: string }[]> {
  return new Promise((resolve, reject) =>
    client.getAnalyzerInfo(new Empty(), (error, info) => {
      if (error) return reject(error);
      resolve(
        info.getPoliciesList().map((p) => ({ name: p.getName(), level: levelName(p.getEnforcementlevel()) })),
      );
    }),
  );
}

/** Every resource rule over one resource (its inputs), as the engine asks before a step. */
export function analyzeResource(
  client: analyzerRpc.AnalyzerClient,
  record: ResourceRecord,
): Promise<Analysis> {
  const request = new analyzer.AnalyzeRequest()
    .setType(record.type)
    .setUrn(record.urn)
    .setName(record.name)
    .setProperties(struct(record.inputs))
    .setOptions(new analyzer.AnalyzerResourceOptions());
  return new Promise((resolve, reject) =>
    // The engine attributes a resource analysis's diagnostics to the resource it asked about.
    client.analyze(request, (error, response) =>
      error ? reject(error) : resolve(analysisOf(response, record.urn)),
    ),
  );
}

/** Every stack rule over all resources (outputs: computed values under the inputs), as after a run. */
export function analyzeStack(
  client: analyzerRpc.AnalyzerClient,
  records: ResourceRecord[],
): Promise<Analysis> {
  const resources = records.map((record) => {
    const props = { ...(record.outputs ?? {}), ...(record.id ? { id: record.id } : {}), ...record.inputs };
    const resource = new analyzer.AnalyzerResource()
      .setType(record.type)
      .setUrn(record.urn)
      .setName(record.name)
      .setProperties(struct(props))
      .setOptions(new analyzer.AnalyzerResourceOptions());
    return record.parent ? resource.setParent(record.parent) : resource;
  });
  const request = new analyzer.AnalyzeStackRequest().setResourcesList(resources);
  return new Promise((resolve, reject) =>
    client.analyzeStack(request, (error, response) =>
      error ? reject(error) : resolve(analysisOf(response)),
    ),
  );
}

/** Resource rules over every record plus stack rules over the stack: the whole of a `pulumi preview`. */
export async function analyzeAll(
  client: analyzerRpc.AnalyzerClient,
  records: ResourceRecord[],
): Promise<Analysis> {
  const analyses = [
    ...(await Promise.all(records.map((r) => analyzeResource(client, r)))),
    await analyzeStack(client, records),
  ];
  return {
    diagnostics: analyses.flatMap((a) => a.diagnostics),
    notApplicable: analyses.flatMap((a) => a.notApplicable),
  };
}

function analysisOf(response: analyzer.AnalyzeResponse, resourceUrn = ""): Analysis {
  return {
    diagnostics: response.getDiagnosticsList().map((d) => ({
      policyName: d.getPolicyname(),
      urn: d.getUrn() || resourceUrn,
      enforcementLevel: levelName(d.getEnforcementlevel()),
      message: d.getMessage(),
    })),
    notApplicable: response
      .getNotApplicableList()
      .map((n) => ({ policyName: n.getPolicyName(), reason: n.getReason() })),
  };
}

function levelName(level: analyzer.EnforcementLevel): string {
  const names: Record<number, string> = {
    [analyzer.EnforcementLevel.ADVISORY]: "advisory",
    [analyzer.EnforcementLevel.MANDATORY]: "mandatory",
    [analyzer.EnforcementLevel.DISABLED]: "disabled",
    [analyzer.EnforcementLevel.REMEDIATE]: "remediate",
  };
  return names[level] ?? `unknown(${level})`;
}

/** Inputs as a protobuf Struct; a JSON round trip drops `undefined`, which Struct cannot hold. */
function struct(value: Record<string, unknown>): Struct {
  return Struct.fromJavaScript(
    JSON.parse(JSON.stringify(value)) as Parameters<typeof Struct.fromJavaScript>[0],
  );
}
