import { PolicyPack } from "@pulumi/policy";

import { policies, POLICY_PACK_NAME } from "./pack";

// The entry point `pulumi preview --policy-pack policies` runs. Constructing the pack starts the
// analyzer's gRPC server, so nothing else (tests, the offline runner) may import this module.
new PolicyPack(POLICY_PACK_NAME, { policies, enforcementLevel: "mandatory" });
