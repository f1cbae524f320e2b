import { defineConfig } from "vitest/config"

// Two workers at most: the machines have 2 cores and each jax-js worker may take up to 4 GiB.
// `import … from "arpo"` (experiments, examples) resolves to src/index.ts through package.json's
// "development" export condition, as with `node --conditions=development` and tsc's customConditions.
export default defineConfig({
  resolve: { conditions: ["development"] },
  ssr: { resolve: { conditions: ["development"] } },
  test: {
    include: ["test/**/*.test.ts", "laws/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    maxWorkers: 2
  }
})
