#!/usr/bin/env bash
# Checks the deploy kit with the tools that will load it, without a cluster or Docker:
#   - helm lint --strict and helm template, for every documented combination of values;
#   - kubernetes-validate --strict on every rendering, for Kubernetes 1.30 and 1.35, and the
#     prometheus-operator's kinds against their vendored CRDs (check-jsonschema);
#   - deploy/check_rendering.py on every rendering (namespace, pull secrets, replicas,
#     numbers, Secret/ConfigMap keys, selectors, checksum annotations);
#   - promtool on the PrometheusRule the chart renders;
#   - hadolint on the Dockerfile, the compose spec on docker-compose.yml, mirrord's
#     published schema on mirrord.json and .mirrord/*.json.
# Run deploy/tools.sh first (it installs the tools into the same cache directory).
set -euo pipefail
cd "$(dirname "$0")/.."

started=$(date +%s)
tools="${BREAKROOM_TOOLS_DIR:-/var/tmp/breakroom-tools}/bin"
for tool in helm kubernetes-validate check-jsonschema hadolint python3; do
  [ -x "$tools/$tool" ] || { echo "$tools/$tool is missing: run deploy/tools.sh first" >&2; exit 1; }
done
export PATH="$tools:$PATH"
chart=deploy/helm/breakroom
secrets=my-secrets.yaml.example
out=$(mktemp -d)
trap 'status=$?; if [ "$status" = 0 ]; then rm -rf "$out"; else echo "renderings kept in $out" >&2; fi' EXIT
failed=0
step() { printf -- '-- %s\n' "$*"; }
flunk() { echo "FAILED: $*" >&2; failed=1; }

# helm, quiet about the symbolic links files/ is made of (files/rules is
# deploy/prometheus/rules, files/dashboards is deploy/grafana/dashboards).
helm_q() {
  local err=$out/helm.err
  if helm "$@" 2>"$err"; then
    grep -v 'found symbolic link in path' "$err" >&2 || true
  else
    cat "$err" >&2
    return 1
  fi
}

# Values that YAML reads as floats (a --set number is an int64): the way 1e+06 got in.
cat >"$out/large-numbers.yaml" <<'EOF'
voteApi: { seedPartners: 2000000 }
shop: { products: 1000000 }
items: { cacheTtlSeconds: 1000000 }
EOF
# A password that ends a URL's user info early unless it is encoded.
password='p@ss/w:rd +%#?'
labs=(--set items.enabled=true --set datasets.enabled=true --set shop.enabled=true
  --set items.ingress.host=items.example.org --set datasets.ingress.host=datasets.example.org)
pull=(--set 'image.pullSecrets[0].name=ghcr-pull-secret' --set 'image.pullSecrets[1].name=mirror-pull-secret')
operator=(--set serviceMonitor.enabled=true --set prometheusRule.enabled=true --set grafanaDashboards.enabled=true
  --set 'serviceMonitor.labels.release=kube-prometheus-stack')

# NAME|NAMESPACE|CHECKS|HELM ARGUMENTS (one word each; CHECKS are check_rendering.py's)
combinations=(
  "default|conference-app|--vote-replicas 1|"
  "every-lab|conference-app|--vote-replicas 1|${labs[*]} -f $out/large-numbers.yaml"
  "tls|conference-app|--vote-replicas 1|--set ingress.tls.enabled=true ${labs[*]}"
  "pull-secrets|conference-app|--vote-replicas 1 --pull-secret ghcr-pull-secret --pull-secret mirror-pull-secret|${labs[*]} ${pull[*]}"
  "any-namespace|any-ns|--vote-replicas 1|${labs[*]}"
  "operator-monitoring|conference-app|--vote-replicas 1|${labs[*]} ${operator[*]} --set prometheus.enabled=false --set alertmanager.enabled=false --set networkPolicies.ingressController.podSelector.matchLabels.app\\.kubernetes\\.io/name=traefik --set ingress.className=traefik"
  "storage-and-password|conference-app|--vote-replicas 1|--set postgres.storageClass=gp3 --set-string secrets.postgres.password=PASSWORD"
  "minimal|conference-app|--vote-replicas 1|--set ingress.enabled=false --set networkPolicies.enabled=false --set prometheus.enabled=false --set alertmanager.enabled=false --set postgres.storageClass=-"
  "everything|any-ns|--vote-replicas 1 --pull-secret ghcr-pull-secret --pull-secret mirror-pull-secret|${labs[*]} ${pull[*]} ${operator[*]} --set ingress.tls.enabled=true"
)

