"""A pytest suite driving a Berth lab through berthctl's JSON (as root):
  pytest docs/examples/test_lab.py
"""
import json, os, subprocess
import pytest

LAB = os.path.join(os.path.dirname(__file__), "routed-lab.yaml")

def berthctl(*args, check=True):
    return subprocess.run(["berthctl", *args], capture_output=True, text=True, check=check)

@pytest.fixture(scope="module")
def lab():
    made = json.loads(berthctl("lab", "up", "--json", LAB).stdout)
    yield made
    berthctl("lab", "down", LAB)

def address(lab, host, network):
    h = next(h for h in lab["hosts"] if h["name"] == host)
    return next(i["address"] for i in h["interfaces"] if i["network"] == network)

def test_every_host_reaches_every_other(lab):
    report = json.loads(berthctl("lab", "check", "--json", LAB, check=False).stdout)
    assert report["missed"] == 0, [p for p in report["pairs"] if p["expected"] and not p["reached"]]
    assert len(report["pairs"]) == 12

def test_h1_goes_through_r1(lab):
    out = berthctl("lab", "exec", "routed", "h1", "--", "ip", "route", "get", address(lab, "h2", "right")).stdout
    assert f"via {address(lab, 'r1', 'left')}" in out

def test_isolation_is_checked(lab, tmp_path):
    expect = tmp_path / "expect"
    expect.write_text("h1 h2\n")
    result = berthctl("lab", "check", "--json", "--expect", str(expect), LAB, check=False)
    assert result.returncode == 1  # h1 does reach h2: the check says so
    report = json.loads(result.stdout)
    assert report["unexpected"] == 1
