#!/usr/bin/env bash
# Does by hand what sp_NotifyAppOfSync does, then asks for a drain and the status.
#   SYNCBRIDGE_URL=http://127.0.0.1:3000 SYNC_ADMIN_TOKEN=... examples/notify.sh
set -uo pipefail
base=${SYNCBRIDGE_URL:-http://127.0.0.1:3000}
token=${SYNC_ADMIN_TOKEN:?set SYNC_ADMIN_TOKEN to the admin token of the agent}
auth="Authorization: Bearer $token"
echo "probe:   $(curl -sS "$base/api/sync/queue-notify")"
echo "notify:  $(curl -sS -X POST -H "$auth" -H 'Content-Type: application/json' -d '{"source":"sqlserver"}' "$base/api/sync/queue-notify")"
echo "trigger: $(curl -sS -X POST -H "$auth" -H 'Content-Type: application/json' -d '{"direction":"both"}' "$base/api/sync/trigger")"
echo "status:  $(curl -sS -H "$auth" "$base/api/sync/status")"
