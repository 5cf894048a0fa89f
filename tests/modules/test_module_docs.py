"""Every module's DOCUMENTATION, EXAMPLES and RETURN as ansible-doc reads them.

A colon followed by a space inside a plain YAML scalar ends it: the module still runs, but
ansible-doc and ansible-lint's argument checks see no documentation at all.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible.utils.plugin_docs import get_docstring

MODULES = sorted((Path(__file__).resolve().parents[2] / "plugins" / "modules").glob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_the_documentation_parses(path: Path) -> None:
    doc, examples, returns, _ = get_docstring(str(path), fragment_loader=None)
    assert doc["module"] == path.stem
    assert doc["options"], "every module documents its options"
    assert isinstance(returns, dict)
    assert returns, "every module documents what it returns"
    assert isinstance(yaml.safe_load(examples), list)


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_every_option_of_the_argument_spec_is_documented(path: Path) -> None:
    text = path.read_text()
    doc, _, _, _ = get_docstring(str(path), fragment_loader=None)
    for option in doc["options"]:
        assert f'"{option}"' in text, f"{option} is documented but not in the argument_spec"
