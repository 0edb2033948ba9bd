import json

import pytest
from pydantic import ValidationError

from arlarena_envs.contract import (
    INFO_KEYS,
    EnvSpec,
    MetricRecord,
    Observation,
    StepInfo,
    StepResult,
    export_json_schemas,
)


def test_info_keys_fixed_and_roundtrip():
    info = StepInfo(won=True, score=1.0, extra={"k": [1, 2]})
    d = info.to_info()
    assert tuple(d) == INFO_KEYS
    assert StepInfo.from_info(json.loads(json.dumps(d))) == info


def test_models_forbid_unknown_fields():
    with pytest.raises(ValidationError):
        Observation(text="x", step=0, task="t", state_hash="h", color="red")


def test_step_result_json_roundtrip():
    r = StepResult(
        observation=Observation(text="\u221a\tX", step=1, task="t", admissible_actions=["up"], state_hash="ab"),
        reward=-0.1,
        terminated=False,
        truncated=True,
        info=StepInfo(state_hash="ab"),
    )
    assert StepResult.model_validate_json(r.model_dump_json()) == r
    assert r.done


def test_env_spec_validation():
    base = {
        "id": "arlarena/Toy-v0",
        "entry_point": "pkg.mod:Cls",
        "protocol": {"template_id": "sokoban/v1"},
        "splits": {"train": {"kind": "seeds", "start": 0, "stop": 10}},
    }
    spec = EnvSpec.model_validate(base)
    assert spec.name == "Toy-v0" and spec.version == 0 and len(spec.fingerprint()) == 16
    with pytest.raises(ValidationError):
        EnvSpec.model_validate({**base, "id": "Toy"})
    with pytest.raises(ValidationError):
        EnvSpec.model_validate({**base, "default_split": "test"})
    with pytest.raises(ValidationError):
        EnvSpec.model_validate({**base, "splits": {"train": {"kind": "seeds", "start": 5, "stop": 5}}})


def test_metric_record_keeps_extra_keys():
    r = MetricRecord.model_validate({"step": 3, "success": 0.5, "custom/thing": 1.0})
    assert r.success == 0.5 and r.model_dump()["custom/thing"] == 1.0


def test_export_json_schemas(tmp_path):
    paths = export_json_schemas(tmp_path)
    names = {p.name for p in paths}
    assert "StepResult.schema.json" in names and "EnvSpec.schema.json" in names
    schema = json.loads((tmp_path / "Observation.schema.json").read_text())
    assert "state_hash" in schema["properties"]
