# task: metaworld-reach-v3
# written-by: robo_reward team (hand-written)
# summary: move a robot gripper to a goal position in the air; distance to goal with a bonus near it


def compute_reward(obs, action, next_obs):
    """Move the hand to the goal point; the puck is irrelevant."""
    hand = next_obs[:, 0:3]
    goal = next_obs[:, 36:39]
    distance = np.sqrt(np.sum((hand - goal) ** 2, axis=1))
    reach = 1.0 - np.tanh(distance / 0.25)
    near = (distance < 0.05).astype(np.float64)
    return {"reach": 2.0 * reach, "near": near}
