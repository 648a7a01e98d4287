"""The container-fidelity environment (make test-containers) mirrors the images the pipeline
asks SageMaker for: bumping the framework or Python version there must bump the pins too."""

from __future__ import annotations

from pathlib import Path

from pipeline.settings import Settings

REPO = Path(__file__).resolve().parents[2]
CONTAINERS = REPO / "containers"
MAKEFILE = REPO / "Makefile"


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{path.name}: {line!r} is not pinned with =="
            found[name.lower()] = version
    return found


def test_the_pin_list_is_named_for_and_pins_the_pipelines_framework_and_python():
    settings = Settings()
    pin_file = CONTAINERS / f"pytorch-{settings.framework_version[:3]}-{settings.py_version}.txt"
    assert pin_file.is_file(), f"no pin list for the pipeline's images: {pin_file}"
    assert pins(pin_file)["torch"] == settings.framework_version
    assert f"CONTAINER_PINS := containers/{pin_file.name}" in MAKEFILE.read_text()
    python = f"{settings.py_version[2]}.{settings.py_version[3:]}"  # py312 -> 3.12
    assert f"python{python}" in MAKEFILE.read_text()
