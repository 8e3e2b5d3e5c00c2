# STACKL 0.5 replica selection, as a reference: the first N candidate targets of each service alias.
#
# Input: {"parameters": {"services": {alias: count}}, "services": {alias: [target, ...]}} (a service may also
# be given as {"targets": [...]}). Written in Rego v0 on purpose, like orchestration.rego.
package replicas

wanted[alias] = n {
  n := input.parameters.services[alias]
}

candidates(alias) = targets {
  targets := input.services[alias].targets
} else = targets {
  targets := input.services[alias]
  is_array(targets)
} else = [] {
  true
}

# Aliases without enough candidates for their replica count.
short[alias] {
  n := wanted[alias]
  count(candidates(alias)) < n
}

solutions = {"fulfilled": true, "services": chosen} {
  count(short) == 0
  chosen := {alias: array.slice(candidates(alias), 0, n) | n := wanted[alias]}
}

solutions = {"fulfilled": false, "msg": msg} {
  count(short) > 0
  msg := sprintf("Not enough targets for services %v", [short])
}
