"""azure-native: what Azure computes (names, host names, identities, secret URIs), in the shapes it returns them."""

from __future__ import annotations

from typing import Any

from tests.computed import stable

SECRET_SIG = "4dabf18193072939515e22adb298388d"  # pulumi's wire marker of a secret value
SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"
TENANT = "00000000-0000-0000-0000-0000000000aa"
# The input that carries each type's own name; without it Azure derives one from the resource name.
NAME_INPUTS = {
    "resources:ResourceGroup": "resourceGroupName", "storage:StorageAccount": "accountName",
    "storage:BlobContainer": "containerName", "storage:Blob": "blobName", "keyvault:Vault": "vaultName",
    "keyvault:Secret": "secretName", "dbforpostgresql:Server": "serverName",
    "dbforpostgresql:Database": "databaseName", "network:VirtualNetwork": "virtualNetworkName",
    "privatedns:PrivateZone": "privateZoneName", "privatedns:VirtualNetworkLink": "virtualNetworkLinkName",
    "authorization:ManagementLockAtResourceGroupLevel": "lockName", "authorization:RoleAssignment": "roleAssignmentName",
}


def _plain(value: Any) -> Any:
    """An input object as the provider receives it: secret wrappers removed (the engine re-marks outputs)."""
    if isinstance(value, dict) and set(value) == {SECRET_SIG, "value"}:
        return _plain(value["value"])
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _guid(seed: str) -> str:
    h = stable(seed, 32)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _identity(seed: str) -> dict[str, Any]:
    return {"type": "SystemAssigned", "principalId": _guid("principal-" + seed), "tenantId": TENANT}


def outputs(type_token: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    kind = type_token.removeprefix("azure-native:")
    own = inputs.get(NAME_INPUTS.get(kind, "name")) or f"{name}{stable(name, 6)}"
    result: dict[str, Any] = {"name": own, "azureApiVersion": "2024-01-01"}
    if kind == "web:WebApp":
        result.update(defaultHostName=f"{own}.azurewebsites.net", identity=_identity(name),
                      customDomainVerificationId=stable("verify-" + name, 64),
                      outboundIpAddresses="20.50.2.1,20.50.2.2", possibleOutboundIpAddresses="20.50.2.1,20.50.2.2,20.50.2.3")
    elif kind == "web:WebAppSlot":
        result.update(name=f"{own}/{inputs.get('slot')}", defaultHostName=f"{own}-{inputs.get('slot')}.azurewebsites.net",
                      identity=_identity(name))
    elif kind == "web:Certificate":
        result.update(thumbprint=stable("thumb-" + name, 40).upper())
    elif kind == "storage:StorageAccount":
        result.update(primaryEndpoints={"blob": f"https://{own}.blob.core.windows.net/"})
    elif kind == "storage:Blob":
        result.update(url=f"https://{inputs.get('accountName')}.blob.core.windows.net/{inputs.get('containerName')}/{own}")
    elif kind == "keyvault:Vault":
        result.update(properties={**_plain(inputs.get("properties", {})), "vaultUri": f"https://{own}.vault.azure.net/"})
    elif kind == "keyvault:Secret":
        uri = f"https://{inputs.get('vaultName')}.vault.azure.net/secrets/{own}"
        result.update(properties={**_plain(inputs.get("properties", {})), "secretUri": uri,
                                  "secretUriWithVersion": f"{uri}/{stable(name, 32)}"})
    elif kind == "dbforpostgresql:Server":
        result.update(fullyQualifiedDomainName=f"{own}.postgres.database.azure.com", state="Ready")
    elif kind == "authorization:RoleAssignment":
        result.update(name=_guid("assignment-" + name), principalType=inputs.get("principalType"))
    return result


def invoke(token: str, args: dict[str, Any]) -> dict[str, Any]:
    if token == "azure-native:authorization:getClientConfig":
        return {"clientId": _guid("client"), "objectId": _guid("object"), "subscriptionId": SUBSCRIPTION,
                "tenantId": TENANT}
    raise NotImplementedError(f"no mock for invoke {token}; add one to tests/computed/azure_native.py")
