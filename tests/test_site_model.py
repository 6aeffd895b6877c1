"""Site model: units, layering, origins, and bad site files."""

from __future__ import annotations

import textwrap

import pytest

try:
    from tests.site_util import SHIPPED, isolated_sites, site  # noqa: F401
except ImportError:
    from site_util import SHIPPED, isolated_sites, site  # noqa: F401

from hpckit.deploy.render import RenderError, render_template, shpath, shquote
from hpckit.deploy.site import (
    SiteError,
    format_memory,
    list_sites,
    load_site,
    parse_memory,
    parse_walltime,
)


@pytest.mark.parametrize(
    "text,seconds",
    [("00:30:00", 1800), ("12:00:00", 43200), ("1-00:00:00", 86400), ("02:15", 8100), ("48:00:00", 172800)],
)
def test_walltime_parses(text, seconds):
    assert parse_walltime(text) == seconds


@pytest.mark.parametrize("text", ["25:99", "01:60:00", "00:00:61", "abc", "0:00:00", "1-24:00:00"])
def test_walltime_rejects(text):
    with pytest.raises(ValueError):
        parse_walltime(text)


@pytest.mark.parametrize(
    "text,nbytes",
    [("512GB", 512 * 10**9), ("4GiB", 4 * 2**30), ("4G", 4 * 2**30), ("500M", 500 * 2**20),
     ("500MB", 500 * 10**6), ("1.5GiB", 3 * 2**29), ("100K", 102400), ("1T", 2**40)],
)
def test_memory_units(text, nbytes):
    assert parse_memory(text) == nbytes


@pytest.mark.parametrize("bad", ["lots", "12", 12, "-4G", "4 parsecs", "0G"])
def test_memory_rejects(bad):
    with pytest.raises(ValueError):
        parse_memory(bad)


def test_memory_roundtrip():
    for v in ("4GiB", "512GB", "1536MiB", "200MB"):
        assert parse_memory(format_memory(parse_memory(v))) == parse_memory(v)


def test_every_shipped_site_loads_with_source_and_provenance():
    assert {"local", "perlmutter", "frontier", "polaris", "lpc", "chtc", "slurm-local", "pbs-local"} <= set(SHIPPED)
    for name in SHIPPED:
        s = site(name)
        assert s.name == name
        assert s.source and s.gathered_on and s.checked
        for key in s.unverified:  # every 'unverified' entry names a real key path
            obj = s
            for part in key.split("."):
                assert hasattr(obj, part), f"{name}: unverified key {key!r} is not a site field"
                obj = getattr(obj, part)


def test_site_facts():
    p = site("perlmutter")
    assert (p.scheduler, p.constraint, p.qos, p.node.cores, p.network.interface) == ("slurm", "cpu", "regular", 128, "hsn0")
    assert p.node.memory == 512 * 10**9 and "--module=cvmfs" in p.extra_directives
    f = site("frontier")
    assert (f.node.usable_cores, f.partition, f.container.runtime) == (56, "batch", "apptainer")
    assert f.job_cores <= 56
    pol = site("polaris")
    assert pol.scheduler == "pbs" and "-l filesystems=home:eagle" in pol.extra_directives and "apptainer" in pol.modules
    lpc = site("lpc")
    assert lpc.htcondor.x509_proxy and lpc.network.port_range == (10000, 10070)
    assert lpc.container.image == "built"  # the image of the client's lock (hpckit.deploy.delivery)
    assert site("chtc").htcondor.universe == "container"
    sl = site("slurm-local")
    assert sl.network.interface == "lo" and sl.loopback


def test_lifetime_leaves_margin_before_walltime():
    for name in SHIPPED:
        s = site(name)
        if s.walltime is None:
            continue
        life, stagger = s.lifetime()
        assert 0 < life and life + stagger < s.walltime, name


def test_set_overrides_and_origins():
    loaded = load_site("perlmutter", ["account=m9999", "worker.cores=2", "walltime=00:20:00"])
    s = loaded.site
    assert (s.account, s.worker.cores, s.walltime) == ("m9999", 2, 1200)
    assert loaded.origin("account") == "--set"
    assert loaded.origin("worker.cores") == "--set"
    assert loaded.origin("worker.memory").endswith("perlmutter.yaml")
    assert loaded.origin("partition") == "default"


