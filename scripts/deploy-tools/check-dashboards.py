"""Checks the Grafana dashboards: valid JSON with unique panel ids, and every metric a
query names is one the code emits (or an exporter's, listed below), so a renamed metric
cannot leave a dashboard silently empty. With --alerts, the same for every metric a
Prometheus rule file's expressions name, so an alert cannot silently never fire.
usage: check-dashboards.py DASHBOARD... | check-dashboards.py --alerts RULES... """

import json
import pathlib
import re
import sys

# Metrics from outside this repository: Strimzi's Kafka Exporter, and the series Prometheus
# writes for every scrape.
EXTERNAL = {"kafka_consumergroup_lag", "up"}
SUFFIXES = ("_bucket", "_count", "_sum")


def emitted():
    names = set()
    pattern = re.compile(r'(?:counter|histogram|gauge)!\(\s*"([a-z_]+)"')
    for path in pathlib.Path(".").glob("**/src/**/*.rs"):
        if "target" in path.parts:
            continue
        names.update(pattern.findall(path.read_text()))
    return names


def main(paths):
    known = emitted() | EXTERNAL
    errors = []
    for path in paths:
        dashboard = json.loads(pathlib.Path(path).read_text())
        ids = [panel["id"] for panel in dashboard["panels"]]
        if len(ids) != len(set(ids)):
            errors.append(f"{path}: panel ids repeat")
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                for name in re.findall(r"\b([a-z_]+)(?=\{|\[|\))", target["expr"]):
                    base = name
                    for suffix in SUFFIXES:
                        if name.endswith(suffix) and name[: -len(suffix)] in known:
                            base = name[: -len(suffix)]
                    if base.endswith(("_total", "_seconds", "_lag")) and base not in known:
                        errors.append(f"{path}: panel `{panel['title']}` queries `{name}`, which nothing emits")
    for error in errors:
        print(f"ERROR {error}")
    print(f"{len(paths)} dashboards, {len(errors)} errors")
    return 1 if errors else 0


PROMQL_WORDS = {"by", "without", "and", "or", "unless", "on", "ignoring", "group_left",
                "group_right", "offset", "bool"}


def rule_metrics(expr):
    """The metric names in a PromQL expression: label matchers, grouping labels, range
    durations and function names taken out."""
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    names = re.findall(r"\b([a-z_][a-z0-9_]*)\b(?!\s*\()", expr)
    return {name for name in names if name not in PROMQL_WORDS}


def check_alerts(paths):
    import yaml

    known = emitted() | EXTERNAL
    errors = []
    rules = 0
    for path in paths:
        for group in yaml.safe_load(pathlib.Path(path).read_text())["groups"]:
            for rule in group["rules"]:
                rules += 1
                for name in rule_metrics(str(rule["expr"])):
                    for suffix in SUFFIXES:
                        if name.endswith(suffix) and name[: -len(suffix)] in known:
                            name = name[: -len(suffix)]
                    if name not in known:
                        errors.append(f"{path}: alert `{rule['alert']}` uses `{name}`, which nothing emits")
    for error in errors:
        print(f"ERROR {error}")
    print(f"{rules} alert rules, {len(errors)} errors")
    return 1 if errors else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--alerts"]:
        sys.exit(check_alerts(sys.argv[2:]))
    sys.exit(main(sys.argv[1:]))
