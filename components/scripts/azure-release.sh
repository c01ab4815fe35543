#!/usr/bin/env bash
# Siteline on Azure, run by `pulumi up` on the deploying machine (az CLI logged in).
#   swap      restart the staging slot, warm it, check it serves RELEASE_VERSION on HEALTH_PATH, swap it into
#             production, check production; an unhealthy slot is never swapped in, and a failed check swaps back.
#   bind-tls  bind the managed certificate THUMBPRINT to HOST_NAME (SNI).
# Running either twice gives the same result: a swap already done is reported and skipped.
# Every az call names SUBSCRIPTION (from the Pulumi program), whatever subscription the CLI has selected.
set -euo pipefail

LOG_NAME=siteline-azure
# shellcheck source=azure-lib.sh
. "$(dirname "$0")/azure-lib.sh"

deployment_of() {  # the SITELINE_DEPLOYMENT setting a slot carries ("" if none)
  local slot_args=()
  [[ "$1" == production ]] || slot_args=(--slot "$1")
  az webapp config appsettings list --subscription "$SUBSCRIPTION" --resource-group "$RESOURCE_GROUP" --name "$APP_NAME" "${slot_args[@]}" \
    --query "[?name=='SITELINE_DEPLOYMENT'].value | [0]" --output tsv
}

healthy() {  # healthy HOST: HEALTH_PATH answers 200 with status ok and release RELEASE_VERSION
  local body
  body="$(curl --silent --show-error --fail --max-time 15 "https://$1$HEALTH_PATH" 2>/dev/null)" || return 1
  RELEASE_VERSION="$RELEASE_VERSION" python3 -c '
import json, os, sys
body = json.loads(sys.stdin.read())
sys.exit(0 if body.get("status") == "ok" and body.get("release") == os.environ["RELEASE_VERSION"] else 1)' <<<"$body"
}

wait_healthy() {  # wait_healthy HOST SECONDS
  local deadline=$((SECONDS + $2))
  until healthy "$1"; do
    ((SECONDS < deadline)) || return 1
    sleep 10
  done
}

swap() {
  require SUBSCRIPTION '^[0-9a-fA-F-]{36}$'
  require RESOURCE_GROUP '^[-A-Za-z0-9_.()]+$'
  require APP_NAME '^[a-z0-9][-a-z0-9]*$'
  require SLOT '^[a-z0-9-]+$'
  require STAGING_HOST '^[a-z0-9.-]+$'
  require PRODUCTION_HOST '^[a-z0-9.-]+$'
  require HEALTH_PATH '^/[A-Za-z0-9._~/-]*$'
  require RELEASE_VERSION '^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]+)?$'
  require DEPLOYMENT '^[0-9a-f]{16}$'
  require WARMUP_TIMEOUT '^[0-9]+$'
  login_check

  say "step 1/5: is deployment $DEPLOYMENT (release $RELEASE_VERSION) already in production?"
  if [[ "$(deployment_of production)" == "$DEPLOYMENT" ]]; then
    say "production already runs deployment $DEPLOYMENT; nothing to swap"
    return 0
  fi
  local staged
  staged="$(deployment_of "$SLOT")"
  [[ "$staged" == "$DEPLOYMENT" ]] \
    || fail "the $SLOT slot carries deployment '${staged:-none}', not $DEPLOYMENT; run pulumi up again. Production is unchanged."

  # The slot took its new package and settings when Pulumi wrote them; a restart makes it resolve its Key Vault
  # references and fetch its package again, in case the first start ran before its role grants had propagated
  # (App Service keeps a failed reference until the next restart). It serves no traffic, so this costs nothing.
  say "step 2/5: restarting the $SLOT slot so it starts on deployment $DEPLOYMENT with fresh Key Vault references"
  az webapp restart --subscription "$SUBSCRIPTION" --resource-group "$RESOURCE_GROUP" --name "$APP_NAME" \
    --slot "$SLOT" --output none

  say "step 3/5: warming the $SLOT slot until https://$STAGING_HOST$HEALTH_PATH serves $RELEASE_VERSION (up to ${WARMUP_TIMEOUT}s)"
  wait_healthy "$STAGING_HOST" "$WARMUP_TIMEOUT" \
    || fail "the $SLOT slot did not serve release $RELEASE_VERSION healthily within ${WARMUP_TIMEOUT}s; production keeps serving the previous release. Logs: az webapp log tail --subscription $SUBSCRIPTION --resource-group $RESOURCE_GROUP --name $APP_NAME --slot $SLOT"

  say "step 4/5: swapping $SLOT into production"
  az webapp deployment slot swap --subscription "$SUBSCRIPTION" --resource-group "$RESOURCE_GROUP" --name "$APP_NAME" --slot "$SLOT" \
    --target-slot production --output none

  say "step 5/5: checking https://$PRODUCTION_HOST$HEALTH_PATH serves $RELEASE_VERSION"
  if ! wait_healthy "$PRODUCTION_HOST" 180; then
    say "production is not healthy after the swap; swapping back"
    az webapp deployment slot swap --subscription "$SUBSCRIPTION" --resource-group "$RESOURCE_GROUP" --name "$APP_NAME" --slot "$SLOT" \
      --target-slot production --output none
    fail "release $RELEASE_VERSION failed its health check in production and was swapped back out"
  fi
  say "production serves release $RELEASE_VERSION (deployment $DEPLOYMENT)"
}

bind_tls() {
  require SUBSCRIPTION '^[0-9a-fA-F-]{36}$'
  require RESOURCE_GROUP '^[-A-Za-z0-9_.()]+$'
  require APP_NAME '^[a-z0-9][-a-z0-9]*$'
  require HOST_NAME '^[a-z0-9.-]+$'
  require THUMBPRINT '^[0-9A-F]{40}$'
  login_check
  say "step 1/1: binding certificate $THUMBPRINT to $HOST_NAME (SNI)"
  az webapp config ssl bind --subscription "$SUBSCRIPTION" --resource-group "$RESOURCE_GROUP" --name "$APP_NAME" \
    --certificate-thumbprint "$THUMBPRINT" --ssl-type SNI --hostname "$HOST_NAME" --output none
  say "https://$HOST_NAME is bound"
}

case "${1:-}" in
  swap) swap ;;
  bind-tls) bind_tls ;;
  *) fail "usage: $0 swap|bind-tls" ;;
esac