def test_user_dir_layers_over_builtin(tmp_path, monkeypatch):
    d1, d2 = tmp_path / "a", tmp_path / "b"
    d1.mkdir(), d2.mkdir()
    (d1 / "perlmutter.yaml").write_text("account: m1111\n")
    (d2 / "perlmutter.yaml").write_text("account: m2222\nqos: debug\n")
    (d2 / "mysite.yaml").write_text((__import__("hpckit.core.resources").core.resources.data_dir("sites") / "slurm-local.yaml").read_text().replace("name: slurm-local", "name: mysite"))
    monkeypatch.setenv("HPCKIT_SITES_PATH", f"{d1}:{d2}")
    loaded = load_site("perlmutter")
    assert loaded.site.account == "m1111"  # leftmost directory wins
    assert loaded.site.qos == "debug"
    assert loaded.origin("account") == str(d1 / "perlmutter.yaml")
    assert loaded.origin("qos") == str(d2 / "perlmutter.yaml")
    assert loaded.origin("constraint").endswith("sites/perlmutter.yaml")
    assert load_site("perlmutter", ["account=m3"]).site.account == "m3"  # --set beats user files
    assert "mysite" in list_sites()
    # ~/.config/hpckit/sites is searched too, below HPCKIT_SITES_PATH
    home_sites = tmp_path / "home" / ".config" / "hpckit" / "sites"
    home_sites.mkdir(parents=True)
    (home_sites / "perlmutter.yaml").write_text("account: mhome\nconstraint: gpu\n")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    loaded = load_site("perlmutter")
    assert loaded.site.account == "m1111" and loaded.site.constraint == "gpu"


def _bad(tmp_path, body: str) -> str:
    base = textwrap.dedent(
        """\
        name: bad
        scheduler: slurm
        source: [test]
        verified_on: 2026-01-01
        walltime: "01:00:00"
        max_workers: 2
        worker: {cores: 1, memory: 1GiB}
        """
    )
    f = tmp_path / "bad.yaml"
    f.write_text(base + textwrap.dedent(body))
    with pytest.raises(SiteError) as exc:
        load_site(f)
    return str(exc.value)


