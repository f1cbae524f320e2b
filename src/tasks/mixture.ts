/**
 * A weighted mixture of tasks as one task (e.g. arithmetic + multi-hop for the embedded model, so both
 * tools are learned together). Problem i of a split comes from the component drawn for i by a keyed
 * draw, and is that component's problem i, so it stays a pure function of (seed, split, i) and distinct
 * indices never share a component problem. Rewards and demonstrations are the component's own.
 */
import { Layer } from "effect"
import { derive, root, uniform } from "../core/random.ts"
import { type Demonstration, type Problem, problemsOf, type Range, rangeIndices, type Split, Task, type TaskDefinition } from "./Task.ts"

export interface Component {
  readonly task: TaskDefinition
  /** relative weight (> 0) */
  readonly weight: number
}

/** The component index for problem i of a split: inverse CDF of the weights at one keyed uniform. */
export const componentOf = (weights: ReadonlyArray<number>, u: number): number => {
  const total = weights.reduce((a, b) => a + b, 0)
  let acc = 0
  for (let c = 0; c < weights.length; c++) {
    acc += weights[c]! / total
    if (u < acc) return c
  }
  return weights.length - 1
}

export const make = (seed: number, components: ReadonlyArray<Component>): TaskDefinition => {
  if (components.length === 0 || components.some((c) => !(c.weight > 0 && Number.isFinite(c.weight)))) {
    throw new RangeError("mixture: needs at least one component, each with a finite weight > 0")
  }
  const names = components.map((c) => c.task.name)
  if (new Set(names).size !== names.length) throw new RangeError(`mixture: component names must differ (${names.join(", ")})`)
  const weights = components.map((c) => c.weight)
  const base = derive(root(seed), "mixture")
  const pick = (split: Split, index: number) => components[componentOf(weights, uniform(derive(base, split, index), 0))]!.task
  const byName = new Map(components.map((c) => [c.task.name, c.task]))
  const owner = (p: Problem): TaskDefinition => {
    const t = byName.get(p.task)
    if (t === undefined) throw new Error(`mixture: problem ${p.id} is not from a component (${names.join(", ")})`)
    return t
  }
  const sizeOf = (split: Split) =>
    components.some((c) => c.task.sizes[split] === undefined) ? undefined : Math.max(...components.map((c) => c.task.sizes[split]!))
  const sizes = { train: sizeOf("train"), test: sizeOf("test") }
  const problem = (split: Split, index: number) => pick(split, index).problem(split, index)
  return {
    name: `mixture(${names.join("+")})`,
    metric: components[0]!.task.metric,
    tools: [...new Set(components.flatMap((c) => c.task.tools))],
    sizes,
    problem,
    problems: problemsOf(problem, sizes),
    reward: (response, p) => owner(p).reward(response, p),
    accuracy: (response, p) => owner(p).accuracy(response, p),
    demonstrations: (split: Split, range: Range, options) => {
      const out: Array<Demonstration> = []
      for (const i of rangeIndices(range, sizes[split])) {
        out.push(...pick(split, i).demonstrations(split, { start: i, count: 1 }, options))
      }
      return out
    },
    corpus: components.flatMap((c) => c.task.corpus)
  }
}

/** The `Task` layer of a mixture of already built tasks. */
export const layer = (seed: number, components: ReadonlyArray<Component>): Layer.Layer<Task> =>
  Layer.sync(Task, () => Task.of(make(seed, components)))
