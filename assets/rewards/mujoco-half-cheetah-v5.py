# task: mujoco-half-cheetah-v5
# written-by: robo_reward team (hand-written)
# summary: run forward as fast as possible with a planar legged robot; forward velocity, upright torso, torque cost


def compute_reward(obs, action, next_obs):
    """Run forward: the torso's forward velocity, a mild penalty for flipping, and a torque cost."""
    forward = next_obs[:, 8]                         # torso x-velocity (m/s)
    tilt = next_obs[:, 1]                            # torso pitch (rad)
    upright = -0.1 * np.minimum(tilt ** 2, 4.0)
    control = -0.1 * np.sum(action * action, axis=1)
    return {"forward": forward, "upright": upright, "control": control}
