"""What each cluster gets from manifests/argocd: exactly its environment's overlay and the
infrastructure resources, on itself, under names no other cluster's Applications take;
a cluster of no environment gets nothing.

usage: check-argocd-clusters.py RENDERER RENDERED_ARGOCD_YAML CLUSTERS_YAML
(RENDERER: scripts/deploy-tools/appset-render, built)
"""

import collections
import json
import pathlib
import subprocess
import sys

import yaml


def main():
    renderer, rendered, clusters_file = sys.argv[1:]
    clusters = yaml.safe_load(pathlib.Path(clusters_file).read_text())
    output = subprocess.run([renderer, rendered, clusters_file], capture_output=True, text=True)
    if output.returncode != 0:
        sys.exit(f"rendering the ApplicationSets failed: {output.stderr}")
    applications = json.loads(output.stdout)
    errors = []
    names = collections.Counter(a["application"]["metadata"]["name"] for a in applications)
    errors += [f"{count} Applications are named {name}" for name, count in names.items() if count > 1]
    for cluster in clusters:
        environment = cluster.get("labels", {}).get("commerce.dev/environment")
        got = [a["application"] for a in applications if a["cluster"] == cluster["name"]]
        paths = sorted(a["spec"]["source"]["path"] for a in got)
        wanted = [] if environment is None else sorted(
            ["manifests/infrastructure", f"manifests/overlays/{environment}"])
        if paths != wanted:
            errors.append(f"cluster {cluster['name']} gets {paths}, not {wanted}")
        for application in got:
            server = application["spec"]["destination"]["server"]
            if server != cluster["server"]:
                errors.append(f"{application['metadata']['name']} for {cluster['name']} deploys to {server}")
            path = pathlib.Path(application["spec"]["source"]["path"])
            if not (path / "kustomization.yaml").exists():
                errors.append(f"{application['metadata']['name']} deploys {path}, which is no Kustomization")
    for error in errors:
        print(f"ERROR {error}")
    print(f"{len(clusters)} clusters, {len(applications)} Applications, {len(errors)} errors")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
