"""What abuse.sh wrote into DIR/abuse.env: the gateway binary, the MySQL
port, the Kafka node, and the topics and grants it made."""

import os


class Env:
    def __init__(self, work):
        self.work = os.path.abspath(work)
        values = {}
        with open(os.path.join(self.work, "abuse.env")) as f:
            for line in f:
                if "=" in line:
                    k, v = line.strip().split("=", 1)
                    values[k] = v
        self.values = values
        self.binary = values["DATABUS_BIN"]
        self.mysql_port = int(values["MYSQL_PORT"])
        self.bootstrap = values["KAFKA_BOOTSTRAP"]
        # The single Kafka node's directory (its kafka.pid is what gets frozen).
        self.kafka_node = values["KAFKA_NODE_DIR"]
        # Topic granted to app_key1 (group `abuse`, pub and sub), and to the
        # color-hijack grants (app_key1 group `G`, app_b group `G-eu`).
        self.pub_topic = values["PUB_TOPIC"]
        # Topic with 4 partitions granted to app_key1 group `abuse_sub`.
        self.sub_topic = values["SUB_TOPIC"]

    def dsn(self, role, group="abuse", topic=None, key="app_key1", secret="app_secret1", extra=""):
        topic = topic or (self.pub_topic if role == "pub" else self.sub_topic)
        return f"{key}:{secret}@{group}/topic={topic}&role={role}{extra}"
