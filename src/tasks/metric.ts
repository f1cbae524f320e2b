/**
 * Which reward function scores a task: ARPO's training reward (format gate, token F1 of the last
 * `\boxed{}`, multi-tool bonus), exact match, math equivalence, or the evaluation-time token F1 of the
 * wiki QA sets. The functions themselves live in src/core (reward.ts, f1.ts); this only chooses.
 */
import { extractAnswer } from "../core/answer.ts"
import { exactMatch, maxF1 } from "../core/f1.ts"
import { mathEquivalent } from "../core/mathEquivalence.ts"
import { arpoReward, exactMatchReward, mathReward, type RewardResult } from "../core/reward.ts"
import { type Accuracy, type Metric, type Problem, problemsOf, type Split, type SplitSizes, type TaskDefinition } from "./Task.ts"

/** The rewards a synthetic task may be configured with. */
export type RewardChoice = "arpo" | "exact" | "math"

/**
 * The reward of a metric. `f1` is ARPO's reward read for its `accuracy` (the best token F1 over the
 * golds), the paper's metric for HotpotQA, 2Wiki, MuSiQue and Bamboogle; its `score` keeps the format
 * gate and the multi-tool bonus.
 */
export const rewardOf = (metric: Metric): (response: string, golds: ReadonlyArray<string>) => RewardResult => {
  switch (metric) {
    case "arpo":
    case "f1":
      return arpoReward
    case "exact":
      return exactMatchReward
    case "math":
      return mathReward
  }
}

/** The correctness of an extracted answer under a metric, in [0, 1]. */
export const answerAccuracy = (metric: Metric, answer: string, golds: ReadonlyArray<string>): number => {
  switch (metric) {
    case "arpo":
    case "f1":
      return maxF1(answer, golds)
    case "exact":
      return exactMatch(answer, golds) ? 1 : 0
    case "math":
      return golds.some((g) => mathEquivalent(answer, g)) ? 1 : 0
  }
}

/**
 * Evaluation-time accuracy (ARPO_SPEC §5.4): the evaluator's answer extraction (last `<answer>`, its
 * last `\boxed{}`, else fallbacks), then the metric; no format gate, no bonus.
 */
export const accuracyOf = (metric: Metric) => (response: string, golds: ReadonlyArray<string>): Accuracy => {
  const answer = extractAnswer(response)
  return { answer, accuracy: answer === undefined ? 0 : answerAccuracy(metric, answer, golds) }
}

/**
 * The task over a loaded dataset (benchmark file or parquet): problems addressed by index, scored with
 * `metric` (training reward and evaluation accuracy), with both tools allowed, no demonstrations and no corpus.
 */
export const datasetTask = (
  name: string,
  metric: Metric,
  sizes: SplitSizes,
  problem: (split: Split, index: number) => Problem | undefined
): TaskDefinition => {
  const reward = rewardOf(metric)
  const accuracy = accuracyOf(metric)
  return {
    name,
    metric,
    tools: ["search", "python"],
    sizes,
    problem,
    problems: problemsOf(problem, sizes),
    reward: (response, p) => reward(response, p.golds),
    accuracy: (response, p) => accuracy(response, p.golds),
    demonstrations: () => [],
    corpus: []
  }
}
