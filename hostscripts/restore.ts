import { parseVerifyConfig, type VerifyConfig } from "../contracts";
import type { Subcommand } from "./command";
import { PipelineError } from "./errors";

/** `mysql-backup restore`: the disaster-recovery command. Arrives with issue 6. */
export const restoreCommand: Subcommand<VerifyConfig> = {
  name: "restore",
  describe: "restore a verified backup into a datadir (not yet: issue 6)",
  parseConfig: parseVerifyConfig,
  async run() {
    throw new PipelineError(
      "NotImplemented",
      "restore is not available yet",
      "restore by hand: download the archive and manifest, check sha256, extract with zstd -d | tar -x (docs/operations.md)",
    );
  },
};
