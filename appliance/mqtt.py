"""The appliance's MQTT client, made from the config's ``mqtt:`` broker (paho-mqtt 2.x).

:func:`connect_client` returns a configured client whose connection is prepared
(``connect_async``) but not yet attempted: set the callbacks, then either call
``loop_start()`` (paho reconnects by itself, with the configured backoff) or
call ``reconnect()`` yourself first, as the event sink does so that it can
report why a connection failed, then ``loop_start()``.
"""

from __future__ import annotations

import ssl

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from appliance.config.delivery import MqttBrokerConfig

#: (topic, payload, qos, retain) of the last will.
Will = tuple[str, str | bytes, int, bool]

PROTOCOLS = {"5": paho.MQTTv5, "3.1.1": paho.MQTTv311}


def connect_client(
    broker: MqttBrokerConfig, client_id: str, will: Will | None = None, *, reconnect_on_failure: bool = True,
    max_inflight: int = 20,
) -> paho.Client:
    """A paho client for ``broker``: protocol, TLS, credentials, last will and reconnect backoff set.

    ``client_id`` is used as given: each client of one device needs its own (the
    broker drops an older connection with the same id); derive it from
    ``broker.client_id or <device id>``.

    With ``reconnect_on_failure=False`` the ``loop_start()`` thread ends when the
    connection is lost, for a caller that reconnects by itself. ``max_inflight``:
    QoS 1 and 2 messages sent and not yet acknowledged, at most (paho queues the rest).
    """
    protocol = PROTOCOLS[broker.protocol]
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=protocol,
        # 3.1.1: a clean session (the outbox, not the broker, keeps what is not yet delivered).
        clean_session=True if protocol == paho.MQTTv311 else None,
        reconnect_on_failure=reconnect_on_failure,
    )
    if broker.tls is not None:
        tls = broker.tls
        client.tls_set(
            ca_certs=str(tls.ca) if tls.ca else None,
            certfile=str(tls.cert) if tls.cert else None,
            keyfile=str(tls.key) if tls.key else None,
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
        client.tls_insecure_set(tls.insecure)
    if broker.username is not None:
        client.username_pw_set(broker.username, broker.password)
    if will is not None:
        topic, payload, qos, retain = will
        client.will_set(topic, payload, qos=qos, retain=retain)
    client.reconnect_delay_set(
        min_delay=max(1, round(broker.reconnect.initial_s)), max_delay=max(1, round(broker.reconnect.max_s))
    )
    client.max_inflight_messages_set(max_inflight)
    client.connect_async(broker.host, broker.port, keepalive=broker.keepalive)
    return client


def describe_connect_error(exc: BaseException, broker: MqttBrokerConfig) -> str:
    """A sentence for the log: why the broker could not be reached."""
    where = f"{broker.host}:{broker.port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate of broker {where} not accepted: {exc.verify_message or exc}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake with broker {where} failed: {exc.reason or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return f"broker {where} refused the connection (nothing listens on that port?)"
    if isinstance(exc, TimeoutError):
        return f"broker {where} did not answer (timeout)"
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot reach broker {where}: {exc.strerror}"
    return f"cannot reach broker {where}: {type(exc).__name__}: {exc}"
