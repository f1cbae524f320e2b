import { defineConfig } from "vitest/config"

// Two workers at most: the machines have 2 cores and each jax-js worker may take up to 4 GiB.
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts", "laws/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    maxWorkers: 2
  }
})
