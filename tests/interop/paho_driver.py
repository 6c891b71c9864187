"""paho_driver.py drives one Eclipse Paho Python client (paho-mqtt 1.6) for imb's
interop tests.

It speaks the line protocol of mqttjs_driver.mjs: one JSON command per line on
stdin, one JSON line per thing the client saw on stdout, in paho's own terms (the
rc or ReasonCodes its callbacks receive, and paho's texts for them). See
driver_test.go for the commands and events.
"""

import json
import sys
import threading

import paho.mqtt
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

AUTH_METHOD = "OAUTH2-JWT"
_out = threading.Lock()


def emit(**event):
    with _out:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()


def code_of(rc):
    """A paho rc is an int (3.1.1) or a ReasonCodes object (5)."""
    if rc is None:
        return -1
    if isinstance(rc, int):
        return rc
    return rc.value


def text_of(rc, v5):
    if rc is None:
        return ""
    if v5 and not isinstance(rc, int):
        return str(rc)
    return mqtt.connack_string(rc)


class Driver:
    def __init__(self):
        self.client = None
        self.loop = None
        self.stopping = threading.Event()
        self.v5 = False

    def connect(self, c):
        self.v5 = c["version"] == 5
        proto = mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311
        kwargs = {"client_id": c["clientId"], "protocol": proto}
        if not self.v5:
            kwargs["clean_session"] = c.get("clean", True)
        cl = mqtt.Client(**kwargs)
        if c.get("username") or c.get("password"):
            cl.username_pw_set(c.get("username") or None, c.get("password") or None)
        will = c.get("will")
        if will:
            cl.will_set(will["topic"], will["payload"], will["qos"], will["retain"])
        cl.on_connect = self.on_connect
        cl.on_disconnect = self.on_disconnect
        cl.on_subscribe = self.on_subscribe
        cl.on_publish = self.on_publish
        cl.on_message = self.on_message
        props = None
        if self.v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = c.get("sessionExpiry", 0)
            if c.get("authData"):
                props.AuthenticationMethod = AUTH_METHOD
                props.AuthenticationData = c["authData"].encode()
        self.client = cl
        host, port = c["url"].split("://", 1)[1].rsplit(":", 1)
        try:
            if self.v5:
                cl.connect(host, int(port), keepalive=30, clean_start=c.get("clean", True), properties=props)
            else:
                cl.connect(host, int(port), keepalive=30)
        except OSError as e:
            emit(ev="error", code=-1, text=str(e))
            return
        # An own network loop instead of loop_start(): paho's thread reconnects after a
        # refusal or a disconnect, and the test must see each connection end once.
        self.loop = threading.Thread(target=self.network_loop, args=(cl,), daemon=True)
        self.loop.start()

    def network_loop(self, cl):
        while not self.stopping.is_set():
            if cl.loop(timeout=0.2) != mqtt.MQTT_ERR_SUCCESS:
                return

    def on_connect(self, client, userdata, flags, rc, properties=None):
        emit(ev="connack", code=code_of(rc), text=text_of(rc, self.v5),
             sessionPresent=bool(flags.get("session present")))

    def on_disconnect(self, client, userdata, rc, properties=None):
        # paho reports a server DISCONNECT's reason code (MQTT 5), or its own error
        # number when the connection was lost.
        text = str(rc) if self.v5 and not isinstance(rc, int) else mqtt.error_string(rc)
        emit(ev="disconnect", code=code_of(rc), text=text)

    def on_subscribe(self, client, userdata, mid, granted, properties=None):
        emit(ev="suback", granted=[code_of(g) for g in granted],
             text=", ".join(str(g) for g in granted) if self.v5 else "")

    def on_publish(self, client, userdata, mid):
        # paho 1.6 calls this on PUBACK/PUBCOMP whatever their reason code.
        emit(ev="puback", code=0, text="")

    def on_message(self, client, userdata, msg):
        emit(ev="message", topic=msg.topic, payload=msg.payload.decode(errors="replace"),
             qos=msg.qos, retain=bool(msg.retain))

    def run(self, c):
        op = c["op"]
        if op == "connect":
            self.connect(c)
        elif op == "subscribe":
            rc, _ = self.client.subscribe(c["topic"], c["qos"])
            if rc != mqtt.MQTT_ERR_SUCCESS:
                emit(ev="error", code=rc, text=mqtt.error_string(rc))
        elif op == "publish":
            info = self.client.publish(c["topic"], c["payload"], c["qos"], c.get("retain", False))
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                emit(ev="error", code=info.rc, text=mqtt.error_string(info.rc))
        elif op == "end":
            self.client.disconnect()
            self.stopping.set()
            self.loop.join(timeout=5)
            emit(ev="ended")
        else:
            emit(ev="error", code=-1, text="driver: unsupported op " + op)


def main():
    d = Driver()
    emit(ev="ready", library="paho-mqtt", version=paho.mqtt.__version__)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            d.run(json.loads(line))
        except Exception as e:  # the test reads the failure from the event stream
            emit(ev="error", code=-1, text="driver: %s" % e)


if __name__ == "__main__":
    main()
