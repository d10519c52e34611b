"""Validates custom resources against the generated CRDs' OpenAPI schemas, strictly (an
unknown field fails, as `kubectl apply --validate=strict` would). CEL rules are checked by
the operator's tests (tests/crds.rs); this checks types, enums, patterns and bounds.

usage: validate-custom-resources.py CRD.yaml... -- RESOURCES.yaml...
"""

import sys

import jsonschema
import yaml


def strict(node):
    """The CRD schema as JSON Schema: `nullable` becomes a null type, Kubernetes
    extensions go, and objects with declared properties refuse others."""
    if isinstance(node, list):
        return [strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: strict(value) for key, value in node.items() if not key.startswith("x-kubernetes-")}
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
        if "enum" in out and None not in out["enum"]:
            out["enum"] = out["enum"] + [None]
    if "properties" in out and "additionalProperties" not in out and not node.get(
        "x-kubernetes-preserve-unknown-fields"
    ):
        out["additionalProperties"] = False
    return out


def main(argv):
    split = argv.index("--")
    schemas = {}
    for path in argv[:split]:
        with open(path) as handle:
            crd = yaml.safe_load(handle)
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = strict(version["schema"]["openAPIV3Schema"])
            # apiVersion, kind and metadata are the API server's, not the CRD's to describe.
            schema["properties"].setdefault("apiVersion", {"type": "string"})
            schema["properties"].setdefault("kind", {"type": "string"})
            schema["properties"].setdefault("metadata", {"type": "object"})
            schemas[(f"{group}/{version['name']}", kind)] = schema
    checked, failed = 0, 0
    for path in argv[split + 1 :]:
        with open(path) as handle:
            documents = [doc for doc in yaml.safe_load_all(handle) if doc]
        for document in documents:
            key = (document.get("apiVersion"), document.get("kind"))
            if key not in schemas:
                continue
            checked += 1
            name = document.get("metadata", {}).get("name", "?")
            errors = sorted(
                jsonschema.Draft7Validator(schemas[key]).iter_errors(document),
                key=lambda error: list(error.path),
            )
            for error in errors:
                failed += 1
                where = ".".join(str(part) for part in error.path) or "(root)"
                print(f"ERROR {path}: {key[1]} {name}: {where}: {error.message}")
    if checked == 0:
        print("ERROR no custom resources found to check")
        return 1
    print(f"{checked} custom resources checked against their CRDs, {failed} errors")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
