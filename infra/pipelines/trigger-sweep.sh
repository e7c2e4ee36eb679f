#!/usr/bin/env bash
# Start a sweep now: run the timer function `refresh_plan` through the Functions admin endpoint,
# so the records move to the new key versions without waiting for TOKENVAULT_REFRESH_SCHEDULE.
#
#   FUNCTION_APP_ID=/subscriptions/.../providers/Microsoft.Web/sites/<app> \
#   FUNCTION_APP_URL=https://<default host name> infra/pipelines/trigger-sweep.sh
#
# Runs after `az login` (AzureCLI@2, azure/login). The signed-in principal needs one action on
# the app, Microsoft.Web/sites/host/listkeys/action (the "TokenVault sweep trigger" role of
# infra/app/rbac.bicep), to read the master key the admin endpoint takes. The key is masked in
# the pipeline's log, sent only over https and only in a header read from stdin (never on a
# command line), and forgotten when this script ends.
#
# Why not `python -m tokenvault sweep`: that sweeps in this process, refreshing tokens in the
# app's name, so the pipeline would need the app's client credential and write access to the
# records. Here the sweep runs in the Function App, under its own identity, like the timer.
set -euo pipefail

: "${FUNCTION_APP_ID:?set FUNCTION_APP_ID to the Function App's resource id}"
: "${FUNCTION_APP_URL:?set FUNCTION_APP_URL to https://<the app's default host name>}"
case "$FUNCTION_APP_URL" in
  https://*) ;;
  *) echo "FUNCTION_APP_URL must be an https URL: the master key goes in the request" >&2; exit 2 ;;
esac

mask() { # Tell the pipeline runner never to print this value.
  if [ "${GITHUB_ACTIONS:-}" = "true" ]; then
    echo "::add-mask::$1"
  elif [ -n "${TF_BUILD:-}" ]; then
    echo "##vso[task.setsecret]$1"
  fi
}

key=$(az rest --method post --output tsv --query masterKey \
  --url "${FUNCTION_APP_ID}/host/default/listkeys?api-version=2024-04-01")
if [ -z "$key" ]; then
  echo "could not read the Function App's master key" >&2
  exit 1
fi
mask "$key"

# The admin endpoint answers 202 Accepted once the host has queued the run.
status=$(printf 'x-functions-key: %s\n' "$key" | curl --silent --show-error --output /dev/null \
  --write-out '%{http_code}' --max-time 60 --retry 3 --retry-connrefused \
  --request POST --header @- --header 'Content-Type: application/json' \
  --data '{"input": ""}' "${FUNCTION_APP_URL%/}/admin/functions/refresh_plan")
unset key
if [ "$status" != "202" ]; then
  echo "refresh_plan was not started: the admin endpoint answered HTTP $status" >&2
  exit 1
fi
echo "sweep started: refresh_plan accepted by ${FUNCTION_APP_URL%/}"
