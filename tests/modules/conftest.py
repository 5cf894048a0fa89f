"""Make the repository's Ansible modules importable, as Ansible itself would find them.

The modules import their helpers as `ansible.module_utils.pgchaos_*` (ansible.cfg's
module_utils path); adding plugins/module_utils to that package's search path gives tests
the same import without copying files.
"""

from __future__ import annotations

import sys
from pathlib import Path

import ansible.module_utils
import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = ROOT / "plugins" / "modules"
MODULE_UTILS = ROOT / "plugins" / "module_utils"

if str(MODULES) not in sys.path:
    sys.path.insert(0, str(MODULES))
if str(MODULE_UTILS) not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(str(MODULE_UTILS))


@pytest.fixture(autouse=True)
def chaos_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test host has opted in (the lab's marker) unless a test removes the file."""
    import pgchaos_data_fault
    import pgchaos_disk_fault
    import pgchaos_net_fault
    import pgchaos_service_fault

    marker = tmp_path / "chaos-target"
    marker.write_text("test host\n")
    for module in (
        pgchaos_service_fault,
        pgchaos_net_fault,
        pgchaos_data_fault,
        pgchaos_disk_fault,
    ):
        monkeypatch.setattr(module, "opted_in", marker.is_file)
    return marker
