from stackl.policy import compat, regopy_rewrite

SIT = """package allowedrepositories
infringement[{"msg": msg}] {
  inv := input.services[_].functional_requirements[fr][_]
  ok := [r | r := input.parameters.repositories[_]; startswith(inv.image, r)]
  not any(ok)
  msg := sprintf("functional requirement %v uses image %v outside %v", [fr, inv.image, input.parameters.repositories])
}
"""


def _rewrite(source: str) -> compat.Rewrite:
    return regopy_rewrite.rewrite(compat.scan(source))


def test_partial_set_rule_becomes_contains_and_keeps_lines() -> None:
    out = _rewrite(SIT)
    lines = out.text.splitlines()
    assert lines[1] == 'infringement contains {"msg": msg}  if {'
    assert lines[4] == "  not __stackl_any(ok)"
    assert out.text.count("\n") - SIT.count("\n") == 1  # only the appended helper line
    assert lines[: SIT.count("\n")][2] == SIT.splitlines()[2]


def test_partial_objects_functions_and_v1_modules_are_untouched() -> None:
    source = "package p\nobj[k] = v { k := 1; v := 2 }\nf(x) = y { y := x }\ng[k] := 1 { k := 2 }\n"
    assert _rewrite(source).text == source
    v1 = "package p\nimport rego.v1\ndeny[x] { x := all([]) }\n"
    assert _rewrite(v1).text == v1


def test_strings_comments_and_longer_identifiers_are_untouched() -> None:
    source = 'package p\n# all(x) here\nx := "all(y) any(z)"\ny := all_services(1)\nz := `any(q)`\n'
    assert _rewrite(source).text == source


def test_multi_line_head_and_if_form() -> None:
    source = 'package p\ndeny[{\n  "msg": m\n}] {\n  m := "x"\n}\nwarn[m] if { m := 1 }\n'
    out = _rewrite(source).text
    assert out.count("\n") == source.count("\n")
    assert out.startswith('package p\ndeny contains {\n  "msg": m\n}  if {')
    assert "warn contains m  if { m := 1 }" in out


def test_offsets_map_back_to_the_original() -> None:
    source = "package p\ndeny[m] { m := all([1]) }\n"
    out = _rewrite(source)
    position = out.text.index("[1]")
    assert out.to_original(position) == source.index("[1]")
    assert compat.line_col(source, out.to_original(position)) == (2, 20)


def test_scan_finds_rules_functions_and_sets() -> None:
    module = compat.scan(SIT + "default allow = false\napproved(x) { x }\nfilter contains y if { y := 1 }\n")
    assert module.package == "allowedrepositories"
    assert module.rules == {"infringement", "allow", "filter"}
    assert module.functions == {"approved"}
    assert module.set_rules == {"infringement", "filter"}


def test_problems_name_package_imports_and_builtins() -> None:
    source = "package other\nimport data.x\nimport future.keywords.in\ny := http.send({})\nz := net.cidr_merge([])\n"
    found = [compat.describe(source, p) for p in compat.problems(compat.scan(source), name="mine")]
    assert found == [
        "line 1:1: package other must be the template name mine",
        "line 2:1: import data.x is not allowed (only rego.v1 and future.keywords[.x])",
        "line 4:6: builtin http.send is not available in this engine",
        "line 5:6: builtin net.cidr_merge is not available in this engine",
        "the policy defines none of solutions, infringement, filter, allow",
    ]


def test_unknown_functions_need_the_engine_builtin_list() -> None:
    module = compat.scan("package p\nallow { foo(1); count([]) == 0; all([]) }\n")
    assert compat.problems(module, name="p") == []
    found = compat.problems(module, name="p", is_builtin=lambda n: n == "count")
    assert [p.message for p in found] == ["unknown function foo"]


def test_engine_error_is_located_in_the_original_source() -> None:
    source = 'package p\ndeny[m] { m := "é" + }\n'
    out = _rewrite(source)
    offset = len(out.text[: out.text.index("+")].encode())
    text = f"(rego-errorseq\n  (error 1:p|{offset}|1\n    (errormsg 27:Invalid arithmetic operator)))"
    assert compat.engine_error(text, out) == "line 2:20: Invalid arithmetic operator"


def test_normalise_object_encoded_sets() -> None:
    encoded = {'{"msg":"x"}': True, "plain": True, "1": True}
    assert compat.normalise(encoded, partial_set=True) == [{"msg": "x"}, "plain", 1]
    assert compat.normalise(encoded) == encoded
    assert compat.normalise({"a": 1}, partial_set=True) == {"a": 1}
    assert compat.normalise_package({"deny": {"a": True}, "x": {"b": True}}, frozenset({"deny"})) == {
        "deny": ["a"],
        "x": {"b": True},
    }


def test_count_expressions() -> None:
    assert compat.count_expressions("x := 1; y := [1; 2]") == 2
    assert compat.count_expressions('data.p.x\n"a;b"\n') == 2
    assert compat.count_expressions("data.p.x") == 1


