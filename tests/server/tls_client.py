#!/usr/bin/python3
"""A Python gRPC client of longsana-serve over TLS (tests only; Debian's python3-grpcio).

Generates the Python stubs at run time with the system protoc and grpc_python_plugin, the
commands a Python user runs, then calls GetServerInfo and grpc.health.v1 Check:

  tls_client.py --proto-dir proto --address 127.0.0.1:PORT --ca ca.pem [--cert c.pem --key
                c.key] [--expect ok|refused]

--expect ok: both calls succeed and health is SERVING. --expect refused: GetServerInfo fails
with UNAVAILABLE (the TLS handshake was refused). Exit 0 when the expectation holds.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile


def generate_stubs(proto_dir, out_dir):
    plugin = "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin"
    subprocess.run(
        ["protoc", f"-I{proto_dir}", f"--python_out={out_dir}", f"--grpc_python_out={out_dir}",
         plugin, os.path.join(proto_dir, "longsana/v1/longsana.proto")],
        check=True)
    # health.proto's own path would make the module grpc.health.v1, which the grpcio package
    # "grpc" shadows; compiled from a directory of its own it is the top-level health_pb2.
    health_dir = os.path.join(out_dir, "health_proto")
    os.makedirs(health_dir)
    shutil.copy(os.path.join(proto_dir, "grpc/health/v1/health.proto"), health_dir)
    subprocess.run(
        ["protoc", f"-I{health_dir}", f"--python_out={out_dir}", f"--grpc_python_out={out_dir}",
         plugin, os.path.join(health_dir, "health.proto")],
        check=True)
    sys.path.insert(0, out_dir)


def read(path):
    if not path:
        return None
    with open(path, "rb") as f:
        return f.read()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--proto-dir", required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--cert", default="")
    parser.add_argument("--key", default="")
    parser.add_argument("--expect", choices=["ok", "refused"], default="ok")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as out_dir:
        generate_stubs(args.proto_dir, out_dir)
        import grpc
        import health_pb2
        import health_pb2_grpc
        from longsana.v1 import longsana_pb2, longsana_pb2_grpc

        credentials = grpc.ssl_channel_credentials(
            root_certificates=read(args.ca), private_key=read(args.key),
            certificate_chain=read(args.cert))
        with grpc.secure_channel(args.address, credentials) as channel:
            stub = longsana_pb2_grpc.LongSanaStub(channel)
            try:
                info = stub.GetServerInfo(longsana_pb2.GetServerInfoRequest(), timeout=10)
            except grpc.RpcError as e:
                print(f"GetServerInfo: {e.code().name}: {e.details()}")
                return 0 if args.expect == "refused" and e.code() == grpc.StatusCode.UNAVAILABLE \
                    else 1
            if args.expect == "refused":
                print("GetServerInfo succeeded, but the server should have refused this client")
                return 1
            print(f"GetServerInfo: {info.model.pipeline_class}")
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=10)
            status = health_pb2.HealthCheckResponse.ServingStatus.Name(health.status)
            print(f"health: {status}")
            return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
