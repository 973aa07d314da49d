"""Text that is not valid Unicode, control and bidi characters, non-POST methods, API key
messages and the base-path cookie name in the OpenAPI document, on a real server."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from tests.conftest import Server, User
from tests.next.conftest import Site, api, bearer, new_email


def _raw(server: Server, path: str, raw: str, **kw: object) -> httpx.Response:
    return httpx.post(
        server.url + path,
        content=raw.encode(),
        headers={"content-type": "application/json"},
        timeout=30,
        **kw,  # type: ignore[arg-type]
    )


# A JSON text with \ud800 escapes: valid JSON, but not valid Unicode once decoded.
_SURROGATE_VALUES = (
    '{"email": "\\ud800@example.com", "password": "password123", "terms": true, '
    '"title": "\\ud800", "command": "\\ud800", "path": "a", "content": "\\ud800", '
    '"action": "create", "name": "\\ud800", "project_id": "%s"}'
)
_SURROGATE_KEY = '{"\\udfff": 1, "deep": [{"x": ["\\ud800"]}]}'


def test_lone_surrogates_get_400_on_every_endpoint(server: Server, user: User) -> None:
    spec = httpx.get(server.url + "/api/v2/openapi.json").json()
    pid = str(uuid.uuid4())
    for path in spec["paths"]:
        for raw in (_SURROGATE_VALUES % pid, _SURROGATE_KEY):
            r = _raw(server, path, raw, cookies={"remember_me": user.cookie})
            assert r.status_code == 400, (path, r.text)
            assert "not valid Unicode" in r.json()["error"], path
    # a proper surrogate pair is one character and fine
    r = _raw(
        server,
        "/api/v2/projects/create",
        '{"title": "\\ud83d\\ude00"}',
        cookies={"remember_me": user.cookie},
    )
    assert r.status_code == 200, r.text


BAD_EMAILS = [
    "a\x00b@example.com",
    "a\u0001b@example.com",
    "a\u0007b@example.com",
    "a\u202eb@example.com",
    "a\u200bb@example.com",
    "a\u00a0b@example.com",
    "a\tb@example.com",
]


@pytest.mark.parametrize("email", BAD_EMAILS)
def test_control_and_format_characters_in_emails_are_refused(server: Server, email: str) -> None:
    body = {"email": email, "password": "password123", "terms": True}
    r = api(server.url + "/", "auth/sign-up", body)
    assert r.status_code == 400, r.text
    assert "'email' must be a valid email address" in r.json()["error"]
    r = api(server.url + "/", "auth/sign-in", {"email": email, "password": "password123"})
    assert r.status_code == 400, r.text
    assert "email" in r.json()["error"]


MALFORMED_EMAILS = [
    "<script>@x.com",
    "a<b@x.com",
    "a>b@x.com",
    '"quoted"@x.com',
    'a"b@x.com',
    "`x`@x.com",
    "a(b)@x.com",
    "a[b]@x.com",
    "a,b@x.com",
    "a;b@x.com",
    "a:b@x.com",
    "a\\b@x.com",
    "a b@x.com",
    "a@b@x.com",
    "@x.com",
    "a@",
    "a@localhost",
    "a@.x.com",
    "a@x..com",
    "a@x.com.",
    "a@-x.com",
    "a@x-.com",
    "a@x_y.com",
    "a@[127.0.0.1]",
    ".a@x.com",
    "a.@x.com",
    "a..b@x.com",
    "x" * 65 + "@x.com",
    "a@<script>.com",
]
GOOD_EMAILS = [
    "plain{}@example.com",
    "first.last+tag{}@sub.example.org",
    "o'neil{}@example.com",
    "under_score-{}@x-y.example",
    "jürgen{}@bücher.example",
    "UPPER{}@EXAMPLE.COM",
]


@pytest.mark.parametrize("email", MALFORMED_EMAILS)
def test_malformed_emails_are_refused_at_sign_up(server: Server, email: str) -> None:
    body = {"email": email, "password": "password123", "terms": True}
    r = api(server.url + "/", "auth/sign-up", body)
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith("'email' must be a valid email address"), r.text


@pytest.mark.parametrize("email", GOOD_EMAILS)
def test_ordinary_emails_are_accepted(server: Server, email: str) -> None:
    address = email.format(uuid.uuid4().hex[:6])
    body = {"email": address, "password": "password123", "terms": True}
    r = api(server.url + "/", "auth/sign-up", body)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("name", ["a\x00b", "a\u0001b", "a\nb", "x\u202ey", "x\u2066y", "a\u2028b"])
@pytest.mark.parametrize("field", ["firstName", "lastName"])
def test_control_and_bidi_characters_in_names_are_refused(
    server: Server, field: str, name: str
) -> None:
    body = {"email": new_email(), "password": "password123", "terms": True, field: name}
    r = api(server.url + "/", "auth/sign-up", body)
    assert r.status_code == 400, r.text
    assert f"'{field}' must not contain control characters" in r.json()["error"]


def test_ordinary_unicode_names_and_emails_are_fine(server: Server) -> None:
    email = f"jürgen-{uuid.uuid4().hex[:6]}@bücher.example"
    body = {
        "email": email,
        "password": "password123",
        "terms": True,
        "firstName": "Zoë 👩‍💻",
        "lastName": "עברית",
    }
    r = api(server.url + "/", "auth/sign-up", body)
    assert r.status_code == 200, r.text


def test_nul_in_registration_token_is_a_clean_400(server: Server) -> None:
    body = {
        "email": new_email(),
        "password": "password123",
        "terms": True,
        "registrationToken": "a\x00b",
    }
    assert api(server.url + "/", "auth/sign-up", body).status_code == 400


@pytest.mark.parametrize("method", ["GET", "PUT", "OPTIONS", "DELETE", "PATCH"])
def test_other_methods_get_json_405_saying_use_post(server: Server, method: str) -> None:
    r = httpx.request(method, server.url + "/api/v2/projects/get")
    assert r.status_code == 405
    assert r.headers["content-type"] == "application/json"
    assert "use POST with a JSON body" in r.json()["error"]
    assert r.headers["allow"] == "POST"


def test_405_outside_the_api_is_json_too(server: Server) -> None:
    r = httpx.post(server.url + "/alive")
    assert r.status_code == 405
    assert "not allowed" in r.json()["error"] and "GET" in r.json()["error"]


def test_bad_api_key_says_invalid_or_expired(server: Server) -> None:
    for headers in (bearer("sk-nope"), bearer("sk-" + "A" * 40)):
        r = api(server.url + "/", "projects/get", {}, headers=headers)
        assert r.status_code == 401
        assert r.json() == {"error": "invalid or expired API key"}
    r = httpx.post(server.url + "/api/v2/projects/get", json={}, auth=("sk-nope", ""))
    assert r.status_code == 401 and r.json() == {"error": "invalid or expired API key"}
    # no credentials at all is still "must be signed in"
    r = api(server.url + "/", "projects/get", {})
    assert r.status_code == 401 and r.json() == {"error": "must be signed in"}


def test_openapi_and_docs_name_the_prefixed_cookie(site: Site) -> None:
    spec = httpx.get(site.base + "api/v2/openapi.json").json()
    assert spec["components"]["securitySchemes"]["cookie"]["name"] == "%2Fhubremember_me"
    text = json.dumps(spec)
    assert " remember_me" not in text and "%2Fhubremember_me cookie" in text
    docs = httpx.get(site.base + "api/v2/docs").text
    assert "%2Fhubremember_me" in docs and " remember_me cookie" not in docs


def test_null_title_and_description_are_documented_and_mean_the_default(
    server: Server, user: User
) -> None:
    """schemathesis ST201: the schema said string only, the handler took null. Both now say
    null means the default."""
    document = httpx.get(server.url + "/api/v2/openapi.json", timeout=30).json()
    operation = document["paths"]["/api/v2/projects/create"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    for name in ("title", "description"):
        assert schema["properties"][name]["type"] == ["string", "null"], schema
    cookies = {"remember_me": user.cookie}
    body = {"title": None, "description": None}
    r = api(server.url + "/", "projects/create", body, cookies=cookies)
    assert r.status_code == 200, r.text
    r = api(
        server.url + "/", "projects/get", {"project_id": r.json()["project_id"]}, cookies=cookies
    )
    assert r.status_code == 200, r.text
    assert (r.json()[0]["title"], r.json()[0]["description"]) == ("Untitled", "")
    r = api(server.url + "/", "projects/create", {"description": 7}, cookies=cookies)
    assert r.status_code == 400, r.text
