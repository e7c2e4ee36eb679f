#!/usr/bin/env bash
# Protect the GitHub environment the key-rotation workflow runs in: only the `main` branch may
# deploy to it, and a run waits for one of the named reviewers. The federated credential of the
# pipeline's service principal trusts this environment's subject
# (repo:<owner>/<repo>:environment:tokenvault-production), so these rules are what stand
# between write access to the repository and the right to rotate keys.
#
#   infra/pipelines/github-environment.sh <owner>/<repo> <reviewer login> [<reviewer login> ...]
#
# Needs the GitHub CLI signed in as a repository admin. REST reference:
# https://docs.github.com/rest/deployments/environments#create-or-update-an-environment
# https://docs.github.com/rest/deployments/branch-policies#create-a-deployment-branch-policy
set -euo pipefail

ENVIRONMENT=tokenvault-production
repo=${1:?usage: github-environment.sh <owner>/<repo> <reviewer login>...}
shift
[ "$#" -ge 1 ] || { echo "name at least one reviewer" >&2; exit 2; }

reviewers=()
for login in "$@"; do
  id=$(gh api "users/$login" --jq .id)
  reviewers+=("{\"type\":\"User\",\"id\":$id}")
done
joined=$(IFS=,; echo "${reviewers[*]}")

# Required reviewers, and custom branch policies (the list below), not "any branch".
gh api --method PUT "repos/$repo/environments/$ENVIRONMENT" --input - <<JSON
{"wait_timer": 0,
 "prevent_self_review": true,
 "reviewers": [$joined],
 "deployment_branch_policy": {"protected_branches": false, "custom_branch_policies": true}}
JSON

# The one branch allowed to deploy to the environment.
existing=$(gh api "repos/$repo/environments/$ENVIRONMENT/deployment-branch-policies" \
  --jq '[.branch_policies[] | select(.type == "branch") | .name] | join(" ")')
case " $existing " in
  *" main "*) ;;
  *) gh api --method POST "repos/$repo/environments/$ENVIRONMENT/deployment-branch-policies" \
       -f name=main -f type=branch >/dev/null ;;
esac
echo "environment $ENVIRONMENT of $repo: branch main only, reviewers: $*"
