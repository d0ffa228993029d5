#!/bin/sh
# Scheduled master-key rotation, as a CI job runs it (see github-actions.yml):
#
#   1. terraform plan of the declared key (`npm run plan`, i.e. node dist/scripts/tf.js plan)
#      with -detailed-exitcode: 0 = nothing changed, 2 = a change. The example app declares
#      the key through terraform-provider-masterkey, which reads the database and the config
#      files at plan time: a change is a rotation due (a new rotation-policy window started,
#      or the generation was raised), a node's config out of step, or no state yet;
#   2. on a change, terraform apply: the provider rotates in-process (the same code as
#      `master-key apply`), only when the key is due;
#   3. the gate: `master-key status --max-age` fails the job (exit 11) if the key is still
#      older than the policy allows, and (exit 10) if a rotation was interrupted.
#
# Needs node and terraform on PATH, the project built (npm ci && npm run build), and:
#   DATABASE_URL  the server's database (from the pipeline's secrets; never printed)
#   MK_CONFIG     the server's config file(s), comma-separated (the example app's setting);
#                 ssh://[user@]host[:port]/path for one on another host, reached with the agent
#                 at SSH_AUTH_SOCK and MK_HOST_KEY (or MK_KNOWN_HOSTS, MK_PRIVATE_KEY_FILE)
#   MAX_AGE       the oldest key the gate allows (default 90d; d, w, h or y)
# plus any other MK_* setting of the example app (main.ts), e.g. MK_POLICY_DAYS, MK_STATE_FILE.
# Keep terraform's state between runs (MK_STATE_FILE on storage the runs share, or a remote
# backend): without it every run applies, which is still safe, since the provider itself
# rotates only when the key is due. (MK_RESOURCE=terraform_data declares the key as
# terraform_data + local-exec running `master-key apply` instead; the plan then only sees
# the declared generation and policy window.)
set -eu
cd "$(dirname "$0")/../.."

rc=0
node dist/scripts/tf.js plan -detailed-exitcode || rc=$?
case "$rc" in
  0) echo "scheduled rotation: the plan shows no change; nothing to apply." ;;
  2) echo "scheduled rotation: the plan shows a change; applying (the rotation script rotates only when due)."
     node dist/scripts/tf.js apply -auto-approve ;;
  *) echo "scheduled rotation: terraform plan failed (exit $rc)." >&2
     exit "$rc" ;;
esac

set --
old_ifs=$IFS
IFS=,
for config in ${MK_CONFIG:-.mk-work/act.env}; do set -- "$@" --config "$config"; done
IFS=$old_ifs
# A node on another host (ssh://…): the same SSH settings as the example app's.
[ -n "${MK_KNOWN_HOSTS:-}" ] && set -- "$@" --known-hosts "$MK_KNOWN_HOSTS"
[ -n "${MK_HOST_KEY:-}" ] && set -- "$@" --host-key "$MK_HOST_KEY"
[ -n "${MK_PRIVATE_KEY_FILE:-}" ] && set -- "$@" --private-key-file "$MK_PRIVATE_KEY_FILE"
node dist/src/cli/main.js status --max-age "${MAX_AGE:-90d}" "$@"
