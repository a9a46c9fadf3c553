"""snapshot_differences across roles and snapshot_failures: the preflight consistency rows."""

from __future__ import annotations

from ansible_collections.ascend_ops.vllm.plugins.filter.snapshot import (
    FilterModule, snapshot_differences, snapshot_failures)

MATTER = ("driver", "cann", "image", "weights")
ACROSS = ("driver", "cann", "image")
FIXES = {"driver": "install on {host} the driver the other {role} hosts run ({expected})",
         "weights": "copy the {role} checkpoint to {host}"}
KNOWN = {"cann": "F11", "weights": "F2"}


def snap(version="25.2.1", cann="8.3.RC1", **extra):
    return dict({"driver": {"Version": version}, "cann": {"version": cann}, "kernel": "6.1"}, **extra)


def cluster(**odd):
    """1P3D-like: p0, p1 prefill; d0..d3 decode; ``odd`` replaces a host's snapshot."""
    snaps = {h: snap() for h in ("p0", "p1", "d0", "d1", "d2", "d3")}
    snaps.update(odd)
    roles = {h: "prefill" if h.startswith("p") else "decode" for h in snaps}
    return snaps, roles


def test_both_filters_are_registered():
    assert set(FilterModule().filters()) == {"snapshot_differences", "snapshot_failures"}


def test_without_across_the_rows_are_per_role_only():
    snaps, roles = cluster(p0=snap("23.0.7"), p1=snap("23.0.7"))
    assert snapshot_differences(snaps, roles, MATTER) == []


def test_roles_that_agree_inside_but_not_with_each_other_get_one_row():
    snaps, roles = cluster(p0=snap("23.0.7"), p1=snap("23.0.7"))
    rows = snapshot_differences(snaps, roles, MATTER, ACROSS)
    assert [(r["role"], r["key"], r["odd"], r["matters"]) for r in rows] == [
        ("prefill+decode", "driver.Version", ["p0", "p1"], True)]


def test_a_role_difference_is_not_reported_twice():
    """The odd decode host is reported per role (as snapshot.yml always did), not again across roles."""
    snaps, roles = cluster(d3=snap("25.2.0"))
    rows = snapshot_differences(snaps, roles, MATTER, ACROSS)
    assert [(r["role"], r["key"], r["odd"]) for r in rows] == [("decode", "driver.Version", ["d3"])]


def test_keys_outside_across_are_compared_per_role_only():
    """Prefill and decode may run other kernels and other copies (paths, variants) of the weights."""
    prefill = snap(kernel="5.10", weights={"a": "1"})
    decode = snap(weights={"a": "2"})
    snaps, roles = cluster(p0=prefill, p1=prefill, d0=decode, d1=decode, d2=decode, d3=decode)
    assert snapshot_differences(snaps, roles, MATTER, ACROSS) == []


def test_one_failure_per_odd_host_names_seen_expected_and_fix():
    snaps, roles = cluster(d2=snap("25.2.0"))
    rows = snapshot_differences(snaps, roles, MATTER, ACROSS)
    assert snapshot_failures(rows, FIXES, KNOWN) == [{
        "host": "d2", "check": "driver.Version same on every decode host", "f": "consistency",
        "seen": "25.2.0", "expected": "25.2.1 (as on d0, d1, d3)",
        "fix": "install on d2 the driver the other decode hosts run (25.2.1)"}]


def test_cann_names_f11_and_info_rows_fail_nothing():
    snaps, roles = cluster(d0=snap(cann="8.2.RC1", kernel="6.2"))
    rows = snapshot_differences(snaps, roles, MATTER, ACROSS)
    assert {r["key"] for r in rows} == {"cann.version", "kernel"}
    failures = snapshot_failures(rows, FIXES, KNOWN)
    assert [(f["host"], f["check"], f["f"], f["seen"]) for f in failures] == [
        ("d0", "cann.version same on every decode host", "F11", "8.2.RC1")]
    assert failures[0]["fix"] == "give every decode host the same cann.version"


