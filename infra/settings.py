"""Every knob of the service, in one place.

Settings are read from the environment with the ``RESPONDER_`` prefix (for example
``RESPONDER_SUPERVISOR_MODEL``). The ecosystem's standard variables work as people expect:
``OPENAI_API_KEY``, ``OPENAI_BASE_URL``, ``REDIS_URL``, ``TWILIO_ACCOUNT_SID`` and
``TWILIO_AUTH_TOKEN`` are read under their usual names (the prefixed names work too).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_POLICIES_DIR = Path(__file__).resolve().parent.parent / "policies"


def _env(name: str, *standard: str) -> AliasChoices:
    """Accept ``RESPONDER_<NAME>`` and the ecosystem's standard variable names."""
    return AliasChoices(f"RESPONDER_{name.upper()}", *standard)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RESPONDER_", extra="ignore", populate_by_name=True, env_file=None
    )

    # --- OpenAI -----------------------------------------------------------------------
    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=_env("openai_api_key", "OPENAI_API_KEY")
    )
    openai_base_url: str = Field(
        default="https://api.openai.com/v1",
        validation_alias=_env("openai_base_url", "OPENAI_BASE_URL"),
    )
    realtime_url: str | None = Field(
        default=None,
        description="Realtime WebSocket base URL; derived from openai_base_url when unset.",
    )
    realtime_model: str = "gpt-realtime"
    engine: Literal["realtime", "live"] = Field(
        default="realtime",
        description="The speech engine of calls that do not choose one: the Realtime API or GPT-Live.",
    )
    live_model: str = "gpt-live-1.1"
    live_acknowledgement_delay_ms: int = Field(
        default=600, ge=0, le=10_000,
        description="GPT-Live: how long after a delegation the model may speak an automatic acknowledgement.",
    )
    live_recovery_s: float = Field(
        default=2.0, gt=0, le=30,
        description="GPT-Live: a caller turn not delegated this long after it ended, with the model quiet "
        "or only acknowledging, is answered by the supervisor anyway (delegation recovery).",
    )
    live_session_start_timeout_s: float = Field(
        default=10.0, gt=0, le=120,
        description="GPT-Live: a session.start not confirmed by session.started this long fails the "
        "session (the call's normal failure path: reconnect attempts, then realtime_failed).",
    )
    live_max_running_handovers: int = Field(
        default=2, ge=1, le=16,
        description="GPT-Live: supervisor runs one call may have at once; a further delegation for "
        "another caller turn waits for a place (only the newest waits), one for the same turn joins it.",
    )
    supervisor_model: str = "gpt-4.1"
    supervisor_base_url: str | None = Field(
        default=None, description="Base URL of the supervisor's text model; openai_base_url when unset."
    )
    supervisor_api_key: SecretStr | None = Field(
        default=None, description="Key for the supervisor's text model; openai_api_key when unset."
    )
    supervisor_api: Literal["responses", "chat"] = "responses"

    # --- Redis ------------------------------------------------------------------------
    redis_url: str | None = Field(default=None, validation_alias=_env("redis_url", "REDIS_URL"))
    redis_prefix: str = "rt"
    redis_data_dir: Path = Path("var/redis")
    history_ttl_s: int = 7 * 24 * 3600

    # --- Twilio -----------------------------------------------------------------------
    twilio_account_sid: str | None = Field(
        default=None, validation_alias=_env("twilio_account_sid", "TWILIO_ACCOUNT_SID")
    )
    twilio_auth_token: SecretStr | None = Field(
        default=None, validation_alias=_env("twilio_auth_token", "TWILIO_AUTH_TOKEN")
    )
    public_url: str | None = Field(
        default=None, description="Public https URL Twilio reaches this service at; local URL when unset."
    )
    twilio_api_base_url: str = Field(
        default="https://api.twilio.com", description="Twilio REST API base URL (tests point it elsewhere)."
    )

    # --- OpenAI SIP ---------------------------------------------------------------------
    openai_webhook_secret: SecretStr | None = Field(
        default=None,
        validation_alias=_env("openai_webhook_secret", "OPENAI_WEBHOOK_SECRET"),
        description="whsec_… secret of the realtime.call.incoming webhook; SIP calls are refused without it.",
    )

    session_secret: SecretStr | None = Field(
        default=None,
        description="Signs per-call live-transcript tokens; set the same value on every instance "
        "(a random one per process when unset).",
    )
    # live transcript streams (GET /calls/{id}/events), counted per instance
    transcript_viewers_per_call: int = Field(default=10, ge=1, description="Open streams of one call.")
    transcript_viewers_per_client: int = Field(
        default=20, ge=1, description="Open streams of one client (address), all calls together."
    )
    transcript_replay_items: int = Field(
        default=500, ge=1, description="Items (and decisions) a stream replays on connect: the newest."
    )
    # one call's record: bounded, whatever the caller sends (the call itself goes on)
    max_items_per_call: int = Field(
        default=2000, ge=50, description="History items one call keeps; past it new items are refused "
        "(counted, logged once). Key presses stop 10 % sooner: they cannot crowd out the conversation.",
    )
    dtmf_rate_per_s: float = Field(
        default=10.0, gt=0, description="Key presses one call records a second, sustained (more are refused)."
    )
    dtmf_burst: int = Field(default=20, ge=1, description="Key presses one call may record at once.")

    # --- Call admission and call control --------------------------------------------------
    max_concurrent_calls: int = Field(default=50, description="Calls this instance serves at once.")
    call_rate_per_minute: float = Field(
        default=6.0, description="Browser/WebSocket calls one client may start per minute."
    )
    call_rate_burst: int = 3
    trust_forwarded_for: bool = Field(
        default=False, description="Rate-limit by X-Forwarded-For (only behind a trusted proxy)."
    )
    stream_handshake_s: float = Field(
        default=3.0, gt=0, description="A Twilio media socket must show its stream token (start) this soon."
    )
    stream_idle_s: float = Field(
        default=10.0, gt=0, le=300, description="A call's WebSocket (Twilio media stream, /calls/ws) "
        "that sends no frame this long is closed: its caller is gone (Twilio and the call page send "
        "audio every 20 ms for the whole call, silence included).",
    )
    stream_max_frames_per_s: int = Field(
        default=250, ge=10, description="A call's WebSocket (Twilio media stream, /calls/ws) that sends "
        "more frames a second than this for two seconds running is closed (a caller sends about 60).",
    )
    pending_sockets_per_client: int = Field(
        default=8, ge=1, description="Media sockets one client may keep open without a stream token past "
        "a 0.5 s grace (a burst of new ones: 4 times as many)."
    )
    pending_sockets_max: int = Field(
        default=256, ge=1, description="Media sockets not yet authenticated, all clients together "
        "(as many again for upgrades Twilio signed)."
    )
    escalation_phone_number: str | None = Field(
        default=None, description="E.164 number a Twilio call is transferred to by escalate_to_human."
    )
    escalation_sip_uri: str | None = Field(
        default=None, description="tel: or sip: URI a SIP call is referred to by escalate_to_human."
    )

    # --- HTTP server ------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    max_body_bytes: int = 64 * 1024
    http_read_timeout_s: float = Field(
        default=15.0, gt=0, description="A request's headers must arrive within this long of the connection "
        "opening or of the previous response (also the keep-alive idle limit), its body within this long "
        "of its headers.",
    )

    # --- Responder (realtime) ---------------------------------------------------------
    voice: str = "marin"
    language: str = "en"
    transcription_model: str = "gpt-4o-mini-transcribe"
    turn_detection: Literal["semantic_vad", "server_vad"] = "semantic_vad"
    vad_eagerness: Literal["low", "medium", "high", "auto"] = "auto"
    vad_silence_ms: int = 500
    noise_reduction: Literal["near_field", "far_field", "off"] = "near_field"
    greeting: bool = True

    # --- Call controller --------------------------------------------------------------
    transcript_wait_s: float = 1.0
    hold_delay_s: float = 3.0
    max_hold_lines: int = 1
    # a Twilio/WebSocket mark after this much agent audio (and after each item's first chunk
    # and its tail); the heard position in between runs on the mark clock. 0: every chunk
    mark_interval_ms: float = Field(default=100.0, ge=0.0, le=1000.0)

    # --- Supervisor -------------------------------------------------------------------
    supervisor_deadline_s: float = 10.0
    supervisor_max_rounds: int = 4
    supervisor_history_tokens: int = 4000
    policies_dir: Path = DEFAULT_POLICIES_DIR
    supervisor_url: str | None = Field(
        default=None,
        description="Supervisor service (`responder supervisor serve`) base URL; in-process when unset.",
    )
    supervisor_token: SecretStr | None = Field(
        default=None, description="Bearer token between responder and supervisor service (both sides)."
    )
    supervisor_retry_attempts: int = Field(
        default=4, ge=1, description="Tries per decision against the supervisor service (429/5xx/network)."
    )
    supervisor_retry_base_s: float = Field(default=0.2, gt=0, description="First retry's backoff.")
    supervisor_retry_max_s: float = Field(default=2.0, gt=0, description="Longest backoff between retries.")

    # --- Policy documents (versioned store, editor) -------------------------------------
    policies_inline_max_chars: int = Field(
        default=0, description="Inline mode: published policies go into the supervisor prompt when "
        "their total text is at most this many characters (0 = off, the lookup tool only)."
    )
    editor_tokens: dict[str, SecretStr] = Field(
        default_factory=dict, description="Policy editor: name → token of people who may edit and publish."
    )
    viewer_tokens: dict[str, SecretStr] = Field(
        default_factory=dict, description="Policy editor: name → token of people who may read published ones."
    )
    editor_max_body_bytes: int = 96 * 1024

    # --- Logging ----------------------------------------------------------------------
    log_format: Literal["json", "console"] = "console"
    log_level: str = "INFO"
    log_redact_pii: bool = Field(
        default=True, description="Mask phone numbers, e-mails, card numbers and key presses in logs."
    )
    log_file: Path | None = Field(default=None, description="Also append every log event as JSON here.")
    admin_token: SecretStr | None = Field(
        default=None, description="Bearer token of the trace viewer and its API; unset → they answer 401."
    )
    admin_session_ttl_s: int = Field(
        default=12 * 3600, ge=60, description="A trace-viewer sign-in lasts this long (kept in Redis)."
    )
    admin_login_failures_per_client: int = Field(
        default=10, ge=1, description="Wrong admin tokens one client may try within the window before 429."
    )
    admin_login_failures_total: int = Field(
        default=100, ge=1, description="Wrong admin tokens from all clients together within the window."
    )
    admin_login_window_s: float = Field(default=300.0, gt=0, description="The sliding window of both.")
    otel: bool = Field(default=False, description="OpenTelemetry spans for supervisor rounds and tools.")
    drain_s: float = Field(
        default=20.0, ge=0, description="On SIGTERM: /readyz answers 503 and calls go on for up to this long."
    )
    drain_goodbye_s: float = Field(
        default=10.0,
        ge=0,
        description="The drain's last part: calls still live say a goodbye line and end (the line "
        "alone plays for about 7 s, after what is being said).",
    )

    # --- Simulator (test double used when there is no API key) --------------------------
    simulator_speed: float = 1.0
    simulator_scenario: str = "returns"

    @property
    def uses_simulator(self) -> bool:
        return self.openai_api_key is None

    def realtime_ws_url(self) -> str:
        """The Realtime WebSocket base URL: set explicitly, or derived from the REST base URL."""
        if self.realtime_url:
            return self.realtime_url
        base = self.openai_base_url
        if base.startswith("https://"):
            return "wss://" + base.removeprefix("https://")
        if base.startswith("http://"):
            return "ws://" + base.removeprefix("http://")
        return base

    def local_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def external_url(self) -> str:
        return (self.public_url or self.local_url()).rstrip("/")
