#!/usr/bin/env bash
# A tour of EventoDB's HTTP API with curl and jq: create a namespace, write with optimistic
# concurrency, read a stream and a category, subscribe, list, and delete the namespace again.
# Every call is described in docs/API.md.
#
#   EVENTODB_URL=http://localhost:8080 EVENTODB_ADMIN_TOKEN=ns_ZGVmYXVsdA_... \
#       examples/curl_session.sh
#
# EVENTODB_ADMIN_TOKEN is the token the server printed at start-up (the default namespace's).
set -euo pipefail

URL="${EVENTODB_URL:-http://localhost:8080}"
ADMIN_TOKEN="${EVENTODB_ADMIN_TOKEN:?set EVENTODB_ADMIN_TOKEN to the token the server printed}"
NAMESPACE="curl-example-$$"

# rpc TOKEN REQUEST: one JSON-RPC call; prints the answer (a result or an error envelope).
rpc() {
    curl -sS "$URL/rpc" -H "Authorization: Bearer $1" -d "$2"
    echo
}

step() {
    printf '\n# %s\n' "$*"
}

step "Create the namespace $NAMESPACE with the admin token, and keep its token"
TOKEN=$(rpc "$ADMIN_TOKEN" "[\"ns.create\", \"$NAMESPACE\", {\"description\": \"curl tour\"}]" |
    jq -r .token)
echo "token: ${TOKEN:0:20}..."

step "Open account-1, then deposit only if nothing else was written since (expectedVersion 0)"
rpc "$TOKEN" '["stream.write", "account-1", {"type": "Opened", "data": {"owner": "Ada"}}]'
rpc "$TOKEN" '["stream.write", "account-1", {"type": "Deposited", "data": {"amount": 10}}, {"expectedVersion": 0}]'

step "The same expectation again is refused: the stream is at version 1 now"
rpc "$TOKEN" '["stream.write", "account-1", {"type": "Deposited", "data": {"amount": 10}}, {"expectedVersion": 0}]'

step "Open account-2"
rpc "$TOKEN" '["stream.write", "account-2", {"type": "Opened", "data": {"owner": "Grace"}}]'

step "Read account-1, its last message and its version"
rpc "$TOKEN" '["stream.get", "account-1"]'
rpc "$TOKEN" '["stream.last", "account-1"]'
rpc "$TOKEN" '["stream.version", "account-1"]'

step "Read the category, then only the share of consumer 0 of a group of 2"
rpc "$TOKEN" '["category.get", "account"]'
rpc "$TOKEN" '["category.get", "account", {"consumerGroup": {"member": 0, "size": 2}}]'

step "Subscribe to the category for two seconds: a poke for every message, then live ones"
curl -sN --max-time 2 "$URL/subscribe?category=account&token=$TOKEN" || [ $? -eq 28 ]

step "Streams and categories of the namespace"
rpc "$TOKEN" '["ns.streams"]'
rpc "$TOKEN" '["ns.categories"]'

step "Delete the namespace and everything in it"
rpc "$ADMIN_TOKEN" "[\"ns.delete\", \"$NAMESPACE\"]"
