#!/usr/bin/env bash
# Pre-flight for a TokenVault deployment: run it, signed in with `az login`, before the first
# `az deployment group create` and again before onboarding a customer. It changes nothing.
#
#   RESOURCE_GROUP=rg-tokenvault-prod ENVIRONMENT_NAME=prod APP_ID=<client id> \
#     infra/preflight.sh
#
# Settings (environment):
#   APP_ID            the TokenVault app registration's client id          (required)
#   RESOURCE_GROUP    the target resource group (must exist)               (required unless --registration-only)
#   ENVIRONMENT_NAME  the deployment's environmentName                     (required unless --registration-only)
#   PYTHON_VERSION    the pythonVersion parameter (default 3.11)
#   PIPELINE_PRINCIPAL_ID  the pipelinePrincipalId parameter (optional)
#   MANAGED_IDENTITY_PRINCIPAL_ID  the app identity's principal id; default: the
#                     FEDERATED_CREDENTIAL_SUBJECT output of deployment DEPLOYMENT_NAME
#   DEPLOYMENT_NAME   default tokenvault
# Options: --registration-only  check the app registration alone (no template, no what-if).
#
# Each check prints "ok", "warn" or "FAIL" and why; the exit code is 1 if any check failed.
# What it checks, and the documentation behind each rule, is in infra/README.md ("Pre-flight").
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TEMPLATE="$HERE/main.bicep"
GRAPH_APP_ID=00000003-0000-0000-c000-000000000000
# Microsoft Graph's delegated permission ids (https://learn.microsoft.com/graph/permissions-reference)
OFFLINE_ACCESS=7427e0e9-2fba-42fe-b0c0-848c9e6a8182
OPENID=37f7f235-527c-4136-accd-4a02d197296e
PROFILE=14dad69e-099b-42c9-810b-d002981feec1

registration_only=false
for arg in "$@"; do
  case "$arg" in
    --registration-only) registration_only=true ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "preflight: unknown option $arg" >&2; exit 2 ;;
  esac
done

failures=0
ok()   { printf 'ok    %s\n' "$*"; }
warn() { printf 'warn  %s\n' "$*"; }
fail() { printf 'FAIL  %s\n' "$*"; failures=$((failures + 1)); }
need() { [ -n "${!1:-}" ] || { echo "preflight: set $1" >&2; exit 2; }; }

# az with the output as plain text; empty on error (the error goes to stderr).
q() { az "$@" --only-show-errors -o tsv 2>/dev/null; }

need APP_ID
PYTHON_VERSION=${PYTHON_VERSION:-3.11}
DEPLOYMENT_NAME=${DEPLOYMENT_NAME:-tokenvault}

# --- who and where ----------------------------------------------------------------------------
tenant=$(q account show --query tenantId)
if [ -z "$tenant" ]; then
  fail "az is not signed in (az login)"; exit 1
fi
ok "signed in to tenant $tenant"
cloud=$(q cloud show --query name)
login=$(q cloud show --query endpoints.activeDirectory)
login=${login%/}
# The audience a managed identity's token carries as a federated credential, per cloud
# (https://learn.microsoft.com/entra/workload-id/workload-identity-federation-config-app-trust-managed-identity).
case "$cloud" in
  AzureUSGovernment) audience=api://AzureADTokenExchangeUSGov ;;
  AzureChinaCloud) audience=api://AzureADTokenExchangeChina ;;
  *) audience=api://AzureADTokenExchange ;;
esac

# --- the templates -----------------------------------------------------------------------------
if ! $registration_only; then
  need RESOURCE_GROUP; need ENVIRONMENT_NAME
  if az bicep build --file "$TEMPLATE" --stdout --only-show-errors >/dev/null; then
    ok "az bicep build: infra/main.bicep compiles"
  else
    fail "az bicep build: infra/main.bicep does not compile (see above)"
  fi
  location=$(q group show --name "$RESOURCE_GROUP" --query location)
  if [ -z "$location" ]; then
    fail "resource group $RESOURCE_GROUP not found (az group create --name $RESOURCE_GROUP --location <region>)"
  else
    ok "resource group $RESOURCE_GROUP in $location"
    # Flex Consumption offers each Python version region by region.
    runtimes=$(q functionapp list-flexconsumption-runtimes --location "$location" --runtime python)
    if [ -z "$runtimes" ]; then
      warn "could not list Flex Consumption runtimes in $location (az >= 2.60 needed); check Python $PYTHON_VERSION yourself"
    elif grep -Fqw -- "$PYTHON_VERSION" <<<"$runtimes"; then
      ok "Flex Consumption offers Python $PYTHON_VERSION in $location"
    else
      fail "Flex Consumption does not offer Python $PYTHON_VERSION in $location"
    fi
    params=(environmentName="$ENVIRONMENT_NAME" tokenVaultClientId="$APP_ID" pythonVersion="$PYTHON_VERSION")
    [ -n "${PIPELINE_PRINCIPAL_ID:-}" ] && params+=(pipelinePrincipalId="$PIPELINE_PRINCIPAL_ID")
    if az deployment group what-if --resource-group "$RESOURCE_GROUP" --name "$DEPLOYMENT_NAME" \
        --template-file "$TEMPLATE" --parameters "${params[@]}" \
        --result-format ResourceIdOnly --no-pretty-print --only-show-errors >/dev/null; then
      ok "az deployment group what-if: ARM accepts the deployment"
    else
      fail "az deployment group what-if: ARM refuses the deployment (see above)"
    fi
    # Creating the custom role "TokenVault sweep trigger" needs roleDefinitions/write: Owner or
    # User Access Administrator (https://learn.microsoft.com/azure/role-based-access-control/custom-roles-cli#prerequisites).
    me=$(q ad signed-in-user show --query id)
    if [ -n "$me" ]; then
      subscription=$(q account show --query id)
      roles=$(q role assignment list --assignee "$me" --include-inherited --include-groups \
        --scope "/subscriptions/$subscription/resourceGroups/$RESOURCE_GROUP" --query "[].roleDefinitionName")
      if grep -Eqx 'Owner|User Access Administrator' <<<"$roles"; then
        ok "you hold Owner or User Access Administrator on $RESOURCE_GROUP"
      elif [ -n "${PIPELINE_PRINCIPAL_ID:-}" ]; then
        fail "with pipelinePrincipalId the deployment creates a custom role: it needs Owner or User Access Administrator on $RESOURCE_GROUP"
      else
        warn "no Owner or User Access Administrator on $RESOURCE_GROUP: role assignments may be refused"
      fi
    fi
  fi
