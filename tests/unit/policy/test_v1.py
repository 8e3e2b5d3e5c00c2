from stackl.policy import v1


def test_rule_bodies_get_if_and_partial_sets_contains_on_the_same_lines() -> None:
    source = (
        "package p\n"
        "default allow = false\n"
        'deny[{"msg": m}] { m := "x" }\n'
        "obj[k] = v { v := input.o[k] }\n"
        "f(x) = y { y := x } { y := 0 }\n"
        'size = "s" { input.n < 1 } else = "l" { true }\n'
        'v = {"a": 1}\n'
        "allow { any([input.ok]) }\n"
    )
    out = v1.convert(source)
    lines = out.text.splitlines()
    assert lines[1] == "default allow = false"
    assert lines[2] == 'deny contains {"msg": m}  if { m := "x" }'
    assert lines[3] == "obj[k] = v if { v := input.o[k] }"
    assert lines[4] == "f(x) = y if { y := x } { y := 0 }"  # a chained body has no `if` of its own
    assert lines[5] == 'size = "s" if { input.n < 1 } else = "l" if { true }'
    assert lines[6] == 'v = {"a": 1}'
    assert lines[7] == "allow if { __stackl_any([input.ok]) }"
    assert lines[8].startswith("__stackl_any(xs) := ")
    # a position in the converted text maps back to the user's line and column
    assert out.to_original(out.text.index("input.o")) == source.index("input.o")


def test_a_v1_module_is_left_as_it_is() -> None:
    source = "package p\nimport rego.v1\nallow if input.ok\n"
    assert v1.convert(source).text == source
