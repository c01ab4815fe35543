#!/usr/bin/env bash
# Siteline database refresh on Azure, run by `pulumi up` on the deploying machine (az CLI logged in).
#   set-password  give the restored copy SERVER_ID its own administrator password, ADMIN_PASSWORD (a restore keeps
#                 the source's, which this stack never knows). The password travels in a request body read from a
#                 private temporary file, never on a command line.
#   wait-mask     wait until the masking container group CONTAINER_GROUP has exited; succeed only on exit code 0.
#                 Until then the site cannot read the copy: its DATABASE_URL still names the previous one.
# Both can run twice with the same result. Every az call names SUBSCRIPTION, whatever the CLI has selected.
# Nothing secret is printed: Pulumi keeps this script's output in its state.
set -euo pipefail

API_VERSION=2025-08-01

LOG_NAME=siteline-refresh
# shellcheck source=azure-lib.sh
. "$(dirname "$0")/azure-lib.sh"

server_state() {
  az postgres flexible-server show --ids "$SERVER_ID" --query state --output tsv
}

set_password() {
  require SUBSCRIPTION '^[0-9a-fA-F-]{36}$'
  require SERVER_ID '^/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[-A-Za-z0-9_.()]+/providers/Microsoft.DBforPostgreSQL/flexibleServers/[a-z0-9-]+$'
  [[ -n "${ADMIN_PASSWORD:-}" ]] || fail "ADMIN_PASSWORD is not set (it comes from the Pulumi program)"
  login_check

  local body
  body="$(mktemp)"
  trap 'rm -f "$body"' EXIT
  chmod 600 "$body"
  python3 -c 'import json, os, sys; json.dump({"properties": {"administratorLoginPassword": os.environ["ADMIN_PASSWORD"]}}, sys.stdout)' >"$body"

  say "step 1/2: setting the copy's own administrator password on ${SERVER_ID##*/}"
  az rest --method patch --url "https://management.azure.com${SERVER_ID}?api-version=${API_VERSION}" \
    --headers Content-Type=application/json --body "@$body" --output none
  # The PATCH is accepted before it runs: give the server time to leave Ready before waiting for it to return.
  sleep 20
  say "step 2/2: waiting for ${SERVER_ID##*/} to be Ready"
  local deadline=$((SECONDS + 900)) state
  until state="$(server_state)" && [[ "$state" == Ready ]]; do
    ((SECONDS < deadline)) || fail "${SERVER_ID##*/} is ${state:-unknown} after 15 minutes; the site keeps its previous copy. Run pulumi up again."
    sleep 10
  done
  say "${SERVER_ID##*/} is Ready with its own password"
}

wait_mask() {
  require SUBSCRIPTION '^[0-9a-fA-F-]{36}$'
  require RESOURCE_GROUP '^[-A-Za-z0-9_.()]+$'
  require CONTAINER_GROUP '^[a-z0-9][-a-z0-9]*$'
  require MASK_TIMEOUT '^[0-9]+$'
  login_check

  local deadline=$((SECONDS + MASK_TIMEOUT)) state exit_code provisioning logs
  logs="az container logs --subscription $SUBSCRIPTION --resource-group $RESOURCE_GROUP --name $CONTAINER_GROUP"
  say "step 1/1: waiting for the masking container $CONTAINER_GROUP to finish (up to ${MASK_TIMEOUT}s)"
  while :; do
    IFS=$'\t' read -r state exit_code provisioning < <(az container show --subscription "$SUBSCRIPTION" \
      --resource-group "$RESOURCE_GROUP" --name "$CONTAINER_GROUP" --output tsv \
      --query "[containers[0].instanceView.currentState.state, containers[0].instanceView.currentState.exitCode, provisioningState]" \
      || true)
    if [[ "${state:-}" == Terminated ]]; then
      [[ "${exit_code:-}" == 0 ]] \
        || fail "masking exited with code ${exit_code:-unknown}; nothing was masked (one transaction) and the site keeps its previous copy. See: $logs. Then set a new database.refreshId to take a fresh copy."
      say "masking finished with exit code 0: the copy is masked"
      return 0
    fi
    [[ "${provisioning:-}" != Failed ]] \
      || fail "the masking container group $CONTAINER_GROUP failed to start (image pull or subnet?); the site keeps its previous copy. See: az container show --subscription $SUBSCRIPTION --resource-group $RESOURCE_GROUP --name $CONTAINER_GROUP"
    ((SECONDS < deadline)) \
      || fail "masking did not finish within ${MASK_TIMEOUT}s (state ${state:-unknown}); the site keeps its previous copy. See: $logs"
    sleep 15
  done
}

case "${1:-}" in
  set-password) set_password ;;
  wait-mask) wait_mask ;;
  *) fail "usage: $0 set-password|wait-mask" ;;
esac
