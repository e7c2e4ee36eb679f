"""The OpenAPI 3.1 document of the HTTP API, served at ``GET /api/openapi.json``.

Written out rather than generated: it is a contract with the callers, reviewed like one. A
test holds it to the routes ``function_app`` declares, and a property-based fuzzer holds the
handlers to it.
"""

from __future__ import annotations

from .errors import PUBLIC_CODES
from .http import MAX_SCOPE_LENGTH, MAX_SCOPES, PROBLEM_TYPE
from .scopes import RESERVED_SCOPES

__all__ = ["document"]

_GUID = {"type": "string", "format": "uuid",
         "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"}
# The handler refuses these in any case (scopes.RESERVED_SCOPES); JSON Schema regexes have no
# case-insensitive flag, hence the letter classes.
_RESERVED_SCOPE = "^(?:" + "|".join(
    "".join(f"[{c.upper()}{c}]" if c.isalpha() else c for c in scope)
    for scope in sorted(RESERVED_SCOPES)) + ")$"
_DESCRIPTIONS = {
    "invalid_token": "The bearer token is missing or invalid.",
    "insufficient_permissions": "The caller may not do this.",
    "bad_request": "The request is malformed; `field` names the part.",
    "payload_too_large": "The body is over 16 KiB.",
    "not_found": "Nothing is stored: sign the user in again.",
    "reauth_required": "The user must sign in again: the stored refresh token is dead, or the "
                       "identity provider wants consent, a step-up or refuses the scopes; "
                       "`claims` when it sent a claims challenge.",
    "offline_access_missing": "The identity provider granted no refresh token.",
    "tenant_not_onboarded": "The tenant has no key.",
    "tenant_revoked": "The tenant's key was revoked.",
    "scope_not_stored": "The redeem asked for scopes the record was not stored with: sign the "
                        "user in and store again.",
    "upstream_unavailable": "A dependency is unavailable; retry after `Retry-After` seconds.",
    "internal": "Something went wrong on our side; no detail is given.",
}


def _problem(*codes: str) -> dict:
    """One response object per status, listing the codes it may carry."""
    return {"description": " ".join(f"`{c}`: {_DESCRIPTIONS[c]}" for c in codes),
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
            **({"headers": {"Retry-After": {"schema": {"type": "integer"}}}}
               if "upstream_unavailable" in codes else {}),
            **({"headers": {"WWW-Authenticate": {"schema": {"type": "string"}}}}
               if "invalid_token" in codes else {})}


def _errors(*codes: str) -> dict:
    by_status: dict[str, list[str]] = {}
    for code in codes + ("bad_request", "internal"):
        by_status.setdefault(str(PUBLIC_CODES[code]), []).append(code)
    return {status: _problem(*sorted(set(group))) for status, group in by_status.items()}


_AUTHED = ("invalid_token", "insufficient_permissions", "upstream_unavailable")
_SECURED: list[dict[str, list[str]]] = [{"bearer": [], "functionKey": []}]
_RECORD_PARAMS = [
    {"name": "tenant_id", "in": "path", "required": True, "schema": _GUID},
    {"name": "user_id", "in": "path", "required": True, "schema": _GUID},
]


