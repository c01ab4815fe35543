# Shared by the azure target's scripts: messages, input checks and the az login check. Sourced, not run.
# shellcheck shell=bash
# The sourcing script sets LOG_NAME first.

say() { printf '%s: %s\n' "$LOG_NAME" "$*"; }
fail() { printf '%s: error: %s\n' "$LOG_NAME" "$*" >&2; exit 1; }

require() {
  local name value pattern
  name="$1"; pattern="$2"
  value="${!name:-}"
  [[ -n "$value" ]] || fail "$name is not set (it comes from the Pulumi program)"
  [[ "$value" =~ $pattern ]] || fail "$name has an unexpected value: $value"
}

login_check() {
  command -v az >/dev/null || fail "the Azure CLI (az) is not installed on this machine; see docs/targets/azure.md"
  az account show --subscription "$SUBSCRIPTION" --query id --output tsv >/dev/null 2>&1 \
    || fail "the Azure CLI is not logged in to subscription $SUBSCRIPTION: run az login (or az login --service-principal / --identity in CI) with an identity that can reach it"
}
