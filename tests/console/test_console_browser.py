"""The web console in a real browser: Debian's headless Chromium driven by
Selenium against a broker that real clients (librdkafka) wrote to and
read from. Every page loads and shows the cluster's data; a topic is
created and deleted through the page, a group's offsets are reset after
a confirmation; every request the browser made went to the console's own
address (Chromium is also told to resolve no other host). Screenshots are
saved under ``test-output/console/``."""

from __future__ import annotations

import json
import shutil
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from pybroker.process import free_port
from pybroker.testing import running_broker

OUTPUT = Path(__file__).resolve().parents[2] / "test-output" / "console"
WAIT_S = 30


@pytest.fixture(scope="module")
def data():
    """A broker with its console, a topic of 3 partitions with keyed JSON
    records and headers, and a group that consumed part of them and left."""
    port = free_port()
    topic, group = f"orders-{uuid.uuid4().hex[:6]}", f"billing-{uuid.uuid4().hex[:6]}"
    with running_broker({"console.listener": f"http://127.0.0.1:{port}", "num.partitions": "3"}, dev=True) as broker:
        producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
        for i in range(30):
            producer.produce(topic, key=f"customer-{i % 5}".encode(), value=json.dumps({"order": i}).encode(),
                             headers=[("source", b"test")], partition=i % 3)
        assert producer.flush(30) == 0
        consumer = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": group,
                             "auto.offset.reset": "earliest", "enable.auto.commit": False})
        try:
            consumer.subscribe([topic])
            seen = 0
            deadline = time.monotonic() + WAIT_S
            while seen < 30 and time.monotonic() < deadline:
                message = consumer.poll(0.2)
                if message is not None and not message.error():
                    seen += 1
            assert seen == 30
            # Committed: 4 of each partition's 10 records, a lag of 18.
            consumer.commit(offsets=[TopicPartition(topic, p, 4) for p in range(3)], asynchronous=False)
        finally:
            consumer.close()
        yield {"base": f"http://127.0.0.1:{port}", "topic": topic, "group": group, "port": port}


@pytest.fixture(scope="module")
def browser(data):
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert binary and driver, "the console tests need Debian's chromium and chromium-driver (apt-get install ...)"
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-default-apps",
                # Nothing but the console can be reached, whatever the page asks for.
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    chrome = webdriver.Chrome(options=options, service=Service(driver))
    OUTPUT.mkdir(parents=True, exist_ok=True)
    try:
        yield chrome
        urls = requested_urls(chrome)
        assert urls and all(u.startswith(data["base"] + "/") for u in urls), sorted(set(urls))
    finally:
        chrome.quit()


def requested_urls(chrome) -> list[str]:
    urls = []
    for entry in chrome.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if not url.startswith(("data:", "about:", "chrome:")):
                urls.append(url)
    return urls


def open_page(chrome, data, fragment: str, ready_css: str):
    chrome.get(f"{data['base']}/{fragment}")
    wait(chrome).until(lambda d: d.find_element(By.ID, "view").get_attribute("data-loaded"))
    assert not chrome.find_element(By.ID, "error").is_displayed(), chrome.find_element(By.ID, "error").text
    return wait(chrome).until(ec.presence_of_element_located((By.CSS_SELECTOR, ready_css)))


def wait(chrome) -> WebDriverWait:
    # The pages redraw whole tables: an element read mid-redraw is stale.
    return WebDriverWait(chrome, WAIT_S, ignored_exceptions=(StaleElementReferenceException,))


def shot(chrome, name: str) -> None:
    chrome.save_screenshot(str(OUTPUT / f"{name}.png"))


def test_overview_shows_the_brokers_and_a_throughput_chart(browser, data):
    open_page(browser, data, "#/", "#brokers tbody tr")
    assert browser.find_element(By.ID, "broker-count").text == "1"
    assert browser.find_element(By.ID, "controller").text == "1"
    assert browser.find_element(By.ID, "under-replicated").text == "0"
    row = browser.find_element(By.CSS_SELECTOR, "#brokers tbody tr").text
    assert "127.0.0.1" in row and "controller" in row
    # The chart draws once two samples exist; its legend names the topic.
    wait(browser).until(lambda d: data["topic"] in d.find_element(By.ID, "throughput-legend").text)
    shot(browser, "overview")


def test_topics_page_lists_partitions_messages_and_size(browser, data):
    open_page(browser, data, "#/topics", f"tr[data-topic='{data['topic']}']")
    cells = browser.find_elements(By.CSS_SELECTOR, f"tr[data-topic='{data['topic']}'] td")
    assert [c.text for c in cells[1:4]] == ["3", "1", "30"]
    assert cells[4].text.endswith("B") and cells[4].text != "0 B"
    shot(browser, "topics")


