"""A model server's error answers are relayed in the documented envelopes (services/agent/chat_errors.py, and the
playground's in services/gateway/chat.py): seen on a live stack, /v1 answered `max_tokens: -1`, a malformed
`tools` list and an image part sent to a text-only model with a bare `500 Internal Server Error`, and other
refusals with FastAPI's `{"detail": ...}`."""

import json

import pytest

from services.agent.chat_errors import openai_error
from services.gateway.chat import platform_error

pytestmark = pytest.mark.unit


def test_a_model_servers_500_is_a_502_in_openais_shape():
    status, body = openai_error(500, b"Internal Server Error")
    error = json.loads(body)["error"]
    assert status == 502 and (error["type"], error["code"], error["param"]) == ("server_error", "upstream_error", None)
    assert "deployment's log" in error["message"] and "text-only model" in error["message"]


@pytest.mark.parametrize(
    ("status", "detail", "message"),
    [
        (400, "Only supports u/a/u/a/u...", "Only supports u/a/u/a/u..."),
        (
            422,
            [{"type": "enum", "loc": ["body", "messages", 0, "role"], "msg": "Input should be 'user'"}],
            "messages.0.role: Input should be 'user'",
        ),
        (400, None, "the model server refused the request (HTTP 400)"),
    ],
)
def test_a_refusal_keeps_its_status_and_says_why(status, detail, message):
    replaced = openai_error(status, json.dumps({"detail": detail}).encode())
    assert replaced is not None
    assert replaced[0] == status
    assert json.loads(replaced[1])["error"] == {
        "message": message,
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_request",
    }


def test_a_success_and_an_openai_error_pass_as_they_came():
    assert openai_error(200, b'{"choices": []}') is None
    assert openai_error(404, b'{"error": {"message": "no", "type": "x", "param": null, "code": "y"}}') is None


def test_the_playground_tells_a_relayed_error_in_the_platforms_envelope():
    _, body = openai_error(500, b"Internal Server Error")
    error = platform_error(502, body)
    assert (error.status, error.code, error.field) == (502, "upstream_error", None)
    error = platform_error(500, b"Internal Server Error")
    assert (error.status, error.code) == (502, "upstream_error"), "an agent of an older version relays a bare 500"
