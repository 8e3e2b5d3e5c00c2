# The shipped authorization policy (spec/api.md §B.8). A policy template named `authorization` replaces it:
# copy this file as the starting point (`stackl apply` a policy_template whose `policy` is this text).
#
# Input: {subject, roles, token_id, agent, method, path, action, resource: {type, name}, environments}.
# `allow` decides; the set `reasons` explains a refusal (the 403's `reasons`).
package authorization

import rego.v1

default allow := false

# Document types, and the other resources, an operator may change (viewer + these writes).
operator_types := {
	"functional_requirement", "service", "stack_application_template",
	"stack_instance", "snapshot", "outputs", "task",
}

# Resources only an admin may read.
private_types := {"token", "audit"}

readers := {"viewer", "operator"}

writes := {"create", "update", "delete", "restore"}

allow if "admin" in input.roles

allow if {
	some role in input.roles
	role in readers
	input.action == "read"
	not input.resource.type in private_types
}

allow if {
	some role in input.roles
	role in readers
	input.action in {"plan", "evaluate"}
}

allow if {
	"operator" in input.roles
	input.action in writes
	input.resource.type in operator_types
}

allow if {
	"operator" in input.roles
	input.action == "cancel"
}

# An agent token acts for its own agent name only.
allow if {
	"agent" in input.roles
	input.action in {"register", "report"}
	input.resource.type == "agent"
	input.resource.name == input.agent
}

reasons contains msg if {
	not allow
	count(input.roles) == 0
	msg := "no role"
}

reasons contains msg if {
	not allow
	"agent" in input.roles
	input.resource.type == "agent"
	input.resource.name != input.agent
	msg := sprintf("an agent token for '%s' may not act for agent '%s'", [input.agent, input.resource.name])
}

reasons contains msg if {
	not allow
	some role in input.roles
	msg := sprintf("role %s may not %s %s", [role, input.action, input.resource.type])
}
