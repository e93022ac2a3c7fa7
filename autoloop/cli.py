"""The `autoloop` command: run the operator, generate CRDs, run the synthetic workload, explain."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from autoloop import __version__


def cmd_crds(args: argparse.Namespace) -> int:
    """Write (or, with --check, compare) crds/*.yaml from the API models."""
    from autoloop.api import KINDS
    from autoloop.api.crd import render_reference, render_yaml

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    drift = []
    files = {out / f"{kind.PLURAL}.yaml": render_yaml(kind) for kind in KINDS}
    files[Path(args.reference)] = render_reference(KINDS)
    for path, text in files.items():
        if args.check:
            if not path.exists() or path.read_text() != text:
                drift.append(str(path))
        else:
            path.write_text(text)
    if drift:
        print("CRDs differ from the models; run `autoloop crds`: " + ", ".join(drift), file=sys.stderr)
        return 1
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from autoloop.operator.runner import run
    from autoloop.operator.settings import OperatorSettings

    settings = OperatorSettings.from_env()
    if args.namespace:
        settings.namespaces = list(args.namespace)
    if args.prometheus_url:
        settings.prometheus_url = args.prometheus_url
    if args.metrics_port is not None:
        settings.metrics_port = args.metrics_port
    if args.liveness_port is not None:
        settings.liveness_port = args.liveness_port
    if args.tick is not None:
        settings.tick_seconds = args.tick
    run(settings)
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from autoloop.simulation import exporter

    return exporter.main(args.rest)


KINDS_BY_ALIAS: dict[str, tuple[str, bool]] = {
    alias: (plural, namespaced)
    for plural, namespaced, aliases in (
        ("optimizationloops", True, ("oloop", "optimizationloop", "optimizationloops")),
        ("resourceallocations", True, ("ralloc", "resourceallocation", "resourceallocations")),
        ("maintenanceplans", False, ("mplan", "maintenanceplan", "maintenanceplans")),
    )
    for alias in aliases
}


def parse_ref(ref: str) -> tuple[str, str, str]:
    """`[KIND/]NAMESPACE/NAME` (KIND defaults to oloop) or `mplan/NAME` -> (plural, namespace, name)."""
    parts = ref.split("/")
    plural, namespaced = "optimizationloops", True
    if parts[0].lower() in KINDS_BY_ALIAS:
        plural, namespaced = KINDS_BY_ALIAS[parts.pop(0).lower()]
    want = 2 if namespaced else 1
    if len(parts) != want or not all(parts):
        form = "[oloop|ralloc]/NAMESPACE/NAME or mplan/NAME"
        raise SystemExit(f"give the resource as {form}, got {ref!r}")
    return plural, (parts[0] if namespaced else ""), parts[-1]


def _read(ref: str) -> dict[str, Any]:
    """A resource named by `parse_ref`'s forms, read with the current kubeconfig."""
    from kubernetes import client, config

    plural, namespace, name = parse_ref(ref)
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    api = client.CustomObjectsApi()
    if namespace:
        obj = api.get_namespaced_custom_object("autoloop.x0tta6bl4.io", "v1alpha1", namespace, plural, name)
    else:
        obj = api.get_cluster_custom_object("autoloop.x0tta6bl4.io", "v1alpha1", plural, name)
    return dict(obj)  # type: ignore[call-overload]


def _read_loop(ref: str) -> dict[str, Any]:
    """An OptimizationLoop by `namespace/name`."""
    if parse_ref(ref)[0] != "optimizationloops":
        raise SystemExit(f"analyze reads an OptimizationLoop, got {ref!r}")
    return _read(ref)


def cmd_explain(args: argparse.Namespace) -> int:
    from autoloop import report

    print(report.explain_any(_read(args.ref), decisions=args.decisions))
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    """Print the ranking and its evidence; with Prometheus, sparklines of the top cause's series."""
    import time

    from autoloop import report
    from autoloop.api.common import parse_duration

    obj = _read_loop(args.ref)
    series: dict[str, list[float]] = {}
    causes = ((obj.get("status") or {}).get("analysis") or {}).get("causes") or []
    url = args.prometheus_url or os.environ.get("AUTOLOOP_PROMETHEUS_URL")
    if url:
        from autoloop.metrics.prometheus import PrometheusSource
        from autoloop.metrics.services import fetch_service_series

        services = [c["service"] for c in causes[:2]] or [obj["spec"]["targetRef"]["name"]]
        end = time.time()
        window = parse_duration(args.since).total_seconds()
        fetched, _ = fetch_service_series(
            PrometheusSource(url),
            namespace=obj["metadata"]["namespace"],
            services=services,
            end=end,
            window_seconds=window,
            step_seconds=max(window / 120, 1.0),
        )
        for service, metrics in fetched.items():
            for metric, (_, values) in metrics.items():
                series[f"{service}/{metric}"] = values
    print(report.analysis(obj, series))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autoloop", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator")
    run.add_argument("--namespace", "-n", action="append", help="watch only this namespace (repeatable)")
    run.add_argument("--prometheus-url", help="Prometheus base URL (env AUTOLOOP_PROMETHEUS_URL)")
    run.add_argument("--metrics-port", type=int, help="port of the operator's /metrics")
    run.add_argument("--liveness-port", type=int, help="port of /healthz")
    run.add_argument("--tick", type=float, help="seconds between timer wake-ups")
    run.set_defaults(fn=cmd_run)

    crds = sub.add_parser("crds", help="generate crds/*.yaml from the API models")
    crds.add_argument("--output", "-o", default="crds")
    crds.add_argument("--reference", default="docs/api-reference.md", help="where the field reference goes")
    crds.add_argument("--check", action="store_true", help="exit 1 if the files differ from the models")
    crds.set_defaults(fn=cmd_crds)

    explain = sub.add_parser(
        "explain", help="what a loop, an allocation or a plan saw, decided, validated and measured"
    )
    explain.add_argument(
        "ref", help="NAMESPACE/NAME of an OptimizationLoop, ralloc/NAMESPACE/NAME, or mplan/NAME"
    )
    explain.add_argument("--decisions", type=int, default=10, help="how many recent decisions to show")
    explain.set_defaults(fn=cmd_explain)

    analyze = sub.add_parser("analyze", help="anomalies and ranked root causes of a loop, with evidence")
    analyze.add_argument("ref", help="namespace/name of an OptimizationLoop")
    analyze.add_argument("--since", default="30m", help="how much history to chart (e.g. 30m, 2h)")
    analyze.add_argument("--prometheus-url", help="Prometheus for sparklines (env AUTOLOOP_PROMETHEUS_URL)")
    analyze.set_defaults(fn=cmd_analyze)

    sim = sub.add_parser("simulate", help="run the synthetic workload exporter (dev and tests)")
    sim.add_argument("rest", nargs=argparse.REMAINDER, help="arguments of the exporter")
    sim.set_defaults(fn=cmd_simulate)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["simulate"]:
        # Everything after `simulate` belongs to the exporter, including its own --help.
        from autoloop.simulation import exporter

        return exporter.main(argv[1:])
    args = build_parser().parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
