# docker-py (Debian's python3-docker 5) end to end against `rbuild system service`, run by
# cli/tests/api_dockerpy.rs with DOCKER_HOST at the socket. argv[1] is an image reference in a
# test registry to pull. Each step asserts, then prints one `ok STEP ...` line the Rust test
# checks; any failure is a traceback and a non-zero exit.
import io
import sys
import tarfile
import time

import docker

PULL = sys.argv[1]
c = docker.from_env()
api = c.api
since = int(time.time()) - 1


def ok(step, *more):
    print("ok", step, *more, flush=True)


# create, start, wait (exit code), logs apart, remove
ctr = c.containers.create(
    "busybox", ["sh", "-c", "echo out; echo err >&2; exit 3"], name="py-one", network_mode="none"
)
ctr.start()
res = ctr.wait(timeout=30)
assert res["StatusCode"] == 3, res
assert ctr.logs(stdout=True, stderr=False) == b"out\n", ctr.logs(stdout=True, stderr=False)
assert ctr.logs(stdout=False, stderr=True) == b"err\n", ctr.logs(stdout=False, stderr=True)
ctr.reload()
assert ctr.status == "exited", ctr.status
assert ctr.attrs["State"]["ExitCode"] == 3, ctr.attrs["State"]
ctr.remove()
assert "py-one" not in [x.name for x in c.containers.list(all=True)]
ok("lifecycle", res["StatusCode"])

# exec_run: plain, streamed, demultiplexed
ctr = c.containers.run("busybox", ["sleep", "60"], name="py-exec", detach=True, network_mode="none")
code, out = ctr.exec_run(["sh", "-c", "echo hi; echo oops >&2; exit 4"])
assert code == 4 and out == b"hi\noops\n", (code, out)
code, gen = ctr.exec_run(["sh", "-c", "for i in 1 2 3; do echo line$i; done"], stream=True)
streamed = b"".join(gen)
assert code is None and streamed == b"line1\nline2\nline3\n", (code, streamed)
code, (sout, serr) = ctr.exec_run(["sh", "-c", "echo to-out; echo to-err >&2; exit 5"], demux=True)
assert code == 5 and sout == b"to-out\n" and serr == b"to-err\n", (code, sout, serr)
# The exit code is there as soon as the output ends, every time.
codes = [ctr.exec_run(["sh", "-c", "sleep 0.05; echo x; exit 6"])[0] for _ in range(5)]
assert codes == [6] * 5, codes
code, out = ctr.exec_run("cat /etc/hostname", workdir="/", environment={"A": "1"})
assert code == 0 and out.strip(), (code, out)
code, out = ctr.exec_run(["sh", "-c", "echo $A"], environment={"A": "from-env"})
assert out == b"from-env\n", out
ok("exec", code)

# put_archive / get_archive on the running container
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w") as tar:
    data = b"put through docker-py\n"
    info = tarfile.TarInfo("dir/put.txt")
    info.size = len(data)
    info.mode = 0o640
    tar.addfile(info, io.BytesIO(data))
assert ctr.put_archive("/tmp", buf.getvalue())
code, out = ctr.exec_run("cat /tmp/dir/put.txt")
assert out == b"put through docker-py\n", out
# A generator is sent chunked (no Content-Length).
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w") as tar:
    data = b"chunked\n" * 10000
    info = tarfile.TarInfo("chunked.txt")
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))
raw = buf.getvalue()
assert ctr.put_archive("/tmp", (raw[i:i + 7000] for i in range(0, len(raw), 7000)))
code, out = ctr.exec_run("wc -c /tmp/chunked.txt")
assert out.split()[0] == b"80000", out
bits, stat = ctr.get_archive("/tmp/dir")
assert stat["name"] == "dir", stat
got = tarfile.open(fileobj=io.BytesIO(b"".join(bits)))
member = got.extractfile("dir/put.txt")
assert member is not None and member.read() == b"put through docker-py\n"
try:
    ctr.get_archive("/no/such/path")
    raise AssertionError("a missing path is found")
except docker.errors.NotFound:
    pass
ctr.remove(force=True)
ok("archive", stat["name"])

