"""The call page in a real headless Chromium: microphone → WebSocket → simulator → transcript.

Chromium's fake microphone plays a WAV made with espeak-ng: the two caller turns of the
``returns`` scenario, with silence around them. The simulator (the OpenAI test double) finds
the turns by audio energy and takes their transcripts from the scenario, so the WAV must hold
exactly as many utterances as the scenario has turns, with pauses long enough for the agent's
replies to play. The page must show the supervisor's answer and its decision with the policy
it used, and what it shows must be what Redis holds.

Driven with selenium + the Debian chromedriver (no download at test time).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import wave
from array import array
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.settings import Settings
from simulator.scenario import load_scenario
from simulator.vad import EnergyVad
from tests.support.browser import launch_chromium, poll, requires_chromium, screenshot
from tests.support.service import RunningService

RATE = 24000
LEAD_SILENCE_S = 1.5  # the page connects and the session gets ready
GAP_SILENCE_S = 6.0  # the agent's chitchat reply (~4.3 s of audio) plays in between
TAIL_SILENCE_S = 3.0

pytestmark = requires_chromium


def _espeak(text: str, path: Path) -> array[int]:
    """``text`` spoken by espeak-ng, as 16-bit samples resampled to 24 kHz."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.skip("needs espeak-ng to make the caller's audio")
    subprocess.run([espeak, "-s", "165", "-w", str(path), text], check=True, capture_output=True)
    with wave.open(str(path)) as wav:
        assert wav.getsampwidth() == 2 and wav.getnchannels() == 1
        rate = wav.getframerate()
        samples = array("h", wav.readframes(wav.getnframes()))
    count = int(len(samples) * RATE / rate)
    out = array("h", bytes(2 * count))
    for i in range(count):  # linear interpolation
        pos = i * rate / RATE
        j = int(pos)
        nxt = samples[min(j + 1, len(samples) - 1)]
        out[i] = int(samples[j] + (nxt - samples[j]) * (pos - j))
    return out


def make_caller_wav(sentences: list[str], directory: Path) -> Path:
    silence = lambda s: array("h", bytes(2 * int(RATE * s)))  # noqa: E731
    audio = silence(LEAD_SILENCE_S)
    for n, sentence in enumerate(sentences):
        if n:
            audio += silence(GAP_SILENCE_S)
        audio += _espeak(sentence, directory / f"s{n}.wav")
    audio += silence(TAIL_SILENCE_S)
    path = directory / "caller.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(audio.tobytes())
    return path


def utterances(path: Path) -> int:
    """How many turns the simulator's energy VAD finds in the WAV."""
    with wave.open(str(path)) as wav:
        data = wav.readframes(wav.getnframes())
    return sum(1 for e in EnergyVad("pcm16").feed(data) if e.kind == "started")


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[Callable[[Path], Any]]:
    drivers: list[Any] = []

    def launch(wav: Path | None, *, fake_device: bool = True) -> Any:
        """Chromium whose fake microphone plays ``wav``, permission granted. Without a WAV:
        the permission is left to the test, and ``fake_device`` says whether there is a mic."""
        flags = ["--autoplay-policy=no-user-gesture-required", "--window-size=1000,1100"]
        if wav is not None or fake_device:
            flags.append("--use-fake-device-for-media-stream")
        if wav is not None:
            flags.append("--use-fake-ui-for-media-stream")
            flags.append(f"--use-file-for-fake-audio-capture={wav}%noloop")
        driver = launch_chromium(tmp_path / f"profile{len(drivers)}", *flags)
        drivers.append(driver)
        return driver

    yield launch
    for driver in drivers:
        driver.quit()


def _entries(driver: Any) -> list[dict[str, str]]:
    script = """
      return Array.from(document.querySelectorAll('#transcript .entry')).map((li) => ({
        id: li.dataset.itemId, kind: li.dataset.kind, role: li.dataset.role,
        status: li.dataset.status, policies: li.dataset.policies || '',
        text: li.querySelector('.text').textContent}));
    """
    return driver.execute_script(script)


