#!/usr/bin/env python3
"""Prepares the monitoring manifests for promtool, which knows plain rule files,
not the Prometheus Operator's resources nor Grafana's dashboards.

    rules-check.py OUT_DIR

writes into OUT_DIR:
- alerts.rules.yaml: the `spec` of alerts.yaml's PrometheusRule, as a rule file;
- dashboard.rules.yaml: every query of dashboards/hosted-learners.json as a
  recording rule (Grafana's variables replaced by what they stand for), so that
  promtool parses each one;
- alerts.test.yaml: the unit tests of the alerts, pointing at the rule file above.

dev/kubernetes then runs `promtool check rules` on the two rule files and
`promtool test rules` on the tests.
"""

import json
import pathlib
import re
import sys

import yaml

HERE = pathlib.Path(__file__).resolve().parent


def dashboard_queries(dashboard):
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]
        yield from dashboard_queries({"panels": panel.get("panels", [])})


def grafana_to_promql(expr):
    expr = expr.replace("$__rate_interval", "2m")
    return re.sub(r'=~"\$service"', '=~".+"', expr)


def main():
    out = pathlib.Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    rule = yaml.safe_load((HERE / "alerts.yaml").read_text())
    assert rule["kind"] == "PrometheusRule", "alerts.yaml holds one PrometheusRule"
    (out / "alerts.rules.yaml").write_text(yaml.safe_dump(rule["spec"], sort_keys=False))

    dashboard = json.loads((HERE / "dashboards" / "hosted-learners.json").read_text())
    rules = []
    for number, (title, expr) in enumerate(dashboard_queries(dashboard)):
        if "$" in grafana_to_promql(expr):
            sys.exit(f"dashboard panel {title!r}: a variable the check does not know: {expr}")
        rules.append({"record": f"dashboard:query_{number}", "expr": grafana_to_promql(expr)})
    groups = {"groups": [{"name": "dashboard", "rules": rules}]}
    (out / "dashboard.rules.yaml").write_text(yaml.safe_dump(groups, sort_keys=False))

    tests = yaml.safe_load((HERE / "alerts.test.yaml").read_text())
    tests["rule_files"] = ["alerts.rules.yaml"]
    (out / "alerts.test.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    print(f"monitoring: {len(rules)} dashboard queries, "
          f"{sum(len(g['rules']) for g in rule['spec']['groups'])} alerts, "
          f"{len(tests['tests'])} alert tests")


if __name__ == "__main__":
    main()
