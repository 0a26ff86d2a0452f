# task: mujoco-inverted-pendulum-v5
# written-by: robo_reward team (hand-written)
# summary: balance a pole upright on a cart; Gaussian uprightness, keep the cart centred, damp swinging


def compute_reward(obs, action, next_obs):
    """Keep the pole vertical and the cart near the middle of the rail."""
    cart = next_obs[:, 0]
    angle = next_obs[:, 1]
    angular_velocity = next_obs[:, 3]
    upright = np.exp(-(angle / 0.1) ** 2)
    centred = -0.05 * cart ** 2
    still = -0.01 * angular_velocity ** 2
    return {"upright": upright, "centred": centred, "still": still}
