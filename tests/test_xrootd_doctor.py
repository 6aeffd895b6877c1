"""`hpckit doctor --fileset`: every storage endpoint of a fileset answers and one file per endpoint opens,
against the real local XRootD servers; a grid credential is required only where the site says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import DATA, REPO

import xrootd_util
from hpckit.io.storage_check import check_credential, check_fileset_storage, endpoints, find_credential

pytestmark = [pytest.mark.xrootd, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def sites():
    return xrootd_util.sites()


def test_endpoints_answer_and_files_open(sites):
    dead = f"root://127.0.0.1:{xrootd_util.free_port()}"
    fs = {
        "A": {"files": {f"{sites['site1']}/nano_dy.root": {
            "object_path": "Events", "replicas": [f"{sites['site2']}/nano_dy.root", f"{dead}//x/nano_dy.root"]}}},
        "B": [f"{sites['site2']}/nope.root", str(DATA / "nano_dimuon.root")],
    }
    assert list(endpoints(fs)) == [sites["site1"].split("//")[0] + "//" + sites["site1"].split("/")[2],
                                   sites["site2"].split("//")[0] + "//" + sites["site2"].split("/")[2], dead, "local"]
    checks = {(c.name, c.result) for c in check_fileset_storage(fs, timeout=3)}
    port1, port2 = (sites[s].split(":")[2].split("/")[0] for s in ("site1", "site2"))
    assert (f"storage root://127.0.0.1:{port1}", "pass") in checks
    assert (f"open file on root://127.0.0.1:{port2}", "pass") in checks  # its first file opens
    assert (f"storage {dead}", "fail") in checks
    assert ("open file on local", "pass") in checks
    assert ("grid credential", "skip") in checks  # anonymous: the site does not ask for one


def test_missing_file_at_an_endpoint_fails_with_its_fix(sites):
    [*_, opened] = [c for c in check_fileset_storage({"X": [f"{sites['site1']}/nope.root"]}, timeout=3)
                    if c.name.startswith("open file")]
    assert opened.result == "fail" and "file not found" in opened.detail and "fix the path" in opened.fix


def test_credential_needed_by_the_site(tmp_path):
    eps = {"root://host:1094": ["root://host:1094//f.root"]}
    [c] = check_credential(True, eps, env={"X509_USER_PROXY": str(tmp_path / "none")})
    assert c.result == "fail" and "voms-proxy-init" in c.fix and "htgettoken" in c.fix
    proxy = tmp_path / "x509up"
    proxy.write_text("-----BEGIN CERTIFICATE-----\n")
    proxy.chmod(0o644)  # a proxy others may read is not used (grid tools refuse it too)
    [c] = check_credential(True, eps, env={"X509_USER_PROXY": str(proxy)})
    assert c.result == "fail" and f"fix: chmod 600 {proxy}" in c.detail, c
    proxy.chmod(0o600)
    assert check_credential(True, eps, env={"X509_USER_PROXY": str(proxy)})[0].result == "pass"
    if os.getuid() == 0:  # another user's file under your name (planted in /tmp): never yours to use
        os.chown(proxy, 65534, 65534)
        [c] = check_credential(True, eps, env={"X509_USER_PROXY": str(proxy)})
        assert c.result == "fail" and "belongs to uid 65534" in c.detail, c
        os.chown(proxy, 0, 0)
    token = tmp_path / "bt"
    token.write_text("eyJ0eXAi")
    token.chmod(0o600)
    found, _ = find_credential({"BEARER_TOKEN_FILE": str(token), "X509_USER_PROXY": str(tmp_path / "none")}, uid=0)
    assert found == f"bearer token {token}"
    assert check_credential(True, {"local": ["/f.root"]}, env={}) == []  # local files need none


def test_cli_doctor_fileset(sites, tmp_path):
    fs = tmp_path / "fs.json"
    fs.write_text(json.dumps({"A": [f"{sites['site1']}/nano_dy.root"], "B": ["../missing/nano.root"]}))
    r = subprocess.run([sys.executable, "-m", "hpckit", "doctor", "--site", "local", "--fileset", str(fs)],
                       capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                       timeout=120)
    assert "PASS storage root://127.0.0.1:" in r.stderr
    assert "FAIL open file on local" in r.stderr and "fix: fix the path" in r.stderr
    assert r.returncode == 1
