// A JSON server of a test's own on 127.0.0.1 (a free port), closed with the scope: GET answers `{}` (health
// checks), POST bodies are parsed and handed to `answer`, whose value is sent back as JSON.
import { Effect, type Scope } from "effect"
import * as Http from "node:http"

export const loopbackJson = (
  answer: (body: any, path: string) => unknown
): Effect.Effect<{ readonly url: string; readonly server: Http.Server }, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<{ url: string; server: Http.Server }>((resume) => {
      const server = Http.createServer((req, res) => {
        let data = ""
        req.on("data", (c) => (data += c))
        req.on("end", () => {
          if (req.method === "GET") return void res.writeHead(200, { "content-type": "application/json" }).end("{}")
          res.writeHead(200, { "content-type": "application/json" })
          res.end(JSON.stringify(answer(JSON.parse(data), req.url ?? "")))
        })
      })
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed({ url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, server })))
    }),
    ({ server }) =>
      Effect.callback<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  )
