"""The exception handlers turn whatever Litestar or asyncpg raises into {"error": {"code", "message", "field"}}."""

import json

import pytest
from litestar.exceptions import (
    ClientException,
    InternalServerException,
    MethodNotAllowedException,
    NotAuthorizedException,
    PermissionDeniedException,
    SerializationException,
    ValidationException,
)

from services.common.errors import ApiError, handle_api_error, handle_http, handle_validation, not_found

pytestmark = pytest.mark.unit


class FakeRequest:
    """What the handlers read from a request when they log."""

    method = "POST"

    class url:
        path = "/api/auth/register"


def _error(response) -> dict:
    body = response.content
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}
    return body["error"]


def _validation(*extra) -> ValidationException:
    return ValidationException(detail="Validation failed for POST /api/auth/register", extra=list(extra))


@pytest.mark.parametrize(
    ("detail", "field"),
    [
        ({"message": "Expected `str`, got `int`", "key": "username", "source": "body"}, "username"),
        ({"message": "Object missing required field `username`", "key": "data", "source": "body"}, "username"),
        ({"message": "Object contains unknown field `role`", "key": "data", "source": "body"}, "role"),
        ({"message": "Object missing required field `name`", "key": "owner", "source": "body"}, "owner.name"),
        ({"message": "Expected `object`, got `array`", "key": "data", "source": "body"}, None),
        ({"message": "Expected `int` >= 1", "key": "limit", "source": "query"}, "limit"),
    ],
)
def test_a_bad_field_is_422_and_named(detail, field):
    response = handle_validation(FakeRequest(), _validation(detail))
    assert response.status_code == 422
    error = _error(response)
    assert (error["code"], error["field"]) == ("invalid_field", field)
    assert error["message"] == detail["message"]


def test_a_missing_body_is_400():
    response = handle_validation(FakeRequest(), _validation({"message": "'data'", "key": "data", "source": "body"}))
    assert response.status_code == 400 and _error(response)["code"] == "malformed_json"


def test_validation_without_details_still_has_the_shape():
    response = handle_validation(FakeRequest(), ValidationException(detail="bad"))
    assert response.status_code == 422 and _error(response) == {
        "code": "invalid_field",
        "message": "bad",
        "field": None,
    }


def test_undecodable_body_is_400_malformed_json():
    try:
        raise ClientException("JSON is malformed: invalid character (byte 1)") from SerializationException("x")
    except ClientException as exc:
        response = handle_http(FakeRequest(), exc)
    assert response.status_code == 400 and _error(response)["code"] == "malformed_json"


def test_plain_bad_request_stays_bad_request():
    response = handle_http(FakeRequest(), ClientException("nope"))
    assert response.status_code == 400 and _error(response)["code"] == "bad_request"


def test_unauthorized_carries_the_bearer_challenge():
    response = handle_http(FakeRequest(), NotAuthorizedException("who are you"))
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"
    assert _error(response) == {"code": "unauthorized", "message": "who are you", "field": None}


def test_forbidden_is_403():
    response = handle_http(FakeRequest(), PermissionDeniedException("admins only"))
    assert response.status_code == 403 and _error(response)["code"] == "forbidden"


def test_method_not_allowed_keeps_its_headers():
    response = handle_http(FakeRequest(), MethodNotAllowedException(headers={"Allow": "POST"}))
    assert response.status_code == 405 and response.headers["Allow"] == "POST"
    assert _error(response)["code"] == "method_not_allowed"


def test_server_errors_hide_their_detail(caplog):
    response = handle_http(FakeRequest(), InternalServerException("secret stack detail"))
    assert response.status_code == 500
    assert _error(response)["code"] == "internal_error" and "secret" not in json.dumps(response.content)
    assert "secret stack detail" in caplog.text  # logged, since the answer says it was


def test_api_errors_keep_code_field_and_headers():
    exc = ApiError(429, "too_many_attempts", "slow down", headers={"Retry-After": "7"})
    response = handle_api_error(FakeRequest(), exc)
    assert response.status_code == 429 and response.headers["Retry-After"] == "7"
    assert _error(response) == {"code": "too_many_attempts", "message": "slow down", "field": None}
    assert _error(handle_api_error(FakeRequest(), not_found("API key"))) == {
        "code": "not_found",
        "message": "API key not found",
        "field": None,
    }
