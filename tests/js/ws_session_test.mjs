// The WebSocket /v1/session from Node's `ws`, against a running server (started by
// server_process_test's E2E.NodeWebSocketSession...):
//   node tests/js/ws_session_test.mjs HTTP_ADDRESS
// 1. start, switch, extend, then stop once the switch is visible: the acks come in command order, every `chunk` event is
//    followed by its binary message, the init segment is an ftyp box, and the session ends
//    with {"end":{"code":0}} and close code 1000;
// 2. a malformed command ends the stream with INVALID_ARGUMENT naming the field, close 4003;
// 3. a socket closed mid-session cancels it: with --max-sessions=1 the next session is
//    admitted at once (queue position 0) and `longsana_sessions_running` returns to 1, not 2.
// Exits 0 when every check passed, 1 with the reason otherwise; stops by itself (timeouts).
import assert from "node:assert/strict";
import { WebSocket } from "ws";

const http = process.argv[2];
if (!http) {
  console.error("usage: ws_session_test.mjs HTTP_ADDRESS");
  process.exit(2);
}
const url = `ws://${http}/v1/session`;

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

// Opens a session and collects everything; `onEvent(event, ws, state)` may send commands.
function runSession(start, onEvent = () => {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const state = { events: [], chunks: [], binaries: [], pendingChunk: null, end: null,
                    closeCode: null, sent: 1 };
    ws.on("open", () => ws.send(JSON.stringify({ commandId: "1", start })));
    ws.on("message", (data, isBinary) => {
      if (isBinary) {
        if (state.pendingChunk === null) return reject(new Error("a binary message without a chunk event"));
        assert.equal(data.length > 0, true);
        state.binaries.push(Buffer.from(data));
        state.pendingChunk = null;
        return;
      }
      const event = JSON.parse(data.toString());
      if (state.pendingChunk !== null) {
        return reject(new Error("a chunk event was not followed by its binary message"));
      }
      state.events.push(event);
      if (event.chunk) {
        state.chunks.push(event.chunk);
        state.pendingChunk = event.chunk;
      }
      if (event.end) state.end = event.end;
      onEvent(event, ws, state);
    });
    ws.on("close", (code) => {
      state.closeCode = code;
      resolve(state);
    });
    ws.on("error", reject);
  });
}

function send(ws, state, command) {
  state.sent += 1;
  command.commandId = String(state.sent);
  ws.send(JSON.stringify(command));
}

