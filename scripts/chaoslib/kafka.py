"""What the brokers say, asked with Apache Kafka's own command-line tools
(kafka-topics, kafka-get-offsets, kafka-console-consumer): a client
independent of the gateway's librdkafka."""

import re
import subprocess

TOOLS = {
    "topics": "org.apache.kafka.tools.TopicCommand",
    "offsets": "org.apache.kafka.tools.GetOffsetShell",
    "console": "org.apache.kafka.tools.consumer.ConsoleConsumer",
}


class Kafka:
    def __init__(self, kafka_home, log4j, bootstrap):
        self.classpath = f"{kafka_home}/libs/*"
        self.log4j = log4j
        self.bootstrap = bootstrap

    def _run(self, tool, *args, timeout=90):
        cmd = ["java", f"-Dlog4j2.configurationFile={self.log4j}", "-cp", self.classpath, TOOLS[tool],
               "--bootstrap-server", self.bootstrap, *map(str, args)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(map(str, args))}: {out.stderr.strip()[-500:]}")
        return out.stdout

    def create_topic(self, topic, partitions, replicas, *configs):
        extra = [a for c in configs for a in ("--config", c)]
        self._run("topics", "--create", "--if-not-exists", "--topic", topic, "--partitions", partitions,
                  "--replication-factor", replicas, *extra)

    def describe(self, topic):
        """{partition: (leader, replicas, isr)} with node ids as ints."""
        out = {}
        pattern = re.compile(r"Partition:\s*(\d+)\s+Leader:\s*(-?\d+|none)\s+Replicas:\s*([\d,]*)\s+Isr:\s*([\d,]*)")
        for line in self._run("topics", "--describe", "--topic", topic).splitlines():
            m = pattern.search(line)
            if m:
                leader = int(m[2]) if m[2] != "none" else -1
                nodes = lambda s: [int(x) for x in s.split(",") if x]
                out[int(m[1])] = (leader, nodes(m[3]), nodes(m[4]))
        return out

    def fully_replicated(self, topic):
        """Every partition has a leader and all its replicas in sync."""
        parts = self.describe(topic)
        return bool(parts) and all(l >= 0 and sorted(r) == sorted(i) for l, r, i in parts.values())

    def end_offsets(self, topic):
        """{partition: high watermark}."""
        out = {}
        for line in self._run("offsets", "--topic", topic, "--time", "-1").splitlines():
            name, part, offset = line.rsplit(":", 2)
            if name == topic:
                out[int(part)] = int(offset)
        return out

    def read_all(self, topic):
        """Every record of `topic`, each partition from its start to its
        current end: a list of (partition, offset, value)."""
        total = sum(self.end_offsets(topic).values())
        if total == 0:
            return []
        out = self._run("console", "--topic", topic, "--from-beginning", "--max-messages", total,
                        "--timeout-ms", 30000, "--property", "print.partition=true",
                        "--property", "print.offset=true", "--property", "print.key=false",
                        timeout=120)
        records = []
        for line in out.splitlines():
            fields = line.split("\t", 2)
            if len(fields) == 3 and fields[0].startswith("Partition:"):
                records.append((int(fields[0].split(":")[1]), int(fields[1].split(":")[1]), fields[2]))
        if len(records) != total:
            raise RuntimeError(f"read {len(records)} records of {topic}, its partitions end at {total}")
        return records
