import { parseVerifyConfig, type VerifyConfig } from "../contracts";
import type { Subcommand } from "./command";
import { PipelineError } from "./errors";

export const verifyCommand: Subcommand<VerifyConfig> = {
  name: "verify",
  describe: "(being written)",
  parseConfig: parseVerifyConfig,
  async run() {
    throw new PipelineError("NotImplemented", "verify is being written", "");
  },
};