# run in the foreground: its output; remove=True leaves nothing
out = c.containers.run("busybox", ["echo", "foreground"], network_mode="none")
assert out == b"foreground\n", out
out = c.containers.run("busybox", ["sh", "-c", "echo gone"], remove=True, name="py-rm", network_mode="none")
assert out == b"gone\n", out
try:
    c.containers.run("busybox", ["sh", "-c", "echo bad >&2; exit 2"], remove=True, network_mode="none")
    raise AssertionError("a failing run raises")
except docker.errors.ContainerError as err:
    assert err.exit_status == 2 and b"bad" in err.stderr, (err.exit_status, err.stderr)
for x in c.containers.list(all=True):
    x.remove(force=True)
assert c.containers.list(all=True) == []
ok("run", "foreground")

# pull from the test registry, tag
img = c.images.pull(PULL)
assert PULL in img.tags, img.tags
assert img.tag("py/tagged", "v2")
assert "py/tagged:v2" in c.images.get(PULL).tags
assert c.images.get("py/tagged:v2").id == img.id
try:
    c.images.get("py/nosuch:1")
    raise AssertionError("a missing image is found")
except docker.errors.ImageNotFound:
    pass
ok("pull", img.id)

# build from a file object with a build arg, then run what was built
df = io.BytesIO(b"FROM busybox\nARG WHO\nRUN echo built-for-$WHO > /who\nCMD [\"cat\", \"/who\"]\n")
built, _ = c.images.build(fileobj=df, tag="py/built:1", buildargs={"WHO": "py"}, rm=True)
assert c.containers.run(built.id, remove=True, network_mode="none") == b"built-for-py\n"
ok("build", built.id)

# networks: create with labels, connect, disconnect, remove
net = c.networks.create("py-net", driver="bridge", labels={"made.by": "docker-py"})
net.reload()
assert net.attrs["Labels"] == {"made.by": "docker-py"}, net.attrs["Labels"]
assert [n.name for n in c.networks.list(filters={"label": "made.by=docker-py"})] == ["py-net"]
ctr = c.containers.run("busybox", ["sleep", "60"], name="py-net-ctr", detach=True)
net.connect(ctr, aliases=["pyalias"])
net.reload()
assert [x.name for x in net.containers] == ["py-net-ctr"], net.attrs["Containers"]
net.disconnect(ctr)
net.reload()
assert net.containers == [], net.attrs["Containers"]
ctr.remove(force=True)
net.remove()
assert "py-net" not in [n.name for n in c.networks.list()]
ok("networks", net.id)

# volumes: create, list, remove, prune
vol = c.volumes.create("py-vol", labels={"made.by": "docker-py"})
assert vol.attrs["Labels"] == {"made.by": "docker-py"}, vol.attrs
c.volumes.create("py-unused")
names = [v.name for v in c.volumes.list()]
assert "py-vol" in names and "py-unused" in names, names
assert [v.name for v in c.volumes.list(filters={"label": "made.by=docker-py"})] == ["py-vol"]
vol.remove()
# docker-py speaks API 1.43: a prune takes only anonymous volumes unless `all`, as dockerd 23.
assert c.volumes.prune()["VolumesDeleted"] in ([], None)
pruned = c.volumes.prune(filters={"all": True})
assert pruned["VolumesDeleted"] == ["py-unused"], pruned
assert c.volumes.list() == []
ok("volumes", *pruned["VolumesDeleted"])

# events of everything above, by time
until = int(time.time()) + 1
time.sleep(1.1)
events = list(c.events(decode=True, since=since, until=until))
seen = {(e.get("Type"), e.get("Action") or e.get("status")) for e in events}
for want in [("container", "create"), ("container", "start"), ("container", "die"), ("container", "destroy"),
             ("network", "create"), ("network", "connect"), ("network", "destroy"), ("volume", "create")]:
    assert want in seen, (want, sorted(seen))
names = {e["Actor"]["Attributes"].get("name") for e in events if e.get("Type") == "container"}
assert "py-one" in names, names
ok("events", len(events))

# disk usage
df = c.df()
assert any(PULL in (i.get("RepoTags") or []) for i in df["Images"]), df["Images"]
assert df["Containers"] == [] and df["Volumes"] == [], (df["Containers"], df["Volumes"])
assert isinstance(df["LayersSize"], int) and df["LayersSize"] > 0, df["LayersSize"]
ok("df", df["LayersSize"])
