#!/bin/sh
# Render users.acl.template with the passwords from the environment (never from arguments, which
# other users of the host can read in the process list) and print the ACL file on stdout:
#
#   SAW_REDIS_PASSWORD=... KEDA_REDIS_PASSWORD=... ADMIN_REDIS_PASSWORD=... \
#       deploy/redis/render-acl.sh > deploy/secrets/users.acl
#
# Generate a password: python3 -c "import secrets; print(secrets.token_urlsafe(32))"
# The application's URL then carries the same password:
#   SUBACCOUNT_WORKER_REDIS_URL=redis://saw:<SAW_REDIS_PASSWORD>@redis:6379/0
# (URL-encode it if it holds characters other than letters, digits, '-' and '_').
set -eu
here=$(dirname "$0")
sha() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
: "${SAW_REDIS_PASSWORD:?set SAW_REDIS_PASSWORD (the application user's password)}"
: "${KEDA_REDIS_PASSWORD:?set KEDA_REDIS_PASSWORD (KEDA's scaler; any long random value if unused)}"
: "${ADMIN_REDIS_PASSWORD:?set ADMIN_REDIS_PASSWORD (operators)}"
sed -e "s/@SAW_PASSWORD_SHA256@/$(sha "$SAW_REDIS_PASSWORD")/" \
    -e "s/@KEDA_PASSWORD_SHA256@/$(sha "$KEDA_REDIS_PASSWORD")/" \
    -e "s/@ADMIN_PASSWORD_SHA256@/$(sha "$ADMIN_REDIS_PASSWORD")/" \
    -e "/^#/d" -e "/^$/d" "$here/users.acl.template"
