#!/usr/bin/python3
"""longsana-serve from Python: Generate to a file, and an interactive Session.

Needs Debian's python3-grpcio and python3-protobuf, and stubs made with the system protoc and
grpc_python_plugin (Debian's python3-grpc-tools is too old for this proto):

  protoc -Iproto --python_out=gen --grpc_python_out=gen \\
      --plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin proto/longsana/v1/longsana.proto

Then, with gen/ on PYTHONPATH (or --stubs gen):

  longsana_example.py generate --address localhost:50051 --prompt "a red kite" -o kite.mp4
  longsana_example.py session --address localhost:50051 --prompt "a red kite" \\
      --switch "the kite over the sea" --switch-after 1 -o session.mp4

`generate` streams the fragmented MP4 into the file as chunks arrive (chunk 0 is the init
segment; every later chunk is one moof+mdat fragment; concatenated they play). `session`
starts an interactive session, switches the prompt after N blocks, prints the ack (the block
where the switch takes effect) and when it became visible, then stops after one more block.
Errors end with the gRPC status: the message names the field. Exit 0 on success.
"""

import argparse
import os
import queue
import subprocess
import sys
import tempfile
import threading


def make_stubs(out_dir):
    """Generates the stubs from ../../../proto into out_dir (what the docstring's command does)."""
    proto_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "proto")
    subprocess.run(
        ["protoc", f"-I{proto_dir}", f"--python_out={out_dir}", f"--grpc_python_out={out_dir}",
         "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin",
         os.path.join(proto_dir, "longsana/v1/longsana.proto")],
        check=True)


def request_from(args, pb):
    r = pb.GenerateRequest(prompt=args.prompt, width=args.width, height=args.height,
                           seed=args.seed)
    if args.live:
        r.live = True
    elif args.frames:
        r.num_frames = args.frames
    if args.fast:
        r.pacing = pb.GenerateRequest.PACING_AS_FAST_AS_POSSIBLE
    return r


def metadata(args):
    token = args.token or os.environ.get("LONGSANA_TOKEN", "")
    return [("authorization", f"Bearer {token}")] if token else []


def generate(stub, pb, args):
    frames = 0
    with open(args.output, "wb") as out:
        for event in stub.Generate(request_from(args, pb), metadata=metadata(args)):
            kind = event.WhichOneof("event")
            if kind == "accepted":
                a = event.accepted
                # Seeds are uint64: Python ints hold them exactly (JavaScript needs longs: String).
                print(f"session {a.session_id}: {a.width}x{a.height}, {a.num_frames} frames, "
                      f"seed {a.seed}")
            elif kind == "chunk":
                out.write(event.chunk.data)
                frames += event.chunk.num_frames
            elif kind == "completed":
                print(f"completed: {event.completed.frames} frames, first chunk after "
                      f"{event.completed.time_to_first_chunk_seconds:.2f} s")
    print(f"wrote {frames} frames to {args.output}")


def session(stub, pb, args):
    commands = queue.Queue()

    def requests():  # the request stream: the start, then whatever the reader decides
        yield pb.SessionCommand(command_id=0, start=request_from(args, pb))
        while True:
            command = commands.get()
            if command is None:
                return
            yield command

    blocks_seen = set()
    switched = stopped = False
    with open(args.output, "wb") as out:
        for event in stub.Session(requests(), metadata=metadata(args)):
            kind = event.WhichOneof("event")
            if kind == "command_ack":
                ack = event.command_ack
                if ack.code != 0:
                    print(f"command {ack.command_id} refused: {ack.error_message}")
                else:
                    print(f"command {ack.command_id} takes effect at block {ack.effective_block}")
            elif kind == "chunk":
                chunk = event.chunk
                out.write(chunk.data)
                if chunk.HasField("switch_visible"):
                    v = chunk.switch_visible
                    print(f"switch {v.command_id} visible at block {chunk.block_index}: "
                          f"{v.latency_seconds:.2f} s after it arrived")
                if chunk.block_index < 0 or chunk.block_index in blocks_seen:
                    continue
                blocks_seen.add(chunk.block_index)
                if not switched and len(blocks_seen) >= args.switch_after:
                    commands.put(pb.SessionCommand(
                        command_id=1, switch_prompt=pb.SwitchPrompt(prompt=args.switch)))
                    switched = True
                elif switched and not stopped and len(blocks_seen) >= args.switch_after + 3:
                    commands.put(pb.SessionCommand(command_id=2, stop=pb.Stop()))
                    stopped = True
            elif kind == "completed":
                print(f"completed: {event.completed.frames} frames")
    commands.put(None)


# The CLI's service config (client/service_config.json): balance over every address of the
# target, and retry what a replica refused before its first message (UNAVAILABLE: draining or
# not ready; RESOURCE_EXHAUSTED: full) on the next one.
SERVICE_CONFIG_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                   "service_config.json")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["generate", "session"])
    parser.add_argument("--address", default="localhost:50051")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--width", type=int, default=0)
    parser.add_argument("--height", type=int, default=0)
    parser.add_argument("--frames", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--live", action="store_true")
    parser.add_argument("--fast", action="store_true", help="as fast as possible (not paced)")
    parser.add_argument("--switch", default="the same scene at night")
    parser.add_argument("--switch-after", type=int, default=1)
    parser.add_argument("--token", default="")
    parser.add_argument("--stubs", default="", help="directory of generated stubs; empty: "
                                                     "generate them into a temporary one")
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        stubs = args.stubs or tmp
        if not args.stubs:
            make_stubs(stubs)
        sys.path.insert(0, stubs)
        import grpc
        from longsana.v1 import longsana_pb2 as pb
        from longsana.v1 import longsana_pb2_grpc as pb_grpc

        # Round-robin over every address of the target (dns:///NAME:PORT, or
        # ipv4:A:P,B:Q) and a refused start retried on the next replica.
        with open(SERVICE_CONFIG_FILE, encoding="utf-8") as f:
            service_config = f.read()
        channel = grpc.insecure_channel(
            args.address, options=[("grpc.max_receive_message_length", 17 * 1024 * 1024),
                                   ("grpc.enable_retries", 1),
                                   ("grpc.service_config", service_config)])
        stub = pb_grpc.LongSanaStub(channel)
        try:
            (generate if args.mode == "generate" else session)(stub, pb, args)
        except grpc.RpcError as e:
            print(f"{e.code().name}: {e.details()}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
