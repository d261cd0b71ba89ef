import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";

/**
 * Attributes the samples of a V8 CPU profile (`node --cpu-prof`) to the stages of the pipeline: each sample
 * goes to the first stage that matches a frame on its stack, from the leaf up, so a hash called from the
 * upload counts as hashing and the rest of the upload as the HTTP client. `tsx bench/cpuprofile.ts DIR`
 * prints the table for every profile in DIR; write them by running the CLI with
 * `NODE_OPTIONS="--cpu-prof --cpu-prof-dir=DIR"` (one profile per process).
 *
 * The profile sees the main thread only: zstd (its own process) and the libuv thread pool (file reads and
 * writes) are not in it; `(program)` is native time outside any JavaScript frame (mostly the event loop's
 * own work: polling, the pipes' and sockets' syscalls).
 */

/** A frame of the profile's call tree. */
interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

/** The parts of a `.cpuprofile` read here. */
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** A stage and how a frame is recognised as belonging to it (function name and script URL). */
interface Stage {
  name: string;
  matches: (functionName: string, url: string) => boolean;
}

/** The stages, most specific first (a frame matching several belongs to the first). */
export const STAGES: Stage[] = [
  { name: "idle", matches: (f) => f === "(idle)" },
  { name: "garbage collection", matches: (f) => f === "(garbage collector)" },
  {
    name: "sha256 / md5 (crypto hash)",
    matches: (f, u) => u.includes("internal/crypto/hash") || /^(Hash|digest|createHash)$/.test(f),
  },
  { name: "crc32", matches: (f) => f === "crc32" },
  { name: "SigV4 signing", matches: (_f, u) => u.includes("signature-v4") },
  {
    name: "tar framing (tar-stream, streamx)",
    matches: (_f, u) => u.includes("tar-stream") || u.includes("streamx") || u.includes("/tar.ts"),
  },
  {
    name: "HTTP client (SDK, http)",
    matches: (_f, u) =>
      u.includes("@smithy") || u.includes("@aws-sdk") || u.includes("node:_http") || u.includes("node:http"),
  },
  {
    name: "pipe/socket writes and reads",
    matches: (_f, u) => u.includes("stream_base_commons") || u.includes("node:net"),
  },
  { name: "node streams", matches: (_f, u) => u.includes("internal/streams") },
  {
    name: "file I/O calls",
    matches: (_f, u) => u.includes("internal/fs") || u === "node:fs",
  },
  { name: "native, outside JavaScript", matches: (f) => f === "(program)" },
  { name: "our code", matches: (_f, u) => u.includes("hostscripts") || u.includes("mysql-backup.cjs") },
];

/** Milliseconds per stage of one profile, and the profile's wall time. */
export interface StageTimes {
  wallMs: number;
  stages: Map<string, number>;
}

/** Attributes every sample of `profile` to a stage (or "other"). */
export function attribute(profile: CpuProfile): StageTimes {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const stageOf = new Map<number, string>();
  const classify = (id: number): string => {
    const known = stageOf.get(id);
    if (known !== undefined) return known;
    let stage = "other";
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)!.callFrame;
      const found = STAGES.find((s) => s.matches(frame.functionName, frame.url));
      if (found) {
        stage = found.name;
        break;
      }
    }
    stageOf.set(id, stage);
    return stage;
  };
  const stages = new Map<string, number>();
  profile.samples.forEach((id, i) => {
    const stage = classify(id);
    stages.set(stage, (stages.get(stage) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000);
  });
  return { wallMs: (profile.endTime - profile.startTime) / 1000, stages };
}

/** The table of one profile: ms per stage, busiest first, with its share of the busy (non-idle) time. */
export function describe(name: string, times: StageTimes): string {
  const busy = [...times.stages].filter(([stage]) => stage !== "idle").reduce((sum, [, ms]) => sum + ms, 0);
  const lines = [
    `${name}: wall ${(times.wallMs / 1000).toFixed(2)} s, main thread busy ${(busy / 1000).toFixed(2)} s`,
  ];
  for (const [stage, ms] of [...times.stages].sort((a, b) => b[1] - a[1])) {
    const share = stage === "idle" ? "" : ` (${((100 * ms) / busy).toFixed(1)} %)`;
    lines.push(`  ${(ms / 1000).toFixed(3).padStart(8)} s  ${stage}${share}`);
  }
  return lines.join("\n");
}

async function main(dir: string): Promise<void> {
  const names = (await readdir(dir)).filter((name) => name.endsWith(".cpuprofile")).sort();
  if (names.length === 0) throw new Error(`no .cpuprofile in ${dir}`);
  for (const name of names) {
    const profile = JSON.parse(await readFile(join(dir, name), "utf8")) as CpuProfile;
    console.log(describe(name, attribute(profile)));
  }
}

if (require.main === module) {
  const dir = process.argv[2];
  if (dir === undefined) {
    console.error("usage: tsx bench/cpuprofile.ts DIR (a directory of .cpuprofile files)");
    process.exit(2);
  }
  main(dir).catch((error: Error) => {
    console.error(error.message);
    process.exit(1);
  });
}
