# task: mujoco-hopper-v5
# written-by: robo_reward team (hand-written)
# summary: hop forward with a one-legged robot without falling; alive bonus, forward velocity, healthy height and angle


def compute_reward(obs, action, next_obs):
    """Hop forward while staying healthy (torso high and nearly upright)."""
    height = next_obs[:, 0]
    angle = next_obs[:, 1]
    forward = np.clip(next_obs[:, 5], -2.0, 3.0)
    healthy = ((height > 0.8) & (np.abs(angle) < 0.2)).astype(np.float64)
    posture = -0.5 * angle ** 2
    control = -0.001 * np.sum(action * action, axis=1)
    return {"alive": healthy, "forward": forward, "posture": posture, "control": control}