fi

# --- the app registration ---------------------------------------------------------------------
app() { q ad app show --id "$APP_ID" --query "$1"; }
if [ -z "$(app appId)" ]; then
  fail "app registration $APP_ID not found in tenant $tenant"; echo "$failures check(s) failed"; exit 1
fi
[ "$(app signInAudience)" = AzureADMultipleOrgs ] \
  && ok "multi-tenant (AzureADMultipleOrgs)" \
  || fail "signInAudience must be AzureADMultipleOrgs: customers' users sign in from their own tenants"
[ "$(app "length(identifierUris[?@=='api://$APP_ID'])")" = 1 ] \
  && ok "identifier URI api://$APP_ID" \
  || fail "no identifier URI api://$APP_ID (az ad app update --id $APP_ID --identifier-uris api://$APP_ID)"
[ "$(app api.requestedAccessTokenVersion)" = 2 ] \
  && ok "v2 access tokens" \
  || fail "api.requestedAccessTokenVersion must be 2"
[ "$(app "length(api.oauth2PermissionScopes[?value=='access_as_user' && isEnabled])")" = 1 ] \
  && ok "exposes the scope access_as_user" \
  || fail "the scope access_as_user is not exposed (or disabled)"
for role in TokenVault.Redeem TokenVault.Admin; do
  [ "$(app "length(appRoles[?value=='$role' && isEnabled && contains(allowedMemberTypes, 'Application')])")" = 1 ] \
    && ok "app role $role for applications" \
    || fail "no enabled app role $role for applications"
done
# Admin consent redirects back to a registered URI; without one it ends in AADSTS500113
# (https://learn.microsoft.com/entra/identity-platform/v2-admin-consent).
redirects=$(app "length(web.redirectUris)")
if [ "${redirects:-0}" -ge 1 ] 2>/dev/null; then
  [ "$(app "length(web.redirectUris[?!starts_with(@, 'https://')])")" = 0 ] \
    && ok "web redirect URI registered ($redirects)" \
    || fail "a web redirect URI is not https"
else
  fail "no web redirect URI: admin consent would end in AADSTS500113"
fi
# OBO returns a refresh token only with offline_access, and only for delegated permissions
# the app lists (https://learn.microsoft.com/entra/identity-platform/v2-oauth2-on-behalf-of-flow).
[ "$(app "length(requiredResourceAccess[?resourceAppId=='$GRAPH_APP_ID'].resourceAccess[] | [?id=='$OFFLINE_ACCESS' && type=='Scope'])")" = 1 ] \
  && ok "requests offline_access" \
  || fail "requiredResourceAccess lacks Microsoft Graph offline_access (no refresh token without it)"
downstream=$(app "length(requiredResourceAccess[].resourceAccess[] | [?type=='Scope' && id!='$OFFLINE_ACCESS' && id!='$OPENID' && id!='$PROFILE'])")
[ "${downstream:-0}" -ge 1 ] 2>/dev/null \
  && ok "lists $downstream downstream delegated permission(s)" \
  || fail "requiredResourceAccess lists no downstream delegated permission (e.g. Graph User.Read)"
[ "$(app "sum([length(api.knownClientApplications), length(api.preAuthorizedApplications)])")" != 0 ] \
  && ok "calling apps are known or pre-authorized" \
  || warn "no knownClientApplications or preAuthorizedApplications: each calling app needs consent for access_as_user"
[ "$(app "sum([length(passwordCredentials), length(keyCredentials)])")" = 0 ] \
  && ok "no client secret or certificate on the registration" \
  || warn "the registration holds a secret or certificate; in Azure the app uses its managed identity"
[ -n "$(q ad sp show --id "$APP_ID" --query id)" ] \
  && ok "service principal in the home tenant" \
  || fail "no service principal in the home tenant (az ad sp create --id $APP_ID)"

# --- the federated credential (after the resources are deployed) --------------------------------
subject=${MANAGED_IDENTITY_PRINCIPAL_ID:-}
if [ -z "$subject" ] && [ -n "${RESOURCE_GROUP:-}" ]; then
  subject=$(q deployment group show --resource-group "$RESOURCE_GROUP" --name "$DEPLOYMENT_NAME" \
    --query properties.outputs.FEDERATED_CREDENTIAL_SUBJECT.value)
fi
if [ -z "$subject" ]; then
  warn "federated credential not checked: deploy first, or set MANAGED_IDENTITY_PRINCIPAL_ID"
else
  issuer="$login/$tenant/v2.0"
  found=$(q ad app federated-credential list --id "$APP_ID" \
    --query "length([?issuer=='$issuer' && subject=='$subject' && contains(audiences, '$audience')])")
  [ "$found" = 1 ] \
    && ok "federated credential trusts the managed identity $subject ($issuer, $audience)" \
    || fail "no federated credential with issuer $issuer, subject $subject, audience $audience"
fi

if [ "$failures" -gt 0 ]; then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all checks passed"
