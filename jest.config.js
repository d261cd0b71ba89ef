/** Four tiers (DESIGN §6); `scripts/test.sh` runs the fast ones in parallel and integration in band. */
const transform = { "^.+\\.(t|j)sx?$": ["@swc/jest", { jsc: { target: "es2022" } }] };
const project = (name, extra = {}) => ({
  displayName: name,
  testEnvironment: "node",
  transform,
  testMatch: [`<rootDir>/tests/${name}/**/*.test.ts`],
  ...extra,
});

module.exports = {
  projects: [
    project("unit"),
    project("infra"),
    project("policy"),
    project("integration", { slowTestThreshold: 120 }),
  ],
};
