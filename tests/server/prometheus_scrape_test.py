#!/usr/bin/env python3
"""A real Prometheus scrapes a real longsana-server (tiny model, CPU) while two sessions run.

Starts, all on 127.0.0.1: longsana-server with its HTTP port, Debian's `prometheus` with a
generated config scraping /metrics every 500 ms, and two `longsana generate` clients at
once. Then asks Prometheus's HTTP API for the session, time-to-first-chunk and block
latency series and checks that their values are sane, and runs `promtool check metrics` on
a scrape. Everything is stopped at the end, whatever happens (the test never hangs: every
wait has a deadline).

Usage: prometheus_scrape_test.py --server BIN --cli BIN --model DIR
"""
import argparse
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

FRAMES = 161  # 1 + 4 * 40: four blocks of 10 latent frames
BLOCKS = 4


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode()


def wait_for(what, predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception:  # not up yet
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def read_listening_lines(proc, timeout):
    """The server prints `listening on H:P` then `http listening on H:P` on stdout."""
    grpc_addr = http_addr = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (grpc_addr is None or http_addr is None):
        line = proc.stdout.readline()
        if not line:
            raise AssertionError("the server exited before listening")
        line = line.strip()
        if line.startswith("http listening on "):
            http_addr = line[len("http listening on "):]
        elif line.startswith("listening on "):
            grpc_addr = line[len("listening on "):]
    if grpc_addr is None or http_addr is None:
        raise AssertionError("the server did not print its addresses")
    return grpc_addr, http_addr


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--cli", required=True)
    parser.add_argument("--model", required=True)
    args = parser.parse_args()
    for tool in ("prometheus", "promtool"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: install Debian's `prometheus` (scripts/deps.sh test)")

    work = tempfile.mkdtemp(prefix="prom-scrape-")
    procs = []
    try:
        server_log = open(os.path.join(work, "server.log"), "w")
        server = subprocess.Popen(
            [args.server, f"--model-dir={args.model}", "--device=cpu", "--threads=1",
             "--caption-len=24", "--listen=127.0.0.1:0", "--http-listen=127.0.0.1:0",
             "--max-sessions=2", "--drain-timeout=5", "--log-format=json"],
            stdout=subprocess.PIPE, stderr=server_log, text=True)
        procs.append(server)
        grpc_addr, http_addr = read_listening_lines(server, 120)
        metrics_url = f"http://{http_addr}/metrics"
        wait_for("/readyz 200", lambda: http_get(f"http://{http_addr}/readyz")[0] == 200, 300)

        prom_port = free_port()
        config = os.path.join(work, "prometheus.yml")
        with open(config, "w") as f:
            f.write(f"""global:
  scrape_interval: 500ms
  scrape_timeout: 400ms
scrape_configs:
  - job_name: longsana
    static_configs:
      - targets: ["{http_addr}"]
""")
        prom_log = open(os.path.join(work, "prometheus.log"), "w")
        prom = subprocess.Popen(
            ["prometheus", f"--config.file={config}",
             f"--storage.tsdb.path={os.path.join(work, 'tsdb')}",
             f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=prom_log, stderr=subprocess.STDOUT)
        procs.append(prom)
        api = f"http://127.0.0.1:{prom_port}/api/v1"

        def query(expr):
            url = f"{api}/query?" + urllib.parse.urlencode({"query": expr})
            status, body = http_get(url)
            data = json.loads(body)
            assert data["status"] == "success", body
            return data["data"]["result"]

        def scalar(expr):
            result = query(expr)
            return float(result[0]["value"][1]) if result else None

        wait_for("Prometheus to scrape the server",
                 lambda: scalar('up{job="longsana"}') == 1.0, 60)

        clients = []
        for i in range(2):
            out = os.path.join(work, f"video{i}.mp4")
            log = open(os.path.join(work, f"client{i}.log"), "w")
            clients.append(subprocess.Popen(
                [args.cli, "generate", f"a lighthouse at dusk, take {i}", "-o", out,
                 "--server", grpc_addr, "--width", "128", "--height", "96", "--frames", str(FRAMES),
                 "--seed", str(11 + i), "--timeout", "600"],
                stdout=log, stderr=subprocess.STDOUT))
        procs.extend(clients)
        for c in clients:
            assert c.wait(timeout=600) == 0, "a client failed (see client*.log)"
        # Two more scrapes after the end so the final counts are in.
        time.sleep(1.5)

        ended = scalar('sum(longsana_sessions_ended_total{code="OK"})')
        assert ended == 2.0, f"ended OK = {ended}"
        peak = scalar("max_over_time(longsana_sessions_running[10m])")
        assert peak is not None and peak >= 1, f"no scrape saw a running session ({peak})"
        ttfc_count = scalar("longsana_time_to_first_chunk_seconds_count")
        ttfc_sum = scalar("longsana_time_to_first_chunk_seconds_sum")
        assert ttfc_count == 2.0, f"TTFC count {ttfc_count}"
        assert 0 < ttfc_sum < 600, f"TTFC sum {ttfc_sum}"
        blocks = scalar('longsana_block_stage_seconds_count{stage="dit"}')
        assert blocks == 2 * BLOCKS, f"block samples {blocks} (two sessions of {BLOCKS} blocks)"
        for stage in ("dit", "decode", "encode"):
            total = scalar(f'longsana_block_stage_seconds_sum{{stage="{stage}"}}')
            assert total is not None and 0 < total < 600, f"{stage} seconds {total}"
        median = scalar('histogram_quantile(0.5, sum by (le) '
                        '(longsana_block_stage_seconds_bucket{stage="dit"}))')
        assert median is not None and math.isfinite(median) and median > 0, f"median {median}"
        forwards = scalar("longsana_step_batch_size_count")
        # Each block is 4 denoising steps and a cache pass; batching may share forwards.
        assert forwards is not None and forwards >= BLOCKS * 5, f"forwards {forwards}"
        chunk_bytes = scalar("longsana_chunk_bytes_sent_total")
        videos = sum(os.path.getsize(os.path.join(work, f"video{i}.mp4")) for i in range(2))
        assert chunk_bytes == videos, f"chunk bytes {chunk_bytes} != video bytes {videos}"
        gaps = scalar("longsana_inter_chunk_gap_seconds_count")
        assert gaps == 2 * (BLOCKS - 1), f"gaps {gaps}"

        status, text = http_get(metrics_url)
        assert status == 200
        check = subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                               capture_output=True, timeout=60)
        assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), (
            f"promtool check metrics: rc {check.returncode}\n{check.stdout}{check.stderr}")
        print(f"ok: ttfc mean {ttfc_sum / ttfc_count:.2f} s, dit block median {median:.3f} s, "
              f"peak running {peak:.0f}, {forwards:.0f} forwards, {chunk_bytes:.0f} bytes")

        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
        # --log-format=json: every line parses; the engine's own session lines carry the
        # session id, tenant and request id too.
        server_log.close()
        with open(os.path.join(work, "server.log"), encoding="utf-8") as f:
            records = [json.loads(line) for line in f.read().splitlines()]
        finished = [r for r in records if r["msg"].startswith("finished:")]
        assert len(finished) == 2, finished
        for r in finished:
            assert r["session_id"] and r["tenant"] == "anonymous" and len(r["request_id"]) == 32, r
        return 0
    except BaseException:
        for name in sorted(os.listdir(work)):
            if name.endswith(".log"):
                with open(os.path.join(work, name)) as f:
                    print(f"----- {name} (tail)\n" + "".join(f.readlines()[-40:]), file=sys.stderr)
        raise
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
