#!/usr/bin/env bash
# The README's main command: installs what is missing, builds the server and the CLI, starts
# longsana-server on the tiny checkpoint embedded in tests/testdata (CPU, a free local port),
# streams a short video into an MP4 with `longsana generate`, checks it with ffprobe (codec,
# size, frame count) and stops the server with SIGTERM (graceful drain; exit code 0).
#
#   scripts/demo.sh            # 96x64, 41 frames: well under a minute on 2 CPU cores
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh build
scripts/build.sh longsana-server longsana

width=96
height=64
frames=41
demo="$PWD/build/demo"
mkdir -p "$demo"
out="$demo/longsana-demo.mp4"
rm -f "$out" "$demo/server.out"

echo
echo "== longsana-server --model-dir tests/testdata/tiny-longsana (log: $demo/server.log)"
build/bin/longsana-server --model-dir tests/testdata/tiny-longsana --device cpu \
  --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --threads 2 --caption-len 24 --max-frames 161 \
  --drain-timeout 30 \
  >"$demo/server.out" 2>"$demo/server.log" &
server_pid=$!
trap 'kill -KILL "$server_pid" 2>/dev/null || true' EXIT

fail() {
  echo "demo: $*" >&2
  echo "---- server log ----" >&2
  tail -n 30 "$demo/server.log" >&2 || true
  exit 1
}

# Port 0: the server picks a free port and prints "listening on HOST:PORT".
addr=""
for _ in $(seq 1 300); do
  addr=$(sed -n 's/^listening on //p' "$demo/server.out" | head -n 1)
  [ -n "$addr" ] && break
  kill -0 "$server_pid" 2>/dev/null || fail "the server exited before listening"
  sleep 0.1
done
[ -n "$addr" ] || fail "the server did not report its address"
http_addr=""
for _ in $(seq 1 100); do
  http_addr=$(sed -n 's/^http listening on //p' "$demo/server.out" | head -n 1)
  [ -n "$http_addr" ] && break
  sleep 0.1
done
[ -n "$http_addr" ] || fail "the server did not report its HTTP address"
echo "listening on $addr (HTTP: $http_addr); loading the models and warming up"

# Ready once GetServerInfo answers (UNAVAILABLE, exit code 24, while the models load).
ready=0
for _ in $(seq 1 600); do
  if build/bin/longsana info --server "$addr" >"$demo/info.txt" 2>&1; then
    ready=1
    break
  fi
  kill -0 "$server_pid" 2>/dev/null || fail "the server exited while loading"
  sleep 0.5
done
[ "$ready" -eq 1 ] || fail "the server did not become ready: $(cat "$demo/info.txt")"
cat "$demo/info.txt"

echo
echo "== longsana generate ... -o $out (${width}x${height}, ${frames} frames)"
build/bin/longsana generate "a red kite flying over green hills, sunny day" -o "$out" \
  --server "$addr" --width "$width" --height "$height" --frames "$frames" --seed 42 \
  --timeout 300 || fail "longsana generate failed (exit $?)"

echo
echo "== ffprobe $out"
probe=$(ffprobe -v error -count_frames -select_streams v:0 \
  -show_entries stream=codec_name,width,height,nb_read_frames -of csv=p=0 "$out")
echo "codec,width,height,frames: $probe"
[ "$probe" = "h264,$width,$height,$frames" ] ||
  fail "expected h264,$width,$height,$frames from ffprobe, got '$probe'"

echo
echo "== longsana health; GET http://$http_addr/metrics (a few of the series)"
build/bin/longsana health --server "$addr" || fail "longsana health: exit $?"
exec 3<>"/dev/tcp/${http_addr%:*}/${http_addr##*:}"
printf 'GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n' "$http_addr" >&3
grep -E '^longsana_(sessions_ended_total[{]|time_to_first_chunk_seconds_(sum|count) |chunk_bytes_sent_total )' \
  <&3 || true
exec 3<&-

echo
echo "== the playground: GET http://$http_addr/"
exec 3<>"/dev/tcp/${http_addr%:*}/${http_addr##*:}"
printf 'GET / HTTP/1.0\r\nHost: %s\r\n\r\n' "$http_addr" >&3
grep -q '<title>longsana-serve playground</title>' <&3 || fail "GET / did not answer the playground"
exec 3<&-
echo "playground: http://$http_addr/ (while the server runs; to try it, keep one running:"
echo "  build/bin/longsana-server --model-dir tests/testdata/tiny-longsana --caption-len 24 \\"
echo "      --http-listen 127.0.0.1:8080   # then open http://127.0.0.1:8080/)"

echo
echo "== SIGTERM: drain and stop the server"
kill -TERM "$server_pid"
code=0
wait "$server_pid" || code=$?
trap - EXIT
[ "$code" -eq 0 ] || fail "the server exited with $code after SIGTERM"
echo "server exited with 0"

echo
echo "MP4: $out"
