import dataclasses

import gymnasium
import numpy as np
from gymnasium.utils.env_checker import check_env

from megagpu.io import presets
from megagpu.sim import env


class GymPlacement(gymnasium.Env):
    """The simulator's placement environment as a gymnasium.Env."""

    def __init__(self) -> None:
        sc = presets.get("gavel-0.5").build(0)
        self.inner = env.PlacementEnv(dataclasses.replace(sc, jobs=sc.jobs[:50]))
        self.action_space = gymnasium.spaces.Discrete(self.inner.action_count)
        self.observation_space = gymnasium.spaces.Box(
            0.0, 1.0, (self.inner.observation_size,), np.float32
        )

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.inner.reset(seed=seed, options=options)

    def step(self, action):
        return self.inner.step(int(action))


def test_check_env_passes():
    check_env(GymPlacement(), skip_render_check=True)


def test_episode_ends_after_every_job_and_rewards_are_at_most_zero():
    gym = GymPlacement()
    obs, _ = gym.reset(seed=0)
    rewards, done = [], False
    while not done:
        feasible = obs.reshape(-1, env.FEATURES)[:, 0]
        obs, reward, done, truncated, _ = gym.step(int(np.argmax(feasible)))
        assert not truncated
        rewards.append(reward)
    assert len(rewards) == 50 and max(rewards) <= 0.0


def test_same_seed_same_trajectory():
    def run(seed):
        gym = GymPlacement()
        gym.reset(seed=seed)
        return [gym.step(i % gym.inner.action_count)[1:3] for i in range(50)]

    assert run(3) == run(3)
