#!/usr/bin/env python3
"""differential_today.py - the shared differential harness with a current BuildKit (buildctl) as the oracle.

Loads ../shared/differential/differential.py (or $DIFFERENTIAL_PY) as a module and replaces its oracle, which
drives `docker build` on dockerd 20.10 (BuildKit 0.8), with one that drives `buildctl build` against a
standalone buildkitd. Everything else (network-safety scan, subject builds, comparison, scoring, JSON) is the
harness's own main(); flags are the harness's plus the ones below.

buildkitd has no local image store: FROM resolves through a registry. The oracle expects
  * a registry (Debian's docker-registry) on --registry, with http, and
  * buildkitd configured with `[registry."docker.io"] mirrors = ["<registry>"]` and
    `[registry."<registry>"] http = true`,
both inside the network namespace --registry-netns that has only loopback: BuildKit always falls back to
registry-1.docker.io after a mirror, and that namespace is what makes the fallback (and any RUN) unable to
leave the machine. prepare() pushes the two base archives under every docker.io alias of the harness
(library/busybox, library/alpine, library/debian, library/ubuntu) with skopeo run in that namespace.

Starting buildkitd (root, OCI worker with runc, in namespace bk-oracle; /tmp/bk/start.sh does this; use
nsenter, not `ip netns exec`, which remounts /sys and hides /sys/fs/cgroup from runc):
    ip netns add bk-oracle && ip netns exec bk-oracle ip link set lo up
    nsenter --net=/run/netns/bk-oracle docker-registry serve /tmp/bk/registry.yml &    # http.addr 127.0.0.1:5000
    nsenter --net=/run/netns/bk-oracle buildkitd --config /tmp/bk/buildkitd.toml \
        --oci-worker=true --containerd-worker=false &
    python3 bench/differential_today.py --subject rbuild --rbuild target/release/rbuild --rbuild-root /tmp/rb-root

Standard library only.
"""
from __future__ import annotations

import argparse
import functools
import importlib.util
import io
import json
import os
import sys
import tarfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HARNESS = os.environ.get("DIFFERENTIAL_PY",
                         os.path.join(REPO, "..", "shared", "differential", "differential.py"))


