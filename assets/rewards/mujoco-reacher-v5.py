# task: mujoco-reacher-v5
# written-by: robo_reward team (hand-written)
# summary: reach a target with a two-link arm; bounded distance reward, success bonus, small torque penalty


def compute_reward(obs, action, next_obs):
    """Bring the fingertip to the target, smoothly (the quickstart's reward as a reward program)."""
    offset = next_obs[:, 8:10]                      # fingertip minus target (m)
    distance = np.sqrt(np.sum(offset * offset, axis=1))
    reach = 1.0 - np.tanh(distance / 0.1)           # 1 on the target, ~0.24 at 10 cm
    bonus = (distance < 0.02).astype(np.float64)    # inside 2 cm
    control = -0.2 * np.sum(action * action, axis=1)
    return {"reach": reach, "bonus": bonus, "control": control}
