"""StemSplit for stemkit: the ``stemsplit`` provider, its API client, webhook verification and emulator.

    import stemkit
    stems = stemkit.separate("song.mp3", provider="stemsplit?quality=best", stems=["vocals", "drums"])

Extras outside the Separator protocol live on :class:`StemSplitClient` (balance, job lists, webhooks) and
:func:`verify_and_parse` (webhook deliveries). The emulator (``stemkit emulate stemsplit``) is in
:mod:`stemkit_stemsplit.emulator` and needs stemkit's ``emulators`` extra
(``pip install "stemkit[stemsplit,emulators]"``).
"""

from stemkit_stemsplit._wire import Balance, Job, JobList, UploadTicket, Webhook, WebhookEvent
from stemkit_stemsplit.client import DEFAULT_BASE_URL, AsyncStemSplitClient, StemSplitClient
from stemkit_stemsplit.separator import StemSplitOptions, StemSplitSeparator
from stemkit_stemsplit.webhooks import WebhookSignatureError, compute_signature, verify_and_parse, verify_signature

__all__ = [
    "DEFAULT_BASE_URL",
    "AsyncStemSplitClient",
    "Balance",
    "Job",
    "JobList",
    "StemSplitClient",
    "StemSplitOptions",
    "StemSplitSeparator",
    "UploadTicket",
    "Webhook",
    "WebhookEvent",
    "WebhookSignatureError",
    "compute_signature",
    "verify_and_parse",
    "verify_signature",
]
