"""One direction of dependency between recsys' packages, read from the source (docs/
ARCHITECTURE.md): a package imports only packages in lower layers (module-level and
function-level imports alike), so there is no cycle and the service stays small."""

from __future__ import annotations

import ast
from pathlib import Path

import recsys

SRC = Path(recsys.__file__).parent
# Lower layers first; a package may import its own layer's modules and any lower layer.
LAYERS = [
    # evaluation/__init__.py holds only DEFAULT_KS, which the configs import without torch.
    {"__init__", "errors", "sparse", "devices", "evaluation.__init__"},
    {"data"},
    {"models"},
    {"evaluation"},
    {"packaging"},
    {"serving", "tracking", "batch"},
    {"lifecycle"},  # promotion and the simulated users of `make loop` (serves through serving)
    {"training"},
    {"config", "recommend_config"},  # the structured-config schemas the entry points compose with
    {
        "generate",
        "preprocess",
        "train",
        "evaluate",
        "package",
        "recommend",
        "promote",
        "demo_summary",
    },
]
RANK = {name: level for level, names in enumerate(LAYERS) for name in names}


def unit(module: str) -> str:
    """A dotted recsys module's layer unit: its top-level package or module."""
    return module.split(".")[0]


def imported(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("recsys"):
            target = node.module.removeprefix("recsys").lstrip(".")
            if target == "evaluation" and any(a.name == "DEFAULT_KS" for a in node.names):
                found.add("evaluation.__init__")
            elif target:
                found.add(unit(target))
        elif isinstance(node, ast.Import):
            found |= {unit(a.name[7:]) for a in node.names if a.name.startswith("recsys.")}
    return found


def test_every_import_goes_to_a_lower_layer_or_its_own_package():
    wrong = []
    for path in sorted(SRC.rglob("*.py")):
        module = ".".join(path.relative_to(SRC).with_suffix("").parts)
        source = "evaluation.__init__" if module == "evaluation.__init__" else unit(module)
        assert source in RANK, f"{module}: add its package to LAYERS"
        for target in imported(path):
            if target != source and RANK[target] >= RANK[source]:
                wrong.append(f"{module} imports {target}")
    assert not wrong, wrong


def test_models_and_evaluation_import_neither_lightning_nor_mlflow_nor_bentoml():
    for package in ("models", "evaluation", "data/evalsets.py", "packaging/recommend.py"):
        root = SRC / package
        for path in [root] if root.is_file() else sorted(root.rglob("*.py")):
            text = path.read_text()
            for banned in ("import lightning", "from lightning", "mlflow", "bentoml"):
                assert banned not in text, f"{path.relative_to(SRC)}: {banned}"
