"""MQTT publishing against a real Mosquitto broker on 127.0.0.1, subscribed to with the same client library.

Skipped, with the reason, where the ``mosquitto`` binary is not installed. No timing assertions: "never
blocks" is shown by ``publish`` being synchronous and queueing while the broker is down.
"""

from __future__ import annotations

import asyncio
import json

import aiomqtt
import pytest

from har_stream.errors import ConfigError
from har_stream.events import ActionEvent
from server.mqtt import MqttPublisher, MqttSettings
from tests.helpers.label_events import action_event, until
from tests.helpers.mqtt_broker import MosquittoBroker
from tests.helpers.webhook_receiver import free_port

FAST = {"backoff_s": 0.05, "max_backoff_s": 0.2, "timeout_s": 5.0}


def event(n: int, phase: str = "start", stream: str = "door") -> ActionEvent:
    return action_event(n, phase, stream)


async def receive(client: aiomqtt.Client, count: int, timeout: float = 20.0) -> list[aiomqtt.Message]:
    got: list[aiomqtt.Message] = []

    async def collect() -> None:
        async for message in client.messages:
            got.append(message)
            if len(got) == count:
                return

    await asyncio.wait_for(collect(), timeout)
    return got


@pytest.fixture
def broker(tmp_path):
    with MosquittoBroker(tmp_path / "broker") as running:
        yield running


async def test_events_arrive_on_their_streams_topic_with_qos_1(broker):
    settings = MqttSettings.from_url(f"mqtt://127.0.0.1:{broker.port}/site-a/har", **FAST)
    async with aiomqtt.Client("127.0.0.1", broker.port) as watcher:
        await watcher.subscribe("site-a/har/+/events", qos=1)
        async with MqttPublisher(settings) as mqtt:
            sent = [event(1, stream="door/cam#1"), event(1, "end", stream="door/cam#1"), event(2, stream="yard")]
            for action in sent:
                mqtt.publish(action)
            await mqtt.flush()
            stats = mqtt.stats()
            messages = await receive(watcher, 3)
    assert [str(m.topic) for m in messages] == ["site-a/har/door_cam_1/events"] * 2 + ["site-a/har/yard/events"]
    assert [json.loads(m.payload) for m in messages] == [a.to_json() for a in sent]
    assert all(m.qos == 1 for m in messages)
    assert (stats.connected, stats.published, stats.failed, stats.dropped, stats.queued) == (True, 3, 0, 0, 0)
    assert stats.connects == 1 and stats.last_published_at is not None
    assert stats.broker == f"mqtt://127.0.0.1:{broker.port}"


async def test_a_broker_outage_never_blocks_publish_and_the_events_arrive_after_it(tmp_path):
    broker = MosquittoBroker(tmp_path / "broker").start()
    try:
        async def watcher() -> aiomqtt.Client:  # a persistent session: the broker keeps its messages while away
            return aiomqtt.Client("127.0.0.1", broker.port, identifier="watcher", clean_session=False)

        async with await watcher() as client:
            await client.subscribe("har-stream/+/events", qos=1)
        async with MqttPublisher(MqttSettings("127.0.0.1", broker.port, **FAST)) as mqtt:
            mqtt.publish(event(0))
            await mqtt.flush()
            broker.stop()
            await until(lambda: not mqtt.stats().connected)  # the publisher noticed the broker went away
            for n in range(1, 4):
                mqtt.publish(event(n))  # returns at once although nothing can be sent
            await until(lambda: mqtt.stats().connect_failures >= 2)  # it keeps trying, with backoff
            stats = mqtt.stats()
            assert (stats.published, stats.queued, stats.dropped) == (1, 3, 0)
            assert stats.last_error is not None
            broker.start()
            await mqtt.flush()
            stats = mqtt.stats()
        async with await watcher() as client:
            messages = await receive(client, 4)
    finally:
        broker.stop()
    assert [json.loads(m.payload)["id"] for m in messages] == ["e0", "e1", "e2", "e3"]
    assert (stats.published, stats.failed, stats.connects) == (4, 0, 2)


async def test_with_no_broker_publish_queues_drops_the_oldest_and_close_does_not_hang():
    mqtt = MqttPublisher(MqttSettings("127.0.0.1", free_port(), queue_size=2, **FAST))
    await mqtt.start()
    try:
        for n in range(5):
            mqtt.publish(event(n))
        await until(lambda: mqtt.stats().connect_failures >= 1)
        stats = mqtt.stats()
        assert (stats.connected, stats.queued, stats.dropped, stats.published) == (False, 2, 3, 0)
        assert "MqttError" in stats.last_error
    finally:
        await mqtt.aclose()
    mqtt.publish(event(9))
    assert mqtt.stats().dropped == 4


def test_settings_from_a_url():
    plain = MqttSettings.from_url("mqtt://broker.local")
    assert (plain.host, plain.port, plain.tls, plain.topic_prefix, plain.qos) == ("broker.local", 1883, False,
                                                                                   "har-stream", 1)
    full = MqttSettings.from_url("mqtts://me:p%40ss@broker.local:9999/site/cams/", retain=True)
    assert (full.port, full.tls, full.username, full.password, full.topic_prefix, full.retain) == (
        9999, True, "me", "p@ss", "site/cams", True)
    assert "p@ss" not in repr(full) and full.broker == "mqtts://broker.local:9999"
    assert MqttSettings.from_url("mqtts://b").port == 8883
    assert full.topic("a/b+c#d") == "site/cams/a_b_c_d/events"


@pytest.mark.parametrize(("url", "message"), [
    ("http://broker", "must be an mqtt:// or mqtts:// URL"),
    ("mqtt://user:pw@/x", r"'mqtt://\*\*\*@/x'"),  # no credentials in the message
    ("mqtt://broker:99999", "bad port"),
    ("mqtt://broker/a/+", "without \\+ or #"),
    ("mqtt://broker/a/#", "query or fragment"),
])
def test_bad_broker_urls_are_clear_errors(url, message):
    with pytest.raises(ConfigError, match=message):
        MqttSettings.from_url(url)


def test_bad_settings_are_clear_errors():
    with pytest.raises(ConfigError, match="QoS"):
        MqttSettings("b", qos=3)
    with pytest.raises(ConfigError, match="backoff"):
        MqttSettings("b", backoff_s=2.0, max_backoff_s=1.0)


def test_reconnect_delay_stays_at_its_cap_however_long_the_broker_is_down() -> None:
    """After ~1,000 failed connects (8 h at the 30 s cap) the doubling overflows a float; it must stay capped,
    not kill the publisher."""
    settings = MqttSettings(host="broker.example", backoff_s=1.0, max_backoff_s=30.0)
    assert [settings.delay(n) for n in (1, 2, 3, 6, 1025, 10**6)] == [1.0, 2.0, 4.0, 30.0, 30.0, 30.0]
