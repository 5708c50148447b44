"""Responses of the simulated realtime model: what to say, and saying it in paced audio.

:func:`plan_outputs` decides a response's content from the scenario (deterministic);
:class:`ResponseRun` streams it: ``response.created`` … ``response.done``, audio in 100 ms
chunks paced at real time ÷ speed (after a short head start), transcript deltas sent with
the chunk in which each word is "spoken", function calls with their argument deltas.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from simulator.audio import AudioFormat, format_from_session, speech
from simulator.realtime_items import (
    Conversation,
    ItemStatus,
    assistant_item,
    function_call_item,
    new_id,
)
from simulator.scenario import Turn

SUPERVISOR_TOOL = "getNextResponseFromSupervisor"
CHUNK_MS = 100  # audio per response.output_audio.delta
# Like the real server, generation runs a little ahead of real time: the first LEAD_MS of
# audio go out at once, then one chunk per CHUNK_MS (÷ speed). So at a barge-in the model
# has generated (and transcribed) more than the caller heard, and response.done comes
# LEAD_MS before the audio's playback could end.
LEAD_MS = 500
MS_PER_CHAR = 70  # assistant speech length per character of text
MIN_SPEECH_MS = 400
CANNOT_CHECK = "I can't check that right now."
ANYTHING_ELSE = "Is there anything else I can help you with?"
HOLD_LINE = "Thanks for waiting, I'm still checking on that."

_SAY_EXACTLY = re.compile(r"Say exactly:\s*[\"“](.+?)[\"”]", re.DOTALL)
_WORD = re.compile(r"\S+\s*")
_OUTPUT_KEYS = ("nextResponse", "response", "text", "message", "output")

Emit = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class Speech:
    text: str


@dataclass(frozen=True)
class FunctionCall:
    name: str
    arguments: str


Output = Speech | FunctionCall


def speech_ms(text: str) -> int:
    """How long the simulated voice takes to say ``text``."""
    return max(MIN_SPEECH_MS, MS_PER_CHAR * len(text))


def word_schedule(text: str, total_ms: int) -> list[tuple[float, str]]:
    """Transcript deltas (one per word, trailing space kept) with the ms at which each starts."""
    if not text:
        return []
    return [(m.start() / len(text) * total_ms, m.group()) for m in _WORD.finditer(text)]


def spoken_text_of_output(output: str) -> str:
    """The text to speak for a function_call_output: plain text, or the text inside a JSON object."""
    stripped = output.strip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except ValueError:
            return stripped
        if isinstance(data, dict):
            for key in _OUTPUT_KEYS:
                if isinstance(data.get(key), str):
                    return data[key].strip()
            for value in data.values():
                if isinstance(value, str):
                    return value.strip()
    return stripped


def tool_call_for(turn: Turn, tool_names: Sequence[str]) -> FunctionCall | None:
    """The turn's tool call, if the session declares that tool; else the supervisor tool, if declared.

    ``escalate_to_human`` / ``end_call`` take ``{"reason": …}``; the supervisor tool takes the
    caller's words. ``turn.tool_arguments`` overrides the arguments (e.g. to send invalid JSON).
    """
    name = turn.tool if turn.tool in tool_names else SUPERVISOR_TOOL
    if name not in tool_names:
        return None
    arguments = turn.tool_arguments
    if arguments is None:
        key = "relevantContextFromLastUserMessage" if name == SUPERVISOR_TOOL else "reason"
        arguments = json.dumps({key: turn.say})
    return FunctionCall(name, arguments)


def plan_outputs(
    *,
    instructions: str | None,
    pending_outputs: Sequence[str],
    turn: Turn | None,
    had_user_turn: bool,
    tool_names: Sequence[str],
    greeting: str,
    out_of_band: bool = False,
) -> tuple[list[Output], str]:
    """What a response says, and why (``say_exactly``, ``tool_output``, ``reply``, …).

    Out-of-band responses (``conversation: "none"``) never consume tool output or user turns.
    """
    if instructions and (match := _SAY_EXACTLY.search(instructions)):
        return [Speech(match.group(1).strip())], "say_exactly"
    if out_of_band:
        return [Speech(HOLD_LINE)], "out_of_band"
    if pending_outputs:
        texts = [t for t in (spoken_text_of_output(o) for o in pending_outputs) if t]
        return [Speech(" ".join(texts) or "Done.")], "tool_output"
    if turn is not None:
        if turn.reply:
            return [Speech(turn.reply)], "reply"
        call = tool_call_for(turn, tool_names)
        if call is not None:
            return [Speech(turn.filler), call], "tool_call"
        return [Speech(CANNOT_CHECK)], "no_tool"
    if not had_user_turn:
        return [Speech(greeting)], "greeting"
    return [Speech(ANYTHING_ELSE)], "fallback"


class _Interrupted(Exception):
    """Raised inside a run when it is cancelled (barge-in or ``response.cancel``)."""


@dataclass
class _SpeechState:
    output_index: int
    item_id: str
    previous_item_id: str | None
    transcript: str = ""


class ResponseRun:
    """One response, from ``response.created`` to ``response.done``."""

    def __init__(
        self,
        *,
        outputs: list[Output],
        emit: Emit,
        conversation: Conversation,
        speed: float,
        in_conversation: bool,
        output_format: dict[str, Any],
        voice: str,
        metadata: dict[str, Any] | None,
        on_finished: Callable[[ResponseRun], None],
        audio_out: bool = True,
    ) -> None:
        self.id = new_id("resp")
        self.outputs = outputs
        self.in_conversation = in_conversation
        self.cancel_reason: str | None = None
        self.task: asyncio.Task[None] | None = None
        self._emit = emit
        self._conversation = conversation
        self._speed = speed
        self._format_obj = output_format
        self._fmt: AudioFormat = format_from_session(output_format)
        self._voice = voice
        self._metadata = metadata
        self._on_finished = on_finished
        self._audio_out = audio_out  # False on a sideband: the audio goes to the caller directly
        self._buffer_started = False
        self._interrupt = asyncio.Event()
        self._done_items: list[dict[str, Any]] = []
        self._speaking: _SpeechState | None = None
        self._audio_ms = 0.0
        self._text_chars = 0

    @property
    def audio_ms(self) -> float:
        """Assistant audio generated so far (sent, or on a sideband played to the caller)."""
        return self._audio_ms

    def start(self) -> asyncio.Task[None]:
        self.task = asyncio.get_running_loop().create_task(self.run(), name=f"sim-response-{self.id}")
        return self.task

    async def cancel(self, reason: str) -> None:
        """Stop the response and wait until its ``response.done`` (status cancelled) is out."""
        if self.cancel_reason is None:
            self.cancel_reason = reason
        self._interrupt.set()
        if self.task is not None and not self.task.done():
            await asyncio.wait({self.task})

    async def run(self) -> None:
        await self._emit({"type": "response.created", "response": self._response("in_progress")})
        status = "completed"
        try:
            for index, output in enumerate(self.outputs):
                if self._interrupt.is_set():
                    raise _Interrupted
                if isinstance(output, Speech):
                    await self._speak(index, output.text)
                else:
                    await self._call(index, output)
        except _Interrupted:
            status = "cancelled"
            if self._speaking is not None:
                await self._close_speech("incomplete")
        self._on_finished(self)
        await self._emit({"type": "response.done", "response": self._response(status)})

    # --- speech --------------------------------------------------------------------------

    async def _speak(self, index: int, text: str) -> None:
        item_id = new_id("item")
        item = assistant_item(item_id, "in_progress")
        await self._emit(self._ev("response.output_item.added", index, item=item))
        previous = await self._add_item(item)
        self._speaking = _SpeechState(index, item_id, previous)
        part = {"type": "audio", "transcript": ""}
        await self._emit(
            self._ev("response.content_part.added", index, item_id=item_id, content_index=0, part=part)
        )
        if not self._audio_out and not self._buffer_started:  # WebRTC/SIP: audio starts to the caller
            self._buffer_started = True
            await self._emit({"type": "output_audio_buffer.started", "response_id": self.id})
        record = self._conversation.get(item_id)
        total_ms = speech_ms(text)
        words = word_schedule(text, total_ms)
        loop = asyncio.get_running_loop()
        t0 = loop.time() - LEAD_MS / 1000 / self._speed
        step_s = CHUNK_MS / 1000 / self._speed
        chunk_starts = range(0, total_ms, CHUNK_MS)
        for n, start_ms in enumerate(chunk_starts):
            await self._pause_until(t0 + n * step_s)
            ms = min(CHUNK_MS, total_ms - start_ms)
            if self._audio_out:
                delta = base64.b64encode(speech(ms, self._fmt, offset_ms=start_ms)).decode("ascii")
                await self._emit(
                    self._ev(
                        "response.output_audio.delta", index, item_id=item_id, content_index=0, delta=delta
                    )
                )
            self._audio_ms += ms
            if record is not None:
                record.audio_ms += ms
            while words and words[0][0] < start_ms + ms:
                word = words.pop(0)[1]
                self._speaking.transcript += word
                await self._emit(
                    self._ev(
                        "response.output_audio_transcript.delta",
                        index,
                        item_id=item_id,
                        content_index=0,
                        delta=word,
                    )
                )
        await self._pause_until(t0 + len(chunk_starts) * step_s)
        await self._close_speech("completed")

    async def _close_speech(self, status: ItemStatus) -> None:
        state = self._speaking
        if state is None:
            return
        self._speaking = None
        index, item_id, transcript = state.output_index, state.item_id, state.transcript
        self._text_chars += len(transcript)
        part = {"type": "audio", "transcript": transcript}
        await self._emit(self._ev("response.output_audio.done", index, item_id=item_id, content_index=0))
        await self._emit(
            self._ev(
                "response.output_audio_transcript.done",
                index,
                item_id=item_id,
                content_index=0,
                transcript=transcript,
            )
        )
        await self._emit(
            self._ev("response.content_part.done", index, item_id=item_id, content_index=0, part=part)
        )
        await self._finish_item(index, assistant_item(item_id, status, transcript), state.previous_item_id)

    async def _pause_until(self, deadline: float) -> None:
        """Sleep until ``deadline`` (loop time); raise :class:`_Interrupted` if cancelled."""
        if self._interrupt.is_set():
            raise _Interrupted
        delay = deadline - asyncio.get_running_loop().time()
        if delay <= 0:
            return
        try:
            await asyncio.wait_for(self._interrupt.wait(), delay)
        except TimeoutError:
            return
        raise _Interrupted

    # --- function calls ------------------------------------------------------------------

    async def _call(self, index: int, call: FunctionCall) -> None:
        item_id, call_id = new_id("item"), new_id("call")
        item = function_call_item(item_id, call_id, call.name, "", "in_progress")
        await self._emit(self._ev("response.output_item.added", index, item=item))
        previous = await self._add_item(item)
        ids = {"item_id": item_id, "call_id": call_id}
        half = len(call.arguments) // 2
        for piece in (call.arguments[:half], call.arguments[half:]):
            if piece:
                await self._emit(
                    self._ev("response.function_call_arguments.delta", index, **ids, delta=piece)
                )
        await self._emit(
            self._ev(
                "response.function_call_arguments.done",
                index,
                **ids,
                name=call.name,
                arguments=call.arguments,
            )
        )
        self._text_chars += len(call.arguments)
        done = function_call_item(item_id, call_id, call.name, call.arguments, "completed")
        await self._finish_item(index, done, previous)

    # --- helpers -------------------------------------------------------------------------

    async def _add_item(self, item: dict[str, Any]) -> str | None:
        if not self.in_conversation:
            self._conversation.remember(item)
            return None
        previous = self._conversation.append(item)
        await self._emit({"type": "conversation.item.added", "previous_item_id": previous, "item": item})
        return previous

    async def _finish_item(self, index: int, item: dict[str, Any], previous: str | None) -> None:
        self._conversation.update(item)
        self._done_items.append(item)
        await self._emit(self._ev("response.output_item.done", index, item=item))
        if self.in_conversation:
            await self._emit({"type": "conversation.item.done", "previous_item_id": previous, "item": item})

    def _ev(self, event_type: str, output_index: int, **fields: Any) -> dict[str, Any]:
        return {"type": event_type, "response_id": self.id, "output_index": output_index, **fields}

    def _response(self, status: str) -> dict[str, Any]:
        details: dict[str, Any] | None = None
        usage: dict[str, Any] | None = None
        if status != "in_progress":
            details = {"type": status}
            if status == "cancelled":
                details["reason"] = self.cancel_reason
            audio_tokens = int(self._audio_ms / 50)
            text_tokens = self._text_chars // 4 + 1
            input_tokens = 40 + 12 * len(self._conversation.order)
            usage = {
                "total_tokens": input_tokens + audio_tokens + text_tokens,
                "input_tokens": input_tokens,
                "output_tokens": audio_tokens + text_tokens,
                "input_token_details": {"text_tokens": input_tokens, "audio_tokens": 0, "cached_tokens": 0},
                "output_token_details": {"text_tokens": text_tokens, "audio_tokens": audio_tokens},
            }
        return {
            "id": self.id,
            "object": "realtime.response",
            "status": status,
            "status_details": details,
            "output": list(self._done_items) if status != "in_progress" else [],
            "conversation_id": self._conversation.id if self.in_conversation else None,
            "output_modalities": ["audio"],
            "max_output_tokens": "inf",
            "audio": {"output": {"format": self._format_obj, "voice": self._voice}},
            "usage": usage,
            "metadata": self._metadata,
        }
