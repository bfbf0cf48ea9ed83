#!/usr/bin/env bash
# Posts the example Supabase webhook payloads to a running agent and prints each response:
# a note INSERT, a note UPDATE, a batch days UPDATE, a request with a wrong secret, and a
# malformed request.
#
#   SYNCBRIDGE_URL=http://127.0.0.1:3000 SUPABASE_WEBHOOK_SECRET=... examples/post-webhooks.sh
#
# The first three need the sample schema's aligner set 1 and batch 1 in SQL Server to apply;
# the agent accepts them (200) either way and the inbox keeps retrying until they apply.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
url=${SYNCBRIDGE_URL:-http://127.0.0.1:3000}/api/sync/webhook
secret=${SUPABASE_WEBHOOK_SECRET:?set SUPABASE_WEBHOOK_SECRET to the webhook secret of the agent}

post() {
    local name=$1 auth=$2 file=$3
    printf '%-22s ' "$name"
    curl -sS -o /dev/stdout -w '  -> HTTP %{http_code}\n' -X POST "$url" \
        -H "Content-Type: application/json" -H "Authorization: Bearer $auth" \
        --data-binary "@$here/webhooks/$file"
}

post "note INSERT" "$secret" note-insert.json
post "note UPDATE" "$secret" note-update.json
post "batch days UPDATE" "$secret" batch-days-update.json
post "wrong secret" "not-the-secret" note-insert.json
post "malformed JSON" "$secret" malformed.json
