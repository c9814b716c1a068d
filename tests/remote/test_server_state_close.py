"""A session that finishes while its model still has requests waiting on a seq_id gap:
the waiting requests fail with a reason (they never hang), the gap timer that would have
skipped the gap does nothing (it used to submit to the shut-down dispatcher from a timer
thread), and later requests for the model fail instead of raising."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from kitchen.server.state import ModelEntry, ServerState, Session


def test_finishing_a_session_fails_its_waiting_requests_and_disarms_the_gap_timer() -> None:
    loop = asyncio.new_event_loop()
    state = ServerState(backend=None, store=None, loop=loop, seq_gap_s=0.2)  # type: ignore[arg-type]
    session = Session(session_id="s1", models=["m1"])
    entry = ModelEntry(model_id="m1", session_id="s1", base_model="base", lora_rank=4, seed=0)
    entry.ready.set()
    state.sessions["s1"], state.models["m1"] = session, entry

    ran: list[int] = []
    thread_errors: list[BaseException | None] = []
    previous_hook = threading.excepthook
    threading.excepthook = lambda args: thread_errors.append(args.exc_value)
    try:

        def run(_job: Any) -> None:
            ran.append(1)

        waiting = state.submit_sequenced(entry, 2, "forward_backward", run)  # seq 1 never comes
        assert not waiting.done
        state.finish_session("s1")
        assert waiting.done and waiting.error is not None and "session finished" in waiting.error

        time.sleep(0.6)  # past the gap timer
        assert thread_errors == []
        assert ran == []

        late = state.submit_sequenced(entry, 3, "forward_backward", run)
        assert late.done and late.error is not None and "session finished" in late.error
        unsequenced = state.submit_sequenced(entry, None, "optim_step", run)
        assert unsequenced.done and unsequenced.error is not None
        assert ran == []
    finally:
        threading.excepthook = previous_hook
        loop.close()
