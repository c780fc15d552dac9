#!/usr/bin/env node
// A minimal web-app backend in Node: it keeps the gRPC connection (and the token) on the
// server side and relays a video to the page as a progressive MP4, which a plain
// <video src> plays while it is being generated.
//
//   node relay.mjs --grpc localhost:50051 --port 3000 [--token TOKEN]
//   open http://localhost:3000/
//
// GET /                         a page with a prompt box and a <video>
// GET /video?prompt=...&width=..&height=..&frames=..
//                               Generate, relayed: video/mp4 as the chunks arrive; a refusal
//                               before the first chunk is a JSON error with the gRPC code; a
//                               page that goes away cancels the call (and the server's session).
// Prints "relay listening on http://HOST:PORT" once it serves (--port 0 picks a port).
import http from "node:http";
import { parseArgs } from "node:util";
import grpc from "@grpc/grpc-js";
import { loadStub } from "./longsana_example.mjs";

const { values: options } = parseArgs({
  options: {
    grpc: { type: "string", default: "localhost:50051" },
    port: { type: "string", default: "3000" },
    host: { type: "string", default: "127.0.0.1" },
    token: { type: "string", default: process.env.LONGSANA_TOKEN || "" },
  },
});
const { stub, metadata } = loadStub(options.grpc, { token: options.token });

const PAGE = `<!doctype html>
<meta charset="utf-8"><title>longsana relay</title>
<form id="f"><input id="p" size="60" value="a red kite over the hills"> <button>Generate</button></form>
<video id="v" muted autoplay playsinline controls width="512"></video>
<script>
document.getElementById("f").onsubmit = (e) => {
  e.preventDefault();
  const q = new URLSearchParams({ prompt: document.getElementById("p").value });
  document.getElementById("v").src = "/video?" + q;
};
</script>`;

const HTTP_STATUS = { INVALID_ARGUMENT: 400, UNAUTHENTICATED: 401, PERMISSION_DENIED: 403,
                      NOT_FOUND: 404, RESOURCE_EXHAUSTED: 429, UNAVAILABLE: 503 };

function relayVideo(url, res) {
  const q = url.searchParams;
  const request = { prompt: q.get("prompt") || "", width: Number(q.get("width") || 0),
                    height: Number(q.get("height") || 0),
                    pacing: "PACING_AS_FAST_AS_POSSIBLE" };
  if (q.get("frames")) request.num_frames = Number(q.get("frames"));
  const call = stub.Generate(request, metadata);
  let begun = false;
  call.on("data", (event) => {
    if (event.event !== "chunk") return;
    if (!begun) {
      begun = true;
      res.writeHead(200, { "Content-Type": "video/mp4", "Cache-Control": "no-store" });
    }
    res.write(event.chunk.data);
  });
  call.on("end", () => res.end());
  call.on("error", (e) => {
    if (e.code === grpc.status.CANCELLED) return;
    const name = Object.keys(grpc.status).find((k) => grpc.status[k] === e.code) || "UNKNOWN";
    if (begun) return res.destroy();  // mid-stream: the page sees a truncated video
    res.writeHead(HTTP_STATUS[name] || 502, { "Content-Type": "application/json" });
    res.end(JSON.stringify({ error: { status: name, message: e.details } }));
  });
  res.on("close", () => call.cancel());  // the page went away (or the response ended)
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://relay");
  if (req.method === "GET" && url.pathname === "/") {
    res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
    return res.end(PAGE);
  }
  if (req.method === "GET" && url.pathname === "/video") return relayVideo(url, res);
  res.writeHead(404, { "Content-Type": "application/json" });
  res.end(JSON.stringify({ error: { status: "NOT_FOUND", message: `no route for ${url.pathname}` } }));
});
server.listen(Number(options.port), options.host, () => {
  const { address, port } = server.address();
  console.log(`relay listening on http://${address}:${port}`);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
