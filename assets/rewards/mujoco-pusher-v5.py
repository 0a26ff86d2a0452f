# task: mujoco-pusher-v5
# written-by: robo_reward team (hand-written)
# summary: push an object to a goal with an arm; reach the object first, then move it, staged distance terms


def compute_reward(obs, action, next_obs):
    """Stage 1: bring the fingertip next to the cylinder; stage 2: push the cylinder onto the goal."""
    tip = next_obs[:, 14:17]
    cylinder = next_obs[:, 17:20]
    goal = next_obs[:, 20:23]
    tip_to_object = np.sqrt(np.sum((tip - cylinder) ** 2, axis=1))
    object_to_goal = np.sqrt(np.sum((cylinder - goal) ** 2, axis=1))
    reach = 0.5 * (1.0 - np.tanh(tip_to_object / 0.3))
    push = 1.0 - np.tanh(object_to_goal / 0.2)
    placed = (object_to_goal < 0.08).astype(np.float64)
    control = -0.01 * np.sum(action * action, axis=1)
    return {"reach": reach, "push": push, "placed": placed, "control": control}
