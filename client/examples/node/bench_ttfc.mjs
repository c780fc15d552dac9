#!/usr/bin/env node
// HTTP vs gRPC time to first chunk for the same request (the README's "Benchmarks"):
//
//   node bench_ttfc.mjs --grpc HOST:PORT --http HOST:PORT [--runs 10] [--width 64 --height 64]
//
// Alternates a gRPC Generate (@grpc/grpc-js) and a GET /v1/generate (fetch) of the same
// request, one at a time, and times each from the call to the arrival of its first video
// fragment: on gRPC the first VideoChunk with block_index >= 0, on HTTP the first body bytes
// that complete a `moof` box header. Prints p50 / p90 / mean of each and their ratio.
import { parseArgs } from "node:util";
import { loadStub } from "./longsana_example.mjs";

const { values: o } = parseArgs({
  options: {
    grpc: { type: "string" }, http: { type: "string" },
    runs: { type: "string", default: "10" }, width: { type: "string", default: "64" },
    height: { type: "string", default: "64" }, frames: { type: "string", default: "41" },
    prompt: { type: "string", default: "a paper boat in the rain" },
  },
});
if (!o.grpc || !o.http) {
  console.error("usage: bench_ttfc.mjs --grpc HOST:PORT --http HOST:PORT [--runs N]");
  process.exit(2);
}
const { stub, metadata } = loadStub(o.grpc);

function grpcTtfc() {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let first = null;
    const call = stub.Generate({ prompt: o.prompt, width: Number(o.width), height: Number(o.height),
                                 num_frames: Number(o.frames), pacing: "PACING_AS_FAST_AS_POSSIBLE",
                                 seed: "7" }, metadata);
    call.on("data", (e) => {
      if (first === null && e.event === "chunk" && e.chunk.block_index >= 0) {
        first = (performance.now() - t0) / 1000;
      }
    });
    call.on("end", () => resolve(first));
    call.on("error", reject);
  });
}

async function httpTtfc() {
  const t0 = performance.now();
  const query = new URLSearchParams({ prompt: o.prompt, width: o.width, height: o.height,
                                      num_frames: o.frames, pacing: "fast", seed: "7" });
  const response = await fetch(`http://${o.http}/v1/generate?${query}`);
  if (!response.ok) throw new Error(`HTTP ${response.status}: ${await response.text()}`);
  let first = null;
  let seen = Buffer.alloc(0);
  for await (const piece of response.body) {
    if (first === null) {
      seen = Buffer.concat([seen, Buffer.from(piece)]);
      if (seen.includes("moof")) first = (performance.now() - t0) / 1000;
    }
  }
  return first;
}

const stats = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const at = (q) => s[Math.min(s.length - 1, Math.floor(q * s.length))];
  return { p50: at(0.5), p90: at(0.9), mean: s.reduce((a, b) => a + b, 0) / s.length };
};
const grpcTimes = [], httpTimes = [];
await grpcTtfc();  // warm both paths (connections, first-request costs) before measuring
await httpTtfc();
for (let i = 0; i < Number(o.runs); ++i) {
  grpcTimes.push(await grpcTtfc());
  httpTimes.push(await httpTtfc());
}
const g = stats(grpcTimes), h = stats(httpTimes);
const f = (x) => x.toFixed(3);
console.log(`runs ${o.runs} each, ${o.width}x${o.height}, ${o.frames} frames, as fast as possible`);
console.log(`gRPC TTFC p50 ${f(g.p50)} s, p90 ${f(g.p90)} s, mean ${f(g.mean)} s`);
console.log(`HTTP TTFC p50 ${f(h.p50)} s, p90 ${f(h.p90)} s, mean ${f(h.mean)} s`);
console.log(`HTTP / gRPC (p50) ${(h.p50 / g.p50).toFixed(3)}`);
