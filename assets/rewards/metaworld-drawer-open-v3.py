# task: metaworld-drawer-open-v3
# written-by: robo_reward team (hand-written)
# summary: grasp a drawer handle and pull the drawer open; reach the handle, then move handle to the open position


def compute_reward(obs, action, next_obs):
    """Reach the drawer handle, then pull it towards its fully-open position."""
    hand = next_obs[:, 0:3]
    handle = next_obs[:, 4:7]
    goal = next_obs[:, 36:39]
    hand_to_handle = np.sqrt(np.sum((hand - handle) ** 2, axis=1))
    handle_to_goal = np.sqrt(np.sum((handle - goal) ** 2, axis=1))
    reach = 1.0 - np.tanh(hand_to_handle / 0.25)
    pull = (hand_to_handle < 0.05) * 2.0 * (1.0 - np.tanh(handle_to_goal / 0.1))
    opened = (handle_to_goal < 0.03).astype(np.float64)
    return {"reach": reach, "pull": pull.astype(np.float64), "opened": 5.0 * opened}
