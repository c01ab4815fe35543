"""azure-native: what Azure computes (ARM ids, names, host names, identities, secret URIs), in the shapes it returns."""

from __future__ import annotations

from typing import Any

from tests.computed import stable
from tests.harness import SECRET_SIG

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
    "managedidentity:UserAssignedIdentity": "resourceName", "containerinstance:ContainerGroup": "containerGroupName",
}
# Where each type sits under its resource group's `providers/`; a child names its parent through an input.
ARM_PATHS = {
    "web:AppServicePlan": "Microsoft.Web/serverfarms/{own}", "web:WebApp": "Microsoft.Web/sites/{own}",
    "web:WebAppSlot": "Microsoft.Web/sites/{name}/slots/{slot}",
    "web:WebAppSlotConfigurationNames": "Microsoft.Web/sites/{name}/config/slotConfigNames",
    "web:WebAppHostNameBinding": "Microsoft.Web/sites/{name}/hostNameBindings/{hostName}",
    "web:Certificate": "Microsoft.Web/certificates/{own}",
    "storage:StorageAccount": "Microsoft.Storage/storageAccounts/{own}",
    "storage:BlobContainer": "Microsoft.Storage/storageAccounts/{accountName}/blobServices/default/containers/{own}",
    "storage:Blob": "Microsoft.Storage/storageAccounts/{accountName}/blobServices/default/containers/"
                    "{containerName}/blobs/{own}",
    "keyvault:Vault": "Microsoft.KeyVault/vaults/{own}", "keyvault:Secret": "Microsoft.KeyVault/vaults/{vaultName}/secrets/{own}",
    "dbforpostgresql:Server": "Microsoft.DBforPostgreSQL/flexibleServers/{own}",
    "dbforpostgresql:Database": "Microsoft.DBforPostgreSQL/flexibleServers/{serverName}/databases/{own}",
    "network:VirtualNetwork": "Microsoft.Network/virtualNetworks/{own}",
    "privatedns:PrivateZone": "Microsoft.Network/privateDnsZones/{own}",
    "privatedns:VirtualNetworkLink": "Microsoft.Network/privateDnsZones/{privateZoneName}/virtualNetworkLinks/{own}",
    "authorization:ManagementLockAtResourceGroupLevel": "Microsoft.Authorization/locks/{own}",
    "managedidentity:UserAssignedIdentity": "Microsoft.ManagedIdentity/userAssignedIdentities/{own}",
    "containerinstance:ContainerGroup": "Microsoft.ContainerInstance/containerGroups/{own}",
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


def _identity(seed: str, given: Any) -> dict[str, Any]:
    """A site's identity as App Service reports it: its own principal, or the user-assigned ones it was given."""
    given = _plain(given) or {}
    if given.get("type") == "UserAssigned":
        return {"type": "UserAssigned", "userAssignedIdentities": {
            rid: {"principalId": _guid("principal-" + rid), "clientId": _guid("client-" + rid)}
            for rid in given.get("userAssignedIdentities", [])}}
    return {"type": "SystemAssigned", "principalId": _guid("principal-" + seed), "tenantId": TENANT}


def _arm_id(kind: str, own: str, inputs: dict[str, Any]) -> str | None:
    """The id Azure gives the resource: /subscriptions/<sub>/resourceGroups/<rg>/providers/<namespace>/<type>/<name>."""
    group = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/"
    if kind == "resources:ResourceGroup":
        return group + own
    if kind == "authorization:RoleAssignment":
        return f"{inputs.get('scope')}/providers/Microsoft.Authorization/roleAssignments/{own}"
    if kind not in ARM_PATHS:
        return None
    path = ARM_PATHS[kind].format(own=own, **{k: v for k, v in _plain(inputs).items() if isinstance(v, str)})
    return f"{group}{inputs.get('resourceGroupName')}/providers/{path}"


def outputs(type_token: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    kind = type_token.removeprefix("azure-native:")
    own = inputs.get(NAME_INPUTS.get(kind, "name")) or f"{name}{stable(name, 6)}"
    if kind == "authorization:RoleAssignment":
        own = _guid("assignment-" + name)
    result: dict[str, Any] = {"name": own, "azureApiVersion": "2024-01-01"}
    arm_id = _arm_id(kind, own, inputs)
    if arm_id:
        result["id"] = arm_id  # the harness pops it: the resource's id
    if kind == "web:WebApp":
        result.update(defaultHostName=f"{own}.azurewebsites.net", identity=_identity(name, inputs.get("identity")),
                      customDomainVerificationId=stable("verify-" + name, 64),
                      outboundIpAddresses="20.50.2.1,20.50.2.2", possibleOutboundIpAddresses="20.50.2.1,20.50.2.2,20.50.2.3")
    elif kind == "web:WebAppSlot":
        result.update(name=f"{own}/{inputs.get('slot')}", defaultHostName=f"{own}-{inputs.get('slot')}.azurewebsites.net",
                      identity=_identity(name, inputs.get("identity")))
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
                                  # Each new value is a new version, hence a new versioned URI.
                                  "secretUriWithVersion": f"{uri}/{stable(name + str(_plain(inputs.get('properties'))), 32)}"})
    elif kind == "dbforpostgresql:Server":
        result.update(fullyQualifiedDomainName=f"{own}.postgres.database.azure.com", state="Ready")
    elif kind == "authorization:RoleAssignment":
        result.update(principalType=inputs.get("principalType"))
    elif kind == "managedidentity:UserAssignedIdentity":
        result.update(principalId=_guid("principal-" + name), clientId=_guid("client-" + name), tenantId=TENANT)
    return result


def invoke(token: str, args: dict[str, Any]) -> dict[str, Any]:
    if token == "azure-native:authorization:getClientConfig":
        return {"clientId": _guid("client"), "objectId": _guid("object"), "subscriptionId": SUBSCRIPTION,
                "tenantId": TENANT}
    raise NotImplementedError(f"no mock for invoke {token}; add one to tests/computed/azure_native.py")
