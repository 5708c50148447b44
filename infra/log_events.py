"""Every structlog event name the product logs: a closed vocabulary.

Event names are a public contract: dashboards and alerts match them, and ``responder trace
--log`` rebuilds a call from them (``call.item_added``, ``call.user_turn``, …). So a name is
never renamed, and a new one is added here in the same change that first logs it.
Call sites keep the literal (``log.info("call.ended", …)``: greppable, and where the reader
looks); ``tests/infra/test_log_events.py`` reads the source and checks that every name logged
is listed here, that every name listed is logged, and that each is ``area.what_happened``
(lower case, ``_`` inside a part, at least one dot).

The simulator, a test double that imports nothing of the product, keeps its own list
(:mod:`simulator.log_events`).
"""

from __future__ import annotations

from typing import Final, Literal, get_args

LogEvent = Literal[
    # the voice service process: startup, warm-up, drain (responder/server, responder/cli)
    "app.bind_failed",  # either service: its port is taken (responder/cli/event_loop.py)
    "app.calls_not_finished",
    "app.drain_goodbye",
    "app.drained",
    "app.draining",
    "app.event_loop",
    "app.event_loop_stalled",  # a timer ran late by more than 100 ms (responder/server/loop_monitor.py)
    "app.heap_frozen",
    "app.no_api_key",
    "app.public_url_missing",
    "app.ready",
    "app.sdk_warmed_up",
    "app.simulator_mode",
    "app.warm_up_failed",
    "simulator.ready",  # `responder simulate`
    "redis.connected",  # infra/redis_server.py
    # HTTP requests of both services (infra/http.py)
    "http.client_disconnected",
    "http.header_undecodable",
    "http.slow_client",
    # one call (responder/core, responder/engines, responder/transports); the ones
    # `responder trace --log` reads: started, item_added, user_turn, user_transcript_failed,
    # assistant_turn, barge_in, tool_call, hold_line, dtmf, action, ended
    "call.action",
    "call.action_not_recorded",
    "call.action_requested",
    "call.answer_not_requeued",
    "call.answer_not_sent",
    "call.answer_not_spoken",
    "call.answer_requeued",
    "call.assistant_turn",
    "call.barge_in",
    "call.context_unavailable",
    "call.cut_off_item_not_recorded",
    "call.dtmf",
    "call.dtmf_rate_limited",
    "call.end_not_recorded",
    "call.ended",
    "call.event_handler_failed",
    "call.fallback",
    "call.hangup_failed",
    "call.history_write_failed",
    "call.history_writes_pending",
    "call.hold_line",
    "call.hung_up",
    "call.item_added",
    "call.items_capped",
    "call.late_result_dropped",
    "call.nothing_recorded",
    "call.realtime_dropped",
    "call.realtime_failed",
    "call.realtime_reconnect_attempt_failed",
    "call.realtime_reconnect_failed",
    "call.realtime_reconnected",
    "call.realtime_reconnecting",
    "call.record_unreadable",
    "call.replay_history_unavailable",
    "call.response_ended",
    "call.session_ready",
    "call.started",
    "call.supervisor_answer",
    "call.supervisor_action",
    "call.supervisor_failed",
    "call.tool_arguments_invalid",
    "call.tool_call",
    "call.tool_call_ignored",
    "call.tool_unknown",
    "call.transcript_wait_expired",
    "call.user_transcript_failed",
    "call.user_turn",
    "call.user_turn_lost",
    "call.user_turn_lost_not_recorded",
    # the Realtime model session (responder/engines/realtime)
    "realtime.error",
    "realtime.event_invalid",
    "realtime.watch_failed",  # a barge-in watch raised on a message (it still goes the usual way)
    # the GPT-Live engine (responder/engines/live)
    "gpt_live.delegation_joined",
    "gpt_live.delegation_queued",
    "gpt_live.delegation_recovered",
    "gpt_live.delegation_repeated",
    "gpt_live.delegation_superseded",
    "gpt_live.event_invalid",
    "gpt_live.session_start_timeout",
    "gpt_live.task_failed",
    "gpt_live.transcript_capped",
    "realtime.frame_invalid",
    # transports: Twilio Media Streams and the PCM16 WebSocket (responder/transports); the
    # frame_invalid, frame_failed, event_ignored and stream_rejected of both are built by
    # responder.transports.stream.LogNames.of(transport)
    "stream.frame_flood",  # a call's WebSocket sent frames far faster than any caller does
    "stream.frame_queue_unavailable",  # this aiohttp builds its sockets' queue otherwise: no early path
    "stream.idle_closed",  # a Twilio media stream sent nothing for RESPONDER_STREAM_IDLE_S
    "stream.invalid_frames_suppressed",  # bad frames over a connection's log budget, counted
    "twilio.call_incoming",
    "twilio.call_refused",
    "twilio.claim_failed",
    "twilio.event_ignored",
    "twilio.frame_failed",
    "twilio.frame_invalid",
    "twilio.stream_refused",
    "twilio.stream_rejected",
    "twilio.stream_stopped",
    "twilio.webhook_rejected",
    "twilio.webhook_replayed",
    "websocket.call_failed",
    "websocket.call_refused",
    "websocket.caller_stopped",
    "websocket.event_ignored",
    "websocket.frame_failed",
    "websocket.frame_invalid",
    "websocket.stream_rejected",
    # SIP and WebRTC calls (responder/transports/sip.py, webrtc.py)
    "sip.accept_failed",
    "sip.call_accepted",
    "sip.call_rejected",
    "sip.caller_gone",
    "sip.duplicate_delivery",
    "sip.reject_failed",
    "sip.webhook_ignored",
    "sip.webhook_invalid",
    "sip.webhook_rejected",
    "webrtc.call_created",
    "webrtc.call_refused",
    "webrtc.create_failed",
    "webrtc.offer_refused",
    # the web app (responder/web)
    "editor.access",
    "editor.gate_checked",  # the policy tests run for a publish (responder/web/editor_suites.py)
    "editor.locked",
    "editor.parse_refused",
    "editor.publish_overridden",  # published in spite of newly failing policy tests, with a reason
    "editor.publish_refused",  # newly failing policy tests and no reason
    "editor.saved",
    "editor.suite_saved",
    "editor.try",
    "editor.weak_tokens",
    "live.announcement_invalid",
    "live.subscribe_failed",
    "live.subscription_lost",
    "live.viewer_left",
    "live.viewer_refused",
    "live.viewer_too_slow",
    # records of the standard logging module (aiohttp, asyncio, warnings: infra/logs.py)
    "lib.logged",
    # the log itself (infra/log_writer.py)
    "log.lines_dropped",  # the writer's queue was full (stderr or the log file stalled)
    "trace_viewer.cross_site_refused",
    "trace_viewer.login_failed",
    "trace_viewer.login_throttled",
    "trace_viewer.signed_in",
    "trace_viewer.signed_out",
    # the call record: buffered history writes during a Redis outage (callrecord/history_buffer.py)
    "history.buffer_overflow",
    "history.buffered",
    "history.flush_failed",
    "history.flushed",
    "history.read_local",
    "history.redis_down",
    "history.unflushed",
    # the supervisor: its agent loop, model, tools (supervisor/); supervisor.decision is logged
    # by callrecord/decisions.py and read by `responder trace --log`
    "supervisor.citation_unverified",
    "supervisor.decision",
    "supervisor.decision_not_stored",
    "supervisor.failed",
    "supervisor.history_unavailable",
    "supervisor.model_retry",
    "supervisor.reply_usage_invalid",  # a token count of the wrong type, taken as 0
    "supervisor.round",
    "supervisor.tool",
    "supervisor.tool_failed",
    # the voice service's client of a remote supervisor (responder/runtime/supervisor_client.py)
    "supervisor_client.decision",
    "supervisor_client.failed",
    "supervisor_client.no_token",
    "supervisor_client.retry",
    # the supervisor's HTTP service (supervisor/service.py, idempotency.py, responder/cli)
    "supervisor_service.bad_request",
    "supervisor_service.dedupe_unavailable",
    "supervisor_service.dedupe_unreadable",
    "supervisor_service.listening",
    "supervisor_service.ready",
    "supervisor_service.refused",
    "supervisor_service.request",
    "supervisor_service.request_repeated",
    "supervisor_service.simulator_mode",
    "supervisor_service.unauthorized",
    # policy documents: library, store, sync, file watcher (supervisor/policy_*.py)
    "policies.loaded",
    "policies.refreshed",
    "policies.saved",
    "policies.seeded",
    "policies.sync_failed",
    "policies.unparsable_version",
    "policies.watch_invalid",
    "policies.watch_saved",
    "policies.watch_unreadable",
    # policy test suites: runs, the versioned suites (supervisor/policy_tests/)
    "policy_tests.finished",
    "policy_tests.seed_refused",
    "policy_tests.suite_saved",
    "policy_tests.suites_seeded",
]

LOG_EVENTS: Final[frozenset[str]] = frozenset(get_args(LogEvent))
