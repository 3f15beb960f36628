"""Verify StemSplit webhook deliveries: HMAC-SHA256 of the raw body in ``X-Webhook-Signature``.

Use it in your HTTP handler with the *raw* request body (not re-serialized JSON)::

    try:
        event = verify_and_parse(await request.body(), request.headers["X-Webhook-Signature"], secret)
    except WebhookSignatureError:
        return Response(status_code=401)
"""

from __future__ import annotations

import hashlib
import hmac
import json

from pydantic import ValidationError

from stemkit.errors import ProtocolError, StemkitError
from stemkit_stemsplit._wire import WebhookEvent

__all__ = ["WebhookSignatureError", "compute_signature", "verify_and_parse", "verify_signature"]

SIGNATURE_HEADER = "X-Webhook-Signature"


class WebhookSignatureError(StemkitError):
    """The delivery's signature does not match its body and secret: answer 401 and ignore the body."""


def compute_signature(payload: bytes, secret: str) -> str:
    """The signature StemSplit sends for ``payload``: ``sha256=<hex>``."""
    return "sha256=" + hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def verify_signature(payload: bytes | str, signature: str | None, secret: str) -> bool:
    """Constant-time check; accepts ``sha256=<hex>`` and bare ``<hex>``."""
    if not signature or not secret:
        return False
    raw = payload.encode() if isinstance(payload, str) else payload
    candidate = signature.strip()
    if candidate.lower().startswith("sha256="):
        candidate = candidate[len("sha256=") :]
    expected = compute_signature(raw, secret)[len("sha256=") :]
    return hmac.compare_digest(expected.encode(), candidate.lower().encode())


def verify_and_parse(payload: bytes | str, signature: str | None, secret: str) -> WebhookEvent:
    """Verify, then parse the delivery envelope; raises WebhookSignatureError before trusting any byte."""
    if not verify_signature(payload, signature, secret):
        raise WebhookSignatureError(
            f"{SIGNATURE_HEADER} does not match the body: pass the raw request body and the secret that "
            "POST /webhooks returned for this endpoint."
        )
    try:
        return WebhookEvent.model_validate(json.loads(payload))
    except (ValueError, ValidationError) as exc:
        raise ProtocolError(f"the signed webhook body is not a StemSplit event: {exc}", provider="stemsplit") from None
