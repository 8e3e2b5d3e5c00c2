# STACKL 0.5 placement contract, as a reference: which targets can host each service alias.
#
# Written in Rego v0 on purpose (`x = v { }`, partial set rules, all/any, `else = v`): it exercises the
# compatibility layer that user policies written for STACKL 0.5 rely on. STACKL's native placement
# (placement/rules.py) gives the same answers bar the differences listed in spec/lifecycle.md §3.1.
package orchestration

# Every service alias of the request.
aliases[alias] {
  input.services[alias]
}

# solutions: alias -> set of target names; an alias no target can host maps to an empty set.
solutions = result {
  result := {alias: targets |
    aliases[alias]
    targets := {name | tagged[name]; fits(alias, name)}
  }
}

# Per-alias and per-target facts are computed once, so the alias x target loop stays small: the engine has
# a statement budget per query.
# The arguments are copied into locals: regopy 1.5.2 does not see a function's parameters inside a
# comprehension (they act as fresh variables there).
fits(alias, name) {
  a := alias
  t := name
  count(needed_packages[a] - offered[t]) == 0
  all([ok | amount := needed[a][key]; ok := sufficient(amount, capacity[t], key)])
}

# A requirement fits when it is at most what the target declares; an undeclared (or unparsable) resource
# passes.
sufficient(amount, available, key) = ok {
  ok := amount <= available[key]
} else = true {
  not available[key]
}

needed[alias] = amounts {
  service := input.services[alias]
  amounts := {key: size | value := service.resource_requirements[key]; size := bytes(value)}
}

capacity[name] = amounts {
  target := input.infrastructure_targets[name]
  amounts := {key: size | value := target.resources[key]; size := bytes(value)}
}

bytes(value) = units.parse_bytes(sprintf("%v", [value]))

# STACKL 0.5 required every functional requirement among the target's packages, even when the target
# lists none (the native check lets an empty list pass: a deliberate difference).
needed_packages[alias] = names {
  service := input.services[alias]
  names := {fr | service.functional_requirements[fr]}
}

offered[name] = names {
  target := input.infrastructure_targets[name]
  names := {package_name | package_name := target.packages[_]}
}

# Targets whose tags match: a required tag other than "all" must not differ from the target's value; a
# target lacking the tag passes.
tagged[name] {
  target := input.infrastructure_targets[name]
  not any([differs | wanted := required_tags[tag]; wanted != "all"; differs := target.tags[tag] != wanted])
}

required_tags = tags {
  tags := input.required_tags
} else = {} {
  true
}
