import time, tempfile, pathlib
from pybroker.process import pybroker_process
from tests.broker.test_decompression_bombs import *
from tests.broker.test_decompression_bombs import BOMBS
made = {n: m() for n, m in BOMBS.items()}
for policy in ("delete",):
    d = pathlib.Path(tempfile.mkdtemp())
    b = pybroker_process(d / "data", {"num.partitions": "1"}); b.start()
    try:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        for name in ("bombed", "steady"):
            admin.create_topics([NewTopic(name, 1, 1, config={"cleanup.policy": policy})])[name].result(30)
        with Conn(b.bootstrap, timeout=60) as sender:
            for r in range(3):
                for name, batch in made.items():
                    peak_rss_reset(b.pid); base = rss(b.pid)
                    resp = sender.request(produce_request("bombed", batch, acks=1), 9)
                    print(r, name, "rss", base >> 20, "hwm growth MiB", round((vm_hwm(b.pid) - base) / MiB, 1), "now", rss(b.pid) >> 20)
    finally:
        b.kill()
