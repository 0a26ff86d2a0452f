# task: metaworld-push-v3
# written-by: robo_reward team (hand-written)
# summary: push a puck across a table to a goal with a gripper; reach the puck, then bring puck to goal


def compute_reward(obs, action, next_obs):
    """Reach the puck with the gripper, then push the puck to the goal on the table."""
    hand = next_obs[:, 0:3]
    puck = next_obs[:, 4:7]
    goal = next_obs[:, 36:39]
    hand_to_puck = np.sqrt(np.sum((hand - puck) ** 2, axis=1))
    puck_to_goal = np.sqrt(np.sum((puck[:, 0:2] - goal[:, 0:2]) ** 2, axis=1))
    reach = 1.0 - np.tanh(hand_to_puck / 0.25)
    contact = (hand_to_puck < 0.05).astype(np.float64)
    push = contact * 2.0 * (1.0 - np.tanh(puck_to_goal / 0.2))
    done = (puck_to_goal < 0.05).astype(np.float64)
    return {"reach": reach, "push": push, "done": 5.0 * done}
