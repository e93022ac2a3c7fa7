"""A validating admission webhook that makes the real kube-apiserver answer 429 to chosen writes.

The apiserver calls it for UPDATEs (patches included) of Deployments and of OptimizationLoop
status in one namespace; while a resource is in `throttled`, the webhook denies with code 429
and reason TooManyRequests, which the apiserver returns to the writer as its own answer (the
webhook's status code becomes the response's). APF cannot be made to reject one client's writes
on demand (a priority level always keeps a seat), so this is how a test gets a deterministic 429
from the real apiserver. `failurePolicy: Ignore`: a webhook left behind by a crashed test blocks
nothing.
"""

from __future__ import annotations

import base64
import http.server
import json
import ssl
import subprocess
import threading
from pathlib import Path
from typing import Any

NAME = "autoloop-test-throttle.x0tta6bl4.io"


class ThrottlingWebhook:
    """Serve over TLS on 127.0.0.1 and register with the apiserver for `namespace`."""

    def __init__(self, cp: Any, namespace: str, workdir: Path) -> None:
        self.cp, self.namespace = cp, namespace
        self.throttled: set[str] = set()
        """Resources ("deployments", "optimizationloops/status") whose writes are refused now."""
        self.refused: dict[str, int] = {}
        key, cert = workdir / "webhook.key", workdir / "webhook.crt"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_POST(self) -> None:
                review = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                answer = json.dumps(hook.review(review)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        port = self.server.server_address[1]
        webhook = {
            "name": NAME,
            "clientConfig": {
                "url": f"https://127.0.0.1:{port}/validate",
                "caBundle": base64.b64encode(cert.read_bytes()).decode(),
            },
            "rules": [
                {"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["UPDATE"],
                 "resources": ["deployments"]},
                {"apiGroups": ["autoloop.x0tta6bl4.io"], "apiVersions": ["v1alpha1"], "operations": ["UPDATE"],
                 "resources": ["optimizationloops/status"]},
            ],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "failurePolicy": "Ignore",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 5,
        }  # fmt: skip
        self.config = f"throttle-{namespace}"[:63]
        body = {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": self.config},
            "webhooks": [webhook],
        }
        cp.kubectl("apply", "-f", "-", input=json.dumps(body))

    def review(self, review: dict[str, Any]) -> dict[str, Any]:
        request = review["request"]
        resource = request["resource"]["resource"]
        if request.get("subResource"):
            resource += "/" + request["subResource"]
        response: dict[str, Any] = {"uid": request["uid"], "allowed": True}
        if resource in self.throttled:
            self.refused[resource] = self.refused.get(resource, 0) + 1
            response = {
                "uid": request["uid"],
                "allowed": False,
                "status": {"code": 429, "reason": "TooManyRequests", "message": "throttled by the test"},
            }
        return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}

    def close(self) -> None:
        self.cp.kubectl("delete", "validatingwebhookconfiguration", self.config, check=False)
        self.server.shutdown()
