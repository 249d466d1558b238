import { readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { fileURLToPath } from "node:url";

/** The dashboard's page and scripts (apps/demo/assets/dashboard), from dist/ or src/ alike. */
const assetsDir = new URL("../../assets/dashboard/", import.meta.url);
const assets: Record<string, string> = {
  "/": "index.html",
  "/index.html": "index.html",
  "/dashboard.js": "dashboard.js",
  "/dashboard.css": "dashboard.css",
};
const types: Record<string, string> = {
  html: "text/html; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  css: "text/css; charset=utf-8",
};

export interface DashboardActions {
  kill(node: string): Promise<string>;
  restart(node: string): Promise<string>;
  partition(node: string): Promise<string>;
  heal(): Promise<string>;
  startMapReduce(): Promise<string>;
}

/** Thrown by an action to answer with this HTTP status (404 unknown node, 409 busy, ...). */
export class ActionError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The dashboard's HTTP server: the static page, `/events` (server-sent events, one snapshot
 * per tick), `/api/snapshot` (the latest one), and `POST /api/...` for the buttons.
 */
export class DashboardServer {
  private readonly server: Server;
  private readonly clients = new Set<ServerResponse>();
  private latest = "{}";

  constructor(private readonly actions: DashboardActions) {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err: Error) => {
        if (!res.headersSent) res.writeHead(500, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: err.message }));
      });
    });
  }

  /** Listens on host:port; a taken port gives one clear line. */
  listen(host: string, port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once("error", (err: NodeJS.ErrnoException) => {
        reject(
          err.code === "EADDRINUSE"
            ? new Error(`port ${port} on ${host} is already in use; pick another with --port`)
            : err,
        );
      });
      this.server.listen(port, host, () => resolve());
    });
  }

  publish(snapshot: unknown): void {
    this.latest = JSON.stringify(snapshot);
    for (const res of this.clients) res.write(`data: ${this.latest}\n\n`);
  }

  close(): Promise<void> {
    for (const res of this.clients) res.end();
    this.clients.clear();
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? "/").split("?")[0]!;
    if (req.method === "GET" && assets[path]) {
      const file = assets[path]!;
      const body = readFileSync(fileURLToPath(new URL(file, assetsDir)));
      res.writeHead(200, { "content-type": types[file.split(".").pop()!]!, "cache-control": "no-cache" });
      res.end(body);
      return;
    }
    if (req.method === "GET" && path === "/events") {
      res.writeHead(200, {
        "content-type": "text/event-stream",
        "cache-control": "no-cache",
        connection: "keep-alive",
      });
      res.write(`retry: 1000\ndata: ${this.latest}\n\n`);
      this.clients.add(res);
      req.on("close", () => this.clients.delete(res));
      return;
    }
    if (req.method === "GET" && path === "/api/snapshot") {
      res.writeHead(200, { "content-type": "application/json" }).end(this.latest);
      return;
    }
    if (path.startsWith("/api/")) {
      if (req.method !== "POST") {
        res.writeHead(405, { "content-type": "application/json" }).end('{"error":"use POST"}');
        return;
      }
      const nodeAction = /^\/api\/nodes\/([A-Za-z0-9._-]+)\/(kill|restart|partition)$/.exec(path);
      try {
        let message: string;
        if (nodeAction) {
          const [, node, action] = nodeAction as unknown as [
            string,
            string,
            "kill" | "restart" | "partition",
          ];
          message = await this.actions[action](node);
        } else if (path === "/api/heal") {
          message = await this.actions.heal();
        } else if (path === "/api/mapreduce") {
          message = await this.actions.startMapReduce();
        } else {
          throw new ActionError(404, `no action ${path}`);
        }
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ message }));
      } catch (err) {
        const status = err instanceof ActionError ? err.status : 500;
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: (err as Error).message }));
      }
      return;
    }
    res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
  }
}
