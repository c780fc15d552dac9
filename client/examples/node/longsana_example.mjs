#!/usr/bin/env node
// longsana-serve from Node: Generate to a file, and an interactive Session.
//
// Needs @grpc/grpc-js and @grpc/proto-loader (`npm ci` in this directory). The proto is
// loaded at run time, no code generation step:
//
//   node longsana_example.mjs generate --address localhost:50051 --prompt "a red kite" -o kite.mp4
//   node longsana_example.mjs session --address localhost:50051 --prompt "a red kite" \
//       --switch "the kite over the sea" --switch-after 1 -o session.mp4
//
// `keepCase: true` keeps the proto's field names (num_frames, not numFrames). Two more options
// matter: `longs: String` (seeds and session ids are uint64, which a
// JavaScript number cannot hold exactly) and `defaults: true` (proto3 does not send zero
// fields; with defaults they read as 0 / "" / false instead of undefined). `oneofs: true`
// sets `event.event` to the name of the oneof field that is present.
//
// `generate` writes the fragmented MP4 as chunks arrive (chunk 0 is the init segment, every
// later chunk one moof+mdat fragment; concatenated they play). `session` switches the prompt
// after N blocks, prints the ack (the block where the switch takes effect) and when it became
// visible, then stops after three more blocks. Errors end with the gRPC status: the message
// names the field. Exit 0 on success.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";

const here = path.dirname(fileURLToPath(import.meta.url));
const protoDir = path.join(here, "..", "..", "..", "proto");

// The CLI's service config: round_robin, and refused starts retried on the next replica.
export const SERVICE_CONFIG = fs.readFileSync(path.join(here, "..", "..", "service_config.json"),
                                              "utf8");

export function loadStub(address, { token = "" } = {}) {
  const definition = protoLoader.loadSync(path.join(protoDir, "longsana/v1/longsana.proto"), {
    includeDirs: [protoDir], keepCase: true, longs: String, enums: String, defaults: true,
    oneofs: true,
  });
  const { LongSana } = grpc.loadPackageDefinition(definition).longsana.v1;
  const stub = new LongSana(address, grpc.credentials.createInsecure(), {
    "grpc.max_receive_message_length": 17 * 1024 * 1024,
    // Round-robin over every address of the target (dns:///NAME:PORT, or ipv4:A:P,B:Q) and a
    // refused start retried on the next replica (client/service_config.json).
    "grpc.service_config": SERVICE_CONFIG,
  });
  const metadata = new grpc.Metadata();
  if (token) metadata.set("authorization", `Bearer ${token}`);
  return { stub, metadata };
}

export function requestFrom(options) {
  const request = { prompt: options.prompt, width: Number(options.width),
                    height: Number(options.height), seed: options.seed };
  if (options.live) request.live = true;
  else if (Number(options.frames) > 0) request.num_frames = Number(options.frames);
  if (options.fast) request.pacing = "PACING_AS_FAST_AS_POSSIBLE";
  return request;
}

function generate(stub, metadata, options) {
  return new Promise((resolve, reject) => {
    const out = fs.createWriteStream(options.output);
    let frames = 0;
    const call = stub.Generate(requestFrom(options), metadata);
    call.on("data", (event) => {
      if (event.event === "accepted") {
        const a = event.accepted;
        console.log(`session ${a.session_id}: ${a.width}x${a.height}, ${a.num_frames} frames, ` +
                    `seed ${a.seed}`);
      } else if (event.event === "chunk") {
        out.write(event.chunk.data);
        frames += event.chunk.num_frames;
      } else if (event.event === "completed") {
        const c = event.completed;
        console.log(`completed: ${c.frames} frames, first chunk after ` +
                    `${c.time_to_first_chunk_seconds.toFixed(2)} s`);
      }
    });
    call.on("error", (e) => out.close(() => reject(e)));
    call.on("end", () => out.close(() => {
      console.log(`wrote ${frames} frames to ${options.output}`);
      resolve();
    }));
  });
}

function session(stub, metadata, options) {
  return new Promise((resolve, reject) => {
    const out = fs.createWriteStream(options.output);
    const call = stub.Session(metadata);
    call.write({ command_id: "0", start: requestFrom(options) });
    const blocks = new Set();
    let switched = false, stopped = false;
    call.on("data", (event) => {
      if (event.event === "command_ack") {
        const ack = event.command_ack;
        if (ack.code !== 0) console.log(`command ${ack.command_id} refused: ${ack.error_message}`);
        else console.log(`command ${ack.command_id} takes effect at block ${ack.effective_block}`);
      } else if (event.event === "chunk") {
        const chunk = event.chunk;
        out.write(chunk.data);
        if (chunk.switch_visible) {
          const v = chunk.switch_visible;
          console.log(`switch ${v.command_id} visible at block ${chunk.block_index}: ` +
                      `${v.latency_seconds.toFixed(2)} s after it arrived`);
        }
        if (chunk.block_index < 0 || blocks.has(chunk.block_index)) return;
        blocks.add(chunk.block_index);
        if (!switched && blocks.size >= Number(options["switch-after"])) {
          call.write({ command_id: "1", switch_prompt: { prompt: options.switch } });
          switched = true;
        } else if (switched && !stopped && blocks.size >= Number(options["switch-after"]) + 3) {
          call.write({ command_id: "2", stop: {} });
          stopped = true;
        }
      } else if (event.event === "completed") {
        console.log(`completed: ${event.completed.frames} frames`);
      }
    });
    call.on("error", (e) => out.close(() => reject(e)));
    call.on("end", () => {
      call.end();
      out.close(resolve);
    });
  });
}

async function main() {
  const { values: options, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      address: { type: "string", default: "localhost:50051" },
      prompt: { type: "string" },
      width: { type: "string", default: "0" },
      height: { type: "string", default: "0" },
      frames: { type: "string", default: "0" },
      seed: { type: "string", default: "0" },
      live: { type: "boolean", default: false },
      fast: { type: "boolean", default: false },
      switch: { type: "string", default: "the same scene at night" },
      "switch-after": { type: "string", default: "1" },
      token: { type: "string", default: process.env.LONGSANA_TOKEN || "" },
      output: { type: "string", short: "o" },
    },
  });
  const mode = positionals[0];
  if (!["generate", "session"].includes(mode) || !options.prompt || !options.output) {
    console.error("usage: longsana_example.mjs generate|session --prompt TEXT -o OUT.mp4 " +
                  "[--address HOST:PORT] [--width N --height N --frames N | --live] [--fast]");
    return 2;
  }
  const { stub, metadata } = loadStub(options.address, { token: options.token });
  try {
    await (mode === "generate" ? generate : session)(stub, metadata, options);
  } catch (e) {
    const name = Object.keys(grpc.status).find((k) => grpc.status[k] === e.code) || e.code;
    console.error(`${name}: ${e.details || e.message}`);
    return 1;
  }
  return 0;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  process.exitCode = await main();
}
