#!/usr/bin/env python3
"""Production policy over a rendered overlay (`kubectl kustomize overlays/prod`).

Every Deployment must have:
  - a PodDisruptionBudget whose selector matches its pod labels,
  - a HorizontalPodAutoscaler targeting it with minReplicas >= 2 (and spec.replicas, when set,
    >= 2),
  - a NetworkPolicy of its own: one whose podSelector matches its pods and no pods of another
    application (app.kubernetes.io/name); the namespace-wide default-deny and policies for
    every foundation pod (DNS, telemetry) do not count. A Deployment's own policy must govern
    Ingress (it serves traffic); a Job's may be egress-only.
Every Job (the migrations) must have a NetworkPolicy of its own too.

Usage: k8s-policy.py RENDERED.yaml...   Exit 0 when every rule holds, 1 otherwise (each
violation printed), 2 on unreadable input. Needs PyYAML (in infra-checks' venv).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

MIN_REPLICAS = 2


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """matchLabels and matchExpressions (In, NotIn, Exists, DoesNotExist) against labels."""
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def is_empty_selector(selector: Mapping[str, Any] | None) -> bool:
    return not selector or (not selector.get("matchLabels") and not selector.get("matchExpressions"))


def violations(docs: Iterable[Mapping[str, Any]]) -> list[str]:
    by_kind: dict[str, list[Mapping[str, Any]]] = {}
    for doc in docs:
        if doc and "kind" in doc:
            by_kind.setdefault(doc["kind"], []).append(doc)

    def ns(doc: Mapping[str, Any]) -> str:
        return str(doc.get("metadata", {}).get("namespace", ""))

    pdbs = by_kind.get("PodDisruptionBudget", [])
    hpas = by_kind.get("HorizontalPodAutoscaler", [])
    policies = by_kind.get("NetworkPolicy", [])
    found: list[str] = []

    deployments = by_kind.get("Deployment", [])
    workloads = [
        (w, w["spec"]["template"]["metadata"].get("labels") or {})
        for w in deployments + by_kind.get("Job", [])
    ]

    def own_network_policy(doc: Mapping[str, Any], labels: Mapping[str, str], ingress: bool) -> bool:
        app = labels.get("app.kubernetes.io/name")
        for policy in policies:
            selector = policy["spec"].get("podSelector")
            if ns(policy) != ns(doc) or is_empty_selector(selector) or not selector_matches(selector, labels):
                continue
            if ingress and "Ingress" not in (policy["spec"].get("policyTypes") or ["Ingress"]):
                continue
            selected = [
                w_labels
                for w, w_labels in workloads
                if ns(w) == ns(doc) and selector_matches(selector, w_labels)
            ]
            if app is not None and all(
                w_labels.get("app.kubernetes.io/name") == app for w_labels in selected
            ):
                return True
        return False

    if not deployments:
        found.append("no Deployment in the rendered manifests")
    for dep in deployments:
        name = dep["metadata"]["name"]
        labels = dep["spec"]["template"]["metadata"].get("labels") or {}
        replicas = dep["spec"].get("replicas")
        if replicas is not None and replicas < MIN_REPLICAS:
            found.append(f"Deployment {name}: replicas {replicas} < {MIN_REPLICAS}")
        if not any(
            ns(p) == ns(dep)
            and selector_matches(p["spec"].get("selector"), labels)
            and not is_empty_selector(p["spec"].get("selector"))
            for p in pdbs
        ):
            found.append(f"Deployment {name}: no PodDisruptionBudget selects its pods")
        targeting = [
            h
            for h in hpas
            if ns(h) == ns(dep)
            and h["spec"]["scaleTargetRef"].get("kind") == "Deployment"
            and h["spec"]["scaleTargetRef"].get("name") == name
        ]
        if not targeting:
            found.append(f"Deployment {name}: no HorizontalPodAutoscaler targets it")
        for hpa in targeting:
            low = hpa["spec"].get("minReplicas", 1)
            if low < MIN_REPLICAS:
                found.append(
                    f"HorizontalPodAutoscaler {hpa['metadata']['name']}: minReplicas {low} < {MIN_REPLICAS}"
                )
        if not own_network_policy(dep, labels, ingress=True):
            found.append(f"Deployment {name}: no NetworkPolicy of its own selects its pods")
    for job in by_kind.get("Job", []):
        labels = job["spec"]["template"]["metadata"].get("labels") or {}
        if not own_network_policy(job, labels, ingress=False):
            found.append(f"Job {job['metadata']['name']}: no NetworkPolicy of its own selects its pods")
    return found


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    docs: list[Mapping[str, Any]] = []
    for path in argv[1:]:
        try:
            with open(path, encoding="utf-8") as handle:
                docs.extend(d for d in yaml.safe_load_all(handle) if d)
        except (OSError, yaml.YAMLError) as exc:
            print(f"k8s-policy: cannot read {path}: {exc}", file=sys.stderr)
            return 2
    found = violations(docs)
    for line in found:
        print(f"k8s-policy: {line}")
    if not found:
        count = sum(1 for d in docs if d.get("kind") == "Deployment")
        print(f"k8s-policy: ok ({count} Deployments)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
