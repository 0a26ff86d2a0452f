# task: metaworld-button-press-v3
# written-by: robo_reward team (hand-written)
# summary: press a button on the front of a box with the gripper; reach the button face, then push it in


def compute_reward(obs, action, next_obs):
    """Bring the closed gripper to the button's face, then push the face to its pressed-in position."""
    hand = next_obs[:, 0:3]
    opening = next_obs[:, 3]
    button = next_obs[:, 4:7]
    goal = next_obs[:, 36:39]
    hand_to_button = np.sqrt(np.sum((hand - button) ** 2, axis=1))
    press_left = np.abs(button[:, 1] - goal[:, 1])  # the button moves along y
    reach = 1.0 - np.tanh(hand_to_button / 0.25)
    closed = 0.2 * (1.0 - opening)
    press = (hand_to_button < 0.05) * 2.0 * (1.0 - np.tanh(press_left / 0.05))
    pressed = (press_left < 0.02).astype(np.float64)
    return {"reach": reach, "closed": closed, "press": press.astype(np.float64), "pressed": 5.0 * pressed}
