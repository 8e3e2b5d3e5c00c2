"""Host templating and inventory groups (lifecycle.md §4.7)."""

import pytest

from stackl import errors
from stackl.domain import hostnames
from stackl.domain.hostnames import Counters


def test_the_spec_example_two_replicas_of_two_hosts() -> None:
    counters = Counters()
    template = "bru-app{ri}-{counter(app, 8000)}"
    first = hostnames.host_names(template, replica=0, count=2, counters=counters)
    second = hostnames.host_names(template, replica=1, count=2, counters=counters)
    assert first == ["bru-app01-8000", "bru-app01-8001"]
    assert second == ["bru-app02-8002", "bru-app02-8003"]
    assert counters.changed() == {"app": 8004}


def test_host_index_is_two_digits_at_least_and_one_value_per_name() -> None:
    counters = Counters({"web pool": 41})
    names = hostnames.host_names(
        "w{hi}-{counter(web pool, 1)}-{counter( web pool ,1)}", replica=0, count=1, counters=counters
    )
    assert names == ["w01-41-41"]
    assert hostnames.render("h{hi}", replica=0, host=100, counters=counters) == "h100"


def test_existing_names_are_kept_and_trailing_ones_dropped() -> None:
    counters = Counters({"n": 10})
    kept = hostnames.host_names(
        "x{counter(n, 1)}", replica=0, count=3, existing=["a", "b"], counters=counters
    )
    assert kept == ["a", "b", "x10"]
    assert hostnames.host_names("x{hi}", replica=0, count=1, existing=["a", "b"], counters=counters) == ["a"]


def test_instances_must_be_a_count() -> None:
    assert hostnames.instances_count({}) == 1
    with pytest.raises(errors.InvalidInput):
        hostnames.instances_count({"instances": -1})
    with pytest.raises(errors.InvalidInput):
        hostnames.instances_count({"instances": True})


def test_inventory_groups_take_hosts_in_order_and_leftovers_go_to_the_default() -> None:
    hosts = [("h1", "t1"), ("h2", "t1"), ("h3", "t2")]
    params = {
        "stackl_inventory_groups": [
            {"tags": ["masters", "etcd"], "count": 1},
            {"tags": ["workers"], "count": 1},
        ],
        "default_inventory_group": "spare",
    }
    assert hostnames.inventory_groups(params, hosts) == {
        "masters": [{"host": "h1", "target": "t1"}],
        "etcd": [{"host": "h1", "target": "t1"}],
        "workers": [{"host": "h2", "target": "t1"}],
        "spare": [{"host": "h3", "target": "t2"}],
    }
    with pytest.raises(errors.InvalidInput) as caught:
        hostnames.inventory_groups({"stackl_inventory_groups": [{"tags": "x"}]}, hosts)
    assert caught.value.errors[0]["loc"] == ["params", "stackl_inventory_groups", 0]
