"""pulumi-random: the generated value lands in `result`."""

from typing import Any

from tests.computed import stable

# Generated passwords carry a marker, so the secret scans also prove they never show in plain text.
PASSWORD_PREFIX = "MARKERpw"


def password(name: str, length: int = 32) -> str:
    """The `result` the mocks give the RandomPassword named `name`."""
    return PASSWORD_PREFIX + stable(name, length - len(PASSWORD_PREFIX))


def outputs(type_token: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    length = int(inputs.get("length", 32))
    if type_token.endswith("RandomPassword"):
        return {"result": password(name, length)}
    if type_token.endswith("RandomString"):
        return {"result": stable(name, length)}
    if type_token.endswith("RandomId"):
        return {"hex": stable(name, 16), "b64Url": stable(name, 11), "dec": "1"}
    return {}
