#!/usr/bin/env python3
"""Checks one `helm template` rendering of the breakroom chart as a cluster would take it.

    check_rendering.py RENDERING.yaml --namespace NS [--pull-secret NAME]... [--vote-replicas N]
                       [--image REPOSITORY] [--out DIR]

Asserts, printing every failure (exit 1 if any):
  - every namespaced object is in the release namespace, and nothing else names another
    (RoleBinding subjects, the Prometheus config's service discovery, the ServiceMonitor);
  - every pod that runs breakroom's image (Deployments, the seed Job hook, the load
    generator) carries each --pull-secret;
  - vote-api has --vote-replicas replicas;
  - every environment variable that breakroom parses as a number is an integer string
    (Helm prints a float64 of 1000000 as 1e+06, which breakroom refuses), and no value of
    breakroom's containers is written in exponent form at all;
  - every Secret and ConfigMap key a pod reads (env, envFrom, volumes, subPath) exists in
    the rendering;
  - every Service's selector matches a pod template, and a named targetPort a port of it;
    every Deployment's selector matches its own template; every NetworkPolicy and the
    ServiceMonitor select something;
  - every Deployment whose pods read a ConfigMap or Secret of the chart carries a
    checksum/NAME annotation for it, so `helm upgrade` rolls the pods when it changes;
  - with --postgres-password, DATABASE_URL (in the Secret) decodes back to that password.

With --out, writes what the other checkers take: DIR/k8s.yaml (Kubernetes' own kinds,
for kubernetes-validate), DIR/crd/KIND/*.json and DIR/schemas/KIND.json (the
prometheus-operator's kinds and their vendored CRD schemas, for check-jsonschema) and
DIR/rules.yml (the PrometheusRule's groups, for promtool), when the rendering has them.
"""

import argparse
import json
import os
import re
import sys
import urllib.parse

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))

# The variables breakroom parses as numbers (clap `u16`/`u32`/`u64`/`usize`/`f64` in
# src/config.rs and crates/labs/*/src/settings.rs).
INTEGER_ENV = {
    "PORT", "DB_MAX_CONNECTIONS", "BREAKROOM_SEED_PARTNERS", "BREAKROOM_REFERRAL_CACHE_CAPACITY",
    "BREAKROOM_MAX_VIEWERS", "CACHE_TTL_SECONDS", "CATALOG_PORT", "CART_PORT", "CHECKOUT_PORT",
    "CHECKOUT_POOL_SIZE", "SHOP_PRODUCTS",
}
DECIMAL_ENV = {"BREAKROOM_VOTE_RATE_LIMIT"}
BOOLEAN_ENV = {"BREAKROOM_TRUST_PROXY"}
PORT_ENV = {"PORT", "CATALOG_PORT", "CART_PORT", "CHECKOUT_PORT"}

CLUSTER_SCOPED = {
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PersistentVolume",
    "StorageClass", "IngressClass", "PriorityClass", "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration", "APIService",
}
# Kinds kubernetes-validate has no schema for, each with the CRD vendored in deploy/schemas.
CRDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_servicemonitors.yaml",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_prometheusrules.yaml",
}
# The namespace the docs and mirrord.json use: a rendering into another names it nowhere.
DOCS_NAMESPACE = "conference-app"

failures = []


def fail(obj, message):
    where = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}" if obj else "rendering"
    failures.append(f"{where}: {message}")


def pod_spec(obj):
    """The pod template's metadata and spec of a workload, or (None, None)."""
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        template = spec.get("template") or {}
        return template.get("metadata") or {}, template.get("spec") or {}
    if kind == "CronJob":
        template = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
        return template.get("metadata") or {}, template.get("spec") or {}
    if kind == "Pod":
        return obj.get("metadata") or {}, spec
    return None, None


def containers(spec):
    return (spec.get("initContainers") or []) + (spec.get("containers") or [])


def matches(selector, labels):
    """A LabelSelector (matchLabels, matchExpressions) against a label map."""
    labels = labels or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def strings(node):
    if isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)
    elif isinstance(node, str):
        yield node