def test_without_a_majority_every_host_is_named():
    snaps = {"p0": snap("23.0.7"), "p1": snap("25.2.1")}
    rows = snapshot_differences(snaps, dict.fromkeys(snaps, "prefill"), MATTER, ACROSS)
    failures = snapshot_failures(rows, FIXES, KNOWN)
    assert [f["host"] for f in failures] == ["p0", "p1"]
    assert failures[0]["expected"] == "one value on every prefill host (none is held by most: p0 23.0.7, p1 25.2.1)"
    assert failures[0]["fix"] == "install on p0 the driver the other prefill hosts run (no value is held by most)"


def test_absent_values_are_left_out_where_the_deploy_brings_them():
    """An image not pulled yet on most hosts: the one host that has it is not the odd one."""
    snaps, roles = cluster()
    for host in ("d0", "d1", "d2"):
        snaps[host]["image"] = "<missing: Error: No such image: vllm-ascend:v0.20.2rc1>"
    snaps["d3"]["image"] = "sha256:aaa"
    rows = snapshot_differences(snaps, roles, MATTER, ACROSS)
    assert [r["odd"] for r in rows if r["role"] == "decode"] == [["d3"]]
    assert snapshot_failures(rows, FIXES, KNOWN, absent_ok=["image"]) == []
    assert [f["host"] for f in snapshot_failures(rows, FIXES, KNOWN)] == ["d3"]
    # Two digests among the hosts that have the image still fail.
    snaps["d2"]["image"] = "sha256:bbb"
    rows = snapshot_differences(snaps, roles, MATTER, ACROSS)
    assert [f["host"] for f in snapshot_failures(rows, FIXES, KNOWN, absent_ok=["image"])] == ["d2", "d3"]


def test_weights_give_one_failure_per_host_naming_the_files():
    manifest = {f"model-{i:05d}.safetensors": f"{i:064x}" for i in range(5)}
    snaps, roles = cluster()
    for host in ("d0", "d1", "d2", "d3"):
        snaps[host]["weights"] = dict(manifest)
    snaps["d1"]["weights"] = {n: ("f" * 64 if i < 4 else s) for i, (n, s) in enumerate(manifest.items())}
    del snaps["d3"]["weights"]["model-00004.safetensors"]
    rows = snapshot_differences(snaps, roles, MATTER, ACROSS)
    failures = snapshot_failures(rows, FIXES, KNOWN, absent_ok=(), group=["weights"])
    assert [(f["host"], f["check"], f["f"]) for f in failures] == [
        ("d1", "weights same on every decode host", "F2"), ("d3", "weights same on every decode host", "F2")]
    assert failures[0]["seen"] == ("4 files differ: model-00000.safetensors (sha256 ffffffffffff), "
                                   "model-00001.safetensors (sha256 ffffffffffff), "
                                   "model-00002.safetensors (sha256 ffffffffffff), +1 more")
    assert failures[0]["expected"] == "the same files and sha256 (as on d0, d2, d3)"
    assert failures[0]["fix"] == "copy the decode checkpoint to d1"
    assert failures[1]["seen"] == "1 file differs: model-00004.safetensors (missing)"
    # A file not downloaded yet is not a failure when the deploy downloads it.
    assert [f["host"] for f in snapshot_failures(rows, FIXES, KNOWN, absent_ok=["weights"], group=["weights"])] == ["d1"]


def test_weights_directory_missing_is_left_out():
    snaps, roles = cluster()
    for host in ("d0", "d1", "d2"):
        snaps[host]["weights"] = {"a.safetensors": "1" * 64}
    snaps["d3"]["weights"] = "<missing>"
    rows = snapshot_differences(snaps, roles, MATTER, ACROSS)
    assert snapshot_failures(rows, FIXES, KNOWN, absent_ok=["weights"], group=["weights"]) == []
