"""The kopf wiring: one module per kind, startup and settings, and the Kubernetes writes.

Contract: handlers read the object, call engines (through plain data), and write the result in
one status patch plus Events. No maths here. Domain errors become `kopf.TemporaryError` (retry
later) or a status condition; nothing unsafe happens on doubt.
"""
