"""Server-side dry run of rendered manifests against a real API server.

usage: dry-run-server.py KUBECTL KUBECONFIG FILE...

Every object whose kind the server serves is applied with `--dry-run=server` (admission,
defaulting, the built-in validation, the CRDs' schemas and CEL rules all run; nothing is
stored). The namespaces the objects live in are created for real first, as a cluster
would have them. Objects of kinds the server does not serve are listed, not hidden, and
do not fail the run.
"""

import json
import subprocess
import sys
import tempfile

import yaml


def kubectl(kubectl_path, kubeconfig, *arguments, stdin=None):
    return subprocess.run(
        [kubectl_path, "--kubeconfig", kubeconfig, *arguments],
        input=stdin,
        capture_output=True,
        text=True,
    )


def served_kinds(kubectl_path, kubeconfig, api_version):
    path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    answer = kubectl(kubectl_path, kubeconfig, "get", "--raw", path)
    if answer.returncode != 0:
        return set()
    return {resource["kind"] for resource in json.loads(answer.stdout)["resources"]}


def main():
    kubectl_path, kubeconfig, *files = sys.argv[1:]
    documents = []
    for file in files:
        with open(file) as handle:
            documents += [(file, d) for d in yaml.safe_load_all(handle) if d]

    served = {}
    checked, unserved = [], []
    for file, document in documents:
        api_version, kind = document["apiVersion"], document["kind"]
        if api_version not in served:
            served[api_version] = served_kinds(kubectl_path, kubeconfig, api_version)
        (checked if kind in served[api_version] else unserved).append((file, document))

    namespaces = {
        d["metadata"]["namespace"] for _, d in checked if d["metadata"].get("namespace")
    } | {d["metadata"]["name"] for _, d in checked if d["kind"] == "Namespace"}
    for namespace in sorted(namespaces):
        manifest = yaml.safe_dump(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
        )
        created = kubectl(
            kubectl_path, kubeconfig, "apply", "--server-side",
            "--field-manager", "dry-run-server", "-f", "-", stdin=manifest,
        )
        if created.returncode != 0:
            sys.exit(f"creating namespace {namespace}: {created.stderr}")

    failures = 0
    # One object at a time, so a refusal names its object and the rest still run.
    for file, document in checked:
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as single:
            yaml.safe_dump(document, single)
            single.flush()
            answer = kubectl(
                kubectl_path, kubeconfig, "apply", "--server-side", "--force-conflicts",
                "--dry-run=server", "--field-manager", "dry-run-server", "-f", single.name,
            )
        if answer.returncode != 0:
            failures += 1
            name = document["metadata"].get("name")
            print(f"{file}: {document['kind']} {name}: {answer.stderr.strip()}")

    print(f"{len(checked)} objects applied with --dry-run=server, {failures} refused")
    if unserved:
        kinds = sorted({f"{d['apiVersion']} {d['kind']}" for _, d in unserved})
        print(f"{len(unserved)} objects of kinds this server does not serve, not checked: "
              + ", ".join(kinds))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
