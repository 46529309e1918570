"""Akool: its HTTP API (client), the fleet's request budget for it (budget), its webhook
signature and encryption (crypto), and matching its answers and callbacks to our jobs
(reconcile), and the table of the kinds of video job it serves (kinds). What we rely on is
written down in docs/akool.md.
"""

from __future__ import annotations

from worker.akool import reconcile
from worker.akool.answers import AkoolStatus
from worker.akool.budget import (
    RequestBudget,
    SlotReserved,
    holding_slot,
)
from worker.akool.client import (
    CODE_NOT_FOUND,
    HTTP_TOO_MANY_REQUESTS,
    AkoolClient,
)
from worker.akool.crypto import (
    cipher_for,
    decrypt_payload,
    sign,
    signed_callback,
)
from worker.akool.kinds import (
    KINDS,
    Asset,
    Kind,
    asset_for_field,
    kind_for_callback_type,
)
from worker.akool.reconcile import (
    WEBHOOK_POLL_OWNER,
    Route,
    adopt,
    adoption,
    await_callback,
    callback_url,
    read_route,
    token_matches,
)

__all__ = [
    "AkoolClient",
    "AkoolStatus",
    "Asset",
    "CODE_NOT_FOUND",
    "HTTP_TOO_MANY_REQUESTS",
    "KINDS",
    "Kind",
    "asset_for_field",
    "RequestBudget",
    "Route",
    "SlotReserved",
    "WEBHOOK_POLL_OWNER",
    "adopt",
    "adoption",
    "await_callback",
    "callback_url",
    "cipher_for",
    "decrypt_payload",
    "holding_slot",
    "kind_for_callback_type",
    "read_route",
    "reconcile",
    "sign",
    "signed_callback",
    "token_matches",
]