def load_harness(path):
    spec = importlib.util.spec_from_file_location("differential", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["differential"] = mod
    spec.loader.exec_module(mod)
    return mod


dh = load_harness(HARNESS)


class BuildctlOracle(dh.Builder):
    """BuildKit through buildctl: `build` writes the docker-archive itself (exporter type=docker)."""
    name = "buildkit-buildctl"

    def __init__(self, args, buildctl, addr, registry, netns):
        super().__init__(args)
        self.buildctl = [buildctl, "--addr", addr]
        self.registry = registry
        self.netns_name = netns
        self.netns = ["nsenter", f"--net=/run/netns/{netns}"] if netns else []
        cfg = os.path.join(args.workdir, "docker-config")   # empty client config: no credentials sent
        os.makedirs(cfg, exist_ok=True)
        self.env = {"DOCKER_CONFIG": cfg}
        self.outdir = os.path.join(args.workdir, "oracle-out")
        os.makedirs(self.outdir, exist_ok=True)
        self.built = {}   # tag -> archive written by the build

    def _b(self, *a, timeout=300):
        return dh.run_cmd(self.buildctl + list(a), timeout=timeout, env=self.env)

    def prepare(self, base_archives):
        if self.netns_name and not os.path.exists(f"/run/netns/{self.netns_name}"):
            raise dh.HarnessError(f"network namespace {self.netns_name} not found (start buildkitd in it first)")
        rc, out, _, _ = self._b("debug", "info", timeout=30)
        if rc != 0:
            raise dh.HarnessError(f"buildkitd not reachable ({self.buildctl[-1]}): {out.strip()[-300:]}")
        ver = out.split("BuildKit:", 1)[-1].split()
        if len(ver) >= 2:   # "BuildKit: github.com/moby/buildkit v0.24.0 <revision>"
            self.name = f"buildkit-{ver[1]}"
        for key, (_, aliases) in dh.BASE_IMAGES.items():
            repos = sorted({n.split("/", 1)[1] for n in map(dh.normalize_ref, aliases)
                            if n and n.startswith("docker.io/")})
            for repo in repos:   # e.g. library/alpine:latest
                dest = f"docker://{self.registry}/{repo}"
                rc, out, _, _ = dh.run_cmd(self.netns + ["skopeo", "copy", "-q", "--dest-tls-verify=false",
                                                         f"docker-archive:{base_archives[key]}", dest],
                                           timeout=600)
                if rc != 0:
                    raise dh.HarnessError(f"skopeo copy {base_archives[key]} {dest}: {out.strip()[-300:]}")

    def build(self, dockerfile, context, tag):
        dest = os.path.join(self.outdir, tag.rsplit(":", 1)[-1] + ".tar")
        if os.path.exists(dest):
            os.unlink(dest)
        argv = ["build", "--progress=plain", "--frontend", "dockerfile.v0",
                "--local", f"context={context}", "--local", f"dockerfile={os.path.dirname(dockerfile)}",
                "--opt", f"filename={os.path.basename(dockerfile)}", "--opt", "force-network-mode=none",
                "--output", f"type=docker,name={tag},dest={dest}"]
        if self.args.no_cache:
            argv.append("--no-cache")
        for ba in self.args.build_arg:
            argv += ["--opt", f"build-arg:{ba}"]
        rc, out, secs, to = self._b(*argv, timeout=self.timeout)
        ok = rc == 0 and not to and os.path.exists(dest)
        if ok:
            self.built[tag] = dest
        elif os.path.exists(dest):
            os.unlink(dest)
        return ok, out, secs, to

    def export(self, tag, path):
        src = self.built.pop(tag, None)
        if not src or not os.path.exists(src):
            raise dh.HarnessError(f"no archive was written for {tag}")
        os.replace(src, path)
        fix_null_layers(path)
        return path

    def remove(self, tag):
        src = self.built.pop(tag, None)
        if src and os.path.exists(src):
            os.unlink(src)

    def reset_cache_mounts(self):
        rc, out, _, _ = self._b("prune", "--filter", "type=exec.cachemount", timeout=120)
        return "ok" if rc == 0 else f"failed: {out.strip()[-200:]}"

    # names() stays None: builds only write archives, nothing here can retag the bases in the registry.


def fix_null_layers(path):
    """BuildKit writes `"Layers": null` in manifest.json for an image without layers (FROM scratch + metadata);
    the harness iterates Layers, so rewrite that one field as [] (nothing else in the archive changes)."""
    with tarfile.open(path) as t:
        mf = json.load(t.extractfile("manifest.json"))
        if not any(isinstance(m, dict) and m.get("Layers") is None for m in mf):
            return
        members = [(m, t.extractfile(m).read() if m.isfile() else None) for m in t.getmembers()]
    for m in mf:
        if m.get("Layers") is None:
            m["Layers"] = []
    tmp = path + ".tmp"
    with tarfile.open(tmp, "w") as out:
        for m, data in members:
            if m.name == "manifest.json":
                data = json.dumps(mf).encode()
                m.size = len(data)
            out.addfile(m, io.BytesIO(data) if data is not None else None)
    os.replace(tmp, path)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(add_help=False, description="BuildKit (buildctl) oracle options; "
                                 "all other flags are differential.py's (see below).")
    ap.add_argument("--buildctl", default="/tmp/buildkit-bin/buildctl", help="buildctl binary")
    ap.add_argument("--buildkit-addr", default="unix:///tmp/bk/buildkitd.sock", help="buildkitd address")
    ap.add_argument("--registry", default="127.0.0.1:5000",
                    help="registry that buildkitd uses as docker.io mirror (base images are pushed there)")
    ap.add_argument("--registry-netns", default="bk-oracle",
                    help="network namespace of the registry and buildkitd ('' = this namespace)")
    if "-h" in argv or "--help" in argv:
        ap.print_help()
        print()
        return dh.main(["--help"])
    opts, rest = ap.parse_known_args(argv)
    dh.DockerOracle = functools.partial(BuildctlOracle, buildctl=opts.buildctl, addr=opts.buildkit_addr,
                                        registry=opts.registry, netns=opts.registry_netns)
    return dh.main(rest)


if __name__ == "__main__":
    sys.exit(main())
