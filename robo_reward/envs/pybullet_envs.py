"""Gymnasium envs on PyBullet (``pip install "robo-reward[pybullet]"``).

:class:`KukaReachEnv` — a KUKA LBR iiwa 7-DoF arm (``kuka_iiwa/model.urdf`` from
``pybullet_data``) must bring its end effector (the flange frame of link 7) to a goal
point drawn in front of it, shown as a red ball. It runs PyBullet in ``DIRECT`` mode
(no window, one physics server per env, so several envs can share a process) and
renders ``rgb_array`` frames with PyBullet's CPU TinyRenderer.

Importing this module registers the Gymnasium id ``KukaIiwaReach-v1``; the task card
``pybullet-kuka-reach-v1`` builds it::

    from robo_reward.envs import make_env
    env = make_env("pybullet-kuka-reach-v1", reward="sparse-success", render_mode="rgb_array")

Observation (``float32[23]``, world frame: x forward from the robot base, y to its left,
z up; the base stands at the origin on the floor ``z = 0``):

=======  ======================  =====  ==============================================
index    name                    units  meaning
=======  ======================  =====  ==============================================
0:7      joint_positions         rad    angles of joints 1..7 (base to flange)
7:14     joint_velocities        rad/s  angular velocities of joints 1..7
14:17    end_effector_position   m      position of the flange frame (link 7)
17:20    goal_position           m      the goal point (fixed during an episode)
20:23    end_effector_to_goal    m      ``goal_position - end_effector_position``
=======  ======================  =====  ==============================================

Action (``float32[7]`` in ``[-1, 1]``): joint position increments; the joints' position
targets become ``clip(q + 0.05 * action, joint limits)`` (at most 0.05 rad, about 2.9°,
per step), tracked by PyBullet's position controller. One step is 4 physics steps of
1/240 s, so the control rate is 60 Hz.

Reward (the env's own, ground truth): ``-distance`` (metres) between the end effector
and the goal. ``info`` carries ``distance`` (m) and ``success`` (``distance < 0.05``).
Episodes never terminate; the time limit comes from the task card.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pybullet
import pybullet_data
from pybullet_utils import bullet_client

#: The Gymnasium id registered on import.
KUKA_REACH_ID = "KukaIiwaReach-v1"

#: Success radius (metres): the end effector is within this distance of the goal.
KUKA_REACH_SUCCESS_RADIUS = 0.05

#: Named camera views: ``(target xyz, distance, yaw, pitch)`` for PyBullet's orbit camera (degrees).
KUKA_CAMERAS: dict[str, tuple[tuple[float, float, float], float, float, float]] = {
    "front": ((0.3, 0.0, 0.4), 1.45, 60.0, -25.0),
    "side": ((0.35, 0.0, 0.45), 1.7, 0.0, -15.0),
    "top": ((0.35, 0.0, 0.3), 1.6, 90.0, -80.0),
}


class KukaReachEnv(gym.Env):
    """KUKA iiwa reach task in PyBullet: move the end effector to within 5 cm of a goal point.

    See the module docstring for the observation, action and reward.

    Args:
        render_mode: ``None`` or ``"rgb_array"``.
        width, height: frame size of :meth:`render` in pixels.
        camera_name: one of :data:`KUKA_CAMERAS` (``front``, ``side``, ``top``).
        camera_roll: degrees to turn the camera about its viewing axis.
        shadows: draw shadows (TinyRenderer; slower).
        max_joint_step: joint target change per step at ``|action| = 1`` (rad).
        frame_skip: physics steps (of ``1/240`` s) per env step.
        goal_low, goal_high: corners of the box the goal is drawn from (m).
        init_noise: half-width of the uniform noise added to the home pose at reset (rad).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 60}

    #: Joint angles at reset before noise (rad): the arm bent forward over the goal region.
    HOME = np.array([0.0, 0.4, 0.0, -1.2, 0.0, 1.0, 0.0])
    #: Index of the end-effector link (the flange, ``lbr_iiwa_link_7``).
    EE_LINK = 6
    #: Physics time step (s).
    TIME_STEP = 1.0 / 240.0

    def __init__(
        self,
        render_mode: str | None = None,
        width: int = 224,
        height: int = 224,
        camera_name: str | None = None,
        camera_roll: float = 0.0,
        shadows: bool = False,
        max_joint_step: float = 0.05,
        frame_skip: int = 4,
        goal_low: tuple[float, float, float] = (0.3, -0.3, 0.3),
        goal_high: tuple[float, float, float] = (0.6, 0.3, 0.7),
        init_noise: float = 0.05,
    ):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        camera = camera_name or "front"
        if camera not in KUKA_CAMERAS:
            raise ValueError(f"unknown camera {camera!r}; cameras: {', '.join(KUKA_CAMERAS)}")
        if int(width) <= 0 or int(height) <= 0:
            raise ValueError(f"width and height must be positive, got {width}x{height}")
        if frame_skip < 1 or max_joint_step <= 0:
            raise ValueError("frame_skip must be >= 1 and max_joint_step > 0")
        self.render_mode = render_mode
        self.width, self.height = int(width), int(height)
        self.camera_name = camera
        self.camera_roll = float(camera_roll)
        self.shadows = bool(shadows)
        self.max_joint_step = float(max_joint_step)
        self.frame_skip = int(frame_skip)
        self.goal_low = np.asarray(goal_low, dtype=np.float64)
        self.goal_high = np.asarray(goal_high, dtype=np.float64)
        self.init_noise = float(init_noise)
        self.metadata = {**self.metadata, "render_fps": int(round(1.0 / (self.TIME_STEP * self.frame_skip)))}

        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(7,), dtype=np.float32)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(23,), dtype=np.float32)

        self._client: bullet_client.BulletClient | None = None
        self._goal = np.array([0.5, 0.0, 0.5])
        self._connect()

    # ----------------------------------------------------------------------------- internals

    def _connect(self) -> None:
        """Start the env's own physics server (DIRECT mode) and load the floor, the arm and the goal marker."""
        self._client = bullet_client.BulletClient(connection_mode=pybullet.DIRECT)
        c = self._client
        c.setAdditionalSearchPath(pybullet_data.getDataPath())
        c.setTimeStep(self.TIME_STEP)
        c.setGravity(0.0, 0.0, -9.81)
        c.loadURDF("plane.urdf")
        self._robot = c.loadURDF("kuka_iiwa/model.urdf", useFixedBase=True)
        self._joints = list(range(c.getNumJoints(self._robot)))
        info = [c.getJointInfo(self._robot, j) for j in self._joints]
        self._q_low = np.array([i[8] for i in info])
        self._q_high = np.array([i[9] for i in info])
        self._forces = [float(i[10]) for i in info]
        ball = c.createVisualShape(pybullet.GEOM_SPHERE, radius=0.03, rgbaColor=[0.9, 0.1, 0.1, 1.0])
        self._goal_body = c.createMultiBody(baseMass=0.0, baseVisualShapeIndex=ball, basePosition=self._goal.tolist())

    @property
    def client(self) -> bullet_client.BulletClient:
        """The env's own PyBullet physics client (raises once the env is closed, until the next ``reset``)."""
        if self._client is None:
            raise RuntimeError("the env is closed; call reset() to start it again")
        return self._client

    def _joint_state(self) -> tuple[np.ndarray, np.ndarray]:
        states = self.client.getJointStates(self._robot, self._joints)
        return np.array([s[0] for s in states]), np.array([s[1] for s in states])

    def end_effector_position(self) -> np.ndarray:
        """World position of the end effector (flange frame), metres."""
        return np.asarray(self.client.getLinkState(self._robot, self.EE_LINK, computeForwardKinematics=True)[4])

    @property
    def goal(self) -> np.ndarray:
        """The goal point of the current episode (a copy), metres."""
        return self._goal.copy()

    def _obs(self) -> np.ndarray:
        q, qd = self._joint_state()
        ee = self.end_effector_position()
        return np.concatenate([q, qd, ee, self._goal, self._goal - ee]).astype(np.float32)

    def _info(self, obs: np.ndarray) -> dict[str, Any]:
        dist = float(np.linalg.norm(obs[20:23]))
        return {"distance": dist, "success": dist < KUKA_REACH_SUCCESS_RADIUS}

    # ----------------------------------------------------------------------------- Gymnasium API

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Put the arm in the home pose (plus noise) at rest and draw a new goal (restarting a closed env)."""
        super().reset(seed=seed)
        if self._client is None:
            self._connect()
        c = self.client
        q0 = np.clip(self.HOME + self.np_random.uniform(-self.init_noise, self.init_noise, size=7),
                     self._q_low, self._q_high)
        for j, q in zip(self._joints, q0):
            c.resetJointState(self._robot, j, float(q), 0.0)
        c.setJointMotorControlArray(self._robot, self._joints, pybullet.POSITION_CONTROL,
                                    targetPositions=q0.tolist(), forces=self._forces)
        self._goal = self.np_random.uniform(self.goal_low, self.goal_high)
        c.resetBasePositionAndOrientation(self._goal_body, self._goal.tolist(), [0.0, 0.0, 0.0, 1.0])
        obs = self._obs()
        return obs, self._info(obs)

    def step(self, action: Any):
        """Move the joint targets by ``0.05 * action`` rad and simulate ``frame_skip`` physics steps."""
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (7,):
            raise ValueError(f"action must have 7 entries, got shape {np.shape(action)}")
        if not np.all(np.isfinite(a)):
            raise ValueError("action has NaN or infinite entries")
        c = self.client
        q, _ = self._joint_state()
        target = np.clip(q + self.max_joint_step * np.clip(a, -1.0, 1.0), self._q_low, self._q_high)
        c.setJointMotorControlArray(self._robot, self._joints, pybullet.POSITION_CONTROL,
                                    targetPositions=target.tolist(), forces=self._forces)
        for _ in range(self.frame_skip):
            c.stepSimulation()
        obs = self._obs()
        info = self._info(obs)
        return obs, -info["distance"], False, False, info

    def render(self) -> np.ndarray | None:
        """An RGB frame ``uint8[height, width, 3]`` from the chosen camera (TinyRenderer), or ``None``."""
        if self.render_mode != "rgb_array":
            return None
        target, dist, yaw, pitch = KUKA_CAMERAS[self.camera_name]
        view = self.client.computeViewMatrixFromYawPitchRoll(
            cameraTargetPosition=list(target), distance=dist, yaw=yaw, pitch=pitch, roll=self.camera_roll, upAxisIndex=2
        )
        proj = self.client.computeProjectionMatrixFOV(fov=50.0, aspect=self.width / self.height, nearVal=0.05,
                                                      farVal=6.0)
        _, _, rgba, _, _ = self.client.getCameraImage(
            self.width, self.height, viewMatrix=view, projectionMatrix=proj,
            shadow=int(self.shadows), renderer=pybullet.ER_TINY_RENDERER,
        )
        return np.asarray(rgba, dtype=np.uint8).reshape(self.height, self.width, 4)[:, :, :3].copy()

    def close(self) -> None:
        """Disconnect the physics client (safe to call twice; a later ``reset`` starts a new one)."""
        if self._client is not None:
            try:
                self._client.disconnect()
            except pybullet.error:
                pass
            self._client = None

    # ----------------------------------------------------------------------------- helpers

    def expert_action(self) -> np.ndarray:
        """A scripted action towards the goal: inverse kinematics, then a clipped joint step.

        For tests and demonstrations; it reaches most goals within about 60 steps.
        """
        c = self.client
        q, _ = self._joint_state()
        q_ik = np.asarray(c.calculateInverseKinematics(
            self._robot, self.EE_LINK, self._goal.tolist(),
            lowerLimits=self._q_low.tolist(), upperLimits=self._q_high.tolist(),
            jointRanges=(self._q_high - self._q_low).tolist(), restPoses=self.HOME.tolist(), maxNumIterations=50,
        ))[: len(self._joints)]
        return np.clip((q_ik - q) / self.max_joint_step, -1.0, 1.0).astype(np.float32)


def register_pybullet_envs() -> None:
    """Register :data:`KUKA_REACH_ID` with Gymnasium (idempotent; done on import)."""
    if KUKA_REACH_ID not in gym.envs.registry:
        gym.register(id=KUKA_REACH_ID, entry_point=f"{__name__}:KukaReachEnv")


register_pybullet_envs()

__all__ = ["KUKA_CAMERAS", "KUKA_REACH_ID", "KUKA_REACH_SUCCESS_RADIUS", "KukaReachEnv", "register_pybullet_envs"]
