"""The Grafana dashboard and the alert rules query only series the simulator and the proxy export."""

from __future__ import annotations

import json
import re

import pytest

from role_stack import ROLES, get

DASHBOARD = ROLES / "monitoring" / "files" / "vllm-ascend-dashboard.json"
ALERTS = ROLES / "monitoring" / "templates" / "vllm-ascend-alerts.yml.j2"
# Labels the scrape configuration adds (prometheus.yml.j2) and Prometheus' own.
SCRAPE_LABELS = {"job", "role", "instance", "rank", "host", "unit", "le"}
SYNTHETIC = {"up"}
PROMQL_WORDS = {"sum", "by", "rate", "histogram_quantile", "and", "or", "deriv", "without", "max", "min",
                "label_values", "avg", "count", "irate", "increase"}
NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def exposition(text: str) -> tuple[set[str], set[str]]:
    """Metric names (samples) and label names in Prometheus text format."""
    names, labels = set(), set()
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        match = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s", line)
        assert match, f"unparsable exposition line {line!r}"
        names.add(match.group(1))
        labels |= set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', match.group(3) or ""))
    return names, labels


def query_names(expr: str) -> tuple[set[str], set[str]]:
    """Metric names and label names an expression uses (selectors, by/without clauses)."""
    stripped = re.sub(r'"[^"]*"', '""', expr)
    labels = {name for inner in re.findall(r"\{([^}]*)\}", stripped)
              for name in re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!=|!~|=)", inner)}
    labels |= set(re.findall(r"label_values\(.*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)", stripped))
    stripped = re.sub(r",\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)\s*$", ")", stripped) if "label_values" in stripped else stripped
    for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", stripped):
        labels |= {x.strip() for x in group.split(",") if x.strip()}
    no_braces = re.sub(r"\{[^}]*\}", "", re.sub(r"\b(?:by|without)\s*\([^)]*\)", "", stripped))
    no_ranges = re.sub(r"\[[^\]]*\]", "", no_braces)
    tokens = {t for t in NAME.findall(no_ranges) if not re.fullmatch(r"[0-9.e+-]+", t)}
    return tokens - PROMQL_WORDS, labels


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [v["query"] for v in dash["templating"]["list"]]
    return [e.replace("$role", "x").replace("$instance", "x") for e in exprs]


def alert_exprs() -> list[str]:
    text = re.sub(r"\{\{[^}]*\}\}", "1", ALERTS.read_text())
    return re.findall(r"^\s*expr:\s*(.+)$", text, re.M)


@pytest.fixture(scope="module")
def exported(stack: dict[str, object]) -> tuple[set[str], set[str]]:
    """Series of a live engine and proxy, after one request through the proxy so every counter has a sample."""
    eng, proxy = int(stack["engine_port"]), int(stack["proxy_port"])  # type: ignore[call-overload]
    status, body = get(proxy, "/v1/completions", {"model": "glm-5", "prompt": "hello there", "max_tokens": 4})
    assert status == 200, body
    names, labels = set(), set()
    for port in (eng, proxy):
        status, body = get(port, "/metrics")
        assert status == 200
        n, lab = exposition(body.decode())
        names |= n
        labels |= lab
    return names, labels


def test_the_simulator_exports_vllms_key_series(exported: tuple[set[str], set[str]]) -> None:
    names, labels = exported
    for series in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                   "vllm:prompt_tokens_total", "vllm:generation_tokens_total",
                   "vllm:time_to_first_token_seconds_bucket", "vllm:time_per_output_token_seconds_bucket",
                   "vllm:inter_token_latency_seconds_bucket", "vllm:request_success_total"):
        assert series in names, series
    assert {"model_name", "engine", "finished_reason"} <= labels


@pytest.mark.parametrize("expr", dashboard_exprs() + alert_exprs())
def test_query_uses_exported_series_and_labels(expr: str, exported: tuple[set[str], set[str]]) -> None:
    names, labels = exported
    metrics, used_labels = query_names(expr)
    assert metrics, f"no metric found in {expr!r}"
    unknown = {m for m in metrics if m not in names | SYNTHETIC}
    assert not unknown, f"{expr!r} queries series nobody exports: {unknown}"
    assert used_labels <= labels | SCRAPE_LABELS, f"{expr!r} uses unknown labels {used_labels - labels - SCRAPE_LABELS}"


def test_query_parser_catches_a_wrong_name(exported: tuple[set[str], set[str]]) -> None:
    metrics, labels = query_names('sum by (role) (rate(vllm:gpu_cache_usage_perc{job="vllm"}[1m]))')
    assert metrics == {"vllm:gpu_cache_usage_perc"} and labels == {"role", "job"}
    assert "vllm:gpu_cache_usage_perc" not in exported[0]


def test_dashboard_is_importable() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["__inputs"][0]["pluginId"] == "prometheus"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    titles = " ".join(p["title"] for p in dash["panels"])
    for word in ("throughput", "TTFT", "TPOT", "KV cache", "health"):
        assert word in titles, word