async def test_browser_call_shows_the_supervisor_answer_and_its_policy(
    start_service: Callable[..., Any],
    make_settings: Callable[..., Settings],
    chromium: Callable[[Path], Any],
    tmp_path: Path,
) -> None:
    scenario = load_scenario("returns")
    wav = make_caller_wav([t.say for t in scenario.turns], tmp_path)
    assert utterances(wav) == len(scenario.turns), "the WAV must hold one utterance per scenario turn"
    svc: RunningService = await start_service(make_settings(simulator_scenario="returns", greeting=False))
    driver = chromium(wav)
    await asyncio.to_thread(driver.get, svc.url + "/call")
    await asyncio.to_thread(lambda: driver.find_element("id", "start").click())

    def decided() -> list[dict[str, str]] | None:
        entries = _entries(driver)
        decisions = [e for e in entries if e["kind"] == "decision"]
        if not decisions:
            return None
        answer = decisions[-1]["text"]
        said = [e for e in entries if e["kind"] == "assistant" and e["text"] == answer]
        return entries if said else None

    try:
        entries = await poll(decided, "no supervisor answer on the page", 60)
    finally:
        await asyncio.to_thread(screenshot, driver, "call_page.png")
    state = await asyncio.to_thread(lambda: driver.find_element("id", "state").text)
    call_id = state.split()[2].rstrip(":")
    assert call_id.startswith("ws_"), state

    [decision_entry] = [e for e in entries if e["kind"] == "decision"]
    assert "returns@3" in decision_entry["policies"].split()
    assert "60 days" in decision_entry["text"]
    kinds = [(e["kind"], e["text"]) for e in entries]
    assert ("user", scenario.turns[0].say) in kinds
    assert ("assistant", scenario.turns[0].reply) in kinds
    assert ("user", scenario.turns[1].say) in kinds
    assert ("filler", scenario.turns[1].filler) in kinds

    # what the page shows is what Redis holds
    history = svc.services.history
    [decision] = await history.get_decisions(call_id)
    assert decision.decision_id == decision_entry["id"] and decision.text == decision_entry["text"]
    assert "returns@3" in decision.policy_labels()
    items = {i.id: i for i in await history.get_items(call_id)}
    for entry in entries:
        assert entry["id"] in items, entry
        assert (items[entry["id"]].text or "") == entry["text"], entry

    # the event log shows the raw control and transcript events
    await asyncio.to_thread(lambda: driver.find_element("id", "show-log").click())
    log_text = await asyncio.to_thread(lambda: driver.find_element("id", "log-panel").text)
    token = svc.services.view_token(call_id)
    assert f'ws {{"type":"call","call_id":"{call_id}","view_token":"{token}"}}' in log_text
    assert "sse item.added" in log_text and "returns@3" in log_text

    await asyncio.to_thread(lambda: driver.find_element("id", "stop").click())
    await poll(lambda: "Call ended" in driver.find_element("id", "state").text, "the call did not end", 15)
    meta = await history.get_meta(call_id)
    assert meta["transport"] == "websocket" and meta["caller"] == "browser"
    state = svc.services.simulator.state
    assert state.invalid_events == [] and state.errors_sent == []
    # the page echoed its marks as the audio played: the caller's second turn, spoken after
    # the reply had played out, was no barge-in (the reply would be truncated otherwise)
    types = [e["type"] for e in state.client_events]
    assert "conversation.item.truncate" not in types


@pytest.mark.parametrize(
    ("fake_device", "message"),
    [(True, "Microphone permission was denied"), (False, "No microphone was found")],
)
async def test_a_denied_or_missing_microphone_gets_a_clear_message(
    start_service: Callable[..., Any],
    make_settings: Callable[..., Settings],
    chromium: Callable[..., Any],
    fake_device: bool,
    message: str,
) -> None:
    svc: RunningService = await start_service(make_settings())
    driver = chromium(None, fake_device=fake_device)
    await asyncio.to_thread(driver.get, svc.url + "/call")
    denied = {"permission": {"name": "microphone"}, "setting": "denied", "origin": svc.url}
    await asyncio.to_thread(driver.execute_cdp_cmd, "Browser.setPermission", denied)
    await asyncio.to_thread(lambda: driver.find_element("id", "start").click())
    state = await poll(
        lambda: (
            driver.find_element("id", "state").get_attribute("data-state") == "error"
            and driver.find_element("id", "state").text
        ),
        "no error shown",
        15,
    )
    assert message in state
    assert await asyncio.to_thread(lambda: driver.find_element("id", "start").is_enabled())
    assert await svc.services.history.recent_calls() == []  # no call was started


async def test_webrtc_mode_posts_the_offer_and_follows_the_transcript(
    start_service: Callable[..., Any],
    make_settings: Callable[..., Settings],
    chromium: Callable[..., Any],
) -> None:
    """WebRTC mode against the simulator: it answers the browser's SDP offer (no media ever
    flows: it has no RTP stack) and plays the caller itself on the sideband, from the
    scenario. The page must post the offer, take the call id, and show the transcript."""
    scenario = load_scenario("returns")
    svc: RunningService = await start_service(make_settings(simulator_scenario="returns", greeting=False))
    driver = chromium(None)
    await asyncio.to_thread(driver.get, svc.url + "/call?mode=webrtc")
    grant = {"permission": {"name": "microphone"}, "setting": "granted", "origin": svc.url}
    await asyncio.to_thread(driver.execute_cdp_cmd, "Browser.setPermission", grant)
    await asyncio.to_thread(lambda: driver.find_element("id", "start").click())

    def decided() -> list[dict[str, str]] | None:
        entries = _entries(driver)
        return entries if any(e["kind"] == "decision" for e in entries) else None

    entries = await poll(decided, "no supervisor decision on the page", 60)
    state = await asyncio.to_thread(lambda: driver.find_element("id", "state").text)
    call_id = state.split()[2].rstrip(":")
    assert call_id.startswith("rtc_"), state
    [decision_entry] = [e for e in entries if e["kind"] == "decision"]
    assert "returns@3" in decision_entry["policies"].split()
    assert ("user", scenario.turns[1].say) in [(e["kind"], e["text"]) for e in entries]
    [decision] = await svc.services.history.get_decisions(call_id)
    assert decision.decision_id == decision_entry["id"]
    meta = await svc.services.history.get_meta(call_id)
    assert meta["transport"] == "webrtc"
    mode = await asyncio.to_thread(lambda: driver.find_element("id", "mode").text)
    assert "WebRTC" in mode