step "helm $(helm version --template '{{.Version}}'): lint --strict and template, ${#combinations[@]} combinations of values"
helm_q lint --strict "$chart" -f "$secrets" >/dev/null || flunk "helm lint --strict $chart -f $secrets"
k8s_files=()
for combination in "${combinations[@]}"; do
  IFS='|' read -r name namespace checks args <<<"$combination"
  read -r -a args <<<"$args"
  read -r -a checks <<<"$checks"
  for i in "${!args[@]}"; do args[i]=${args[i]//PASSWORD/$password}; done
  if [ "$name" = storage-and-password ]; then checks+=(--postgres-password "$password"); fi
  helm_q lint --strict "$chart" -n "$namespace" -f "$secrets" "${args[@]}" >/dev/null \
    || { flunk "helm lint --strict ($name)"; continue; }
  helm_q template conference-app "$chart" -n "$namespace" -f "$secrets" "${args[@]}" >"$out/$name.yaml" \
    || { flunk "helm template ($name)"; continue; }
  python3 deploy/check_rendering.py "$out/$name.yaml" --namespace "$namespace" --out "$out/$name" "${checks[@]}" \
    || flunk "the rendering $name"
  [ -f "$out/$name/k8s.yaml" ] && k8s_files+=("$out/$name/k8s.yaml")
done

for version in 1.30.0 1.35.0; do
  step "kubernetes-validate --strict, Kubernetes $version, ${#k8s_files[@]} renderings"
  if ! kubernetes-validate --strict --quiet -k "$version" "${k8s_files[@]}" >"$out/validate.log" 2>&1; then
    cat "$out/validate.log"; flunk "kubernetes-validate -k $version"
  elif grep -q . "$out/validate.log"; then
    # Warnings included: "Couldn't find schema" would mean a kind went unchecked.
    cat "$out/validate.log"; flunk "kubernetes-validate -k $version warned"
  fi
done

step "the prometheus-operator's kinds against their CRDs (deploy/schemas)"
checked=0
for dir in "$out"/*/crd/*; do
  [ -d "$dir" ] || continue
  kind=$(basename "$dir")
  schema=$(dirname "$(dirname "$dir")")/schemas/$kind.json
  check-jsonschema --regex-variant python --schemafile "$schema" "$dir"/*.json >/dev/null \
    || { check-jsonschema --regex-variant python --schemafile "$schema" "$dir"/*.json || true; flunk "$dir"; }
  checked=$((checked + 1))
done
[ "$checked" -gt 0 ] || flunk "no ServiceMonitor or PrometheusRule was rendered"
echo "$checked ServiceMonitor/PrometheusRule sets valid"

# Debian's promtool is built without Kubernetes service discovery, so it cannot load the
# chart's prometheus.yml (kubernetes_sd_configs); check_rendering.py checks its namespaces.
if command -v promtool >/dev/null; then
  step "promtool check rules: the PrometheusRules the chart renders"
  for rules in "$out"/*/rules.yml; do
    promtool check rules "$rules" >/dev/null || { promtool check rules "$rules" || true; flunk "$rules"; }
  done
  echo "ok"
elif [ -n "${CI:-}" ]; then
  flunk "promtool is missing (apt-get install prometheus)"
else
  echo "-- promtool not installed: the rendered PrometheusRules are not checked (apt-get install prometheus)"
fi

step "hadolint $(hadolint --version | sed 's/.* //') Dockerfile"
hadolint Dockerfile && echo "ok" || flunk "hadolint Dockerfile"

step "check-jsonschema: docker-compose.yml against the compose spec"
check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml || flunk "docker-compose.yml"

step "check-jsonschema: mirrord configs against mirrord's schema (deploy/schemas/mirrord-schema.json)"
check-jsonschema --schemafile deploy/schemas/mirrord-schema.json mirrord.json .mirrord/*.json || flunk "mirrord configs"

if [ "$failed" != 0 ]; then
  echo "deploy checks FAILED ($(($(date +%s) - started)) s)" >&2
  exit 1
fi
echo "deploy checks passed: ${#combinations[@]} renderings, in $(($(date +%s) - started)) s"
