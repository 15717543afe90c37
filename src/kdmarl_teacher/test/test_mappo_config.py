"""Config: documented defaults, YAML + --set overrides, errors that name the file and the key."""

from pathlib import Path

import pytest
from kdmarl_teacher.config import CONFIG_DIR, TeacherConfig, load_config


def test_shipped_configs_load() -> None:
    for name in ("mappo_simple_spread.yaml", "mappo_simple_speaker_listener.yaml"):
        cfg = load_config(CONFIG_DIR / name)
        assert cfg.scenario in name


def test_overrides_types_and_dotted_env_params(tmp_path: Path) -> None:
    cfg = load_config(None, ["lr=3e-4", "actor_hidden=[64, 64]", "use_gru=true", "env_params.N=4", "total_steps=1e6"])
    assert cfg.lr == 3e-4 and cfg.actor_hidden == [64, 64] and cfg.use_gru is True
    assert cfg.env_params == {"N": 4} and cfg.total_steps == 1_000_000
    assert TeacherConfig().lr == 1e-3  # defaults untouched


def test_unknown_key_in_file_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("lr: 0.001\nlearning_rat: 0.1\n")
    with pytest.raises(ValueError, match=r"bad\.yaml.*learning_rat"):
        load_config(path)


def test_bad_set_values_name_the_key() -> None:
    with pytest.raises(ValueError, match=r"--set.*unknown config key 'hiden'"):
        load_config(None, ["hiden=3"])
    with pytest.raises(ValueError, match="'use_gru'"):
        load_config(None, ["use_gru=maybe"])
    with pytest.raises(ValueError, match="'num_minibatches'"):
        load_config(None, ["num_envs=10", "num_minibatches=4"])
    with pytest.raises(ValueError, match="key=value"):
        load_config(None, ["lr"])
