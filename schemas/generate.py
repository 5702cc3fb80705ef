"""Write the JSON Schema of every bus message into schemas/json/ (`make schemas`).

The generated files are committed: other teams read the contract without running Python, and a
test fails when a model changes without its schema being regenerated.
"""
from __future__ import annotations

import json
from pathlib import Path

from schemas import BUS_MODELS

SCHEMA_DIR = Path(__file__).parent / "json"


def schema_files() -> dict[str, str]:
    """File name -> content, exactly as committed."""
    files = {}
    for model in BUS_MODELS:
        schema = model.model_json_schema(by_alias=True)
        schema["$id"] = f"https://crmsync.dev/schemas/{model.__name__}.v{model.SCHEMA_VERSION}.json"
        files[f"{model.__name__}.v{model.SCHEMA_VERSION}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return files


def main() -> None:
    SCHEMA_DIR.mkdir(exist_ok=True)
    for name, content in schema_files().items():
        (SCHEMA_DIR / name).write_text(content)
        print(f"wrote schemas/json/{name}")


if __name__ == "__main__":
    main()
