#!/usr/bin/env bash
# Builds the image and smoke-tests it where a Docker daemon is reachable (.ci/run calls this; the test
# suite replays the Dockerfile without a daemon). Checks: starts with a read-only root filesystem as a
# non-root user, answers through the proxy (bundled demo upstream), HEALTHCHECK healthy, SIGTERM → exit 0.
set -euo pipefail
cd "$(dirname "$0")/.."
tag="portcullis:smoke-$$"
name="portcullis-smoke-$$"
cleanup() { docker rm -f "$name" >/dev/null 2>&1 || true; docker rmi "$tag" >/dev/null 2>&1 || true; }
trap cleanup EXIT

docker build -q -t "$tag" . >/dev/null
user="$(docker image inspect -f '{{.Config.User}}' "$tag")"
[ "${user%%:*}" != "0" ] && [ -n "$user" ] || { echo "docker-smoke: image runs as '$user'"; exit 1; }

docker run -d --name "$name" --read-only --cap-drop ALL --security-opt no-new-privileges \
  -p 127.0.0.1::8080 "$tag" start --demo-upstream >/dev/null
port="$(docker port "$name" 8080/tcp | head -1 | sed 's/.*://')"
for _ in $(seq 1 50); do
  curl -fsS "http://127.0.0.1:$port/hello" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$port/hello" | grep -q 'portcullis demo upstream' || { docker logs "$name"; echo "docker-smoke: no answer through the proxy"; exit 1; }
for _ in $(seq 1 60); do
  [ "$(docker inspect -f '{{.State.Health.Status}}' "$name")" = healthy ] && break
  sleep 1
done
[ "$(docker inspect -f '{{.State.Health.Status}}' "$name")" = healthy ] || { echo "docker-smoke: HEALTHCHECK not healthy"; exit 1; }
docker stop -t 20 "$name" >/dev/null
code="$(docker inspect -f '{{.State.ExitCode}}' "$name")"
[ "$code" = 0 ] || { docker logs "$name"; echo "docker-smoke: exit code $code after SIGTERM"; exit 1; }
echo "docker-smoke: ok (user $user, read-only root, proxy answered, healthy, SIGTERM → exit 0)"
