/**
 * The built-in experiments the `arpo` CLI knows by name (src/cli/experiments.ts reads this list).
 * Each is defined in src/experiment/catalog/ and documented as a research script in experiments/.
 */
import type { Experiment } from "./Experiment.ts"
import { arpoVsGrpo } from "./catalog/arpoVsGrpo.ts"
import { samplers } from "./catalog/samplers.ts"
import { attribution, betaSweep, entropyAfterTools } from "./catalog/studies.ts"
import { engines } from "./catalog/engines.ts"
import { mismatch } from "./catalog/mismatch.ts"
import { premise, premiseEntropy, premisePower } from "./catalog/premise.ts"
import { trainers } from "./catalog/trainers.ts"
import { realModel } from "./catalog/realModel.ts"

export const builtin: ReadonlyArray<Experiment> = [arpoVsGrpo, entropyAfterTools, attribution, betaSweep, samplers, trainers, engines, mismatch, premise, premiseEntropy, premisePower, realModel]