def _json_body(schema: str) -> dict:
    return {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{schema}"}}}}


def _ok(description: str, schema: str) -> dict:
    return {"description": description, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{schema}"}}}}


def document(version: str) -> dict:
    scopes = {"type": "array", "minItems": 1, "maxItems": MAX_SCOPES,
              "items": {"type": "string", "minLength": 1, "maxLength": MAX_SCOPE_LENGTH,
                        "pattern": "^[!-~]+$", "not": {"pattern": _RESERVED_SCOPE},
                        "description": "A scope of the downstream resource; openid, profile "
                                       "and offline_access (any case) are added by the vault "
                                       "and refused here; so are scopes of TokenVault's own "
                                       "app (api://<client id>/..., <client id>/...)."}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "TokenVault", "version": version,
                 "description": "Stores users' On-Behalf-Of refresh tokens encrypted under "
                                "per-tenant keys and redeems them for fresh access tokens."},
        "servers": [{"url": "/api"}],
        "paths": {
            "/tokens": {"post": {
                "operationId": "store_token", "summary": "Store the caller's refresh token (OBO)",
                "security": _SECURED, "requestBody": _json_body("StoreRequest"),
                "responses": {"201": {**_ok("Stored.", "Record"),
                                      "headers": {"Location": {"schema": {"type": "string"}}}},
                              **_errors(*_AUTHED, "payload_too_large", "offline_access_missing",
                                        "reauth_required", "tenant_not_onboarded",
                                        "tenant_revoked")}}},
            "/tokens/redeem": {"post": {
                "operationId": "redeem_token", "summary": "A fresh access token for a stored user",
                "security": _SECURED, "requestBody": _json_body("RedeemRequest"),
                "responses": {"200": _ok("A fresh access token.", "AccessToken"),
                              **_errors(*_AUTHED, "payload_too_large", "not_found",
                                        "reauth_required", "tenant_not_onboarded",
                                        "tenant_revoked", "scope_not_stored")}}},
            "/tokens/{tenant_id}/{user_id}": {
                "parameters": _RECORD_PARAMS,
                "get": {"operationId": "describe_token", "summary": "A record's metadata",
                        "security": _SECURED,
                        "responses": {"200": _ok("The record's metadata.", "Record"),
                                      **_errors(*_AUTHED, "not_found", "tenant_not_onboarded")}},
                "delete": {"operationId": "forget_token", "summary": "Delete a record",
                           "security": _SECURED,
                           "responses": {"204": {"description": "Deleted."},
                                         **_errors(*_AUTHED, "not_found", "tenant_not_onboarded")}}},
            "/health": {"get": {
                "operationId": "health", "summary": "Liveness", "security": [],
                "responses": {"200": _ok("Up.", "Health")}}},
            "/openapi.json": {"get": {
                "operationId": "openapi", "summary": "This document", "security": [],
                "responses": {"200": {"description": "The OpenAPI document.",
                                      "content": {"application/json": {"schema": {"type": "object"}}}}}}},
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                           "description": "An Entra ID access token for TokenVault's app: a "
                                          "user's delegated token, or an app token with the "
                                          "TokenVault.Redeem or TokenVault.Admin role."},
                "functionKey": {"type": "apiKey", "in": "header", "name": "x-functions-key",
                                "description": "The Functions host key (defence in depth)."},
            },
            "schemas": {
                "StoreRequest": {"type": "object", "additionalProperties": False,
                                 "required": ["scopes"], "properties": {"scopes": scopes}},
                "RedeemRequest": {
                    "type": "object", "additionalProperties": False, "required": ["scopes"],
                    "properties": {"scopes": scopes, "tenant_id": _GUID, "user_id": _GUID},
                    "description": "tenant_id and user_id are required with an app token."},
                "Record": {
                    "type": "object", "additionalProperties": False,
                    "required": ["tenant_id", "user_id", "client_id", "status", "key_version",
                                 "scopes", "created_at", "refreshed_at"],
                    "properties": {
                        "tenant_id": _GUID, "user_id": _GUID, "client_id": _GUID,
                        "status": {"enum": ["active", "reauth_required", "revoked"]},
                        "key_version": {"type": "string"},
                        "scopes": {"type": "array", "items": {"type": "string"}},
                        "created_at": {"type": "string", "format": "date-time"},
                        "refreshed_at": {"type": "string", "format": "date-time"}}},
                "AccessToken": {
                    "type": "object", "additionalProperties": False,
                    "required": ["access_token", "token_type", "expires_in", "expires_on", "scope"],
                    "properties": {"access_token": {"type": "string"},
                                   "token_type": {"const": "Bearer"},
                                   "expires_in": {"type": "integer", "minimum": 0},
                                   "expires_on": {"type": "integer"},
                                   "scope": {"type": "string"}}},
                "Health": {"type": "object", "required": ["status", "version"],
                           "properties": {"status": {"const": "ok"},
                                          "version": {"type": "string"}}},
                "Problem": {
                    "type": "object", "required": ["type", "title", "status", "code"],
                    "properties": {
                        "type": {"type": "string", "format": "uri",
                                 "examples": [PROBLEM_TYPE + "not_found"]},
                        "title": {"type": "string"}, "status": {"type": "integer"},
                        "code": {"enum": sorted(PUBLIC_CODES)},
                        "detail": {"type": "string"}, "correlation_id": {"type": "string"},
                        "field": {"type": "string"},
                        "claims": {"type": "string",
                                   "description": "The identity provider's claims challenge."}}},
            },
        },
    }
