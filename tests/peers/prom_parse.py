"""Parses a Prometheus text exposition with the official Python client's parser
(`prometheus_client.parser`), an implementation independent of the gateway's own writer.

Reads the text from stdin; prints one JSON object per family:
  {"name": ..., "type": ..., "samples": [{"name": ..., "labels": {...}, "value": ...}, ...]}
and exits 1 with the parser's message on stderr if the text does not parse.
"""

import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def main() -> int:
    text = sys.stdin.read()
    try:
        families = list(text_string_to_metric_families(text))
    except Exception as err:  # the parser raises ValueError and friends on bad input
        print(f"unparseable exposition: {err}", file=sys.stderr)
        return 1
    for family in families:
        samples = [{"name": s.name, "labels": s.labels, "value": s.value} for s in family.samples]
        print(json.dumps({"name": family.name, "type": family.type, "samples": samples}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
