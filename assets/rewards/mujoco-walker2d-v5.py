# task: mujoco-walker2d-v5
# written-by: robo_reward team (hand-written)
# summary: walk forward with a planar biped without falling; alive bonus, forward velocity, upright torso, torque cost


def compute_reward(obs, action, next_obs):
    """Walk forward while the torso stays high and upright."""
    height = next_obs[:, 0]                          # torso height (m)
    angle = next_obs[:, 1]                           # torso pitch (rad)
    forward = np.clip(next_obs[:, 8], -2.0, 4.0)     # torso x-velocity (m/s)
    healthy = ((height > 0.8) & (height < 2.0) & (np.abs(angle) < 1.0)).astype(np.float64)
    posture = -0.2 * angle ** 2
    control = -0.001 * np.sum(action * action, axis=1)
    return {"alive": healthy, "forward": forward, "posture": posture, "control": control}
