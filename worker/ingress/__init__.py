"""The ingress: an HTTP service that authenticates billing events and webhooks and enqueues them.

    POST /events            CloudEvents 1.0 (structured, batch, binary), bearer token
    POST /webhooks/stripe   Stripe events, `Stripe-Signature`
    POST /webhooks/crm      CRM events, Standard Webhooks signatures
    GET  /healthz /readyz
    GET  /metrics           here, or on `ingress_metrics_port` apart from the public routes
    GET  /openapi.json      only with `ingress_openapi`

It answers 2xx only once the events are on the queue; see `app.py` for the wiring.
"""

from worker.ingress.app import create_app, serve
from worker.ingress.crm import sign_crm
from worker.ingress.stripe import sign_stripe

__all__ = ["create_app", "serve", "sign_crm", "sign_stripe"]
