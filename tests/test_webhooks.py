"""Webhook delivery against real aiohttp receivers on 127.0.0.1: order, signatures, retries, a dead receiver,
overflow, and a real clip's events.

No timing assertions (the machine is shared): "never blocks" is shown by ``publish`` being synchronous and the
whole recognition run finishing while every delivery to a dead receiver is still waiting to be retried.
"""

from __future__ import annotations

import hashlib
import hmac

import pytest

from har_stream.errors import ConfigError
from har_stream.events import ActionEvent
from server.webhooks import SIGNATURE_HEADER, WebhookDispatcher, WebhookSettings, sign
from tests.helpers.event_stream import run_clip, write_two_action_clip
from tests.helpers.label_events import action_event, until
from tests.helpers.webhook_receiver import WebhookReceiver, free_port

FAST = {"backoff_s": 0.05, "max_backoff_s": 0.2, "timeout_s": 5.0}


def event(n: int, phase: str = "start", stream: str = "cam") -> ActionEvent:
    return action_event(n, phase, stream)


async def test_a_receiver_gets_the_events_of_a_real_clip_in_order_and_signed(tiny_checkpoint, tmp_path,
                                                                            one_torch_thread):
    clip = write_two_action_clip(tmp_path / "clip.mp4")
    published: list[ActionEvent] = []
    async with WebhookReceiver() as receiver:
        settings = WebhookSettings(urls=(receiver.url(),), secret="s3cret",
                                   snapshot_base="http://har.example:8000/api/events", **FAST)
        async with WebhookDispatcher(settings) as hooks:
            def emit(action: ActionEvent) -> None:
                published.append(action)
                hooks.publish(action)

            await run_clip(tiny_checkpoint, clip, emit)
            await hooks.flush()
            (stats,) = hooks.stats()
    assert [(e.label, e.phase) for e in published if e.phase != "update"] == [
        ("moving left", "start"), ("moving left", "end"), ("holding still", "start"), ("holding still", "end")]
    assert receiver.delivered == [e.to_json("http://har.example:8000/api/events") for e in published]
    for request, action in zip(receiver.requests, published, strict=True):
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["X-Har-Stream-Event"] == action.phase
        assert request.headers["X-Har-Stream-Delivery"] == f"{action.id}-{action.seq}"
        expected = "sha256=" + hmac.new(b"s3cret", request.body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(request.headers[SIGNATURE_HEADER], expected)
    assert receiver.delivered[0]["snapshot"] == f"http://har.example:8000/api/events/{published[0].id}/snapshot.jpg"
    assert (stats.delivered, stats.failed, stats.retried, stats.dropped, stats.queued) == (len(published), 0, 0, 0, 0)
    assert stats.last_delivered_at is not None and stats.last_error is None


async def test_a_dead_receiver_does_not_stall_recognition_and_gets_everything_once_it_is_up(tiny_checkpoint,
                                                                                         tmp_path,
                                                                                         one_torch_thread):
    clip = write_two_action_clip(tmp_path / "clip.mp4")
    port = free_port()  # nothing listens here yet: every delivery is refused at first
    settings = WebhookSettings(urls=(f"http://127.0.0.1:{port}/hook",), max_attempts=1000, **FAST)
    published: list[ActionEvent] = []
    async with WebhookDispatcher(settings) as hooks:
        def emit(action: ActionEvent) -> None:
            published.append(action)
            hooks.publish(action)  # synchronous: it cannot wait for the receiver

        await run_clip(tiny_checkpoint, clip, emit)  # recognition runs to the end of the clip
        await until(lambda: hooks.stats()[0].retried >= 2)
        (stats,) = hooks.stats()
        assert len(published) >= 4 and stats.delivered == 0 and stats.queued >= len(published) - 1
        assert "Cannot connect" in stats.last_error, stats.last_error
        async with WebhookReceiver(port=port) as receiver:
            await hooks.flush()
        (stats,) = hooks.stats()
    assert receiver.delivered == [e.to_json() for e in published]  # all of them, in order, once each
    assert (stats.delivered, stats.failed, stats.dropped) == (len(published), 0, 0)
    assert stats.retried >= 2


async def test_a_receiver_answering_500_is_retried_until_it_recovers():
    async with WebhookReceiver(statuses=[500, 503]) as receiver:
        async with WebhookDispatcher(WebhookSettings(urls=(receiver.url(),), **FAST)) as hooks:
            hooks.publish(event(1))
            hooks.publish(event(1, "end"))
            await hooks.flush()
            (stats,) = hooks.stats()
    assert [r.status for r in receiver.requests] == [500, 503, 200, 200]
    assert [r.headers["X-Har-Stream-Delivery"] for r in receiver.requests] == ["e1-0", "e1-0", "e1-0", "e1-1"]
    assert [d["phase"] for d in receiver.delivered] == ["start", "end"]
    assert (stats.delivered, stats.retried, stats.failed) == (2, 2, 0)
    assert stats.last_error == "HTTP 503 Service Unavailable"


async def test_attempts_are_capped_and_a_client_error_is_not_retried():
    async with WebhookReceiver(statuses=[502, 502, 502, 400]) as receiver:
        settings = WebhookSettings(urls=(receiver.url(),), max_attempts=3, **FAST)
        async with WebhookDispatcher(settings) as hooks:
            hooks.publish(event(1))  # 502 three times: given up
            hooks.publish(event(2))  # 400: sending it again cannot help
            hooks.publish(event(3))  # delivered: one bad message does not stop the queue
            await hooks.flush()
            (stats,) = hooks.stats()
    assert [r.status for r in receiver.requests] == [502, 502, 502, 400, 200]
    assert (stats.delivered, stats.failed, stats.retried) == (1, 2, 2)
    assert receiver.delivered[0]["id"] == "e3"


async def test_a_full_queue_drops_the_oldest_waiting_message_and_counts_it():
    port = free_port()
    settings = WebhookSettings(urls=(f"http://127.0.0.1:{port}/hook",), queue_size=2, max_attempts=1000, **FAST)
    async with WebhookDispatcher(settings) as hooks:
        hooks.publish(event(0))
        await until(lambda: hooks.stats()[0].retried >= 1)  # e0 is being retried, out of the queue
        for n in range(1, 5):
            hooks.publish(event(n))
        (stats,) = hooks.stats()
        assert (stats.queued, stats.dropped) == (2, 2)  # e1 and e2 were pushed out by e3 and e4
        async with WebhookReceiver(port=port) as receiver:
            await hooks.flush()
    assert [d["id"] for d in receiver.delivered] == ["e0", "e3", "e4"]


async def test_every_url_gets_its_own_queue_so_a_dead_one_does_not_hold_up_a_live_one():
    dead = f"http://127.0.0.1:{free_port()}/hook"
    async with WebhookReceiver() as receiver:
        settings = WebhookSettings(urls=(dead, receiver.url()), max_attempts=1000, **FAST)
        hooks = WebhookDispatcher(settings)
        await hooks.start()
        try:
            for n in range(3):
                hooks.publish(event(n))
            await receiver.wait_for(3)
            dead_stats, live_stats = hooks.stats()
            assert live_stats.delivered == 3 and dead_stats.delivered == 0
        finally:
            await hooks.aclose()  # cancels the retrying delivery and waits for it
    assert [d["id"] for d in receiver.delivered] == ["e0", "e1", "e2"]
    hooks.publish(event(9))  # after close: counted as dropped, never raises
    assert [s.dropped for s in hooks.stats()] == [1, 1]


def test_signatures_are_hmac_sha256_of_the_body():
    assert sign("key", b"{}") == "sha256=" + hmac.new(b"key", b"{}", hashlib.sha256).hexdigest()


@pytest.mark.parametrize(("kw", "message"), [
    ({"urls": ("ftp://host/x",)}, "must be an http:// or https:// URL"),
    ({"urls": ("http://user:pw@/x",)}, r"'http://\*\*\*@/x'"),  # no credentials in the message
    ({"urls": ("http://a/x", "http://a/x")}, "listed twice"),
    ({"secret": ""}, "secret must not be empty"),
    ({"max_attempts": 0}, "attempts"),
    ({"backoff_s": 5.0, "max_backoff_s": 1.0}, "backoff"),
    ({"queue_size": 0}, "queue size"),
])
def test_bad_settings_are_clear_errors(kw, message):
    with pytest.raises(ConfigError, match=message):
        WebhookSettings(**kw)


def test_the_backoff_doubles_up_to_its_cap():
    settings = WebhookSettings(backoff_s=0.5, max_backoff_s=3.0)
    assert [settings.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_receivers_are_shown_without_path_query_or_credentials() -> None:
    """Chat webhooks carry their secret in the path or query: stats, /metrics and logs show scheme, host and port
    only, and receivers that would look alike stay distinct."""
    from server.webhooks import shown_urls

    urls = ["https://hooks.example.com/services/T0/B0/s3cret", "https://hooks.example.com/other?token=s3cret",
            "http://user:pw@10.0.0.5:8080/", "http://receiver.example:9000"]
    shown = shown_urls(urls)
    assert shown == ["https://hooks.example.com/… #1", "https://hooks.example.com/… #2", "http://***@10.0.0.5:8080",
                     "http://receiver.example:9000"]
    assert not any("s3cret" in s or "pw" in s for s in shown)
