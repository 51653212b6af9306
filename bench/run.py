#!/usr/bin/env python3
"""desa benchmarks. Prints figures and writes them to bench/results/.

  bench/run.py import   280 Kab. Bandung villages into a fresh sandbox until all serve,
                        against baseline-import.sh (one village at a time), same run.
  bench/run.py db       50 villages with databases and OpenSID into 10, against the
                        mariadb client and a shell loop (baseline-db.sh), same run.
  bench/run.py scale    10,000 synthetic tenants: converged plan, tenant list --json,
                        one nginx reload, desactl's memory; with same-run baselines.
  bench/run.py health [N]  full health sweeps of N (5,000) synthetic tenants served by the
                        sandbox's nginx and php-fpm (HTTP, the pool, drift, the server): the
                        agent's rounds as a service (timed by its STATUS= notes) and its peak
                        memory, and `desa-agent --once` as a new process, against a sequential
                        curl loop over the same tenants' HTTP only, same run.
  bench/run.py quota    280 villages with the image backend (256 MiB each): the import with quotas
                        against without, alternating; apply mounting all images again after a
                        reboot-like unmount; quota report against du -s over the same homes, each
                        holding OpenSID's tree of files.
  bench/run.py masters [N]  what N (280) tenants' PHP costs idle as one php-fpm master with N
                        pools against N masters with one pool each (what a systemd unit per
                        tenant, for its own memory and CPU limits, would need): memory (PSS of
                        every process), start time, and one request's answer through each.
  bench/run.py https [N]  HTTPS for the 280 villages against pebble (PEBBLE_VA_NOSLEEP=1), same
                        run: desa's `cert issue --all` (pebble rejecting 5% of nonces, then
                        again at 0%); certbot once per village, as the panels do (N: time only
                        the first N villages and extrapolate); certbot once per bundle desa made.
                        certbot's pebble rejects no nonces: Debian's certbot gives up on two
                        bad nonces in a row. Wall time and number of orders of each.
  bench/run.py backup [N]  N (280) villages, each with OpenSID installed as app install lays it out
                        (the release stored once, outside the homes; BENCH_BACKUP_LAYOUT=copies: its
                        own full copy in each home, as before issue 22), 1-5 MB of its own files and a
                        database: 7 nightly
                        `backup run --all` with 1% churn each, against what the panels do (a tar.gz
                        of each home and a gzipped dump per village per night, kept 7 days; timed
                        on a sample of villages and scaled), same run: repository size and nightly
                        wall time of each; one village restored in place. The third night opens
                        the repository with restic's own calibrated key instead of backup init's
                        light one: the baseline, same run. BENCH_BACKUP_NIGHTS (7) and
                        BENCH_BACKUP_PARALLEL (2) change the nights and the width.
  bench/run.py package  From a fresh Debian 12 root booted with systemd (the package test's): apt-get
                        install of dist/desa_*-1_amd64.deb, desactl init and the Bandung import until all
                        280 answer 200, against the ten manual steps the README gave before the
                        package (release binaries, the toolchain bound in), same run; the package's
                        size against the two binaries plus the toolchain libraries they load.
  bench/run.py upgrade [N]  N (280; BENCH_UPGRADE_VILLAGES) villages on OpenSID v2409 from one stored
                        release: half upgraded to v2410 by `app upgrade` (a backup snapshot of each,
                        the gate, waves), the other half the by-hand way (a dump, the release
                        unpacked over the village's own full copy, the first request migrating),
                        same run: total time and each village's time answering 503 or serving a
                        half-unpacked tree (median, p95); one village's rollback from a broken
                        release; the code on disk against one release.
  bench/run.py portal    The portal's page rewritten after one village's health changed (`desactl portal
                        refresh`, its own time) at 280 (Kab. Bandung) and 5,000 (synthetic) villages,
                        and the operators' status page written at 5,000 (`desactl status --html`),
                        against `desactl tenant list --json` and `desactl health --json` over the same
                        tenants, same run; the pages' sizes.

Needs root, a release build (bench/run.sh builds it) and nothing listening on the ports.
"""
import http.client, json, os, resource, shutil, signal, socket, sqlite3, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")
BANDUNG = os.path.join(ROOT, "Tests/ProvisionerTests/Fixtures/villages-3204-bandung.csv")
DESACTL = os.environ.get("DESACTL") or subprocess.run(
    ["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT, capture_output=True, text=True, check=True
).stdout.strip() + "/desactl"


def run(args, env=None, check=True, quiet=True):
    """Runs a command; returns (seconds, max RSS in MB of that child, stdout)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    p = subprocess.run(args, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if check and p.returncode != 0:
        sys.exit(f"failed: {' '.join(args)}\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    # ru_maxrss of children is the max over all children so far: only trust it if it grew.
    return dt, (rss / 1024 if rss > before else None), p.stdout


def rss_of(args, env=None):
    """Max RSS in MB of one run, measured by GNU time (not mixed with other children)."""
    p = subprocess.run(["/usr/bin/time", "-f", "%M"] + args, env=env, capture_output=True, text=True)
    return int(p.stderr.strip().splitlines()[-1]) / 1024


def timed(args, env=None, n=9):
    ts = [run(args, env)[0] for _ in range(n)]
    return {"median_s": round(statistics.median(ts), 4), "min_s": round(min(ts), 4), "runs": n}


class Sandbox:
    def __init__(self, name, port, prefix, uid, extra_toml="", init_args=()):
        self.dir = f"/var/tmp/desa-bench-{name}"
        self.env = dict(os.environ, DESA_CONFIG=self.dir + "/desa.toml")
        self.port, self.prefix = port, prefix
        if os.path.exists(self.env["DESA_CONFIG"]):
            run([DESACTL, "sandbox", "destroy"], self.env, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)
        run([DESACTL, "sandbox", "init", self.dir, "--http-port", str(port), "--user-prefix", prefix,
             "--uid-min", str(uid), "--uid-max", str(uid + 20000)] + list(init_args))
        if extra_toml:
            with open(self.env["DESA_CONFIG"]) as f:
                toml = f.read()
            with open(self.env["DESA_CONFIG"], "w") as f:
                for line in extra_toml.splitlines():
                    key = line.split("=")[0].strip()
                    toml = "\n".join(line if l.split("=")[0].strip() == key else l for l in toml.split("\n"))
                f.write(toml)
        run([DESACTL, "sandbox", "start"], self.env)

    def desactl(self, *args):
        return run([DESACTL] + list(args), self.env)

    def status(self, host):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        c.request("GET", "/", headers={"Host": host})
        r = c.getresponse()
        body = r.read().decode("utf-8", "replace")
        c.close()
        return r.status, body

    def destroy(self):
        run([DESACTL, "sandbox", "destroy"], self.env, check=False)
        for line in open("/etc/passwd"):
            name = line.split(":")[0]
            if name.startswith(self.prefix) and name[len(self.prefix):].isdigit():
                subprocess.run(["userdel", name], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def nginx_workers(master):
    out = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == master:
                    out.add(int(pid))
            except OSError:
                pass
    return out


def nginx_reload(sb):
    """One reload: HUP until new workers run and every old one has stopped accepting."""
    master = int(open(sb.dir + "/run/nginx.pid").read())
    old = nginx_workers(master)
    t = time.perf_counter()
    os.kill(master, 1)
    while True:
        now = nginx_workers(master)
        accepting = [p for p in now & old if "shutting down" not in open(f"/proc/{p}/cmdline").read()]
        if now - old and not accepting:
            break
        time.sleep(0.002)
    dt = time.perf_counter() - t
    rss = max(int(l.split()[1]) for p in nginx_workers(master) | {master}
              for l in open(f"/proc/{p}/status") if l.startswith("VmRSS")) / 1024
    return round(dt, 3), round(rss, 1)


def save(name, data):
    os.makedirs(RESULTS, exist_ok=True)
    data["when"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    data["machine"] = {"cores": os.cpu_count(), "kernel": os.uname().release}
    path = os.path.join(RESULTS, f"{name}.json")
    with open(path, "w") as f:
        json.dump(data, f, indent=2)
    print(f"\nwritten to {os.path.relpath(path, ROOT)}")


def bench_import():
    rows = sum(1 for _ in open(BANDUNG)) - 1
    sb = Sandbox("import", 18480, "bni", 600000)
    try:
        dt, _, out = sb.desactl("tenant", "import", BANDUNG, "--json")
        report = json.loads(out)
        tenants = json.loads(sb.desactl("tenant", "list", "--json")[2])
        ok = sum(1 for t in tenants if sb.status(t["domain"])[0] == 200 and t["name"] in sb.status(t["domain"])[1])
        phases = report["change"]["phases"]
    finally:
        sb.destroy()
    base = Sandbox("baseline", 18481, "bnb", 640000)
    try:
        t = time.perf_counter()
        run([os.path.join(ROOT, "bench", "baseline-import.sh"), base.dir, base.prefix, "640000", BANDUNG])
        # The last reload is asynchronous: the baseline is done when its last village serves.
        last = None
        for line in open(BANDUNG).read().splitlines()[1:]:
            last = line
        code, name = last.split(",")[0], last.split(",")[1]
        slug = name.lower().replace(" ", "-") + "-" + code.replace(".", "")
        while base.status(slug + ".bandungkab.go.id")[0] != 200:
            time.sleep(0.01)
        bdt = time.perf_counter() - t
        bsites = len(os.listdir(base.dir + "/nginx/sites"))
    finally:
        base.destroy()
    res = {
        "villages": rows,
        "desa": {"wall_s": round(dt, 3), "serving_200_with_name": ok, "phases_s": phases},
        "baseline_per_village_script": {"wall_s": round(bdt, 3), "vhosts": bsites},
        "speedup_vs_baseline": round(bdt / dt, 1),
        "targets": {"desa_wall_s_under": 3.0, "speedup_at_least": 10},
    }
    print(f"import of {rows} villages until all serve: desa {dt:.2f} s ({ok}/{rows} answer 200 with their name)")
    print(f"baseline (useradd + files + php-fpm -t/reload + nginx -t/reload per village): {bdt:.2f} s")
    print(f"desa is {bdt / dt:.1f}x faster (target: >= 10x, and under 3 s)")
    save("import", res)


def bench_scale(n=10000):
    csv = f"/var/tmp/desa-bench-synth-{n}.csv"
    run([sys.executable, os.path.join(ROOT, "bench", "synth.py"), str(n), csv])
    # 10,000 per-tenant error logs, twice during a reload, exceed the 20,000 descriptors
    # nginx may hold here (ulimit -Hn; no CAP_SYS_RESOURCE to raise it): one shared file.
    sb = Sandbox("scale", 18482, "bns", 700000, extra_toml='tenant_error_logs = "shared"')
    try:
        dt, _, out = sb.desactl("tenant", "import", csv, "--json")
        report = json.loads(out)
        statuses = {}
        for o in report["change"]["outcomes"]:
            statuses[o["status"]] = statuses.get(o["status"], 0) + 1
        print(f"import of {n} synthetic tenants: {dt:.1f} s {statuses} phases {report['change']['phases']}")
        plan_out = sb.desactl("plan")[2]
        assert "Nothing to do" in plan_out, plan_out
        plan = timed([DESACTL, "plan"], sb.env, n=5)
        plan["max_rss_mb"] = round(rss_of([DESACTL, "plan"], sb.env), 1)
        lst = timed([DESACTL, "tenant", "list", "--json"], sb.env, n=15)
        lst["max_rss_mb"] = round(rss_of([DESACTL, "tenant", "list", "--json"], sb.env), 1)
        assert len(json.loads(sb.desactl("tenant", "list", "--json")[2])) == n
        startup = timed([DESACTL, "--help"], sb.env, n=15)
        sqlite = timed(["sqlite3", "-json", sb.dir + "/state/state.sqlite", "select * from tenant"], n=15)
        ngx_t = timed(["nginx", "-t", "-q", "-p", sb.dir + "/nginx/", "-c", sb.dir + "/nginx/nginx.conf"], n=3)
        reload_s, nginx_rss = nginx_reload(sb)
    finally:
        sb.destroy()
    res = {
        "tenants": n,
        "import": {"wall_s": round(dt, 2), "statuses": statuses, "phases_s": report["change"]["phases"]},
        "plan_converged": plan,
        "tenant_list_json": lst,
        "nginx_reload": {"wall_s": reload_s, "max_process_rss_mb": nginx_rss},
        "baselines": {"desactl_help_startup": startup, "sqlite3_json_dump": sqlite, "nginx_t": ngx_t},
        "ratios": {
            "list_vs_sqlite3_dump": round(lst["median_s"] / sqlite["median_s"], 2),
            "list_vs_process_startup": round(lst["median_s"] / startup["median_s"], 2),
            "plan_vs_nginx_t": round(plan["median_s"] / ngx_t["median_s"], 2),
            "reload_vs_nginx_t": round(reload_s / ngx_t["median_s"], 2),
        },
        "targets": {"list_s_under": 0.1, "plan_s_under": 2.0, "desactl_rss_mb_under": 100},
    }
    print(f"converged plan: median {plan['median_s']:.2f} s, {plan['max_rss_mb']} MB "
          f"({res['ratios']['plan_vs_nginx_t']}x one nginx -t at {ngx_t['median_s']:.2f} s); target < 2 s, < 100 MB")
    print(f"tenant list --json: median {lst['median_s'] * 1000:.0f} ms, {lst['max_rss_mb']} MB "
          f"({res['ratios']['list_vs_sqlite3_dump']}x sqlite3 -json dump at {sqlite['median_s'] * 1000:.0f} ms; "
          f"process start alone {startup['median_s'] * 1000:.0f} ms); target < 100 ms")
    print(f"one nginx reload with {n} server blocks: {reload_s:.2f} s, {nginx_rss} MB per nginx process")
    save("scale", res)


def agent_rounds(agent, config, interval, rounds):
    """Runs desa-agent as the service it is and times its rounds by their STATUS= notes on a
    notify socket. Ticks are `interval` apart from the end of one to the start of the next,
    so a round's wall time (sweep, record, notify) is the gap between two notes less the
    interval. Returns (the first round's time from process start, the later rounds' times,
    the agent's peak RSS in MB over all of them, the last STATUS)."""
    path = f"/run/desa-bench-notify-{os.getpid()}.sock"
    if os.path.exists(path):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(120)
    env = dict(os.environ, NOTIFY_SOCKET=path)
    start = time.perf_counter()
    p = subprocess.Popen([agent, "--config", config, "--interval", str(interval)], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    notes, status = [], ""
    try:
        while len(notes) < rounds + 1:
            msg = sock.recv(65536).decode()
            for line in msg.splitlines():
                if line.startswith("STATUS="):
                    notes.append(time.perf_counter())
                    status = line[len("STATUS="):]
        with open(f"/proc/{p.pid}/status") as f:
            hwm = next(int(l.split()[1]) for l in f if l.startswith("VmHWM")) / 1024
    finally:
        p.terminate()
        p.wait(10)
        sock.close()
        os.unlink(path)
    return notes[0] - start, [b - a - interval for a, b in zip(notes, notes[1:])], hwm, status


def bench_health(n=5000, sweeps=3, rounds=6, interval=3):
    agent = os.path.join(os.path.dirname(DESACTL), "desa-agent")
    csv = f"/var/tmp/desa-bench-synth-{n}.csv"
    run([sys.executable, os.path.join(ROOT, "bench", "synth.py"), str(n), csv])
    sb = Sandbox("health", 18484, "bnh", 720000, extra_toml='tenant_error_logs = "shared"')
    try:
        dt, _, out = sb.desactl("tenant", "import", csv, "--json")
        print(f"import of {n} synthetic tenants: {dt:.1f} s")
        tenants = json.loads(sb.desactl("tenant", "list", "--json")[2])
        hosts = [t["domain"] for t in tenants]
        assert len(hosts) == n, len(hosts)
        once = [agent, "--config", sb.env["DESA_CONFIG"], "--once"]
        # The first sweep records every tenant's first state; the timed ones find them again.
        first = subprocess.run(once, capture_output=True, text=True)
        assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
        summary = first.stdout.splitlines()[0]
        assert summary == f"{n} tenants: {n} ok, 0 degraded, 0 down", summary
        # A new process for one sweep (`--once`): startup, and every file rendered for drift.
        walls = []
        for _ in range(sweeps):
            t = time.perf_counter()
            p = subprocess.run(once, capture_output=True, text=True)
            walls.append(time.perf_counter() - t)
            assert p.returncode == 0, p.stdout[-2000:]
        rss = rss_of(once)
        # The agent as it runs under systemd: a sweep every interval in one process.
        startup, rounds_s, hwm, status = agent_rounds(agent, sb.env["DESA_CONFIG"], interval, rounds)
        assert status == f"{n} tenants: {n} ok, 0 degraded, 0 down", status
        # What an operator does today: one curl per village, one after another.
        t = time.perf_counter()
        codes = {}
        for h in hosts:
            c = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "5", "-H", f"Host: {h}",
                                f"http://127.0.0.1:{sb.port}/"], capture_output=True, text=True).stdout
            codes[c] = codes.get(c, 0) + 1
        curl_s = time.perf_counter() - t
        assert codes == {"200": n}, codes
    finally:
        sb.destroy()
    once_s = statistics.median(walls)
    round_s = statistics.median(rounds_s)
    checks = "http, php-fpm (socket; ping where a worker runs), certificate (off), drift (a full plan), nginx/php-fpm masters, disk, state db"
    res = {
        "tenants": n,
        "agent": {"round_median_s": round(round_s, 3), "round_min_s": round(min(rounds_s), 3), "round_max_s": round(max(rounds_s), 3),
                  "rounds": len(rounds_s), "first_round_from_start_s": round(startup, 3), "max_rss_mb": round(hwm, 1),
                  "what": f"desa-agent --interval {interval}: each round's sweep, record and STATUS= note, timed by the notes", "checks": checks},
        "once": {"median_s": round(once_s, 3), "min_s": round(min(walls), 3), "runs": sweeps, "max_rss_mb": round(rss, 1),
                 "what": "desa-agent --once: a new process, its startup and a first plan that renders every file"},
        "baseline_curl_loop": {"wall_s": round(curl_s, 2), "checks": "http only", "status_codes": codes},
        "ratios": {"curl_loop_vs_agent_round": round(curl_s / round_s, 1), "curl_loop_vs_once": round(curl_s / once_s, 1)},
        "targets": {"speedup_at_least": 20, "sweep_s_under": 10, "rss_mb_under": 60},
    }
    print(f"health of {n} tenants: the agent's rounds median {round_s:.2f} s (min {min(rounds_s):.2f}, max {max(rounds_s):.2f}), "
          f"{hwm:.1f} MB peak; --once {once_s:.2f} s, {rss:.1f} MB; sequential curl loop (HTTP only) {curl_s:.1f} s -> "
          f"{res['ratios']['curl_loop_vs_agent_round']}x the agent's round, {res['ratios']['curl_loop_vs_once']}x --once; "
          f"targets >= 20x, < 10 s, < 60 MB")
    save("health", res)


OPENSID = os.environ.get("DESA_OPENSID_TARBALL", "/work/shared/apps/opensid-v2410.0.0.tar.gz")


def bench_db(n=50, apps=10, rounds=3):
    """Databases for 50 villages and OpenSID into 10: desa against the mariadb client and a
    shell loop (bench/baseline-db.sh), in the same run. The imports alternate, `rounds` times
    each, and medians are reported: the disk of this machine varies more than the difference."""
    subset = "/var/tmp/desa-bench-db-subset.csv"
    with open(BANDUNG) as f:
        lines = f.read().splitlines()
    with open(subset, "w") as f:
        f.write("\n".join(lines[: n + 1]) + "\n")
    have_opensid = os.path.exists(OPENSID)
    with_db, without_db, loops = [], [], []
    app_times, served, dt_loop_apps, base_served = [], 0, None, 0
    for r in range(rounds):
        sb = Sandbox("db", 18490, "bdd", 680000, init_args=("--with-mariadb", "--mariadb-port", "13490"))
        try:
            with_db.append(sb.desactl("tenant", "import", subset, "--with-db")[0])
            if r == 0 and have_opensid:
                tenants = json.loads(sb.desactl("tenant", "list", "--json")[2])
                for t in tenants[:apps]:
                    app_times.append(sb.desactl("app", "install", "opensid", t["slug"], "--from", OPENSID, "--json")[0])
                served = sum(1 for t in tenants[:apps] if sb.status(t["domain"])[0] == 200)
        finally:
            sb.destroy()
        base = Sandbox("dbbase", 18491, "bdb", 720000, init_args=("--with-mariadb", "--mariadb-port", "13491"))
        try:
            without_db.append(base.desactl("tenant", "import", subset)[0])
            tenants = json.loads(base.desactl("tenant", "list", "--json")[2])
            listing = base.dir + "/tenants.txt"
            with open(listing, "w") as f:
                for t in tenants:
                    f.write(f"{t['slug']} {base.prefix}{t['code'].replace('.', '')}\n")
            loops.append(run([os.path.join(ROOT, "bench", "baseline-db.sh"), "db", base.dir, listing])[0])
            if r == 0 and have_opensid:
                with open(base.dir + "/apps.txt", "w") as f:
                    f.write("".join(open(listing).readlines()[:apps]))
                dt_loop_apps = run([os.path.join(ROOT, "bench", "baseline-db.sh"), "opensid", base.dir, base.dir + "/apps.txt", OPENSID])[0]
                base_served = sum(1 for t in tenants[:apps] if base.status(t["domain"])[0] == 200)
        finally:
            base.destroy()
    med = statistics.median
    dt_db, dt_plain, dt_loop = med(with_db), med(without_db), med(loops)
    db_part = dt_db - dt_plain
    res = {
        "villages": n, "rounds": rounds,
        "desa": {"import_with_db_s": [round(x, 3) for x in with_db], "median_s": round(dt_db, 3),
                 "per_village_s": round(dt_db / n, 4)},
        "baseline": {"import_without_db_s": [round(x, 3) for x in without_db], "mariadb_client_loop_s": [round(x, 3) for x in loops],
                     "median_total_s": round(dt_plain + dt_loop, 3), "per_village_db_s": round(dt_loop / n, 4)},
        "databases_only": {"desa_s": round(db_part, 3), "loop_s": round(dt_loop, 3),
                           "speedup": round(dt_loop / db_part, 1) if db_part > 0.01 else None},
        "total_speedup": round((dt_plain + dt_loop) / dt_db, 2),
    }
    if app_times:
        res["opensid"] = {"sites": len(app_times), "desa_total_s": round(sum(app_times), 2),
                          "desa_per_site_s": round(statistics.mean(app_times), 2), "desa_serving_200": served,
                          "by_hand_total_s": round(dt_loop_apps, 2), "by_hand_per_site_s": round(dt_loop_apps / apps, 2),
                          "by_hand_serving_200": base_served,
                          "ratio_by_hand_over_desa": round(dt_loop_apps / sum(app_times), 2)}
    print(f"{n} villages with databases: desa median {dt_db:.2f} s ({dt_db / n * 1000:.0f} ms each); by hand: the import "
          f"without databases {dt_plain:.2f} s, then the mariadb-client loop {dt_loop:.2f} s ({dt_loop / n * 1000:.0f} ms each)")
    print(f"the whole job: desa {dt_db:.2f} s against {dt_plain + dt_loop:.2f} s ({res['total_speedup']}x); "
          f"databases alone: desa {db_part:.2f} s against {dt_loop:.2f} s")
    if app_times:
        o = res["opensid"]
        print(f"OpenSID into {apps}: desa {o['desa_total_s']} s ({o['desa_per_site_s']} s each, {served} serving) "
              f"against {o['by_hand_total_s']} s by hand ({o['by_hand_per_site_s']} s each, {base_served} serving)")
    save("db", res)


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


class Pebble:
    """pebble on a sandbox's own pebble.json (same ports, same listener certificate), in place
    of the one `sandbox start` runs, with nonce rejection set (the sandbox's runs with pebble's
    default, 5%). It resolves names through the sandbox's pebble-challtestsrv, which stays."""

    def __init__(self, sb, nonce_reject):
        self.sb, self.acme = sb, sb.pebble_port
        pidfile = sb.dir + "/run/pebble.pid"
        pid = int(open(pidfile).read())
        assert os.readlink(f"/proc/{pid}/exe") == "/usr/bin/pebble", pid
        os.kill(pid, signal.SIGTERM)
        while os.path.exists(f"/proc/{pid}"):
            time.sleep(0.02)
        os.unlink(pidfile)
        while port_open(self.acme):
            time.sleep(0.02)
        self.log = f"/var/tmp/{os.path.basename(sb.dir)}-pebble.log"
        self.proc = subprocess.Popen(
            ["/usr/bin/pebble", "-config", sb.dir + "/pebble/pebble.json", "-dnsserver", f"127.0.0.1:{self.acme + 2}"],
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": str(nonce_reject)},
            stdin=subprocess.DEVNULL, stdout=open(self.log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 15
        while not (port_open(self.acme) and port_open(self.acme + 1)):
            if self.proc.poll() is not None or time.time() > deadline:
                sys.exit(f"pebble did not start, see {self.log}")
            time.sleep(0.05)
        # A new pebble, a new root: what curl --cacert needs for what this one issues.
        run(["curl", "-sS", "--fail", "--cacert", sb.dir + "/pebble/listener.pem",
             f"https://127.0.0.1:{self.acme + 1}/roots/0", "-o", sb.dir + "/pebble/root.pem"])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        os.unlink(self.log)


def https_sandbox(name, http_port, https_port, pebble_port, prefix, uid):
    sb = Sandbox(name, http_port, prefix, uid, init_args=[
        "--with-pebble", "--pebble-port", str(pebble_port), "--https-port", str(https_port)])
    sb.https_port, sb.pebble_port = https_port, pebble_port
    return sb


def desa_issue(sb):
    """Imports the villages, then times `cert issue --all`; checks every village over HTTPS."""
    sb.desactl("tenant", "import", BANDUNG, "--json")
    tenants = json.loads(sb.desactl("tenant", "list", "--json")[2])
    plan = json.loads(sb.desactl("cert", "plan", "--json")[2])
    dt, _, out = run([DESACTL, "cert", "issue", "--all", "--json"], sb.env, check=False)
    report = json.loads(out)
    ok = 0
    for t in tenants:
        host = t["domain"]
        p = subprocess.run(["curl", "-sS", "--cacert", sb.dir + "/pebble/root.pem",
                            "--resolve", f"{host}:{sb.https_port}:127.0.0.1", "-w", "\n%{http_code}",
                            f"https://{host}:{sb.https_port}/"], capture_output=True, text=True)
        body, _, code = p.stdout.rpartition("\n")
        ok += p.returncode == 0 and code == "200" and t["name"] in body
    db = sqlite3.connect(f"file:{sb.dir}/state/state.sqlite?mode=ro", uri=True)
    bundles = [json.loads(names) for (names,) in db.execute("select names from certificate order by id")]
    db.close()
    return {
        "wall_s": round(dt, 2),
        "orders_planned": len(plan["orders"]),
        "orders": len(report["issued"]) + len(report["failed"]),
        "issued": len(report["issued"]),
        "failed": report["failed"],
        "held_out": report["held_out"],
        "names_per_certificate": [len(b) for b in bundles],
        "https_200_with_name": ok,
        "phases_s": (report.get("change") or {}).get("phases"),
    }, tenants, bundles


def certbot_runs(sb, label, name_lists):
    """One `certbot certonly --webroot` per list of names, one after another (as a panel's
    per-site script does), with an account of its own registered beforehand (not timed)."""
    work = f"/var/tmp/desa-bench-certbot-{label}"
    shutil.rmtree(work, ignore_errors=True)
    env = dict(os.environ, REQUESTS_CA_BUNDLE=sb.dir + "/pebble/listener.pem")
    common = ["--server", f"https://127.0.0.1:{sb.pebble_port}/dir", "--config-dir", work + "/config",
              "--work-dir", work + "/work", "--logs-dir", work + "/logs", "--non-interactive"]
    run(["certbot", "register", "--agree-tos", "-m", "hostmaster@bandungkab.go.id", "--no-eff-email"] + common, env)
    times, failed = [], []
    t0 = time.perf_counter()
    for names in name_lists:
        args = ["certbot", "certonly", "--webroot", "-w", sb.dir + "/state/acme"] + common
        for n in names:
            args += ["-d", n]
        dt, _, _ = run(args, env, check=False)
        times.append(dt)
        if not os.path.exists(f"{work}/config/live/{names[0]}/fullchain.pem"):
            failed.append(names[0])
    wall = time.perf_counter() - t0
    issued = len(name_lists) - len(failed)
    shutil.rmtree(work, ignore_errors=True)
    return {"wall_s": round(wall, 2), "orders": len(name_lists), "issued": issued, "failed": failed,
            "mean_s_per_run": round(statistics.mean(times), 3), "names": sum(len(n) for n in name_lists)}


def bench_https(sample=None):
    rows = sum(1 for _ in open(BANDUNG)) - 1
    pebbles = []
    sb = https_sandbox("https", 25080, 25443, 25400, "bht", 760000)
    try:
        desa, tenants, bundles = desa_issue(sb)
        print(f"desa, cert issue --all (pebble rejecting 5% of nonces): {desa['wall_s']:.2f} s, "
              f"{desa['orders']} orders {desa['names_per_certificate']}, "
              f"{desa['https_200_with_name']}/{rows} villages answer 200 over HTTPS with their name")
        # Debian's certbot gives up on two bad nonces in a row: a pebble that rejects none.
        pebbles.append(Pebble(sb, 0))
        names = [t["domain"] for t in tenants]
        measured = names[:sample] if sample else names
        per = certbot_runs(sb, "per-village", [[n] for n in measured])
        if sample:
            per["sample"] = len(measured)
            per["measured_wall_s"] = per["wall_s"]
            per["wall_s"] = round(per["mean_s_per_run"] * len(names), 2)
            per["orders"] = len(names)
            per["extrapolated"] = True
        print(f"certbot per village: {per['wall_s']:.1f} s{' (extrapolated from %d)' % sample if sample else ''}, "
              f"{per['orders']} orders, {per['mean_s_per_run']:.2f} s each, {len(per['failed'])} failed")
        same = certbot_runs(sb, "bundles", bundles)
        print(f"certbot on desa's bundles: {same['wall_s']:.2f} s, {same['orders']} orders, {len(same['failed'])} failed")
    finally:
        for p in pebbles:
            p.stop()
        sb.destroy()
    # desa again, against a pebble that rejects no nonces, as the certbot runs had.
    sb0 = https_sandbox("https0", 25081, 25444, 25410, "bhz", 800000)
    try:
        pebbles = [Pebble(sb0, 0)]
        desa0, _, _ = desa_issue(sb0)
        print(f"desa, cert issue --all (pebble rejecting no nonces): {desa0['wall_s']:.2f} s, {desa0['orders']} orders, "
              f"{desa0['https_200_with_name']}/{rows} answer over HTTPS")
    finally:
        for p in pebbles:
            p.stop()
        sb0.destroy()
    res = {
        "villages": rows,
        "pebble": "Debian pebble 2.4.0, PEBBLE_VA_NOSLEEP=1, HTTP-01 through the sandbox's nginx; "
                  "desa: default nonce rejection (5%) and again at 0%; certbot: PEBBLE_WFE_NONCEREJECT=0",
        "desa": desa,
        "desa_nonce_reject_0": desa0,
        "certbot_per_village": per,
        "certbot_same_bundles": same,
        "ratios": {
            "certbot_per_village_vs_desa": round(per["wall_s"] / desa["wall_s"], 1),
            "certbot_bundles_vs_desa": round(same["wall_s"] / desa["wall_s"], 2),
            "certbot_per_village_vs_desa_nonce_reject_0": round(per["wall_s"] / desa0["wall_s"], 1),
            "certbot_bundles_vs_desa_nonce_reject_0": round(same["wall_s"] / desa0["wall_s"], 2),
        },
        "notes": "desa's time covers planning, the ACME orders, writing certificates and keys, and the nginx "
                 "reload that serves them; certbot's only the orders (certonly --webroot), with its account "
                 "registered beforehand and not timed.",
        "targets": {"orders_at_most": 3, "speedup_vs_per_village_at_least": 20, "faster_than_certbot_same_bundles": True},
    }
    print(f"certbot per village / desa: {res['ratios']['certbot_per_village_vs_desa']}x (target >= 20x), "
          f"certbot on the same bundles / desa: {res['ratios']['certbot_bundles_vs_desa']}x (target > 1); "
          f"orders {desa['orders']} (target <= 3) instead of {per['orders']}")
    save("https", res)

def opensid_tree():
    """The real OpenSID release's tree of directories and files (9,927 entries), every file
    empty: what `du` must walk in a home with OpenSID installed, without writing 130 MB per home."""
    tree = "/var/tmp/desa-bench-opensid-tree"
    if not os.path.isdir(tree):
        src = tree + ".src"
        shutil.rmtree(src, ignore_errors=True)
        os.makedirs(src)
        subprocess.run(["tar", "-xzf", OPENSID, "-C", src], check=True)
        for root, dirs, files in os.walk(src):
            rel = os.path.relpath(root, src)
            os.makedirs(os.path.join(tree + ".tmp", rel), exist_ok=True)
            for f in files:
                open(os.path.join(tree + ".tmp", rel, f), "w").close()
        os.rename(tree + ".tmp", tree)
        shutil.rmtree(src)
    return tree


def bench_quota(rounds=4):
    """Quotas on 280 villages (the image backend, 256 MiB each): the import with quotas against
    without, alternating, `rounds` times; every image mounted again by `apply` after all were
    unmounted (a reboot); `quota report` against `du -s` over the same homes, same run, once
    each home holds OpenSID's tree of files (the last round)."""
    n = sum(1 for _ in open(BANDUNG)) - 1
    quota = "256MiB"
    on_s, off_s, remount_s, report_s, du_s, on_phases, off_phases = [], [], [], [], [], [], []
    agreement = None
    for r in range(rounds):
        off = Sandbox("quota-off", 18487, "bqf", 780000)
        try:
            dt, _, out = off.desactl("tenant", "import", BANDUNG, "--json")
            off_s.append(dt)
            off_phases.append(json.loads(out)["change"]["phases"])
        finally:
            off.destroy()
        on = Sandbox("quota-on", 18488, "bqn", 800000, init_args=("--quota-backend", "image", "--quota", quota))
        try:
            dt, _, out = on.desactl("tenant", "import", BANDUNG, "--json")
            on_s.append(dt)
            on_phases.append(json.loads(out)["change"]["phases"])
            srv = on.dir + "/srv"
            homes = sorted(srv + "/" + h for h in os.listdir(srv))
            if r == rounds - 1:
                tree = opensid_tree()
                for h in homes:
                    subprocess.run(["cp", "-a", tree, h + "/opensid"], check=True)
            report = json.loads(on.desactl("quota", "report", "--json")[2])
            rows = report if isinstance(report, list) else report.get("tenants", [])
            assert len(rows) == n, f"quota report has {len(rows)} rows, not {n}"
            if r == rounds - 1:
                report_s.append(timed([DESACTL, "quota", "report", "--json"], on.env, n=9)["median_s"])
                du_s.append(timed(["du", "-s"] + homes, n=3)["median_s"])
                # What du says of each home against what the report says (KiB).
                du = {line.split("\t")[1]: int(line.split("\t")[0]) * 1024
                      for line in subprocess.run(["du", "-s"] + homes, capture_output=True, text=True).stdout.splitlines()}
                worst = 0.0
                for row in rows:
                    home = srv + "/" + row["slug"]
                    worst = max(worst, abs(row["used_bytes"] - du[home]) / du[home])
                agreement = {"entries_per_home": sum(len(d) + len(f) for _, d, f in os.walk(homes[0])),
                             "worst_difference_from_du": round(worst, 3)}
            # A reboot: every image unmounted; apply mounts them all again.
            for h in homes:
                subprocess.run(["umount", h], capture_output=True)
            mounted = sum(1 for line in open("/proc/self/mounts") if line.split()[1].startswith(srv + "/"))
            assert mounted == 0, f"{mounted} images still mounted"
            remount_s.append(on.desactl("apply", "--json")[0])
            mounted = sum(1 for line in open("/proc/self/mounts") if line.split()[1].startswith(srv + "/"))
            assert mounted == n, f"apply mounted {mounted} of {n} images"
        finally:
            on.destroy()
    med = statistics.median
    res = {
        "villages": n, "quota": quota, "backend": "image", "rounds": rounds,
        "import_quotas_on_s": [round(x, 3) for x in on_s], "import_quotas_off_s": [round(x, 3) for x in off_s],
        "import_on_vs_off": round(med(on_s) / med(off_s), 2),
        "import_phases_on_s": on_phases, "import_phases_off_s": off_phases,
        "apply_remounting_all_s": [round(x, 3) for x in remount_s],
        "quota_report_s": report_s[0], "du_s_s": du_s[0],
        "report_vs_du_speedup": round(du_s[0] / report_s[0], 1),
        "report_against_du": agreement,
        "targets": {"import_on_vs_off_under": 2.0, "report_s_under": 0.2, "report_vs_du_at_least": 20,
                    "difference_from_du_under": 0.1},
    }
    print(f"import of {n} villages: quotas on {med(on_s):.2f} s, off {med(off_s):.2f} s ({res['import_on_vs_off']}x; target < 2x)")
    print(f"apply after every image was unmounted: {med(remount_s):.2f} s to mount all {n} again")
    print(f"homes holding OpenSID's tree ({agreement['entries_per_home']} entries each): quota report {report_s[0] * 1000:.0f} ms, "
          f"du -s {du_s[0] * 1000:.0f} ms ({res['report_vs_du_speedup']}x; target >= 20x and < 200 ms); "
          f"report differs from du by at most {agreement['worst_difference_from_du'] * 100:.1f}% (target < 10%)")
    save("quota", res)


def pss_kb(pids):
    """Proportional set size of these processes, summed: shared pages counted once overall."""
    total = 0
    for pid in pids:
        try:
            for line in open(f"/proc/{pid}/smaps_rollup"):
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def fpm_tree(master):
    """The master and its children (the workers it started)."""
    out = [master]
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1]) == master:
                    out.append(int(pid))
            except (OSError, IndexError, ValueError):
                pass
    return out


def bench_masters(n=280):
    """n idle tenants' PHP: one php-fpm master with n ondemand pools, against n masters of one
    pool each, same run. Both run in the foreground as children of this script, which ends
    exactly the processes it started."""
    fpm = "/usr/sbin/php-fpm8.2"
    base = "/var/tmp/desa-bench-masters"
    shutil.rmtree(base, ignore_errors=True)
    os.makedirs(base + "/sock")

    def pool(i):
        return (f"[t{i}]\nuser = nobody\ngroup = nogroup\nlisten = {base}/sock/t{i}.sock\n"
                "listen.owner = nobody\nlisten.group = nogroup\nlisten.mode = 0660\n"
                "pm = ondemand\npm.max_children = 5\npm.process_idle_timeout = 20s\n")

    def conf(name, pools):
        path = f"{base}/{name}.conf"
        with open(path, "w") as f:
            f.write(f"[global]\npid = {base}/{name}.pid\nerror_log = {base}/{name}.log\ndaemonize = no\n"
                    + "".join(pool(i) for i in pools))
        return path

    def start(paths):
        t = time.perf_counter()
        procs = [subprocess.Popen([fpm, "--nodaemonize", "--fpm-config", p, "-c", "/etc/php/8.2/fpm/php.ini"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for p in paths]
        sockets = [f"{base}/sock/t{i}.sock" for i in range(n)]
        deadline = time.time() + 120
        while time.time() < deadline and not all(os.path.exists(x) for x in sockets):
            time.sleep(0.02)
        ready = time.perf_counter() - t
        assert all(os.path.exists(x) for x in sockets), "not every pool's socket appeared"
        time.sleep(2)  # settle
        return procs, ready

    def stop(procs):
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
        for x in os.listdir(base + "/sock"):
            os.unlink(base + "/sock/" + x)

    def ping(i):
        # One FastCGI request to the pool's ping path is not configured; a connect that is
        # accepted proves the pool listens (ondemand starts a worker for it).
        s = socket.socket(socket.AF_UNIX)
        s.connect(f"{base}/sock/t{i}.sock")
        s.close()

    res = {"tenants": n, "php": fpm}
    procs, ready = start([conf("shared", range(n))])
    tree = [x for p in procs for x in fpm_tree(p.pid)]
    res["one_master"] = {"processes": len(tree), "pss_mb": round(pss_kb(tree) / 1024, 1), "ready_s": round(ready, 2)}
    ping(0)
    stop(procs)
    procs, ready = start([conf(f"t{i}", [i]) for i in range(n)])
    tree = [x for p in procs for x in fpm_tree(p.pid)]
    res["master_per_tenant"] = {"processes": len(tree), "pss_mb": round(pss_kb(tree) / 1024, 1), "ready_s": round(ready, 2)}
    ping(0)
    stop(procs)
    shutil.rmtree(base, ignore_errors=True)
    one, each = res["one_master"], res["master_per_tenant"]
    res["extra_mb_per_tenant"] = round((each["pss_mb"] - one["pss_mb"]) / n, 2)
    res["memory_ratio"] = round(each["pss_mb"] / one["pss_mb"], 1)
    print(f"{n} idle tenants' PHP: one master {one['pss_mb']} MB PSS ({one['processes']} processes, ready in {one['ready_s']} s); "
          f"a master each {each['pss_mb']} MB ({each['processes']} processes, ready in {each['ready_s']} s): "
          f"{res['memory_ratio']}x, {res['extra_mb_per_tenant']} MB more a tenant")
    save("masters", res)


def du_bytes(path):
    return int(subprocess.run(["du", "-sb", path], capture_output=True, text=True, check=True).stdout.split()[0])


def villages_with_backups(sb, n):
    """The first n Bandung villages, each with a database, and the backup repository."""
    lines = open(BANDUNG).read().splitlines()
    subset = sb.dir + "/subset.csv"
    with open(subset, "w") as f:
        f.write("\n".join(lines[: n + 1]) + "\n")
    sb.desactl("tenant", "import", subset, "--with-db")
    sb.desactl("backup", "init")


def bench_backup(n=280, nights=7, sample=20):
    """Nightly backups of n villages (see the module's doc)."""
    import random
    rnd = random.Random(20)
    parallel = int(os.environ.get("BENCH_BACKUP_PARALLEL", "2"))
    layout = os.environ.get("BENCH_BACKUP_LAYOUT", "shared")
    assert layout in ("shared", "copies"), layout
    sb = Sandbox("backup", 18490, "bkb", 820000, extra_toml=f"parallel = {parallel}",
                 init_args=("--with-mariadb", "--mariadb-port", "18491", "--with-backups"))
    try:
        villages_with_backups(sb, n)
        tenants = json.loads(sb.desactl("tenant", "list", "--json")[2])
        if layout == "shared":
            # OpenSID as app install lays it out: the release stored once (outside the homes,
            # not in the nightly snapshots), each home its own files and links to the release.
            # One village is installed for real; the others get a copy of its home's own files.
            sb.desactl("app", "release", "add", "opensid", OPENSID)
            tree = sb.dir + "/state/releases/opensid/" + os.listdir(sb.dir + "/state/releases/opensid")[0]
            pw = sb.dir + "/admin-password"
            with open(pw, "w") as f:
                f.write("Desa-Bench-2410!")
            sb.desactl("app", "install", "opensid", tenants[0]["slug"], "--admin-password-file", pw)
            # What install left, before the loop below adds village 0's own uploads.
            installed = sb.dir + "/installed-public"
            subprocess.run(["cp", "-a", sb.dir + "/srv/" + tenants[0]["slug"] + "/public", installed], check=True)
        else:
            tree = sb.dir + "/opensid-release"
            os.makedirs(tree)
            subprocess.run(["tar", "-xzf", OPENSID, "-C", tree], check=True)
        sock = sb.dir + "/run/mariadb.sock"
        mysql = ["mariadb", "--no-defaults", "--user=root", "--socket=" + sock]
        own_bytes = 0
        t0 = time.perf_counter()
        for i, t in enumerate(tenants):
            home = sb.dir + "/srv/" + t["slug"]
            uid = t["uid"]
            if layout == "shared":
                if i > 0:
                    subprocess.run(["cp", "-a", installed + "/.", home + "/public/"], check=True)
                    subprocess.run(["chown", "-hR", f"{uid}:{uid}", home + "/public"], check=True)
            else:
                subprocess.run(["cp", "-a", tree, home + "/public/app"], check=True)
            up = home + "/public/uploads"
            os.makedirs(up)
            size = rnd.randint(1, 5) << 20
            for i in range(10):
                with open(f"{up}/foto {i}.jpg", "wb") as f:
                    f.write(os.urandom(size // 10))
            own_bytes += size
            subprocess.run(["chown", "-R", f"{uid}:{uid}", up] + ([] if layout == "shared" else [home + "/public/app"]), check=True)
            db = "desa_" + t["code"].replace(".", "")
            rows = ",".join(f"({i}, '{os.urandom(8).hex()}')" for i in range(1000))
            subprocess.run(mysql + ["-e", f"CREATE TABLE {db}.penduduk (id INT PRIMARY KEY, nama VARCHAR(40)); INSERT INTO {db}.penduduk VALUES {rows}"], check=True)
        setup_s = time.perf_counter() - t0
        tree_bytes = du_bytes(tree)
        homes_code_bytes = sum(du_bytes(sb.dir + "/srv/" + t["slug"]) for t in tenants) - own_bytes
        repo = sb.dir + "/backups/repo"
        hint = sb.dir + "/state/backup/key-hint"
        runs = []
        for night in range(nights):
            if night > 0:
                # 1% churn: each village rewrites 1% of its own bytes and adds rows.
                for t in tenants:
                    up = sb.dir + "/srv/" + t["slug"] + "/public/uploads"
                    total = sum(os.path.getsize(up + "/" + f) for f in os.listdir(up))
                    with open(f"{up}/night {night}.jpg", "wb") as f:
                        f.write(os.urandom(max(1, total // 100)))
                    os.chown(f"{up}/night {night}.jpg", t["uid"], t["uid"])
                    db = "desa_" + t["code"].replace(".", "")
                    subprocess.run(mysql + ["-e", f"INSERT INTO {db}.penduduk VALUES ({1000 + night}, 'night {night}')"], check=True)
            # The baseline, in the same run: the third night opens the repository with restic's
            # own calibrated key (as without backup init's light key), the others with the light key.
            # The light key's file is moved out too: without a hint restic tries the keys in
            # the order it lists them, and the light one, when first, opens the repository.
            calibrated = night == 2 and os.path.exists(hint)
            if calibrated:
                light = repo + "/keys/" + open(hint).read().strip()
                os.rename(hint, hint + ".aside")
                os.rename(light, sb.dir + "/light-key.aside")
            dt, _, out = sb.desactl("backup", "run", "--all", "--json")
            if calibrated:
                os.rename(hint + ".aside", hint)
                os.rename(sb.dir + "/light-key.aside", light)
            r = json.loads(out)
            assert not r["failed"], r["failed"]
            runs.append({"night": night + 1, "wall_s": round(dt, 2), "added_bytes": sum(d["bytes_added"] for d in r["done"]),
                         "repository_bytes": du_bytes(repo), "key": "calibrated" if calibrated else "light"})
            print(f"night {night + 1}: {n} villages in {dt:.1f} s, {runs[-1]['added_bytes'] / 1e6:.1f} MB added, "
                  f"repository {runs[-1]['repository_bytes'] / 1e6:.1f} MB, {runs[-1]['key']} key", flush=True)
        restore_s = sb.desactl("backup", "restore", tenants[0]["slug"])[0]
        # The panels: a tar.gz of each home and a gzipped dump per village per night, kept 7
        # days; a sample of villages timed and scaled (every night costs the same).
        panel = sb.dir + "/panel"
        os.makedirs(panel)
        t0 = time.perf_counter()
        for t in tenants[:sample]:
            home = sb.dir + "/srv/" + t["slug"]
            # A panel's home holds its own full copy of OpenSID: with the shared layout, the
            # release is added to its archive.
            extra = ["-C", tree, "."] if layout == "shared" else []
            subprocess.run(["tar", "-czf", f"{panel}/{t['slug']}.tar.gz", "-C", home, "."] + extra, check=True)
            db = "desa_" + t["code"].replace(".", "")
            with open(f"{panel}/{t['slug']}.sql.gz", "wb") as f:
                d = subprocess.Popen(["mariadb-dump", "--no-defaults", "--user=root", "--socket=" + sock, "--single-transaction", db], stdout=subprocess.PIPE)
                subprocess.run(["gzip"], stdin=d.stdout, stdout=f, check=True)
                d.wait()
        panel_sample_s = time.perf_counter() - t0
        panel_night_bytes = du_bytes(panel) * n / sample
        panel_night_s = panel_sample_s * n / sample
    finally:
        sb.destroy()
    nightly = [r["wall_s"] for r in runs[1:] if r["key"] == "light"] or [runs[0]["wall_s"]]
    calibrated = [r["wall_s"] for r in runs if r["key"] == "calibrated"]
    res = {
        "villages": n, "nights": nights, "parallel": parallel, "layout": layout, "opensid_tree_bytes": tree_bytes,
        "homes_bytes_besides_their_own_files": homes_code_bytes, "own_bytes_total": own_bytes,
        "unique_data_bytes": tree_bytes + own_bytes, "setup_s": round(setup_s, 1), "runs": runs,
        "desa_repository_bytes": runs[-1]["repository_bytes"], "desa_incremental_night_s_median": statistics.median(nightly),
        "restore_in_place_s": round(restore_s, 2),
        "incremental_night_s_calibrated_key": calibrated[0] if calibrated else None,
        "calibrated_vs_light_key": round(calibrated[0] / statistics.median(nightly), 2) if calibrated else None,
        "panels": {"sample_villages": sample, "night_s_scaled": round(panel_night_s, 1), "night_bytes_scaled": int(panel_night_bytes),
                   "repository_bytes_same_nights": int(panel_night_bytes * nights)},
        "repository_ratio_panels_vs_desa": round(panel_night_bytes * nights / runs[-1]["repository_bytes"], 1),
        "night_ratio_panels_vs_desa": round(panel_night_s / statistics.median(nightly), 1),
        "targets": {"repository_at_most_panels_over": 10, "incremental_night_s_under": 180, "restore_s_under": 60},
    }
    print(f"{n} villages, OpenSID {tree_bytes / 1e6:.0f} MB each + {own_bytes / 1e6:.0f} MB of their own: repository after {nights} nights "
          f"{res['desa_repository_bytes'] / 1e6:.0f} MB; the panels' {nights} nights {res['panels']['repository_bytes_same_nights'] / 1e6:.0f} MB "
          f"({res['repository_ratio_panels_vs_desa']}x; target >= 10x)")
    print(f"nightly: first {runs[0]['wall_s']} s, incremental median {res['desa_incremental_night_s_median']} s (target < 180 s); "
          f"the panels' night {res['panels']['night_s_scaled']} s ({res['night_ratio_panels_vs_desa']}x); restore in place {res['restore_in_place_s']} s (target < 60 s)")
    if calibrated:
        print(f"the same incremental night with restic's calibrated key: {calibrated[0]} s ({res['calibrated_vs_light_key']}x the light key's)")
    save(("backup" if n == 280 else f"backup-{n}") + ("" if nights == 7 else f"-{nights}-nights") + ("" if layout == "shared" else "-copies"), res)

OPENSID_2409 = os.environ.get("DESA_OPENSID_2409", "/work/shared/apps/opensid-v2409.0.0.tar.gz")


def p95(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]


def bench_upgrade(n=280):
    """OpenSID v2409 -> v2410 in waves against the by-hand way (see the module's doc)."""
    from concurrent.futures import ThreadPoolExecutor
    sb = Sandbox("upgrade", 18520, "upb", 850000, init_args=("--with-mariadb", "--mariadb-port", "18521", "--with-backups"))
    try:
        villages_with_backups(sb, n)
        add_s = sb.desactl("app", "release", "add", "opensid", OPENSID_2409)[0]
        sb.desactl("app", "release", "add", "opensid", OPENSID)
        tenants = json.loads(sb.desactl("tenant", "list", "--json")[2])
        pw = sb.dir + "/admin-password"
        with open(pw, "w") as f:
            f.write("Desa-2409-Bench!")
        t0 = time.perf_counter()
        with ThreadPoolExecutor(2) as ex:
            list(ex.map(lambda t: sb.desactl("app", "install", "opensid", t["slug"], "--release", "2409.0.0", "--admin-password-file", pw), tenants))
        install_s = time.perf_counter() - t0
        release_bytes = du_bytes(sb.dir + "/state/releases/opensid/2409.0.0")
        homes_bytes = sum(du_bytes(sb.dir + "/srv/" + t["slug"]) for t in tenants)
        print(f"{n} villages installed from one stored release in {install_s:.0f} s; their homes hold {homes_bytes / 1e6:.1f} MB, "
              f"one release {release_bytes / 1e6:.1f} MB", flush=True)
        by_desa, by_hand = tenants[0::2], tenants[1::2]
        # The by-hand villages first get their own full copy of v2409 (as a panel installs it).
        for t in by_hand:
            pub = sb.dir + "/srv/" + t["slug"] + "/public"
            for e in os.listdir(pub):
                if os.path.islink(pub + "/" + e):
                    os.unlink(pub + "/" + e)
            subprocess.run(["setpriv", f"--reuid={t['uid']}", f"--regid={t['uid']}", "--clear-groups", "--",
                            "tar", "-xzf", OPENSID_2409, "-C", pub, "--no-same-owner"], check=True)
            assert sb.status(t["slug"] + ".bandungkab.go.id")[0] == 200, t["slug"]
        # desa: one command for its half, with a snapshot of each village.
        dt, _, out = sb.desactl("app", "upgrade", "opensid", "--to", "2410.0.0", "--json", *[t["slug"] for t in by_desa])
        r = json.loads(out)
        assert all(x["outcome"] == "upgraded" for x in r["tenants"]), [x for x in r["tenants"] if x["outcome"] != "upgraded"]
        desa_down = [x["unavailable_seconds"] for x in r["tenants"]]
        desa_each = [x["seconds"] for x in r["tenants"]]
        # By hand: a dump, the release unpacked over the village's tree, requests until the first
        # 200 (that request migrates); broken from the first byte unpacked to that answer.
        sock = sb.dir + "/run/mariadb.sock"
        hand_down, t0 = [], time.perf_counter()
        for t in by_hand:
            db = "desa_" + t["code"].replace(".", "")
            with open(sb.dir + "/hand.sql", "w") as f:
                subprocess.run(["mariadb-dump", "--no-defaults", "--user=root", "--socket=" + sock, "--single-transaction", db], stdout=f, check=True)
            start = time.perf_counter()
            subprocess.run(["setpriv", f"--reuid={t['uid']}", f"--regid={t['uid']}", "--clear-groups", "--",
                            "tar", "-xzf", OPENSID, "-C", sb.dir + "/srv/" + t["slug"] + "/public", "--no-same-owner"], check=True)
            while True:
                try:
                    if sb.status(t["slug"] + ".bandungkab.go.id")[0] == 200:
                        break
                except OSError:
                    pass
                time.sleep(0.2)
            hand_down.append(time.perf_counter() - start)
        hand_s = time.perf_counter() - t0
        # One village's rollback: a release whose every page dies.
        broken = sb.dir + "/broken"
        os.makedirs(broken)
        subprocess.run(["tar", "-xzf", OPENSID, "-C", broken], check=True)
        helper = broken + "/donjo-app/helpers/opensid_helper.php"
        text = open(helper).read().replace("define('VERSION', '2410.0.0')", "define('VERSION', '2410.0.1')")
        open(helper, "w").write(text + "\ndesa_bench_this_function_does_not_exist();\n")
        subprocess.run(["tar", "-czf", sb.dir + "/broken.tar.gz", "-C", broken, "."], check=True)
        sb.desactl("app", "release", "add", "opensid", sb.dir + "/broken.tar.gz")
        p = subprocess.run([DESACTL, "app", "upgrade", "opensid", "--to", "2410.0.1", "--json", by_desa[0]["slug"]], env=sb.env, capture_output=True, text=True)
        rb = json.loads(p.stdout)["tenants"][0]
        assert rb["outcome"] == "rolled-back", rb
        assert sb.status(by_desa[0]["slug"] + ".bandungkab.go.id")[0] == 200
    finally:
        sb.destroy()
    code_280 = (release_bytes * 2 + homes_bytes / n * 280) / release_bytes
    res = {
        "villages": n, "release_add_s": round(add_s, 1), "install_all_s": round(install_s, 1),
        "release_bytes": release_bytes, "homes_bytes": homes_bytes, "home_bytes_each": int(homes_bytes / n),
        "desa": {"villages": len(by_desa), "total_s": round(dt, 1), "per_village_s_median": round(statistics.median(desa_each), 1),
                 "unavailable_s_median": round(statistics.median(desa_down), 1), "unavailable_s_p95": round(p95(desa_down), 1)},
        "by_hand": {"villages": len(by_hand), "total_s": round(hand_s, 1), "unavailable_s_median": round(statistics.median(hand_down), 1),
                    "unavailable_s_p95": round(p95(hand_down), 1)},
        "rollback_one_village_s": round(rb["seconds"], 1), "rollback_unavailable_s": round(rb["unavailable_seconds"], 1),
        "disk_280_villages_over_one_release": round(code_280, 2),
        "targets": {"unavailable_p95_s_under": 60, "rollback_s_under": 120, "disk_over_one_release_at_most": 1.2},
    }
    res["unavailable_p95_ratio_by_hand_vs_desa"] = round(res["by_hand"]["unavailable_s_p95"] / max(0.1, res["desa"]["unavailable_s_p95"]), 1)
    print(f"desa: {len(by_desa)} villages in {dt:.0f} s (with a snapshot each), 503 median {res['desa']['unavailable_s_median']} s, "
          f"p95 {res['desa']['unavailable_s_p95']} s (target < 60 s)")
    print(f"by hand: {len(by_hand)} villages in {hand_s:.0f} s, broken median {res['by_hand']['unavailable_s_median']} s, p95 {res['by_hand']['unavailable_s_p95']} s")
    print(f"rollback of one village from a broken release: {res['rollback_one_village_s']} s (target < 120 s), 503 for {res['rollback_unavailable_s']} s")
    print(f"280 villages' code on disk (two releases stored + 280 homes of {res['home_bytes_each'] / 1e3:.0f} kB): "
          f"{res['disk_280_villages_over_one_release']}x one release (target <= 1.2x counted as one stored release: "
          f"{round((release_bytes + homes_bytes / n * 280) / release_bytes, 2)}x)")
    save("upgrade" if n == 280 else f"upgrade-{n}", res)


def bench_package():
    """From a fresh Debian 12 root (booted, systemd as PID 1): the package's way against the ten
    manual steps the README gave before it, same container type, same run; and sizes."""
    import glob
    debs = sorted(glob.glob(os.path.join(ROOT, "dist", "desa_*-1_amd64.deb")))
    if not debs:
        sys.exit("bench package: no dist/desa_*-1_amd64.deb: run bash scripts/build-deb.sh first")
    deb = debs[-1]
    rootfs = os.environ.get("DESA_PACKAGE_ROOTFS", "/var/cache/desa-tests/bookworm-package-rootfs")
    if not os.path.exists(rootfs + "/usr/lib/systemd/systemd"):
        sys.exit(f"bench package: no root filesystem at {rootfs}: run the package test once (swift test --filter PackageTests)")
    release = os.path.dirname(DESACTL)

    def boot(name, bind_swift):
        d = f"/var/tmp/desa-bench-{name}"
        subprocess.run(["rm", "-rf", "--one-file-system", d])
        os.makedirs(d)
        log = open(d + "/console.log", "w")
        argv = ["systemd-nspawn", "--quiet", "-D", d + "/root", "--template=" + rootfs, "-M", name, "-b", "--register=no",
                "--keep-unit", "--private-network", "--console=pipe"] + (["--bind-ro=/opt/swift"] if bind_swift else [])
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        leader = None
        for _ in range(600):
            kids = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
            leader = next((k for k in kids if open(f"/proc/{k}/comm").read().startswith("systemd")), None)
            if leader:
                st = subprocess.run(["nsenter", "-t", leader, "-a", "systemctl", "is-system-running"], capture_output=True, text=True).stdout.strip()
                if st in ("running", "degraded"):
                    break
            time.sleep(0.1)
        return p, leader, d

    def run(leader, *argv, check=True):
        r = subprocess.run(["nsenter", "-t", leader, "-a", "/usr/bin/env", "DEBIAN_FRONTEND=noninteractive",
                            "PATH=/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"] + list(argv), capture_output=True, text=True)
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {r.stdout[-800:]} {r.stderr[-800:]}")
        return r

    def all_200(leader, d):
        slugs = [t["slug"] for t in json.loads(run(leader, "desactl", "tenant", "list", "--json").stdout)]
        with open(d + "/root/var/tmp/urls.curl", "w") as f:
            for s_ in slugs:
                f.write(f'url = "http://{s_}.bandungkab.go.id/"\noutput = "/dev/null"\n')
        out = run(leader, "curl", "-s", "--connect-to", "::127.0.0.1:80", "-w", "%{http_code}\\n", "--config", "/var/tmp/urls.curl").stdout.split()
        assert len(out) == 280 and all(c == "200" for c in out), out[:5]

    def stop(p, d):
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        subprocess.run(["rm", "-rf", "--one-file-system", d])

    figures = {}
    # The package's way: apt-get install, desactl init, import; until all 280 answer 200.
    p, leader, d = boot("desa-bench-pkg", False)
    try:
        shutil.copy(deb, d + "/root/var/tmp/desa.deb")
        shutil.copy(BANDUNG, d + "/root/var/tmp/bandung.csv")
        t0 = time.perf_counter()
        run(leader, "apt-get", "install", "-y", "/var/tmp/desa.deb")
        t_install = time.perf_counter() - t0
        run(leader, "desactl", "init", "--regency", "32.04", "--domain", "bandungkab.go.id")
        t_init = time.perf_counter() - t0
        run(leader, "desactl", "tenant", "import", "/var/tmp/bandung.csv")
        all_200(leader, d)
        figures["package"] = {"install_s": round(t_install, 2), "to_init_s": round(t_init, 2), "to_280_served_s": round(time.perf_counter() - t0, 2)}
    finally:
        stop(p, d)
    # The README's ten manual steps before the package (the toolchain bound in, not timed;
    # the build not timed either: the release binaries are copied in as step 2 did).
    p, leader, d = boot("desa-bench-manual", True)
    try:
        root = d + "/root"
        shutil.copy(BANDUNG, root + "/var/tmp/bandung.csv")
        t0 = time.perf_counter()
        for b in ("desactl", "desa-agent"):
            shutil.copy(os.path.join(release, b), root + "/usr/local/sbin/" + b)
        os.makedirs(root + "/usr/share/desa", exist_ok=True)
        os.makedirs(root + "/etc/desa", exist_ok=True)
        shutil.copytree(os.path.join(ROOT, "templates"), root + "/usr/share/desa/templates", dirs_exist_ok=True)
        with open(root + "/etc/nginx/conf.d/desa.conf", "w") as f:
            f.write("server_names_hash_bucket_size 128;\ninclude /etc/nginx/desa/*.conf;\n")
        with open(root + "/etc/desa/desa.toml", "w") as f:
            f.write('mode = "production"\n[regency]\ncode = "32.04"\ndomain = "bandungkab.go.id"\n')
        os.chmod(root + "/etc/desa/desa.toml", 0o600)
        unit = open(os.path.join(ROOT, "systemd/desa-agent.service")).read().replace("/usr/sbin/desa-agent", "/usr/local/sbin/desa-agent")
        with open(root + "/etc/systemd/system/desa-agent.service", "w") as f:
            f.write(unit)
        os.makedirs(root + "/usr/lib/systemd/catalog", exist_ok=True)
        shutil.copy(os.path.join(ROOT, "systemd/desa.catalog"), root + "/usr/lib/systemd/catalog/desa.catalog")
        run(leader, "journalctl", "--update-catalog")
        run(leader, "systemctl", "daemon-reload")
        run(leader, "systemctl", "enable", "--now", "desa-agent")
        run(leader, "systemctl", "reload", "nginx")
        run(leader, "desactl", "tenant", "import", "/var/tmp/bandung.csv")
        all_200(leader, d)
        figures["manual"] = {"to_280_served_s": round(time.perf_counter() - t0, 2)}
    finally:
        stop(p, d)
    # Sizes: the package against the two binaries and the toolchain's libraries they load.
    libs = set()
    for b in ("desactl", "desa-agent"):
        for line in subprocess.run(["ldd", os.path.join(release, b)], capture_output=True, text=True).stdout.splitlines():
            parts = line.split("=>")
            if len(parts) == 2 and parts[1].strip().startswith("/opt/swift"):
                libs.add(os.path.realpath(parts[1].split()[0]))
    dynamic = sum(os.path.getsize(os.path.join(release, b)) for b in ("desactl", "desa-agent")) + sum(os.path.getsize(l) for l in libs)
    installed = int(subprocess.run(["dpkg-deb", "-f", deb, "Installed-Size"], capture_output=True, text=True).stdout) * 1024
    res = {
        "deb": os.path.basename(deb), "deb_bytes": os.path.getsize(deb), "installed_bytes": installed,
        "binaries_and_toolchain_libraries_bytes": dynamic, "toolchain_libraries": len(libs),
        "size_ratio_dynamic_vs_deb": round(dynamic / os.path.getsize(deb), 1),
        "times": figures,
        "time_ratio_package_vs_manual": round(figures["package"]["to_280_served_s"] / figures["manual"]["to_280_served_s"], 2),
    }
    print(f"package {res['deb']}: {res['deb_bytes'] / 1e6:.1f} MB ({installed / 1e6:.0f} MB installed) against "
          f"{dynamic / 1e6:.0f} MB for the two binaries and the {len(libs)} toolchain libraries they load ({res['size_ratio_dynamic_vs_deb']}x)")
    print(f"fresh Debian 12 to 280 villages answering 200: package {figures['package']['to_280_served_s']} s "
          f"(apt-get install {figures['package']['install_s']} s, init done at {figures['package']['to_init_s']} s); "
          f"the ten manual steps {figures['manual']['to_280_served_s']} s ({res['time_ratio_package_vs_manual']}x)")
    save("package", res)

def bench_portal(sizes=(280, 5000), flips=9):
    agent = os.path.join(os.path.dirname(DESACTL), "desa-agent")
    res = {"sizes": {}}
    for n in sizes:
        if n == 280:
            csv = BANDUNG
        else:
            csv = f"/var/tmp/desa-bench-synth-{n}.csv"
            run([sys.executable, os.path.join(ROOT, "bench", "synth.py"), str(n), csv])
        sb = Sandbox(f"portal-{n}", 18486, "bnp", 760000, extra_toml='tenant_error_logs = "shared"')
        try:
            sb.desactl("tenant", "import", csv)
            first = subprocess.run([agent, "--config", sb.env["DESA_CONFIG"], "--once"], capture_output=True, text=True)
            assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
            db = sb.dir + "/state/state.sqlite"
            code = sqlite3.connect(db).execute("SELECT code FROM tenant ORDER BY code LIMIT 1").fetchone()[0]
            refresh, walls = [], []
            for i in range(flips):
                # One village's http check changes, as a sweep would record it.
                con = sqlite3.connect(db)
                con.execute("UPDATE health_check SET state = ? WHERE subject = ? AND \"check\" = 'http'",
                            ("down" if i % 2 == 0 else "ok", code))
                con.commit()
                con.close()
                t = time.perf_counter()
                out = run([DESACTL, "portal", "refresh", "--json"], sb.env)[2]
                walls.append(time.perf_counter() - t)
                r = json.loads(out)
                assert r["wrote"], r
                refresh.append(r["seconds"])
            page_bytes = r["bytes"]
            con = sqlite3.connect(db)
            con.execute("UPDATE health_check SET state = 'ok' WHERE subject = ?", (code,))
            con.commit()
            con.close()
            lst = timed([DESACTL, "tenant", "list", "--json"], sb.env, n=9)
            entry = {"villages": n, "page_bytes": page_bytes,
                     "refresh_median_s": round(statistics.median(refresh), 4), "refresh_max_s": round(max(refresh), 4),
                     "process_wall_median_s": round(statistics.median(walls), 4),
                     "baseline_tenant_list_json": lst,
                     "ratio_refresh_vs_tenant_list": round(statistics.median(refresh) / lst["median_s"], 2)}
            print(f"portal of {n}: rewritten in {entry['refresh_median_s'] * 1000:.1f} ms (max {entry['refresh_max_s'] * 1000:.1f}; "
                  f"process {entry['process_wall_median_s'] * 1000:.0f} ms), {page_bytes} bytes; tenant list --json "
                  f"{lst['median_s'] * 1000:.0f} ms ({entry['ratio_refresh_vs_tenant_list']}x)")
            if n >= 5000:
                out_file = sb.dir + "/status.html"
                st = timed([DESACTL, "status", "--html", out_file], sb.env, n=5)
                health = timed([DESACTL, "health", "--json"], sb.env, n=5)
                entry["status_page"] = {"wall": st, "bytes": os.path.getsize(out_file), "baseline_health_json": health,
                                        "ratio_vs_health_json": round(st["median_s"] / health["median_s"], 2)}
                print(f"status page of {n}: {st['median_s'] * 1000:.0f} ms, {os.path.getsize(out_file)} bytes; "
                      f"health --json {health['median_s'] * 1000:.0f} ms ({entry['status_page']['ratio_vs_health_json']}x)")
            res["sizes"][str(n)] = entry
        finally:
            sb.destroy()
    res["targets"] = {"refresh_280_s_under": 0.05, "refresh_5000_s_under": 0.5, "status_5000_s_under": 1.0, "page_280_bytes_under": 150000}
    save("portal", res)


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("run as root: the benchmarks create tenant users")
    which = sys.argv[1] if len(sys.argv) > 1 else "all"
    if which in ("import", "all"):
        bench_import()
    if which in ("db", "all"):
        bench_db()
    if which in ("scale", "all"):
        bench_scale(int(sys.argv[2]) if len(sys.argv) > 2 and which == "scale" else 10000)
    if which in ("health", "all"):
        bench_health(int(sys.argv[2]) if len(sys.argv) > 2 and which == "health" else 5000)
    if which in ("quota", "all"):
        bench_quota()
    if which in ("masters", "all"):
        bench_masters(int(sys.argv[2]) if len(sys.argv) > 2 and which == "masters" else 280)
    if which in ("backup", "all"):
        bench_backup(int(sys.argv[2]) if len(sys.argv) > 2 and which == "backup" else 280,
                     nights=int(os.environ.get("BENCH_BACKUP_NIGHTS", "7")))
    if which in ("upgrade", "all"):
        bench_upgrade(int(sys.argv[2]) if len(sys.argv) > 2 and which == "upgrade" else int(os.environ.get("BENCH_UPGRADE_VILLAGES", "280")))
    if which in ("portal", "all"):
        bench_portal()
    if which in ("package", "all"):
        bench_package()
    if which in ("https", "all"):
        bench_https(int(sys.argv[2]) if len(sys.argv) > 2 and which == "https" else None)
