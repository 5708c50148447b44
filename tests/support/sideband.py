"""Shared by the SIP and WebRTC (sideband) call tests."""

from __future__ import annotations

# the Standard Webhooks secret the simulator signs ``realtime.call.incoming`` with
SIP_SECRET = "whsec_" + "c2lwLXRlc3Qtc2VjcmV0LWZvci1zaWduaW5nLTAwMDA="
