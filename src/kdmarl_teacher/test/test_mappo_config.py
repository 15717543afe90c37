"""Config: documented defaults, YAML + --set overrides, errors that name the file and the key."""

from pathlib import Path

import pytest
from kdmarl_teacher.algos.config import TeacherConfig, load_config
from kdmarl_teacher.core.config import CONFIG_DIR


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


def test_ranges_are_checked_at_load_naming_origin_key_value_and_range(tmp_path: Path) -> None:
    for item, message in [
        ("lr=0", "--set: config key 'lr' = 0.0 is out of range: expected 0 < lr <= 1"),
        ("lr=1e9", "--set: config key 'lr' = 1000000000.0 is out of range: expected 0 < lr <= 1"),
        ("gamma=1.5", "--set: config key 'gamma' = 1.5 is out of range: expected 0 <= gamma <= 1"),
        ("ent_coef=-0.01", "config key 'ent_coef' = -0.01 is out of range: expected 0 <= ent_coef <= 1"),
        ("vf_coef=-1", "config key 'vf_coef' = -1.0 is out of range: expected 0 <= vf_coef <= 100"),
        ("env_params.N=100000", "config key 'env_params.N' = 100000 is out of range: expected 1 <= env_params.N <= 16"),
        ("num_envs=0", "config key 'num_envs' = 0 is out of range: expected 1 <= num_envs <= 65536"),
    ]:
        with pytest.raises(ValueError) as info:
            load_config(None, [item])
        assert message in str(info.value), (item, str(info.value))
    path = tmp_path / "c.yaml"
    path.write_text("gamma: 0.99\nenv_params: {N: 100000}\n")
    with pytest.raises(ValueError, match=rf"^{path}: config key 'env_params.N' = 100000 is out of range"):
        load_config(path)
    path.write_text("lr: 5\n")
    with pytest.raises(ValueError, match=rf"^{path}: config key 'lr' = 5.0 is out of range"):
        load_config(path)
    load_config(path, ["lr=0.01"])  # a --set fixes the file's value: validated after merging


def test_every_shipped_and_benchmark_setting_is_in_range() -> None:
    """The shipped configs, distill.yaml and team files, and the settings bench/ and scripts/ pass."""
    from kdmarl_teacher.distill.config import DistillConfig, load_distill_config
    from kdmarl_teacher.distill.profiles import TEAMS_DIR, load_team

    for name in ("mappo_simple_spread.yaml", "mappo_simple_speaker_listener.yaml"):
        load_config(CONFIG_DIR / name, ["time_limit_minutes=10", "torch_threads=1", "total_steps=3000000",
                                        "env_params.N=4", "lr=5e-4"])
    load_config(None, ["num_envs=128", "total_steps=96000", "lr=0.003", "actor_hidden=[64,64]",
                       "critic_hidden=[64,64]", "torch_threads=1", "checkpoint_every=100000", "time_limit_minutes=0"])
    load_distill_config(CONFIG_DIR / "distill.yaml", ["total_steps=12800", "num_envs=64", "torch_threads=1"])
    DistillConfig(resource_aware=True, total_steps=12800, eval_episodes=20, num_envs=64).validate()
    for team in sorted(TEAMS_DIR.glob("*.yaml")):
        load_team(team)


def test_distill_config_ranges_and_types() -> None:
    from kdmarl_teacher.distill.config import load_distill_config

    for item, message in [
        ("w_kl=-0.5", "--set: distill config key 'w_kl' = -0.5 is out of range: expected 0 <= w_kl <= 100"),
        ("lr=0", "--set: distill config key 'lr' = 0.0 is out of range: expected 0 < lr <= 1"),
        ("gamma=1.5", "distill config key 'gamma' = 1.5 is out of range: expected 0 <= gamma <= 1"),
        ("temperature=0", "distill config key 'temperature' = 0.0 is out of range"),
        ("lr=fast", "--set: distill config key 'lr' expects a number, got 'fast'"),
    ]:
        with pytest.raises(ValueError) as info:
            load_distill_config(CONFIG_DIR / "distill.yaml", [item])
        assert message in str(info.value), (item, str(info.value))
