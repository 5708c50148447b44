"""The policy editor's JSON bodies (save and preview): never a 5xx, whatever is sent."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from supervisor.policy_format import check_text
from tests.fuzz.strategies import json_values
from tests.support.fuzz import POLICY_BODY, VALID_META, policy_document
from tests.support.loop_service import ErrorRecords, LoopService, shared_service

FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
TOKEN = "fuzz-editor-token-0123456789"
GOOD = policy_document(
    "\n".join(f"{k}: {v}" for k, v in {**VALID_META, "id": "fuzz-policy", "status": "draft"}.items()),
    POLICY_BODY,
)
contents = st.one_of(
    st.just(GOOD), st.text(max_size=200), json_values, st.just(GOOD + "\n## X\n[[policy:nope]]\n")
)
bodies = st.one_of(
    st.fixed_dictionaries(
        {"content": contents},
        optional={
            "base_version": json_values | st.sampled_from(["0", "1", "9" * 5000]),
            "message": json_values,
        },
    ).map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=100),
    st.sampled_from(["[" * 100_000, '{"content": "\\ud800"}', '{"content": "x", "message": "\\udfff"}']),
)


def _service(loop_service: Any) -> LoopService:
    return shared_service(loop_service, editor_tokens={"ana": TOKEN})


async def _send(svc: LoopService, method: str, path: str, body: bytes, content_type: str) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": content_type}
    async with svc.http.request(method, svc.url + path, data=body, headers=headers) as resp:
        return resp.status, await resp.text()


@FUZZ
@given(
    body=bodies,
    content_type=st.sampled_from(["application/json", "application/json; charset=no-such", "text/plain"]),
    target=st.sampled_from([("PUT", "/editor/api/policies/fuzz-policy"), ("POST", "/editor/api/preview")]),
)
@example(
    body="[" * 100_000, content_type="application/json", target=("PUT", "/editor/api/policies/fuzz-policy")
)  # was: 500 (RecursionError)
@example(body='{"content": "x", "message": "\\udfff"}', content_type="application/json",
         target=("PUT", "/editor/api/policies/fuzz-policy"))  # fmt: skip
@example(
    body=json.dumps({"content": GOOD + "\ud800"}, ensure_ascii=True),
    content_type="application/json",
    target=("POST", "/editor/api/preview"),
)  # was: 500 (UnicodeEncodeError in check_text)
def test_editor_bodies(
    loop_service: Any, error_records: ErrorRecords, body: str, content_type: str, target: tuple[str, str]
) -> None:
    svc = _service(loop_service)
    method, path = target
    with capture_logs() as logs:
        status, text = svc.run(_send(svc, method, path, body.encode("utf-8", "surrogatepass"), content_type))
    assert status < 500, (status, text[:300])
    assert not error_records.records, [r.getMessage() for r in error_records.records]
    assert not [e for e in logs if e.get("exc_info")]
    if status in (200, 201):
        content = json.loads(body)["content"]
        doc, problems = check_text(content)
        if method == "PUT":  # saved only when valid
            assert doc is not None and not problems, problems