def test_wildcard_call_arguments_are_bound_first_on_the_same_line() -> None:
    source = (
        "package p\n"
        "approved(image) { startswith(image, input.prefixes[_]) }\n"
        "deny[m] {\n"
        "  x := input.xs[_]\n"
        "  not startswith(x, input.p[_])\n"
        '  m := sprintf("%v", [input.q[_]])\n'
        "  endswith(x, input.s[_].suffix)\n"
        "}\n"
    )
    text = regopy_rewrite.rewrite(compat.scan(source)).text
    lines = text.splitlines()
    assert lines[1] == "approved(image) { __stackl_w1 := input.prefixes[_]; startswith(image, __stackl_w1) }"
    assert lines[4] == "  not startswith(x, input.p[_])"  # negated: binding first would change the meaning
    assert lines[5] == '  m := sprintf("%v", [input.q[_]])'  # not a statement of its own
    assert lines[6] == "  __stackl_w2 := input.s[_].suffix; endswith(x, __stackl_w2)"
    assert len(lines) == len(source.splitlines())


# The three formulations of STACKL 0.5's `allowedrepositories` policy (issue 13), as users wrote them.
FORMULATIONS = (
    "satisfied := [good | repo = input.parameters.repositories[_]; good = startswith(inv.image, repo)]",
    "satisfied := [good | good := startswith(inv.image, input.parameters.repositories[_])]",
    "satisfied := [good | repo := input.parameters.repositories[_]; good := startswith(inv.image, repo)]",
)


def _rule(line: str) -> str:
    return f"package p\ndeny[m] {{\n  inv := input.x[_]\n  {line}\n  not any(satisfied)\n  m := 1\n}}\n"


def test_fresh_variable_unified_with_a_call_in_a_comprehension_becomes_an_assignment() -> None:
    out = _rewrite(_rule(FORMULATIONS[0])).text.splitlines()[3]
    assert out == (
        "  satisfied := [good | repo = input.parameters.repositories[_]; good := startswith(inv.image, repo)]"
    )
    # `inv` is bound before the comprehension: `inv = f(x)` there compares, and stays as it is
    bound = _rewrite(_rule("s := [1 | inv = lower(input.y)]")).text.splitlines()[3]
    assert bound == "  s := [1 | inv = lower(input.y)]"


def test_wildcard_argument_of_an_assigned_call_is_bound_first() -> None:
    out = _rewrite(_rule(FORMULATIONS[1])).text.splitlines()[3]
    assert out == (
        "  satisfied := [good | __stackl_w1 := input.parameters.repositories[_]; "
        "good := startswith(inv.image, __stackl_w1)]"
    )
    rule_body = _rewrite("package p\nallow { ok := startswith(input.i, input.p[_]) }\n").text
    assert "allow { __stackl_w1 := input.p[_]; ok := startswith(input.i, __stackl_w1) }" in rule_body
    negated = "package p\nallow { not startswith(input.i, input.p[_]) }\n"
    assert _rewrite(negated).text == negated


def test_a_head_calling_a_function_moves_into_the_body() -> None:
    source = _rule("satisfied := [startswith(inv.image, r) | r := input.repos[_]]")
    out = _rewrite(source)
    line = out.text.splitlines()[3]
    assert (
        line == "  satisfied := [__stackl_h1 | r := input.repos[_]; __stackl_h1 := startswith(inv.image, r)]"
    )
    assert out.text.count("\n") == source.count("\n") + 1  # the any() helper only
    # an error inside the moved call points at the call in the user's source
    moved = out.text.index("startswith")
    assert out.to_original(moved) == source.index("startswith")
    object_head = "package p\nx := {k: lower(k) | k := input.ks[_]}\n"
    assert _rewrite(object_head).text == object_head


def test_the_scanner_knows_set_and_stops_a_call_at_a_line_break() -> None:
    module = compat.scan("package p\nallow { s := set(); count(s) == 0 }\n")
    assert compat.problems(module, is_builtin=lambda name: name == "count") == []
    # `x` then `(1)` on the next line is not a call of `x`
    split = compat.scan("package p\nallow {\n  x := 1\n  y := x\n  (1 + 1) == 2\n}\n")
    assert [name for name, _ in compat.calls(split)] == []


def test_deprecated_builtins_and_a_parenthesis_on_the_next_line() -> None:
    source = (
        'package p\nr = [re_match("a", "b"), set_diff({1}, {2})]\nallow {\n  input.x\n  (1 + 1) == 2\n}\n'
    )
    out = _rewrite(source).text.splitlines()
    assert out[1] == 'r = [regex.match("a", "b"), __stackl_set_diff({1}, {2})]'
    assert out[3] == "  input.x;"  # OPA ends the expression at the line break; regopy would call input.x
    assert out[4] == "  (1 + 1) == 2"
    assert out[-1] == "__stackl_set_diff(a, b) = r { r := a - b }"
