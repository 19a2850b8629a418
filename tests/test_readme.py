"""The README's first lines are the two set-up commands, and CI runs the second."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_commands():
    text = open(os.path.join(ROOT, "README.md")).read()
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block, "README.md must start with a bash block of the two commands"
    assert text.index(block.group(0)) < 200, "the commands must be the README's first lines"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_has_install_and_test_commands():
    install, test = readme_commands()
    assert install.startswith('pip install -e ".[test]"') and "scripts/" in install
    assert "pytest" in test


def test_ci_installs_what_the_readme_installs():
    """The README's first command installs everything its second one needs:
    the same package install as .ci/run (which adds only torch's pinned wheels)."""
    install, _ = readme_commands()
    readme_install = install.split("&&")[0].strip()
    ci = open(os.path.join(ROOT, ".ci", "run")).read()
    ci_installs = [line.strip().replace("python -m pip install -q ", "pip install ")
                   for line in ci.splitlines() if "pip install" in line and "torch" not in line]
    assert ci_installs == [readme_install]


def test_ci_runs_exactly_the_readme_test_command():
    """.ci/run's first test command is the README's (the slow set may follow)."""
    _, test = readme_commands()
    ci = open(os.path.join(ROOT, ".ci", "run")).read().splitlines()
    commands = [line.strip() for line in ci if "pytest" in line
                and not line.lstrip().startswith("#")]
    assert commands[0] == test
    assert all("-m slow" in c for c in commands[1:]), commands


def test_the_default_set_leaves_out_only_the_slow_and_fullsize_sets():
    """The README's command runs everything but the ``slow`` marker, which
    .ci/run then runs as the budget allows, and the ``fullsize`` marker (the
    full-size config check, its own README command)."""
    ini = open(os.path.join(ROOT, "pytest.ini")).read()
    assert re.search(r'^addopts = .*-m "not slow and not fullsize"', ini, re.M)
    for marker in ("slow", "fullsize"):
        assert re.search(r"^\s+{}: .*python -m pytest -q -m {}$".format(marker, marker), ini,
                         re.M)
    readme = open(os.path.join(ROOT, "README.md")).read()
    assert "python -m pytest -q -m fullsize" in readme


def test_first_command_scripts_exist():
    install, _ = readme_commands()
    script = re.search(r"bash (scripts/\S+\.sh)", install).group(1)
    assert os.path.isfile(os.path.join(ROOT, script))
