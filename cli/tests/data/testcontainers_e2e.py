# testcontainers-python (PyPI, over docker-py 7) end to end against `rbuild system service`, run
# by cli/tests/api_testcontainers.rs with DOCKER_HOST at the socket and Ryuk disabled (its image
# lives on Docker Hub; the test removes what a failed run leaves). argv[1] is a busybox image
# reference in a test registry, which testcontainers pulls itself. Each step asserts, then prints
# one `ok STEP ...` line the Rust test checks; any failure is a traceback and a non-zero exit.
import pathlib
import sys
import tempfile
import urllib.request

import docker
from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network
from testcontainers.core.wait_strategies import (
    HealthcheckWaitStrategy,
    HttpWaitStrategy,
    LogMessageWaitStrategy,
)
from testcontainers.core.waiting_utils import wait_for_logs

IMAGE = sys.argv[1]
PAGE = b"hello from testcontainers\n"
client = docker.from_env()


def ok(step, *more):
    print("ok", step, *more, flush=True)


def gone(container_id):
    return container_id not in [c.id for c in client.containers.list(all=True)]


# A web server: a page copied in between create and start, port 80 published on a port the
# engine picks, ready when an HTTP GET through that port answers 200.
web = (
    DockerContainer(IMAGE)
    .with_command(["sh", "-c", "echo serving; exec httpd -f -v -p 80 -h /www"])
    .with_exposed_ports(80)
    .with_copy_into_container(PAGE, "/www/index.html")
    .waiting_for(HttpWaitStrategy(80).for_status_code(200))
)
with web:
    host, port = web.get_container_host_ip(), web.get_exposed_port(80)
    assert host == "localhost", host
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read()
    assert body == PAGE, body
    ok("http", port)

    wait_for_logs(web, "serving", timeout=10)
    res = web.exec(["sh", "-c", "cat /www/index.html; exit 3"])
    assert (res.exit_code, res.output) == (3, PAGE), res
    with tempfile.TemporaryDirectory() as d:
        dest = pathlib.Path(d) / "page"
        web.copy_from_container("/www/index.html", dest)
        assert dest.read_bytes() == PAGE
    labels = web.get_wrapped_container().labels
    assert labels.get("org.testcontainers") == "true" and labels.get("org.testcontainers.lang") == "python", labels
    assert web.status == "running", web.status
    web_id = web.get_container_id()
    ok("exec logs copy labels")
# Leaving the block removes the container (and its volumes).
assert gone(web_id)
ok("removed")

# Two containers on a network of testcontainers' own (a UUID for a name): the client reaches the
# server by its alias; the client is ready when its log says so.
with Network() as net:
    server = (
        DockerContainer(IMAGE)
        .with_command(["httpd", "-f", "-p", "80", "-h", "/www"])
        .with_copy_into_container(b"by alias\n", "/www/index.html")
        .with_network(net)
        .with_network_aliases("server")
    )
    fetcher = (
        DockerContainer(IMAGE)
        .with_command(
            [
                "sh",
                "-c",
                "until wget -qO /tmp/got http://server/; do sleep 0.1; done; echo fetched $(cat /tmp/got); sleep 60",
            ]
        )
        .with_network(net)
        .waiting_for(LogMessageWaitStrategy("fetched by alias").with_startup_timeout(30))
    )
    with server, fetcher:
        info = client.api.inspect_network(net.name)
        attached = sorted(c["Name"] for c in info["Containers"].values())
        assert len(attached) == 2, info
        ok("network", net.name)
    net_name = net.name
assert net_name not in [n.name for n in client.networks.list()]
ok("network removed")

# A health check given at create (as docker-py's `healthcheck`); ready once healthy.
healthy = (
    DockerContainer(IMAGE)
    .with_command(["sh", "-c", "sleep 0.3; touch /tmp/up; sleep 60"])
    .with_kwargs(healthcheck={"test": ["CMD", "test", "-e", "/tmp/up"], "interval": 100_000_000, "retries": 50})
    .waiting_for(HealthcheckWaitStrategy().with_startup_timeout(30))
)
with healthy:
    state = healthy.get_wrapped_container().attrs["State"]
    assert state["Health"]["Status"] == "healthy", state
    ok("healthcheck")

# A container that ends: its exit code, and a name of the test's choosing.
ending = DockerContainer(IMAGE).with_command(["sh", "-c", "echo bye; exit 7"]).with_name("tc-ending")
with ending:
    assert ending.wait() == 7
    out, err = ending.get_logs()
    assert (out, err) == (b"bye\n", b""), (out, err)
    assert client.containers.get("tc-ending").attrs["State"]["ExitCode"] == 7
    ok("exit code")
assert "tc-ending" not in [c.name for c in client.containers.list(all=True)]
ok("all done")
