"""The shared command line: load order, overrides, positional .cfg files, help text and exit codes."""
from __future__ import annotations

import pytest

import TornadoServices
from TornadoServices.ConfigurationSystem.Client.Config import gConfig
from TornadoServices.ConfigurationSystem.Client.LocalConfiguration import (
    configurationFiles,
    makeParser,
    parseCommandLine,
)
from TornadoServices.Core.Logging import gLogger, resetLogging


def section(**options: str) -> str:
    """CFG text of a /Test section holding the given options."""
    body = "".join(f"  {name} = {value}\n" for name, value in options.items())
    return f"Test\n{{\n{body}}}\n"


@pytest.fixture()
def env(tmp_path, monkeypatch):
    """Isolated HOME, rootPath and DIRACSYSCONFIG; an empty gConfig before and after."""
    home = tmp_path / "home"
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("DIRACSYSCONFIG", raising=False)
    monkeypatch.setattr(TornadoServices, "rootPath", str(root))
    level = gLogger.getLevel()
    gConfig.reset()
    yield tmp_path
    gConfig.reset()
    resetLogging()
    gLogger.setLevel(level)


def write(path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def test_load_order_each_level_overrides_the_previous(env, monkeypatch):
    sys1 = write(env / "sys1.cfg", section(Level="sys1", Sys1="yes", Shared="sys1"))
    sys2 = write(env / "sys2.cfg", section(Level="sys2", Sys2="yes"))
    home = write(env / "home" / ".dirac.cfg", section(Level="home", Home="yes", Shared="home"))
    root = write(env / "root" / "etc" / "dirac.cfg", section(Level="root", Root="yes"))
    cli1 = write(env / "cli1.cfg", section(Level="cli1", Cli1="yes"))
    cli2 = write(env / "cli2.cfg", section(Level="cli2", Cli2="yes"))
    monkeypatch.setenv("DIRACSYSCONFIG", f"{sys1}, {sys2}")

    args = parseCommandLine(makeParser("prog", "test"), ["--cfg", cli1, cli2])

    assert args.loadedFiles == [sys1, sys2, home, root, cli1, cli2]
    assert gConfig.getLoadedFiles() == args.loadedFiles
    assert gConfig.getValue("/Test/Level") == "cli2"
    assert gConfig.getValue("/Test/Shared") == "home"
    for name in ("Sys1", "Sys2", "Home", "Root", "Cli1", "Cli2"):
        assert gConfig.getValue(f"/Test/{name}", False) is True, name


def test_override_wins_over_every_file(env, monkeypatch):
    sysFile = write(env / "sys.cfg", section(Port="1"))
    write(env / "home" / ".dirac.cfg", section(Port="2"))
    cli = write(env / "cli.cfg", section(Port="3"))
    monkeypatch.setenv("DIRACSYSCONFIG", sysFile)
    args = parseCommandLine(
        makeParser("prog", "test"), ["--cfg", cli, "-o", "/Test/Port=4", "--option=/New/Path/Value = a=b"]
    )
    assert gConfig.getValue("/Test/Port", 0) == 4
    assert gConfig.getValue("/New/Path/Value") == "a=b"
    assert args.options == [("/Test/Port", "4"), ("/New/Path/Value", "a=b")]


def test_command_line_files_load_in_argument_order(env):
    first = write(env / "first.cfg", section(Value="first"))
    second = write(env / "second.cfg", section(Value="second"))
    parseCommandLine(makeParser("prog", "test"), [second, "--cfg", first])
    assert gConfig.getValue("/Test/Value") == "first"
    gConfig.reset()
    parseCommandLine(makeParser("prog", "test"), ["--cfg", first, second])
    assert gConfig.getValue("/Test/Value") == "second"


def test_positional_cfg_does_not_steal_script_arguments(env):
    cfg = write(env / "x.cfg", section(Value="x"))
    parser = makeParser("prog", "test")
    parser.add_argument("service")
    parser.add_argument("--out")
    args = parseCommandLine(parser, ["Framework/Dummy", cfg, "--out", "result.cfg"])
    assert args.service == "Framework/Dummy"
    assert args.out == "result.cfg"
    assert args.cfg == [cfg]
    gConfig.reset()
    after = makeParser("prog", "test")
    after.add_argument("target")
    args = parseCommandLine(after, ["--", "literal.cfg"])
    assert args.target == "literal.cfg"
    assert args.cfg == []


def test_yaml_file_on_the_command_line(env):
    yamlFile = write(env / "c.yaml", "Test:\n  Value: from-yaml\n  List: [a, b]\n")
    parseCommandLine(makeParser("prog", "test"), ["--cfg", yamlFile])
    assert gConfig.getValue("/Test/Value") == "from-yaml"
    assert gConfig.getValue("/Test/List", []) == ["a", "b"]


def test_missing_optional_files_are_fine(env):
    args = parseCommandLine(makeParser("prog", "test"), [])
    assert args.loadedFiles == []
    assert args.debug == 0 and args.jsonLogs is False


def test_configuration_files_lists_the_order(env, monkeypatch):
    monkeypatch.setenv("DIRACSYSCONFIG", "/a.cfg,,/b.cfg")
    files = configurationFiles(["/c.cfg"])
    assert files == [
        ("/a.cfg", True),
        ("/b.cfg", True),
        (str(env / "home" / ".dirac.cfg"), False),
        (str(env / "root" / "etc" / "dirac.cfg"), False),
        ("/c.cfg", True),
    ]


def test_malformed_file_exits_1_with_file_and_line(env, capsys):
    bad = write(env / "bad.cfg", "Test\n{\n  Ok = 1\n  Bad line without equals\n  x = 2\n}\n")
    with pytest.raises(SystemExit) as exc:
        parseCommandLine(makeParser("prog", "test"), ["--cfg", bad])
    assert exc.value.code == 1
    assert f"{bad}:4:" in capsys.readouterr().err


def test_malformed_home_file_exits_1(env, capsys):
    home = write(env / "home" / ".dirac.cfg", "Test\n{\n")
    with pytest.raises(SystemExit) as exc:
        parseCommandLine(makeParser("prog", "test"), [])
    assert exc.value.code == 1
    assert f"{home}:1:" in capsys.readouterr().err


def test_missing_cfg_file_exits_1_naming_it(env, capsys):
    with pytest.raises(SystemExit) as exc:
        parseCommandLine(makeParser("prog", "test"), ["--cfg", str(env / "absent.cfg")])
    assert exc.value.code == 1
    assert str(env / "absent.cfg") in capsys.readouterr().err


def test_missing_diracsysconfig_file_names_the_variable(env, monkeypatch, capsys):
    monkeypatch.setenv("DIRACSYSCONFIG", str(env / "gone.cfg"))
    with pytest.raises(SystemExit) as exc:
        parseCommandLine(makeParser("prog", "test"), [])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert str(env / "gone.cfg") in err and "DIRACSYSCONFIG" in err


def test_ignore_errors_keeps_going(env):
    bad = write(env / "bad.cfg", "Test\n{\n")
    good = write(env / "good.cfg", section(Value="good"))
    args = parseCommandLine(makeParser("prog", "test"), ["--cfg", bad, "--cfg", good, "--unknown"], ignoreErrors=True)
    assert args.unknownArgs == ["--unknown"]
    assert args.loadedFiles == [good]
    assert gConfig.getValue("/Test/Value") == "good"


@pytest.mark.parametrize("argv", [["-o", "/No/Equals"], ["-o", "=value"], ["--nonsense"], ["--cfg"]])
def test_usage_errors_exit_2(env, argv, capsys):
    with pytest.raises(SystemExit) as exc:
        parseCommandLine(makeParser("prog", "test"), argv)
    assert exc.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_override_of_a_section_exits_1(env, capsys):
    cfg = write(env / "s.cfg", section(Value="v"))
    with pytest.raises(SystemExit) as exc:
        parseCommandLine(makeParser("prog", "test"), ["--cfg", cfg, "-o", "/Test=x"])
    assert exc.value.code == 1
    assert "/Test" in capsys.readouterr().err


def test_debug_flags_set_the_log_level(env):
    parseCommandLine(makeParser("prog", "test"), ["-d"])
    assert gLogger.getLevel() == "VERBOSE"
    parseCommandLine(makeParser("prog", "test"), ["-dd"])
    assert gLogger.getLevel() == "DEBUG"
    parseCommandLine(makeParser("prog", "test"), [])
    assert gLogger.getLevel() == "INFO"


def test_help_lists_every_option_with_its_default(env, capsys):
    parser = makeParser("tornado-start-all", "Start all https services", epilog="Example: tornado-start-all")
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--processes", type=int, help="worker processes")
    parser.add_argument("--dry-run", action="store_true", help="only print")
    with pytest.raises(SystemExit) as exc:
        parseCommandLine(parser, ["--help"])
    assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for text in (
        "--cfg FILE",
        "-o /PATH=VALUE, --option /PATH=VALUE",
        "-d, --debug",
        "--json-logs",
        "-h, --help",
        "--port PORT (default: 8443)",
        "worker processes (default: not set)",
        "only print (default: off)",
        "(default: 0)",
        "Example: tornado-start-all",
        "DIRACSYSCONFIG",
    ):
        assert text in out, text


def test_initialize_loads_the_standard_files_once(tmp_path, monkeypatch):
    import TornadoServices
    from TornadoServices.ConfigurationSystem.Client import LocalConfiguration

    cfg = tmp_path / "sys.cfg"
    cfg.write_text("Systems\n{\n  Framework\n  {\n    URLs\n    {\n      Dummy = https://h.example:9443/Framework/Dummy\n    }\n  }\n}\n")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DIRACSYSCONFIG", str(cfg))
    monkeypatch.setattr(LocalConfiguration, "_initialized", False)
    gConfig.reset()
    try:
        TornadoServices.initialize()
        assert gConfig.getValue("/Systems/Framework/URLs/Dummy") == "https://h.example:9443/Framework/Dummy"
        assert gConfig.getValue("/DIRAC/Security/UseServerCertificate", False) is False
        gConfig.reset()
        TornadoServices.initialize()  # second call: nothing reloaded
        assert gConfig.getValue("/Systems/Framework/URLs/Dummy") is None
    finally:
        gConfig.reset()


def test_initialize_refuses_a_missing_DIRACSYSCONFIG_file(tmp_path, monkeypatch):
    import TornadoServices
    from TornadoServices.ConfigurationSystem.Client import LocalConfiguration

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DIRACSYSCONFIG", str(tmp_path / "missing.cfg"))
    monkeypatch.setattr(LocalConfiguration, "_initialized", False)
    gConfig.reset()
    try:
        with pytest.raises(LocalConfiguration.ConfigurationError, match="missing.cfg"):
            TornadoServices.initialize()
        assert LocalConfiguration._initialized is False
    finally:
        gConfig.reset()