async function metric(name) {
  const text = await (await fetch(`http://${http}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(name + " ") || l.startsWith(name + "{"));
  return line === undefined ? NaN : Number(line.split(" ").pop());
}

async function steeredSession() {
  const state = await withTimeout(
    runSession(
      { prompt: "a red kite over the hills", width: 64, height: 64, numFrames: 161,
        pacing: "PACING_AS_FAST_AS_POSSIBLE" },
      (event, ws, s) => {
        // After the first block: switch and extend; stop once the switch is visible.
        if (event.chunk && event.chunk.blockIndex === 0 && s.sent === 1) {
          send(ws, s, { switchPrompt: { prompt: "a blue kite at dusk" } });
          send(ws, s, { extend: { numFrames: 40 } });
        }
        if (event.chunk && event.chunk.switchVisible && s.sent === 3) send(ws, s, { stop: {} });
      }),
    180000, "the steered session");
  assert.ok(state.events[0].accepted, `the first event is accepted: ${JSON.stringify(state.events[0])}`);
  assert.match(state.events[0].accepted.sessionId, /^[0-9]+$/);
  const acks = state.events.filter((e) => e.commandAck).map((e) => e.commandAck);
  assert.deepEqual(acks.map((a) => a.commandId), ["2", "3", "4"], JSON.stringify(acks));
  for (const ack of acks) assert.equal(ack.code, 0, JSON.stringify(ack));
  assert.equal(state.chunks.length, state.binaries.length);
  assert.equal(state.chunks[0].blockIndex, -1);
  assert.equal(state.binaries[0].subarray(4, 8).toString("latin1"), "ftyp");
  assert.match(state.chunks[0].mimeType, /^video\/mp4; codecs="avc1\./);
  for (let i = 1; i < state.binaries.length; ++i) {
    assert.equal(state.binaries[i].subarray(4, 8).toString("latin1"), "moof");
  }
  const completed = state.events.find((e) => e.completed);
  assert.ok(completed, "a completed event");
  assert.ok(state.end && state.end.code === 0, JSON.stringify(state.end));
  assert.equal(state.closeCode, 1000);
  // The prompt switch shows in the chunks made after it.
  assert.ok(state.chunks.some((c) => c.promptCommandId === "2"), "a chunk made with the switch");
  console.log(`steered: ${state.chunks.length - 1} fragments, acks ${acks.map((a) => a.commandId)}, ` +
              `${completed.completed.frames} frames`);
}

async function malformedCommand() {
  const state = await withTimeout(
    runSession({ prompt: "x", width: 7 }), 30000, "the refused session");
  assert.ok(state.end, "an end message");
  assert.equal(state.end.status, "INVALID_ARGUMENT");
  assert.match(state.end.message, /start\.width/);
  assert.equal(state.closeCode, 4003);
  const unknown = await withTimeout(
    runSession({ prompt: "x", warp: 9 }), 30000, "the unknown field");
  assert.equal(unknown.end.status, "INVALID_ARGUMENT");
  assert.match(unknown.end.message, /warp/);
  // Hostile input: not JSON, a binary message; each ends the stream naming the problem.
  for (const [payload, pattern] of [["{not json", /not a SessionCommand/],
                                    [Buffer.from([0, 1, 2]), /binary messages/]]) {
    const end = await withTimeout(new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      let last = null;
      ws.on("open", () => ws.send(payload));
      ws.on("message", (data, isBinary) => { if (!isBinary) last = JSON.parse(data.toString()); });
      ws.on("close", (code) => resolve({ code, end: last && last.end }));
      ws.on("error", reject);
    }), 30000, "hostile input");
    assert.equal(end.code, 4003);
    assert.match(end.end.message, pattern);
  }
  console.log(`refused: ${state.end.message}`);
}

async function closedSocketFreesTheSlot() {
  // A live session; close the socket once its first fragment arrived.
  await withTimeout(new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.on("open", () => ws.send(JSON.stringify(
      { commandId: "1", start: { prompt: "an endless road", width: 64, height: 64, live: true } })));
    let chunks = 0;
    ws.on("message", (data, isBinary) => {
      if (isBinary && ++chunks === 2) {
        ws.terminate();  // no close handshake: the connection just goes away
        resolve();
      }
    });
    ws.on("error", reject);
  }), 120000, "the live session's first fragment");
  // With one slot, the next session must be admitted at once once the first is cancelled.
  const deadline = Date.now() + 30000;
  while (true) {
    const state = await withTimeout(runSession(
      { prompt: "the next viewer", width: 64, height: 64, numFrames: 41,
        pacing: "PACING_AS_FAST_AS_POSSIBLE" }), 120000, "the next session");
    const accepted = state.events.find((e) => e.accepted);
    if (accepted && accepted.accepted.queuePosition === 0) {
      assert.equal(state.end.code, 0, JSON.stringify(state.end));
      break;
    }
    if (Date.now() > deadline) throw new Error(`the slot was not freed: ${JSON.stringify(state.events[0])}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  const running = await metric("longsana_sessions_running");
  assert.equal(running, 0, `longsana_sessions_running ${running}`);
  console.log("closed socket: the session was cancelled and its slot freed");
}

try {
  await steeredSession();
  await malformedCommand();
  await closedSocketFreesTheSlot();
  console.log("ok");
  process.exit(0);
} catch (e) {
  console.error(e.stack || String(e));
  process.exit(1);
}
