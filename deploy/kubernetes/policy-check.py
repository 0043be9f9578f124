#!/usr/bin/env python3
"""policy-check.py -- what every rendered overlay of deploy/kubernetes must hold,
beyond the Kubernetes schemas (dev/kubernetes runs it after kubernetes-validate):

- every container: no privilege escalation, every capability dropped (the demo
  slapd adds back what binding port 389 as root and dropping to openldap need),
  the RuntimeDefault seccomp profile, memory requests and limits, CPU requests,
  liveness and readiness probes; a read-only root filesystem and a non-root user
  unless the pod template names why not (annotation hosted-learners/policy-exception);
- the four services: gRPC probes on the health port (startup, liveness, and
  readiness on the service's own health name), no service-account token, a
  Service, and, where they are autoscaled, a disruption budget;
- a default-deny NetworkPolicy;
- no Secret, and no secret value in a ConfigMap: secrets are referenced, never
  committed.

Usage: policy-check.py RENDERED.yaml [...]   (exit status 1 on any breach)
"""

import re
import sys

import yaml

SERVICES = ("intake", "entitlement", "cards", "directory")
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job")
EXCEPTION = "hosted-learners/policy-exception"
# A TOML key that holds a secret given inline instead of as a *_file, or a
# PostgreSQL URL with its password.
INLINE_SECRET = re.compile(
    r"^\s*(password|bind_password|login_key)\s*=|postgres(ql)?://[^:/@\s]+:[^@\s]+@", re.M
)


def pod_spec(resource):
    template = resource["spec"]["template"]
    return template.get("metadata", {}), template["spec"]


def check_container(where, container, pod, exception, breaches):
    name = f"{where}/{container['name']}"
    context = container.get("securityContext", {})
    pod_context = pod.get("securityContext", {})
    if context.get("allowPrivilegeEscalation") is not False:
        breaches.append(f"{name}: allowPrivilegeEscalation is not false")
    if "ALL" not in context.get("capabilities", {}).get("drop", []):
        breaches.append(f"{name}: does not drop every capability")
    if context.get("privileged"):
        breaches.append(f"{name}: privileged")
    seccomp = context.get("seccompProfile", pod_context.get("seccompProfile", {}))
    if seccomp.get("type") != "RuntimeDefault":
        breaches.append(f"{name}: no RuntimeDefault seccomp profile")
    if not exception:
        if context.get("readOnlyRootFilesystem") is not True:
            breaches.append(f"{name}: root filesystem not read-only")
        if not (context.get("runAsNonRoot") or pod_context.get("runAsNonRoot")):
            breaches.append(f"{name}: may run as root")
        if context.get("capabilities", {}).get("add"):
            breaches.append(f"{name}: adds capabilities")
    resources = container.get("resources", {})
    if "memory" not in resources.get("requests", {}) or "memory" not in resources.get("limits", {}):
        breaches.append(f"{name}: no memory request and limit")
    if "cpu" not in resources.get("requests", {}):
        breaches.append(f"{name}: no CPU request")
    for probe in ("livenessProbe", "readinessProbe"):
        if probe not in container:
            breaches.append(f"{name}: no {probe}")


def check_service(where, container, pod, breaches):
    name = f"{where}/{container['name']}"
    service = container["name"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        grpc = container.get(probe, {}).get("grpc")
        if not grpc or grpc.get("port") != 8081:
            breaches.append(f"{name}: {probe} is not gRPC health on port 8081")
    readiness = container.get("readinessProbe", {}).get("grpc", {})
    wanted = f"hosted.v1.{service.capitalize()}Service"
    if readiness.get("service") != wanted:
        breaches.append(f"{name}: readiness does not ask for {wanted}")
    if pod.get("automountServiceAccountToken") is not False:
        breaches.append(f"{name}: mounts a service-account token it does not need")
    for item in container.get("env", []):
        secret_like = any(word in item["name"] for word in ("PASSWORD", "TOKEN", "KEY"))
        if secret_like and "value" in item:
            breaches.append(f"{name}: {item['name']}: a secret in an environment variable")


def check(path):
    with open(path, encoding="utf-8") as file:
        resources = [doc for doc in yaml.safe_load_all(file) if doc]
    breaches = []
    notes = []
    kinds = {}
    for resource in resources:
        kinds.setdefault(resource["kind"], set()).add(resource["metadata"]["name"])
    for resource in resources:
        kind = resource["kind"]
        name = resource["metadata"]["name"]
        if kind == "Secret":
            breaches.append(f"Secret/{name}: secrets are referenced, never committed")
        if kind == "ConfigMap":
            for key, text in (resource.get("data") or {}).items():
                if key.endswith(".toml") and INLINE_SECRET.search(text):
                    breaches.append(f"ConfigMap/{name}/{key}: a secret inline (use *_file)")
        if kind not in WORKLOADS:
            continue
        metadata, pod = pod_spec(resource)
        exception = (metadata.get("annotations") or {}).get(EXCEPTION)
        if exception:
            notes.append(f"{kind}/{name}: exception: {exception}")
        for container in pod.get("initContainers", []) + pod["containers"]:
            check_container(f"{kind}/{name}", container, pod, exception, breaches)
        if kind == "Deployment" and name in SERVICES:
            check_service(f"{kind}/{name}", pod["containers"][0], pod, breaches)
    for service in SERVICES:
        if service not in kinds.get("Deployment", set()):
            breaches.append(f"Deployment/{service}: missing")
        if service not in kinds.get("Service", set()):
            breaches.append(f"Service/{service}: missing")
        autoscaled = service in kinds.get("HorizontalPodAutoscaler", set())
        if autoscaled and service not in kinds.get("PodDisruptionBudget", set()):
            breaches.append(f"PodDisruptionBudget/{service}: missing beside its autoscaler")
    deny = [
        r for r in resources
        if r["kind"] == "NetworkPolicy" and r["spec"].get("podSelector") == {}
        and set(r["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
        and not r["spec"].get("ingress") and not r["spec"].get("egress")
    ]
    if not deny:
        breaches.append("NetworkPolicy: no default-deny")
    return breaches, notes, len(resources)


def main(paths):
    failed = False
    for path in paths:
        breaches, notes, count = check(path)
        for note in notes:
            print(f"{path}: {note}")
        for breach in breaches:
            print(f"{path}: {breach}", file=sys.stderr)
        if breaches:
            failed = True
        else:
            print(f"{path}: policy ok ({count} resources)")
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(64)
    sys.exit(main(sys.argv[1:]))
