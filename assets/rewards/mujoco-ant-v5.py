# task: mujoco-ant-v5
# written-by: robo_reward team (hand-written)
# summary: walk forward along +x with a quadruped; forward velocity, staying in the healthy height band, torque cost


def compute_reward(obs, action, next_obs):
    """Move the torso along +x while it stays in the healthy height band, without wasting torque."""
    height = next_obs[:, 0]                          # torso height (m)
    forward = np.clip(next_obs[:, 13], -2.0, 4.0)    # torso x-velocity (m/s, world frame)
    sideways = -0.1 * np.abs(next_obs[:, 14])        # drifting along y earns nothing
    healthy = ((height > 0.2) & (height < 1.0)).astype(np.float64)
    control = -0.05 * np.sum(action * action, axis=1)
    return {"alive": 0.5 * healthy, "forward": forward, "sideways": sideways, "control": control}