def test_bad_unknown_scheduler(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("name: bad\nscheduler: lsf\nsource: [x]\nverified_on: 2026-01-01\n")
    with pytest.raises(SiteError) as exc:
        load_site(f)
    msg = str(exc.value)
    assert str(f) in msg and "scheduler" in msg and "'slurm'" in msg and "lsf" in msg


def test_bad_negative_cores(tmp_path):
    msg = _bad(tmp_path, "node: {cores: -4}\n")
    assert "bad.yaml" in msg and "node.cores" in msg and "greater than 0" in msg


def test_bad_walltime(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("name: bad\nscheduler: slurm\nsource: [x]\nverified_on: 2026-01-01\nwalltime: 25:99\n"
                 "max_workers: 1\nworker: {memory: 1G}\n")
    with pytest.raises(SiteError) as exc:
        load_site(f)
    msg = str(exc.value)
    assert "walltime" in msg and "minutes must be 0-59" in msg and str(f) in msg


def test_bad_memory(tmp_path):
    f = tmp_path / "bad.yaml"
    _bad_text = "name: bad\nscheduler: slurm\nsource: [x]\nverified_on: 2026-01-01\nwalltime: '01:00:00'\nmax_workers: 1\nworker: {memory: lots}\n"
    f.write_text(_bad_text)
    with pytest.raises(SiteError) as exc:
        load_site(f)
    msg = str(exc.value)
    assert "worker.memory" in msg and "'lots'" in msg and "4GiB" in msg


def test_bad_container_without_image(tmp_path):
    msg = _bad(tmp_path, "container: {runtime: apptainer}\n")
    assert "container" in msg and "needs an image" in msg


def test_bad_unknown_key_names_path(tmp_path):
    msg = _bad(tmp_path, "network: {interfase: hsn0}\n")
    assert "network.interfase" in msg and "unknown key" in msg


def test_bad_yaml_syntax_shows_line(tmp_path):
    f = tmp_path / "broken.yaml"
    f.write_text("name: broken\nscheduler: slurm\nworker: {cores: 1, memory: 1GiB\nsource: [x]\n")
    with pytest.raises(SiteError) as exc:
        load_site(f)
    msg = str(exc.value)
    assert f"{f}:" in msg and "YAML syntax error" in msg
    assert "| worker: {cores: 1, memory: 1GiB" in msg or "| source: [x]" in msg


def test_unknown_site_lists_known():
    with pytest.raises(SiteError) as exc:
        load_site("summit")
    msg = str(exc.value)
    assert "summit" in msg and "perlmutter" in msg and "slurm-local" in msg


def test_set_error_names_set_layer():
    with pytest.raises(SiteError) as exc:
        load_site("slurm-local", ["worker.memory=lots"])
    assert "--set: worker.memory" in str(exc.value)


def test_newline_in_value_rejected():
    # a newline would end an '#SBATCH' comment line and start a shell command
    with pytest.raises(SiteError) as exc:
        load_site("slurm-local", {"account": "m1\ntouch /tmp/owned"})
    assert "account" in str(exc.value) and "control characters" in str(exc.value)


def test_yaml_base60_is_not_applied(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("name: s\nscheduler: slurm\nsource: [x]\nverified_on: 2026-01-01\nwalltime: 12:00:00\n"
                 "max_workers: 1\nworker: {memory: 1G}\n")
    assert load_site(f).site.walltime == 12 * 3600


def test_shell_filters():
    assert shquote("m1234; touch /tmp/owned") == "'m1234; touch /tmp/owned'"
    assert shquote("$(reboot)") == "'$(reboot)'"
    assert shpath("$SCRATCH/a b") == "\"${SCRATCH}\"'/a b'"
    assert shpath("${TMPDIR:-/tmp}") == '"${TMPDIR:-/tmp}"'
    assert shpath("/x/$(reboot)`id`") == "'/x/$(reboot)`id`'"


def test_undefined_variable_names_template_and_variable():
    with pytest.raises(RenderError) as exc:
        render_template("worker_job.sh.j2", site=site("slurm-local"))  # no `job`
    msg = str(exc.value)
    assert "'job' is undefined" in msg and "template " in msg and ".j2" in msg


def test_older_site_file_with_verified_on_loads_saying_nothing_was_checked(tmp_path, monkeypatch):
    """`verified_on: DATE` (site files before `checked`) is accepted as when the facts were gathered, and
    the site says that nothing is recorded as checked; a new file must say what was checked."""
    f = tmp_path / "old.yaml"
    f.write_text("name: old\nscheduler: local\nsource: [x]\nverified_on: 2026-01-01\n")
    monkeypatch.setenv("HPCKIT_SITES_PATH", str(tmp_path))
    s = load_site("old").site
    assert str(s.gathered_on) == "2026-01-01" and "not recorded" in s.checked
    f.write_text("name: old\nscheduler: local\nsource: [x]\ngathered_on: 2026-01-01\n")
    with pytest.raises(SiteError, match="checked"):
        load_site("old")


def test_chtc_shares_no_file_system_so_a_launch_there_names_what_it_would_need():
    """CHTC's execute nodes see nothing of the submit node. The site used to say so only in its HTCondor block
    (file transfer on), so doctor and launch took it for shared, and its Dask workers would have looked for the
    run's TLS key on the submit node's path. HTCondor cannot copy a file into a running job (no sbcast), so a
    Dask or Parsl launch there names the pieces; the submit files still ask HTCondor to transfer files. TaskVine's
    factory hands its files to HTCondor with each job, so it needs none."""
    from hpckit.deploy import render_files
    from hpckit.deploy.sharing import needs_shared_filesystem
    from hpckit.engines import ENGINES

    chtc = site("chtc")
    assert not chtc.shared_filesystem and not chtc.staged
    for backend in ("dask", "parsl"):
        pieces = needs_shared_filesystem(chtc, ENGINES[backend], None, "analysis.py", None)
        assert pieces[0].startswith("run directory") and "analysis file analysis.py" in pieces[-1], pieces
        assert "should_transfer_files = YES" in render_files(chtc, backend)["worker_job.sub"]
    # TaskVine (the site's default): vine_factory hands vine_worker and its files to HTCondor with each job
    assert needs_shared_filesystem(chtc, ENGINES["taskvine"], None, "analysis.py", "ckpt") == []
