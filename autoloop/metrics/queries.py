"""PromQL that autoloop builds, and the scoping of PromQL that users write.

Names and labels that come from users are escaped before they enter a query; a user's query is
parsed and every selector is pinned to the resource's namespace (or refused when it names another
one), the way prom-label-proxy enforces tenancy.
"""

from __future__ import annotations

import re
from typing import Final

import promql_parser

NAMESPACE_LABEL: Final = "namespace"


class QueryRefused(ValueError):
    """A user query that cannot be run safely in the resource's namespace."""


def escape_label_value(value: str) -> str:
    """A label value as a PromQL double-quoted string body."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_regex_literal(value: str) -> str:
    """A literal string as a RE2 regex that matches it exactly, then escaped for PromQL."""
    return escape_label_value(re.escape(value))


def pod_regex(workload: str) -> str:
    """Pods of a Deployment are named <name>-<replicaset hash>-<suffix>; StatefulSets <name>-<ordinal>."""
    return f"{escape_regex_literal(workload)}-[a-z0-9]+(-[a-z0-9]+)?"


def builtin_query(metric: str, *, namespace: str, workload: str, window: str = "2m") -> str:
    """The PromQL for a built-in objective of one workload, with every name escaped."""
    ns = escape_label_value(namespace)
    svc = escape_label_value(workload)
    pods = pod_regex(workload)
    sel_pods = f'namespace="{ns}",pod=~"{pods}",container!="",container!="POD"'
    sel_svc = f'namespace="{ns}",service="{svc}"'
    if metric in ("LatencyP95", "LatencyP99"):
        q = "0.95" if metric == "LatencyP95" else "0.99"
        return f"histogram_quantile({q}, sum by (le) (rate(http_request_duration_seconds_bucket{{{sel_svc}}}[{window}])))"
    if metric == "ErrorRatio":
        return (
            f'(sum(rate(http_requests_total{{{sel_svc},code=~"5.."}}[{window}])) or vector(0))'
            f" / sum(rate(http_requests_total{{{sel_svc}}}[{window}]))"
        )
    if metric == "Throughput":
        return f"sum(rate(http_requests_total{{{sel_svc}}}[{window}]))"
    if metric == "CPUUtilization":
        return (
            f"sum(rate(container_cpu_usage_seconds_total{{{sel_pods}}}[{window}]))"
            f' / sum(kube_pod_container_resource_requests{{{sel_pods},resource="cpu"}})'
        )
    if metric == "MemoryUtilization":
        return (
            f"sum(container_memory_working_set_bytes{{{sel_pods}}})"
            f' / sum(kube_pod_container_resource_requests{{{sel_pods},resource="memory"}})'
        )
    raise ValueError(f"no built-in query for metric {metric!r}")


def usage_query(
    resource: str, *, namespace: str, workload: str, window: str = "2m", aggregate: str = "avg"
) -> str:
    """Per-pod usage of a workload, `avg` or `max` over its pods: cores for cpu, bytes for memory."""
    if aggregate not in ("avg", "max"):
        raise ValueError(f"unknown aggregate {aggregate!r}")
    ns = escape_label_value(namespace)
    sel = f'namespace="{ns}",pod=~"{pod_regex(workload)}",container!="",container!="POD"'
    if resource == "cpu":
        return f"{aggregate}(sum by (pod) (rate(container_cpu_usage_seconds_total{{{sel}}}[{window}])))"
    if resource == "memory":
        return f"{aggregate}(sum by (pod) (container_memory_working_set_bytes{{{sel}}}))"
    raise ValueError(f"unknown resource {resource!r}")


def _op_name(op: object) -> str:
    """`MatchOp.Re` -> `Re` (the binding's enum is not hashable)."""
    return str(op).rsplit(".", 1)[-1]


def _render_selector(node: promql_parser.VectorSelector, namespace: str) -> str:
    matchers = []
    ops = {"Equal": "=", "NotEqual": "!=", "Re": "=~", "NotRe": "!~"}
    if node.matchers.or_matchers:
        raise QueryRefused("selectors with 'or' matchers cannot be scoped to a namespace")
    for m in node.matchers.matchers:
        if m.name == NAMESPACE_LABEL:
            if _op_name(m.op) != "Equal" or m.value != namespace:
                raise QueryRefused(
                    f"selector {node} reads namespace matcher {m.name}{ops[_op_name(m.op)]}{m.value!r}; "
                    f"only namespace={namespace!r} is allowed"
                )
            continue
        if any(ch in m.value for ch in '"\\\n'):
            # The parser prints values without escaping them, so a quote could change the query.
            raise QueryRefused(f"label value {m.value!r} contains a quote, backslash or newline")
        matchers.append(f'{m.name}{ops[_op_name(m.op)]}"{m.value}"')
    matchers.append(f'{NAMESPACE_LABEL}="{escape_label_value(namespace)}"')
    text = (node.name or "") + "{" + ",".join(matchers) + "}"
    if node.offset is not None:
        text += f" offset {promql_parser.display_duration(node.offset)}"
    if node.at is not None:
        raise QueryRefused("the @ modifier is not allowed in loop queries")
    return text


def check_query(query: str) -> str:
    """A cluster administrator's query, unchanged once it parses; raises QueryRefused when invalid.

    Only for cluster-scoped resources, whose authors may read every namespace anyway. The text is
    returned as written: the parser prints label values without escaping them.
    """
    try:
        promql_parser.parse(query)
        return query
    except ValueError as exc:
        raise QueryRefused(f"not valid PromQL: {exc}") from exc


def scope_query(query: str, *, namespace: str) -> str:
    """The user's query with every selector pinned to `namespace`; raises QueryRefused."""
    try:
        expr = promql_parser.parse(query)
    except ValueError as exc:
        raise QueryRefused(f"not valid PromQL: {exc}") from exc

    def pin(node: promql_parser.Expr) -> promql_parser.Expr | None:
        if isinstance(node, promql_parser.VectorSelector):
            return promql_parser.parse(_render_selector(node, namespace))
        return None

    scoped = str(promql_parser.transform(expr, pre_visit=pin))
    _verify_scoped(scoped, namespace=namespace, selectors=_count_selectors(expr))
    return scoped


def _count_selectors(expr: promql_parser.Expr) -> int:
    count = 0

    def visit(node: object) -> None:
        nonlocal count
        if isinstance(node, promql_parser.VectorSelector):
            count += 1

    promql_parser.walk(expr, pre_visit=visit)
    return count


def _verify_scoped(query: str, *, namespace: str, selectors: int) -> None:
    """Parse the result again: every selector must carry exactly our namespace, none lost or added."""
    expr = promql_parser.parse(query)
    bad: list[str] = []

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            ns = [m for m in node.matchers.matchers if m.name == NAMESPACE_LABEL]
            if len(ns) != 1 or _op_name(ns[0].op) != "Equal" or ns[0].value != namespace:
                bad.append(str(node))

    promql_parser.walk(expr, pre_visit=visit)
    if bad or _count_selectors(expr) != selectors:
        raise QueryRefused(f"query could not be scoped to namespace {namespace!r}: {bad}")