def test_topic_page_browses_messages_as_json_and_hex(browser, data):
    open_page(browser, data, f"#/topics/{data['topic']}", "#partitions tbody tr")
    rows = browser.find_elements(By.CSS_SELECTOR, "#partitions tbody tr")
    assert [r.find_elements(By.TAG_NAME, "td")[5].text for r in rows] == ["10", "10", "10"]
    Select(browser.find_element(By.ID, "browse-partition")).select_by_value("1")
    Select(browser.find_element(By.ID, "browse-from")).select_by_value("offset")
    offset = browser.find_element(By.ID, "browse-offset")
    offset.clear()
    offset.send_keys("2")
    limit = browser.find_element(By.ID, "browse-limit")
    limit.clear()
    limit.send_keys("3")
    Select(browser.find_element(By.ID, "browse-format")).select_by_value("json")
    browser.find_element(By.ID, "browse-submit").click()
    wait(browser).until(ec.presence_of_element_located((By.CSS_SELECTOR, "#message-table tbody tr")))
    rows = [r.find_elements(By.TAG_NAME, "td") for r in browser.find_elements(By.CSS_SELECTOR, "#message-table tbody tr")]
    assert [r[0].text for r in rows] == ["2", "3", "4"]
    # Partition 1 holds orders 1, 4, 7 ...: offset 2 is order 7, from customer 2.
    assert rows[0][2].text == "customer-2"
    assert json.loads(rows[0][3].text) == {"order": 7}
    assert rows[0][4].text == "source=test"
    shot(browser, "messages")
    Select(browser.find_element(By.ID, "browse-format")).select_by_value("hex")
    browser.find_element(By.ID, "browse-submit").click()
    wait(browser).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "#message-table tbody tr td:nth-child(4)").text.startswith("7b")
    )


def test_groups_page_shows_lag_and_a_reset_is_confirmed_first(browser, data):
    open_page(browser, data, "#/groups", f"tr[data-group='{data['group']}']")
    cells = browser.find_elements(By.CSS_SELECTOR, f"tr[data-group='{data['group']}'] td")
    assert [c.text for c in cells[1:]] == ["Empty", "0", "3", "18"]
    shot(browser, "groups")
    open_page(browser, data, f"#/groups/{data['group']}", "#group-offsets tbody tr")
    assert browser.find_element(By.ID, "total-lag").text == "18"
    Select(browser.find_element(By.ID, "reset-to")).select_by_value("earliest")
    browser.find_element(By.ID, "reset-preview").click()
    wait(browser).until(ec.presence_of_element_located((By.ID, "reset-confirm")))
    plan = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#reset-plan-table tbody tr")]
    assert len(plan) == 3 and all(r.endswith(" 0") for r in plan)
    shot(browser, "reset-preview")
    # Previewed, not committed: the lag is what it was.
    open_page(browser, data, f"#/groups/{data['group']}", "#group-offsets tbody tr")
    assert browser.find_element(By.ID, "total-lag").text == "18"
    Select(browser.find_element(By.ID, "reset-to")).select_by_value("earliest")
    browser.find_element(By.ID, "reset-preview").click()
    wait(browser).until(ec.element_to_be_clickable((By.ID, "reset-confirm"))).click()
    wait(browser).until(lambda d: d.find_element(By.ID, "total-lag").text == "30")


def test_a_topic_is_created_and_deleted_through_the_page(browser, data):
    name = f"made-in-browser-{uuid.uuid4().hex[:6]}"
    open_page(browser, data, "#/topics", "#create-topic")
    browser.find_element(By.ID, "new-topic-name").send_keys(name)
    browser.find_element(By.ID, "new-topic-partitions").send_keys("4")
    browser.find_element(By.ID, "new-topic-configs").send_keys("retention.ms=3600000")
    browser.find_element(By.ID, "create-topic-submit").click()
    wait(browser).until(lambda d: d.find_element(By.ID, "topic-name").text == name)
    wait(browser).until(lambda d: d.find_element(By.ID, "partition-count").text == "4")
    assert "retention.ms" in browser.find_element(By.ID, "topic-configs").text
    shot(browser, "created-topic")
    browser.find_element(By.ID, "delete-topic").click()
    assert browser.find_element(By.ID, "delete-confirm").is_displayed()
    browser.find_element(By.ID, "delete-topic-confirm").click()
    wait(browser).until(ec.presence_of_element_located((By.ID, "topics")))
    wait(browser).until(
        lambda d: not d.find_elements(By.CSS_SELECTOR, f"tr[data-topic='{name}']")
        and d.find_element(By.ID, "view").get_attribute("data-loaded") == "#/topics"
    )


def test_an_unknown_topic_shows_kafkas_error(browser, data):
    browser.get(f"{data['base']}/#/topics/no-such-topic")
    wait(browser).until(lambda d: d.find_element(By.ID, "error").is_displayed())
    assert browser.find_element(By.ID, "error").text.startswith("UNKNOWN_TOPIC_OR_PARTITION")
