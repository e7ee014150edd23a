"""User management against the real server (superuser only, except listusers)."""

from __future__ import annotations

import re
import uuid

import pytest

from cat2sync import AuthenticationError, BadRequest, Client, NotFound, PermissionDenied
from cat2sync.server import LocalServer


@pytest.fixture
def email() -> str:
    return f"user-{uuid.uuid4().hex[:10]}@example.com"


def test_adduser_listusers_deluser(admin: Client, server: LocalServer, email: str) -> None:
    before = admin.listusers()
    message = admin.adduser(email, "password123")
    assert message == f"User added: username='{email}' password='password123' superuser=False"
    after = admin.listusers()
    assert len(after) == len(before) + 1
    [info] = admin.listusers(email)
    assert info["email"] == email
    assert info["is_superuser"] is False
    assert {"id", "email", "is_active", "is_superuser", "is_verified"} <= set(info)
    with Client(server.url, (email, "password123")) as newbie:
        assert "@personal" in newbie.get_roots()

    assert admin.deluser(email) == f"User deleted: {email}"
    assert admin.listusers(email) == []
    assert len(admin.listusers()) == len(before)
    with pytest.raises(AuthenticationError):
        Client(server.url, (email, "password123"))


def test_adduser_superuser(admin: Client, email: str) -> None:
    message = admin.adduser(email, "password123", superuser=True)
    assert message.endswith("superuser=True")
    assert admin.listusers(email)[0]["is_superuser"] is True
    admin.deluser(email)


def test_adduser_without_password_reports_a_usable_one(
    admin: Client, server: LocalServer, email: str
) -> None:
    message = admin.adduser(email)
    match = re.fullmatch(
        rf"User added: username='{re.escape(email)}' password='(.+)' "
        r"superuser=False",
        message,
    )
    assert match, message
    with Client(server.url, (email, match.group(1))) as newbie:
        assert "@personal" in newbie.get_roots()
    admin.deluser(email)


def test_adduser_of_an_existing_user_is_a_bad_request(admin: Client) -> None:
    with pytest.raises(BadRequest) as err:
        admin.adduser("alice@example.com", "whatever123")
    assert err.value.path == "alice@example.com"
    assert "exists" in err.value.detail


def test_adduser_with_a_short_password(admin: Client, email: str) -> None:
    with pytest.raises(BadRequest) as err:
        admin.adduser(email, "foo")
    assert "8 characters" in err.value.detail
    assert admin.listusers(email) == []


def test_regular_user_may_not_add_or_delete_users(
    client: Client, admin: Client, email: str
) -> None:
    with pytest.raises(PermissionDenied) as err:
        client.adduser(email, "password123")
    assert "superuser" in err.value.detail.lower()
    assert admin.listusers(email) == []
    with pytest.raises(PermissionDenied):
        client.deluser("bob@example.com")
    assert admin.listusers("bob@example.com")


def test_permission_denied_does_not_log_in_again(client: Client, email: str) -> None:
    requests = client.stats.requests
    with pytest.raises(PermissionDenied):
        client.deluser("bob@example.com")
    assert client.stats.requests == requests + 1  # a refusal is not an expired login


def test_deluser_of_an_unknown_user(admin: Client, email: str) -> None:
    with pytest.raises(NotFound) as err:
        admin.deluser(email)
    assert err.value.path == email


def test_anonymous_may_not_manage_users(anon_client: Client, email: str) -> None:
    with pytest.raises(AuthenticationError):
        anon_client.adduser(email, "password123")
