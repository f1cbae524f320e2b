// A plausible synthetic events stream (arms × seeds × steps) for report tests: accuracy rises towards
// each arm's target with seed noise, tool calls and branching per arm, timings, evals and a note.
import type { EventBody, StampedEvent } from "../../src/events/Event.ts"

export interface SyntheticArm {
  readonly name: string
  /** accuracy reached at the last step */
  readonly finalAccuracy: number
  readonly toolCallsPerTrajectory: number
  /** branch probability (0 for a global sampler: no rollout.branch events) */
  readonly branchRate: number
}

export interface SyntheticOptions {
  readonly arms: ReadonlyArray<SyntheticArm>
  readonly seeds: ReadonlyArray<number>
  readonly steps: number
  /** seed-to-seed noise (standard deviation-ish) on accuracy */
  readonly noise: number
  readonly evalEvery?: number
  /** held-out questions per evaluation: each eval event then carries per-question greedy outcomes (0/1) */
  readonly questions?: number
}

/** mulberry32: a tiny deterministic generator for test data only */
const rng = (seed: number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export const synthetic = (o: SyntheticOptions): Array<StampedEvent> => {
  const out: Array<StampedEvent> = []
  let seq = 0
  o.arms.forEach((arm, armIndex) => {
    for (const seed of o.seeds) {
      const rand = rng(seed * 1000 + armIndex)
      const seedOffset = (rand() - 0.5) * 2 * o.noise
      for (let step = 0; step < o.steps; step++) {
        const push = (event: EventBody) => out.push({ stamp: { run: "synthetic", arm: arm.name, seed, step, seq: seq++ }, event })
        const progress = o.steps > 1 ? step / (o.steps - 1) : 1
        const acc = Math.min(1, Math.max(0, 0.1 + (arm.finalAccuracy - 0.1) * Math.sqrt(progress) + seedOffset + (rand() - 0.5) * o.noise))
        const trajectories = 16
        const calls = Math.round(arm.toolCallsPerTrajectory * trajectories)
        push({ _tag: "engine.call", adapter: "embedded", op: "generate", sequences: trajectories, newTokens: 900, computedTokens: 1000, reusedTokens: 300, engineMs: 400 + 50 * rand() })
        for (let c = 0; c < 3; c++) {
          push({ _tag: "tool.call", tool: c === 2 ? "search" : "python", outcome: rand() < 0.1 ? "timeout" : "ok", attempts: 1, inputChars: 40, outputChars: 80, toolMs: 20 + 10 * rand() })
        }
        const hInit = 1.2 + 0.1 * rand()
        let considered = 0
        let taken = 0
        if (arm.branchRate > 0) {
          for (let b = 0; b < 4; b++) {
            const deltaH = (rand() - 0.3) * 0.4
            const probability = Math.min(1, Math.max(0, arm.branchRate + 0.5 * deltaH))
            const u = rand()
            considered++
            if (u < probability) taken++
            push({ _tag: "rollout.branch", prompt: b, node: String(2 * b + 1), hInitial: hInit * 20, hAfterTool: hInit * 20 + deltaH * Math.log(256), deltaH, probability, u, branched: u < probability })
          }
        }
        push({
          _tag: "rollout.batch", sampler: arm.name, prompts: 2, trajectories, failedTrajectories: 0, tokensGenerated: 900, tokensComputed: 1000,
          uniqueTreeTokens: 800, branchConsidered: considered, branchTaken: taken, toolCalls: calls, toolFailures: 0,
          meanEntropyInitial: hInit, meanEntropyAfterTool: hInit + 0.3 * (1 - progress) + 0.05 * rand(), engineMs: 450, toolMs: 70
        })
        push({ _tag: "reward.batch", mean: acc * 1.1 - 0.05, accuracy: acc, formatErrors: 0, toolCallsPerTrajectory: arm.toolCallsPerTrajectory * (0.9 + 0.2 * rand()), toolCallsPerSolved: arm.toolCallsPerTrajectory, trajectories })
        push({ _tag: "train.step", loss: 0.5 - 0.3 * progress + 0.05 * rand(), gradNorm: 1, clipFraction: 0.05, kl: 0.001, entropy: 1, tokens: 800, logprobMismatch: 1e-6, trainMs: 900 + 100 * rand() })
        if (o.evalEvery !== undefined && (step + 1) % o.evalEvery === 0) {
          const perQuestion = o.questions === undefined ? undefined : Array.from({ length: o.questions }, () => (rand() < acc ? 1 : 0))
          const greedy = perQuestion === undefined ? acc : perQuestion.reduce((a: number, b) => a + b, 0) / perQuestion.length
          push({
            _tag: "eval", split: "test", questions: o.questions ?? 100, accuracyGreedy: greedy, passAtK: Math.min(1, acc + 0.1), k: 4,
            toolCallsPerQuestion: arm.toolCallsPerTrajectory, evalMs: 2000, passAt: { "1": acc, "4": Math.min(1, acc + 0.1) }, samples: 4,
            ...(perQuestion === undefined ? {} : { greedyPerQuestion: perQuestion })
          })
        }
        if (step === 0 && seed === o.seeds[0]) push({ _tag: "note", level: "warn", message: `synthetic ${arm.name} warning` })
      }
    }
  })
  return out
}
