"""Wherever a Shop can choose the `temporal` saga engine, a Temporal server runs where it
points, on a database that exists.

usage: check-temporal.py TERRAFORM_MODULE INFRASTRUCTURE_RENDERED COMPOSE TILTFILE CONFIG
                         RENDERED...

- Terraform (TERRAFORM_MODULE): the chart's frontend Service is
  `<fullname>-frontend.<namespace>`; each datastore in its values.yaml connects to the
  read-write Service of a CloudNativePG Cluster the infrastructure declares, with the
  Secret that Cluster writes, as its owner, to a database its bootstrap makes.
- Every Shop in RENDERED (the overlays) on the `temporal` engine names that frontend and a
  Temporal namespace the chart creates, and its rendered children include the
  order-worker.
- Tilt (`--temporal`) installs the same chart with the same values and points the Shop at
  the same frontend.
- Compose: the order service's Temporal URL names the `temporal` service, which a profile
  starts with the order-worker and the creation of the namespace the order service uses.
"""

import pathlib
import re
import sys
import tomllib

import yaml


def fullname(release, chart="temporal"):
    # The chart's temporal.fullname: the release name if it contains the chart's name.
    return release if chart in release else f"{release}-{chart}"


def terraform_release(module):
    main = (module / "main.tf").read_text()
    release = re.search(r'\bname\s*=\s*"([^"]+)"', main).group(1)
    namespace = re.search(r'\bnamespace\s*=\s*"([^"]+)"', main).group(1)
    if 'file("${path.module}/values.yaml")' not in main:
        raise SystemExit(f"{module}/main.tf: the release does not read values.yaml")
    values = yaml.safe_load((module / "values.yaml").read_text())
    return release, namespace, values


def main():
    module, infrastructure, compose_path, tiltfile, config_path, *rendered = map(
        pathlib.Path, sys.argv[1:]
    )
    errors = []
    release, namespace, values = terraform_release(module)
    frontend = f"http://{fullname(release)}-frontend.{namespace}.svc:7233"

    clusters = {
        (doc["metadata"]["namespace"], doc["metadata"]["name"]): doc
        for doc in yaml.safe_load_all(infrastructure.read_text())
        if doc and doc.get("kind") == "Cluster"
        and doc["apiVersion"].startswith("postgresql.cnpg.io/")
    }
    persistence = values["server"]["config"]["persistence"]
    for store, datastore in persistence["datastores"].items():
        sql = datastore["sql"]
        host, _, port = sql["connectAddr"].rpartition(":")
        match = re.fullmatch(r"(.+)-rw\.([^.]+)\.svc", host)
        where = f"{module}/values.yaml datastores.{store}"
        if not match or port != "5432":
            errors.append(f"{where}: {sql['connectAddr']} is no CloudNativePG read-write Service")
            continue
        cluster_name, cluster_namespace = match.groups()
        cluster = clusters.get((cluster_namespace, cluster_name))
        if cluster is None:
            errors.append(f"{where}: no Cluster {cluster_namespace}/{cluster_name} in the infrastructure")
            continue
        if cluster_namespace != namespace:
            errors.append(f"{where}: the Cluster is in {cluster_namespace}, the release in {namespace}")
        initdb = cluster["spec"]["bootstrap"]["initdb"]
        made = {initdb["database"]} | {
            name
            for statement in initdb.get("postInitSQL", [])
            for name, owner in re.findall(r"CREATE DATABASE (\w+) OWNER (\w+)", statement)
            if owner == initdb["owner"]
        }
        if sql["databaseName"] not in made:
            errors.append(f"{where}: database {sql['databaseName']} is not made by the Cluster ({sorted(made)})")
        if sql["user"] != initdb["owner"]:
            errors.append(f"{where}: user {sql['user']}, but the Cluster's owner is {initdb['owner']}")
        if sql.get("existingSecret") != f"{cluster_name}-app":
            errors.append(f"{where}: the password is in {cluster_name}-app, not {sql.get('existingSecret')}")
    namespaces_config = values["server"]["config"].get("namespaces", {})
    created = {
        entry["name"] for entry in namespaces_config.get("namespace", [])
    } if namespaces_config.get("create") else set()

    temporal_shops = 0
    children = [
        doc
        for path in rendered
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc.get("kind") == "Microservice"
    ]
    for path in rendered:
        for shop in yaml.safe_load_all(path.read_text()):
            if not shop or shop.get("kind") != "Shop":
                continue
            spec = shop["spec"]
            if (spec.get("saga") or {}).get("engine") != "temporal":
                continue
            temporal_shops += 1
            name = f"{path.name}: Shop {shop['metadata']['name']}"
            settings = spec.get("temporal")
            if not settings:
                errors.append(f"{name}: the temporal engine without spec.temporal")
                continue
            if settings["address"] != frontend:
                errors.append(f"{name}: spec.temporal.address {settings['address']}, the server is {frontend}")
            if settings.get("namespace", "default") not in created:
                errors.append(f"{name}: Temporal namespace {settings.get('namespace', 'default')} is not created ({sorted(created)})")
            workers = [
                m for m in children
                if m["spec"].get("target") == "order-worker"
                and m["metadata"]["name"].startswith(shop["metadata"]["name"] + "-")
            ]
            if not workers:
                errors.append(f"{name}: no order-worker Microservice is rendered")

    tilt = tiltfile.read_text()
    if f"'--values={module}/values.yaml'" not in tilt:
        errors.append(f"{tiltfile}: the temporal chart is not installed with {module}/values.yaml")
    if f"TEMPORAL_ADDRESS = '{frontend}'" not in tilt:
        errors.append(f"{tiltfile}: TEMPORAL_ADDRESS is not {frontend}")
    if f"helm_resource('temporal', 'temporal-charts/temporal', namespace='{namespace}'" not in tilt:
        errors.append(f"{tiltfile}: the temporal release is not in namespace {namespace}")

    compose = yaml.safe_load(compose_path.read_text())
    services = compose["services"]
    order_env = services["order"].get("environment", {})
    url = order_env.get("COMMERCE_SERVICES__ORDER__TEMPORAL__URL", "")
    host = re.sub(r"^\w+://", "", url).split(":")[0]
    config = tomllib.loads(config_path.read_text())
    temporal_namespace = order_env.get(
        "COMMERCE_SERVICES__ORDER__TEMPORAL__NAMESPACE",
        config["services"]["order"]["temporal"]["namespace"],
    )
    server = services.get(host)
    if server is None:
        errors.append(f"{compose_path}: the order service's Temporal URL {url!r} names no service")
    else:
        profiles = set(server.get("profiles", []))
        worker = [
            s for s in services.values()
            if s.get("command", [])[-1:] == ["order-worker"]
            and profiles <= set(s.get("profiles", []))
        ]
        if not worker:
            errors.append(f"{compose_path}: no order-worker starts with {host} (profiles {sorted(profiles)})")
        creates = [
            s for s in services.values()
            if f"namespace create --namespace {temporal_namespace} " in str(s.get("command"))
        ]
        if not creates:
            errors.append(f"{compose_path}: nothing creates Temporal namespace {temporal_namespace}")

    for error in errors:
        print(f"ERROR {error}")
    print(f"Temporal at {frontend}; {temporal_shops} Shops on it, {len(errors)} errors")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
