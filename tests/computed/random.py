"""pulumi-random: the generated value lands in `result`."""

from typing import Any

from tests.computed import stable


def outputs(type_token: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    if type_token.endswith(("RandomPassword", "RandomString")):
        return {"result": "pw" + stable(name, int(inputs.get("length", 32)) - 2)}
    if type_token.endswith("RandomId"):
        return {"hex": stable(name, 16), "b64Url": stable(name, 11), "dec": "1"}
    return {}
