"""PromQL: built-in queries escape names; user queries are pinned to the namespace or refused."""

from __future__ import annotations

import promql_parser
import pytest

from autoloop.metrics.queries import QueryRefused, builtin_query, check_query, scope_query, usage_query


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("up", 'up{namespace="team-a"}'),
        ('rate(x{job="a"}[5m])', 'rate(x{job="a",namespace="team-a"}[5m])'),
        ('up{namespace="team-a"}', 'up{namespace="team-a"}'),
        ("a / b", 'a{namespace="team-a"} / b{namespace="team-a"}'),
        ("x offset 5m", 'x{namespace="team-a"} offset 5m'),
    ],
)
def test_scope_adds_namespace(query: str, expected: str) -> None:
    assert scope_query(query, namespace="team-a") == expected


@pytest.mark.parametrize(
    ("query", "why"),
    [
        ('up{namespace="kube-system"}', "only namespace='team-a'"),
        ('up{namespace=~".+"}', "only namespace='team-a'"),
        ('up{namespace!="team-a"}', "only namespace='team-a'"),
        ("sum(", "not valid PromQL"),
        ('x{a="q\\"z"}', "quote"),
        ("x @ 100", "@ modifier"),
        ('up{job="a" or namespace="kube-system"}', "'or' matchers"),
    ],
)
def test_scope_refuses(query: str, why: str) -> None:
    with pytest.raises(QueryRefused, match=why):
        scope_query(query, namespace="team-a")


def test_every_selector_of_a_scoped_query_carries_the_namespace() -> None:
    q = scope_query('sum by (pod) (rate(c{a="1"}[1m])) / on(pod) group_left count(d) > bool 1', namespace="n")
    seen: list[str] = []

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            seen.append(str([(m.name, m.value) for m in node.matchers.matchers if m.name == "namespace"]))

    promql_parser.walk(promql_parser.parse(q), pre_visit=visit)
    assert seen == ["[('namespace', 'n')]"] * 2


@pytest.mark.parametrize(
    "metric", ["LatencyP95", "LatencyP99", "ErrorRatio", "Throughput", "CPUUtilization", "MemoryUtilization"]
)
def test_builtin_queries_parse_and_escape(metric: str) -> None:
    q = builtin_query(metric, namespace='evil"} or up{x="', workload="web")
    promql_parser.parse(q)  # still valid PromQL: the quote was escaped, not interpreted
    assert 'evil\\"} or up{x=\\"' in q


def test_pod_regex_escapes_workload_name() -> None:
    q = usage_query("cpu", namespace="n", workload="web.v2")
    assert 'pod=~"web\\\\.v2-[a-z0-9]+(-[a-z0-9]+)?"' in q
    promql_parser.parse(q)


def test_unknown_builtin() -> None:
    with pytest.raises(ValueError, match="no built-in query"):
        builtin_query("Happiness", namespace="n", workload="w")


def test_check_query_keeps_an_admin_query_as_written_and_refuses_garbage() -> None:
    # Cluster-scoped plans: the text is run as written (the parser would drop escapes on print).
    text = 'up{job="a\\"b",namespace="kube-system"} == 0'
    assert check_query(text) == text
    with pytest.raises(QueryRefused, match="not valid PromQL"):
        check_query("sum(")