def check_namespaces(docs, namespace):
    for obj in docs:
        kind = obj.get("kind")
        if kind in CLUSTER_SCOPED:
            continue
        found = (obj.get("metadata") or {}).get("namespace")
        if found != namespace:
            fail(obj, f"namespace {found!r}, not the release namespace {namespace!r}")
        if kind in ("RoleBinding", "ClusterRoleBinding"):
            for subject in obj.get("subjects") or []:
                if subject.get("kind") == "ServiceAccount" and subject.get("namespace") != namespace:
                    fail(obj, f"subject {subject.get('name')} in namespace {subject.get('namespace')!r}")
        if kind == "ServiceMonitor":
            names = ((obj.get("spec") or {}).get("namespaceSelector") or {}).get("matchNames")
            if names != [namespace]:
                fail(obj, f"namespaceSelector.matchNames {names}, not [{namespace!r}]")
        if kind == "ConfigMap" and "prometheus.yml" in (obj.get("data") or {}):
            config = yaml.safe_load(obj["data"]["prometheus.yml"])
            for job in config.get("scrape_configs") or []:
                for sd in job.get("kubernetes_sd_configs") or []:
                    names = (sd.get("namespaces") or {}).get("names")
                    if names != [namespace]:
                        fail(obj, f"job {job.get('job_name')} discovers pods in {names}, not [{namespace!r}]")
    if namespace != DOCS_NAMESPACE:
        for obj in docs:
            for text in strings(obj):
                if DOCS_NAMESPACE in text:
                    fail(obj, f"names {DOCS_NAMESPACE!r} in a release of namespace {namespace!r}: {text[:80]!r}")


def breakroom_pods(docs, image):
    for obj in docs:
        meta, spec = pod_spec(obj)
        if spec is None:
            continue
        if any(c.get("image", "").split(":")[0] == image for c in containers(spec)):
            yield obj, meta, spec


def check_pull_secrets(docs, image, pull_secrets):
    pods = list(breakroom_pods(docs, image))
    if not pods:
        fail(None, f"no pod runs breakroom's image {image}")
    for obj, _, spec in pods:
        names = {s.get("name") for s in spec.get("imagePullSecrets") or []}
        for wanted in pull_secrets:
            if wanted not in names:
                fail(obj, f"runs {image} without the pull secret {wanted!r} (has {sorted(names)})")


def check_replicas(docs, replicas):
    votes = [o for o in docs if o.get("kind") == "Deployment" and o["metadata"]["name"] == "vote-api"]
    if len(votes) != 1:
        fail(None, f"{len(votes)} Deployments named vote-api")
    for obj in votes:
        found = obj["spec"].get("replicas")
        if found != replicas:
            fail(obj, f"{found!r} replicas, not {replicas}")


def check_env(docs, image):
    exponent = re.compile(r"^[-+]?[0-9.]+[eE][-+]?[0-9]+$")
    for obj, _, spec in breakroom_pods(docs, image):
        for container in containers(spec):
            for entry in container.get("env") or []:
                name, value = entry.get("name"), entry.get("value")
                if "valueFrom" in entry:
                    continue
                where = f"container {container.get('name')}: {name}={value!r}"
                if not isinstance(value, str):
                    fail(obj, f"{where} is not a string")
                    continue
                if exponent.match(value):
                    fail(obj, f"{where} is a float in exponent form")
                elif name in INTEGER_ENV and not re.fullmatch(r"[0-9]+", value):
                    fail(obj, f"{where}: breakroom parses it as an integer")
                elif name in DECIMAL_ENV and not re.fullmatch(r"[0-9]+(\.[0-9]+)?", value):
                    fail(obj, f"{where}: breakroom parses it as a number")
                elif name in BOOLEAN_ENV and value not in ("true", "false"):
                    fail(obj, f"{where}: breakroom parses it as true or false")
                if name in PORT_ENV and value.isdigit() and not 0 < int(value) < 65536:
                    fail(obj, f"{where} is not a port")


