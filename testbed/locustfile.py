"""The original load test: its user behaviour and its hourly ``LoadTestShape``.

Each user registers then deletes a user on start, then lists users with 0.5 s between
requests. The shape is the simulator's (see testbed/shape.py): 12 stages of 300 s from 10
up to 1000 users and back, spawn rate 1 user/s, repeating every hour of run time.

    locust -f testbed/locustfile.py --host http://127.0.0.1:8080 --headless

For tests, ``--time-scale`` compresses time (60: one cycle per minute, 5 s stages) and
``--user-scale`` shrinks every stage (0.02: 1000 users -> 20); the spawn rate scales with
both so ramps keep their share of a stage. ``--run-time`` bounds the run.
"""

from __future__ import annotations

from locust import HttpUser, LoadTestShape, constant, events, task

from telemetry.simulator import THINK_TIME
from testbed.shape import stage_at

FORM = {
    "name": "Roberto Campos",
    "email": "robertocampos@email.com",
    "password": "1234",
    "cellphoneNumber": "12999998888",
}


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        env_var="LOCUST_TIME_SCALE",
        help="compress the load shape's time by this factor (60: one cycle per minute)",
    )
    parser.add_argument(
        "--user-scale",
        type=float,
        default=1.0,
        env_var="LOCUST_USER_SCALE",
        help="multiply every stage's users by this factor (at least 1 user)",
    )


class FormUser(HttpUser):
    wait_time = constant(THINK_TIME)

    def on_start(self) -> None:
        with self.client.post("/registrar", json=FORM, catch_response=True) as response:
            try:
                user_id = response.json()["id"]
            except (ValueError, KeyError, TypeError):
                response.failure(f"registration answered {response.status_code} without an id")
                return
        self.client.delete(f"/usuario/delete/{user_id}", name="/usuario/delete/[id]")

    @task
    def list_users(self) -> None:
        self.client.get("/usuarios")


class OriginalShape(LoadTestShape):
    """The original hourly shape; stops at ``--run-time`` when one is given."""

    use_common_options = True  # so that --run-time reaches the shape instead of being ignored

    def tick(self) -> tuple[int, float] | None:
        options = self.runner.environment.parsed_options if self.runner else None
        run_time = self.get_run_time()
        limit = getattr(options, "run_time", None)
        if limit and run_time >= limit:
            return None
        return stage_at(run_time, getattr(options, "time_scale", 1.0), getattr(options, "user_scale", 1.0))
