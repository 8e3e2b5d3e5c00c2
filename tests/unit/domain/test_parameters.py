"""The parameter and secret precedence of lifecycle.md §2, on the worked example of §2.1."""

from stackl.domain import parameters

TARGET = {"domain": "example.com", "log_level": "debug", "dns_servers": ["10.0.0.2"], "vlan": 120}
FRS: list[dict[str, object]] = [
    {"nginx_version": "1.24", "listen_port": 80},
    {"listen_port": 8080, "tls": False},
]
SERVICE = {"tls": True, "workers": 2}
INSTANCE = {"log_level": "warning", "owner": "team-a"}
ALIAS = {"workers": 4}
OUTPUTS = {"stackl_hostname": "bru-web{hi}"}


def test_target_layers_merge_environment_location_zone_shallowly() -> None:
    merged = parameters.merge(
        {"domain": "example.com", "log_level": "info"},
        {"dns_servers": ["10.0.0.2"]},
        {"vlan": 120, "log_level": "debug"},
    )
    assert merged == TARGET


def test_worked_example_layers_1_to_10() -> None:
    params = parameters.replica_params(TARGET, FRS, SERVICE, INSTANCE, ALIAS, OUTPUTS)
    params = parameters.with_machine_names(params, ["bru-web01"])
    params = parameters.dispatch_params(params, {"db_host": "10.20.0.15"}, None)
    assert params == {
        "domain": "example.com",
        "log_level": "warning",
        "dns_servers": ["10.0.0.2"],
        "vlan": 120,
        "nginx_version": "1.24",
        "listen_port": 8080,
        "tls": True,
        "workers": 4,
        "owner": "team-a",
        "stackl_hostname": "bru-web{hi}",
        "machine_names": ["bru-web01"],
        "db_host": "10.20.0.15",
    }


def test_policy_input_params_are_layers_4_to_7() -> None:
    assert parameters.service_params(FRS, SERVICE, INSTANCE, ALIAS) == {
        "nginx_version": "1.24",
        "listen_port": 8080,
        "tls": True,
        "workers": 4,
        "log_level": "warning",
        "owner": "team-a",
    }


def test_null_is_a_value_and_overrides() -> None:
    assert parameters.merge({"a": 1}, {"a": None}, None) == {"a": None}
    assert parameters.dispatch_params({"x": 1}, {"x": 2}, {"x": 3}) == {"x": 3}


def test_worked_example_secrets() -> None:
    secrets = parameters.replica_secrets(
        {"registry_token": "A"},
        [{}, {"tls_key": "B"}],
        {"tls_key": "C", "admin_password": "D"},
        {"admin_password": "E"},
        {"admin_password": "F"},
    )
    assert secrets == {"registry_token": "A", "tls_key": "C", "admin_password": "F"}