def check_references(docs):
    keys = {}
    for obj in docs:
        if obj.get("kind") in ("Secret", "ConfigMap"):
            names = set((obj.get("data") or {}).keys()) | set((obj.get("stringData") or {}).keys())
            names |= set((obj.get("binaryData") or {}).keys())
            keys[(obj["kind"], obj["metadata"]["name"])] = names

    def need(obj, kind, name, key=None, optional=False, how=""):
        if optional:
            return
        if (kind, name) not in keys:
            fail(obj, f"{how} reads {kind} {name!r}, which the rendering does not have")
        elif key is not None and key not in keys[(kind, name)]:
            fail(obj, f"{how} reads key {key!r} of {kind} {name!r}, which has {sorted(keys[(kind, name)])}")

    for obj in docs:
        _, spec = pod_spec(obj)
        if spec is None:
            continue
        volumes = {v.get("name"): v for v in spec.get("volumes") or []}
        for claim in (obj.get("spec") or {}).get("volumeClaimTemplates") or []:
            volumes.setdefault(claim["metadata"]["name"], {"persistentVolumeClaim": {}})
        for volume in volumes.values():
            how = f"volume {volume.get('name')}"
            if "secret" in volume:
                s = volume["secret"]
                for item in s.get("items") or [{"key": None}]:
                    need(obj, "Secret", s.get("secretName"), item["key"], s.get("optional", False), how)
            if "configMap" in volume:
                c = volume["configMap"]
                for item in c.get("items") or [{"key": None}]:
                    need(obj, "ConfigMap", c.get("name"), item["key"], c.get("optional", False), how)
            for source in (volume.get("projected") or {}).get("sources") or []:
                for kind, field in (("Secret", "secret"), ("ConfigMap", "configMap")):
                    if field in source:
                        s = source[field]
                        for item in s.get("items") or [{"key": None}]:
                            need(obj, kind, s.get("name"), item["key"], s.get("optional", False), how)
        for container in containers(spec):
            for entry in container.get("env") or []:
                source = entry.get("valueFrom") or {}
                how = f"container {container.get('name')} env {entry.get('name')}"
                if "secretKeyRef" in source:
                    ref = source["secretKeyRef"]
                    need(obj, "Secret", ref.get("name"), ref.get("key"), ref.get("optional", False), how)
                if "configMapKeyRef" in source:
                    ref = source["configMapKeyRef"]
                    need(obj, "ConfigMap", ref.get("name"), ref.get("key"), ref.get("optional", False), how)
            for entry in container.get("envFrom") or []:
                how = f"container {container.get('name')} envFrom"
                if "secretRef" in entry:
                    need(obj, "Secret", entry["secretRef"].get("name"), None, entry["secretRef"].get("optional", False), how)
                if "configMapRef" in entry:
                    need(obj, "ConfigMap", entry["configMapRef"].get("name"), None, entry["configMapRef"].get("optional", False), how)
            for mount in container.get("volumeMounts") or []:
                volume = volumes.get(mount.get("name"))
                how = f"container {container.get('name')} mount {mount.get('mountPath')}"
                if volume is None:
                    fail(obj, f"{how}: no volume {mount.get('name')!r}")
                    continue
                sub = mount.get("subPath")
                if not sub:
                    continue
                if "configMap" in volume and not volume["configMap"].get("items"):
                    need(obj, "ConfigMap", volume["configMap"].get("name"), sub, False, how)
                if "secret" in volume and not volume["secret"].get("items"):
                    need(obj, "Secret", volume["secret"].get("secretName"), sub, False, how)
    return keys


def check_selectors(docs):
    pods = []
    for obj in docs:
        meta, spec = pod_spec(obj)
        if spec is not None:
            pods.append((obj, (meta or {}).get("labels") or {}, spec))
    for obj, labels, _ in pods:
        selector = (obj.get("spec") or {}).get("selector")
        if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet") and not matches(selector or {}, labels):
            fail(obj, f"selector {selector} does not match its own pod template's labels {labels}")
    services = [o for o in docs if o.get("kind") == "Service"]
    for service in services:
        selector = (service.get("spec") or {}).get("selector")
        if not selector:
            continue
        chosen = [(o, spec) for o, labels, spec in pods if matches({"matchLabels": selector}, labels)]
        if not chosen:
            fail(service, f"selector {selector} matches no pod template")
            continue
        for port in service["spec"].get("ports") or []:
            target = port.get("targetPort")
            if isinstance(target, str):
                named = {p.get("name") for _, spec in chosen for c in containers(spec) for p in c.get("ports") or []}
                if target not in named:
                    fail(service, f"targetPort {target!r} is no port of its pods (they have {sorted(named)})")
    for policy in (o for o in docs if o.get("kind") == "NetworkPolicy"):
        selector = policy["spec"].get("podSelector") or {}
        if selector and not any(matches(selector, labels) for _, labels, _ in pods):
            fail(policy, f"podSelector {selector} matches no pod template")
    for monitor in (o for o in docs if o.get("kind") == "ServiceMonitor"):
        selector = monitor["spec"].get("selector") or {}
        chosen = [s for s in services if matches(selector, (s.get("metadata") or {}).get("labels"))]
        if not chosen:
            fail(monitor, f"selector {selector} matches no Service")
        for endpoint in monitor["spec"].get("endpoints") or []:
            for service in chosen:
                names = {p.get("name") for p in service["spec"].get("ports") or []}
                if endpoint.get("port") not in names:
                    fail(monitor, f"endpoint port {endpoint.get('port')!r} is not a port of Service {service['metadata']['name']}")


def check_checksums(docs, keys):
    for obj in docs:
        if obj.get("kind") != "Deployment":
            continue
        meta, spec = pod_spec(obj)
        annotations = (meta or {}).get("annotations") or {}
        read = set()
        for volume in spec.get("volumes") or []:
            if "secret" in volume:
                read.add(("Secret", volume["secret"].get("secretName")))
            if "configMap" in volume:
                read.add(("ConfigMap", volume["configMap"].get("name")))
        for container in containers(spec):
            for entry in container.get("env") or []:
                source = entry.get("valueFrom") or {}
                if "secretKeyRef" in source:
                    read.add(("Secret", source["secretKeyRef"].get("name")))
                if "configMapKeyRef" in source:
                    read.add(("ConfigMap", source["configMapKeyRef"].get("name")))
        for kind, name in sorted(read):
            if (kind, name) in keys and not re.fullmatch(r"[0-9a-f]{64}", str(annotations.get(f"checksum/{name}", ""))):
                fail(obj, f"reads {kind} {name} but has no checksum/{name} annotation: an upgrade that changes it would not roll the pods")


