# task: metaworld-pick-place-v3
# written-by: robo_reward team (hand-written)
# summary: grasp a puck, lift it and carry it to a goal in the air; staged reach, grasp, lift and place terms


def compute_reward(obs, action, next_obs):
    """Reach the puck, close the gripper on it, lift it off the table and carry it to the goal."""
    hand = next_obs[:, 0:3]
    opening = next_obs[:, 3]
    puck = next_obs[:, 4:7]
    goal = next_obs[:, 36:39]
    hand_to_puck = np.sqrt(np.sum((hand - puck) ** 2, axis=1))
    puck_to_goal = np.sqrt(np.sum((puck - goal) ** 2, axis=1))
    reach = 1.0 - np.tanh(hand_to_puck / 0.25)
    near = hand_to_puck < 0.04
    grasp = near * (1.0 - opening)                  # closed fingers around the puck
    lifted = near & (puck[:, 2] > 0.04)
    carry = lifted * 3.0 * (1.0 - np.tanh(puck_to_goal / 0.2))
    placed = (puck_to_goal < 0.07).astype(np.float64)
    return {"reach": reach, "grasp": grasp.astype(np.float64), "carry": carry.astype(np.float64),
            "placed": 5.0 * placed}
