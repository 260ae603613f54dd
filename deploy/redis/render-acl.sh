#!/bin/sh
# Render users.acl.template with the passwords from the environment (never from arguments, which
# other users of the host can read in the process list) and print the ACL file on stdout:
#
#   WORKER_REDIS_PASSWORD=... INGRESS_REDIS_PASSWORD=... MONITOR_REDIS_PASSWORD=... \
#   CONSOLE_REDIS_PASSWORD=... OPERATOR_REDIS_PASSWORD=... READER_REDIS_PASSWORD=... \
#   KEDA_REDIS_PASSWORD=... ADMIN_REDIS_PASSWORD=... \
#       deploy/redis/render-acl.sh > deploy/secrets/users.acl
#
# Optional: SAW_KEY_PREFIX (default saw: SUBACCOUNT_WORKER_KEY_PREFIX), SAW_QUEUE_NAME (default
# subaccount-events: SUBACCOUNT_WORKER_QUEUE_NAME), SAW_NOTIFY_QUEUE_NAME (default
# credit-notifications: SUBACCOUNT_WORKER_NOTIFY_QUEUE_NAME), REDIS_VERSION (default 7.4; below
# 7.2 the WAITAOF command, which such a server does not know, is left out).
# Generate a password: python3 -c "import secrets; print(secrets.token_urlsafe(32))"
# Each process's URL then carries its own user (docs/redis-users.md), e.g. the worker's:
#   SUBACCOUNT_WORKER_REDIS_URL=redis://saw-worker:<WORKER_REDIS_PASSWORD>@redis:6379/0
# (URL-encode a password holding characters other than letters, digits, '-' and '_').
set -eu
here=$(dirname "$0")
sha() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
need() { eval "v=\${$1:-}"; [ -n "$v" ] || { echo "render-acl.sh: set $1 ($2)" >&2; exit 2; }; }
need WORKER_REDIS_PASSWORD "the event workers' user, saw-worker"
need INGRESS_REDIS_PASSWORD "the ingress's user, saw-ingress"
need MONITOR_REDIS_PASSWORD "the credits monitor's user, saw-monitor"
need CONSOLE_REDIS_PASSWORD "the console's user, saw-console"
need OPERATOR_REDIS_PASSWORD "the operator CLI's user, saw-operator"
need READER_REDIS_PASSWORD "the read-only user, saw-reader"
need KEDA_REDIS_PASSWORD "KEDA's scaler; any long random value if unused"
need ADMIN_REDIS_PASSWORD "operators' admin user"
prefix=${SAW_KEY_PREFIX:-saw}
queue=${SAW_QUEUE_NAME:-subaccount-events}
notify_queue=${SAW_NOTIFY_QUEUE_NAME:-credit-notifications}
case "$prefix$queue$notify_queue" in *[!A-Za-z0-9_.-]*) echo "render-acl.sh: prefix and queue name: letters, digits, . _ - only" >&2; exit 2 ;; esac
waitaof=" +waitaof"
case "${REDIS_VERSION:-7.4}" in [0-6].* | 7.[01] | 7.[01].*) waitaof="" ;; esac
sed -e "/^#/d" -e "/^$/d" \
    -e "s/ +waitaof/$waitaof/" \
    -e "s/~saw:/~$prefix:/g" \
    -e "s/@QUEUE@/$queue/g" \
    -e "s/@NOTIFY_QUEUE@/$notify_queue/g" \
    -e "s/@WORKER_PASSWORD_SHA256@/$(sha "$WORKER_REDIS_PASSWORD")/" \
    -e "s/@INGRESS_PASSWORD_SHA256@/$(sha "$INGRESS_REDIS_PASSWORD")/" \
    -e "s/@MONITOR_PASSWORD_SHA256@/$(sha "$MONITOR_REDIS_PASSWORD")/" \
    -e "s/@CONSOLE_PASSWORD_SHA256@/$(sha "$CONSOLE_REDIS_PASSWORD")/" \
    -e "s/@OPERATOR_PASSWORD_SHA256@/$(sha "$OPERATOR_REDIS_PASSWORD")/" \
    -e "s/@READER_PASSWORD_SHA256@/$(sha "$READER_REDIS_PASSWORD")/" \
    -e "s/@KEDA_PASSWORD_SHA256@/$(sha "$KEDA_REDIS_PASSWORD")/" \
    -e "s/@ADMIN_PASSWORD_SHA256@/$(sha "$ADMIN_REDIS_PASSWORD")/" \
    "$here/users.acl.template"