def check_database_url(docs, password):
    secrets = [o for o in docs if o.get("kind") == "Secret" and o["metadata"]["name"] == "breakroom-secrets"]
    if not secrets:
        fail(None, "no Secret breakroom-secrets")
        return
    url = (secrets[0].get("stringData") or {}).get("database-url", "")
    parts = urllib.parse.urlsplit(url)
    try:
        decoded = urllib.parse.unquote(parts.password or "", errors="strict")
        host = (parts.hostname, parts.port)
    except ValueError as e:
        fail(secrets[0], f"database-url {url!r} does not parse: {e}")
        return
    if decoded != password or host != ("postgres", 5432) or parts.path != "/" + "conference":
        fail(secrets[0], f"database-url {url!r} reads as password {decoded!r}, host {host}, path {parts.path!r}")


def crd_schema(path):
    """A CRD's openAPIV3Schema as a JSON Schema that refuses unknown fields, as the API
    server's strict field validation does (it refuses what the CRD does not know)."""
    with open(path) as f:
        crd = yaml.safe_load(f)
    version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
    schema = version["schema"]["openAPIV3Schema"]

    def close(node):
        if not isinstance(node, dict):
            return
        # Go's regexp takes `^(?i)…`; Python's (check-jsonschema --regex-variant python)
        # wants a global flag first. Same pattern.
        if isinstance(node.get("pattern"), str) and node["pattern"].startswith("^(?i)"):
            node["pattern"] = "(?i)^" + node["pattern"][len("^(?i)"):]
        if "properties" in node and "additionalProperties" not in node and not node.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            node["additionalProperties"] = False
        for child in (node.get("properties") or {}).values():
            close(child)
        for key in ("items", "additionalProperties"):
            close(node.get(key))
        for key in ("anyOf", "allOf", "oneOf"):
            for child in node.get(key) or []:
                close(child)

    close(schema)
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    return schema


def write_outputs(docs, out):
    os.makedirs(out, exist_ok=True)
    native = [o for o in docs if (o.get("apiVersion"), o.get("kind")) not in CRDS]
    with open(os.path.join(out, "k8s.yaml"), "w") as f:
        yaml.safe_dump_all(native, f, sort_keys=False)
    for obj in docs:
        key = (obj.get("apiVersion"), obj.get("kind"))
        if key not in CRDS:
            continue
        kind = obj["kind"]
        os.makedirs(os.path.join(out, "crd", kind), exist_ok=True)
        os.makedirs(os.path.join(out, "schemas"), exist_ok=True)
        with open(os.path.join(out, "crd", kind, obj["metadata"]["name"] + ".json"), "w") as f:
            json.dump(obj, f, indent=1)
        with open(os.path.join(out, "schemas", kind + ".json"), "w") as f:
            json.dump(crd_schema(os.path.join(HERE, "schemas", CRDS[key])), f)
        if kind == "PrometheusRule":
            with open(os.path.join(out, "rules.yml"), "w") as f:
                yaml.safe_dump(obj["spec"], f, sort_keys=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rendering")
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--pull-secret", action="append", default=[])
    parser.add_argument("--vote-replicas", type=int)
    parser.add_argument("--image", help="breakroom's image repository (default: the chart's)")
    parser.add_argument("--postgres-password")
    parser.add_argument("--out")
    args = parser.parse_args()
    image = args.image
    if image is None:
        with open(os.path.join(HERE, "helm", "breakroom", "values.yaml")) as f:
            image = yaml.safe_load(f)["image"]["repository"]
    with open(args.rendering) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    if not docs:
        fail(None, "renders nothing")
    check_namespaces(docs, args.namespace)
    check_pull_secrets(docs, image, args.pull_secret)
    if args.vote_replicas is not None:
        check_replicas(docs, args.vote_replicas)
    check_env(docs, image)
    keys = check_references(docs)
    check_selectors(docs)
    check_checksums(docs, keys)
    if args.postgres_password is not None:
        check_database_url(docs, args.postgres_password)
    if args.out:
        write_outputs(docs, args.out)
    kinds = sorted({o.get("kind") for o in docs})
    if failures:
        for failure in failures:
            print(f"FAIL {args.rendering}: {failure}")
        sys.exit(1)
    print(f"ok   {args.rendering}: {len(docs)} objects ({', '.join(kinds)})")


if __name__ == "__main__":
    main()
