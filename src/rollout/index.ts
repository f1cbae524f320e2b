/**
 * The rollout namespace as users see it (`import { Sampler } from "arpo"`): the Sampler service, the
 * four sampler layers with their config Schemas, the runner a custom sampler plugs a Policy into, and
 * the scripted test engine. Inside src/, import the modules directly.
 */
export * from "./Sampler.ts"
export { globalPolicy, layerGlobal } from "./global.ts"
export { arpoPaperPolicy, arpoReferencePolicy, layerArpo } from "./arpo.ts"
export { aepoPolicy, initialFromProbe, layerAepo } from "./aepo.ts"
export { layerRandomBranch, randomBranchPolicy } from "./randomBranch.ts"
export * from "./config.ts"
export * from "./policy.ts"
export { fromPolicy, runnerEnv, runRollout, settingsOf } from "./runner.ts"
export type { RunnerEnv, RunnerSettings, RunResult, RunTrajectory } from "./runner.ts"
export { layerScripted } from "../engine/scripted.ts"
