"""The per-coordinate Kalman filter gives the textbook 8x8 filter's numbers."""

from __future__ import annotations

import numpy as np

from appliance.tracking import kalman

F = np.eye(8)
F[:4, 4:] = np.eye(4)
H = np.eye(4, 8)


def std(h: float, factor: float, aspect: float) -> np.ndarray:
    return np.array([factor * h, factor * h, aspect, factor * h])


def textbook(measurements: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One track through the full matrix form: x' = Fx, P' = FPF' + Q; K = PH'(HPH' + R)^-1."""
    z0 = measurements[0]
    x = np.concatenate([z0, np.zeros(4)])
    P = np.diag(np.concatenate([std(z0[3], 2 * kalman.STD_POSITION, 1e-2),
                                std(z0[3], 10 * kalman.STD_VELOCITY, 1e-5)]) ** 2)
    for z in measurements[1:]:
        Q = np.diag(np.concatenate([std(x[3], kalman.STD_POSITION, 1e-2), std(x[3], kalman.STD_VELOCITY, 1e-5)]) ** 2)
        x, P = F @ x, F @ P @ F.T + Q
        S = H @ P @ H.T + np.diag(std(x[3], kalman.STD_POSITION, 1e-1) ** 2)
        K = P @ H.T @ np.linalg.inv(S)
        x, P = x + K @ (z - H @ x), P - K @ S @ K.T
    return x, P


def test_per_coordinate_filter_equals_the_matrix_form() -> None:
    rng = np.random.default_rng(7)
    tracks = 5
    walk = np.cumsum(rng.normal([3, -2, 0, 0.5], [2, 2, 0.01, 1], (12, tracks, 4)), axis=0)
    measurements = walk + np.array([300, 200, 0.8, 90])  # [frames, tracks, 4]
    mean, cov = kalman.initiate(measurements[0].T)  # columns: one per track
    for z in measurements[1:]:
        mean, cov = kalman.predict(mean, cov)
        mean, cov = kalman.update(mean, cov, z.T)
    for t in range(tracks):
        x, P = textbook(measurements[:, t])
        np.testing.assert_allclose(mean[:, t], x, rtol=1e-9, atol=1e-9)
        i = np.arange(4)
        np.testing.assert_allclose(cov[kalman.PP, :, t], P[i, i], rtol=1e-9)
        np.testing.assert_allclose(cov[kalman.PV, :, t], P[i, i + 4], rtol=1e-9)
        np.testing.assert_allclose(cov[kalman.VV, :, t], P[i + 4, i + 4], rtol=1e-9)
    assert abs(mean[4, 0] - 3) < 1.5  # it learned the velocity


def test_boxes_and_states_round_trip() -> None:
    boxes = np.array([[10.0, 20.0, 50.0, 100.0], [0.0, 0.0, 4.0, 2.0]]).T
    mean, _ = kalman.initiate(kalman.boxes_to_measurements(boxes))
    np.testing.assert_allclose(kalman.states_to_boxes(mean), boxes)


def test_frames_further_apart_let_a_velocity_change_sooner() -> None:
    """A box walks 30 px per analyzed frame, then stops. At 5 analyzed frames per second (six 30-fps
    frames apart) the filter must learn of the stop in a few frames; with per-frame noise it would
    predict the walk going on for a second and more."""
    def overshoot(steps: float) -> float:
        mean, cov = kalman.initiate(np.array([[100.0], [200.0], [0.4], [150.0]]))
        for x in [130.0 + 30 * k for k in range(10)] + [400.0] * 3:
            mean, cov = kalman.predict(mean, cov, steps)
            mean, cov = kalman.update(mean, cov, np.array([[x], [200.0], [0.4], [150.0]]))
        predicted, _ = kalman.predict(mean, cov, steps)
        return float(predicted[0, 0] - 400.0)  # cx of the one track

    assert overshoot(6.0) < 0.5 * overshoot(1.0)
    assert overshoot(6.0) < 15.0  # half a step
