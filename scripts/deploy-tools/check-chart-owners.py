"""Every Helm chart has one owner, and every operator the manifests need has one.

usage: check-chart-owners.py TERRAFORM_ENVIRONMENT ARGOCD_RENDERED MANIFESTS...

Terraform installs the charts of the modules TERRAFORM_ENVIRONMENT uses; Argo CD those its
Applications and ApplicationSets name (ARGOCD_RENDERED, `kubectl kustomize
manifests/argocd`). A chart both install is fought over (each undoes the other's
upgrades and values), so it fails the check, as does a custom resource in MANIFESTS whose
operator nobody installs.
"""

import pathlib
import re
import sys

import yaml

# The chart that brings each API group the manifests use.
OPERATOR_OF = {
    "kafka.strimzi.io": "strimzi-kafka-operator",
    "redis.redis.opstreelabs.in": "redis-operator",
    "cert-manager.io": "cert-manager",
    "external-secrets.io": "external-secrets",
    "postgresql.cnpg.io": "cloudnative-pg",
    "gateway.networking.k8s.io": "traefik",
}


def terraform_charts(environment):
    main = (environment / "main.tf").read_text()
    charts = {}
    for module in re.findall(r'source\s*=\s*"\.\./\.\./modules/([^"]+)"', main):
        for path in (environment / "../../modules" / module).glob("*.tf"):
            for chart in re.findall(r'\bchart\s*=\s*"([^"]+)"', path.read_text()):
                charts.setdefault(chart, []).append(f"terraform module {module}")
    return charts


def argocd_charts(rendered):
    charts = {}
    for document in yaml.safe_load_all(rendered.read_text()):
        if not document:
            continue
        name = f"Argo CD {document['kind']} {document['metadata']['name']}"
        spec = document.get("spec", {})
        specs = [spec, spec.get("template", {}).get("spec", {})]
        sources = [s.get("source", {}) for s in specs]
        sources += [source for s in specs for source in s.get("sources", [])]
        for generator in spec.get("generators", []):
            sources += generator.get("list", {}).get("elements", [])
        for source in sources:
            if isinstance(source, dict) and source.get("chart"):
                charts.setdefault(source["chart"], []).append(name)
    return charts


def main():
    environment, rendered, *manifests = map(pathlib.Path, sys.argv[1:])
    terraform = terraform_charts(environment)
    argocd = argocd_charts(rendered)
    errors = []
    for chart in sorted(set(terraform) & set(argocd)):
        errors.append(f"chart {chart} is installed by {', '.join(terraform[chart] + argocd[chart])}")
    installed = set(terraform) | set(argocd)
    groups = set()
    for path in manifests:
        for document in yaml.safe_load_all(path.read_text()):
            if document and "/" in document.get("apiVersion", ""):
                groups.add(document["apiVersion"].split("/")[0])
    for group in sorted(groups & set(OPERATOR_OF)):
        if OPERATOR_OF[group] not in installed:
            errors.append(f"{group} resources are used, but nobody installs {OPERATOR_OF[group]}")
    for error in errors:
        print(f"ERROR {error}")
    print(f"{len(terraform)} charts from Terraform, {len(argocd)} from Argo CD, {len(errors)} errors")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
