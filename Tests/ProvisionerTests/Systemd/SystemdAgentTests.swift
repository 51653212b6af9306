import Foundation
import Testing
@testable import Provisioner
#if canImport(Glibc)
import Glibc
#endif

/// desa with systemd as PID 1, in a Debian 12 container (`ContainerHarness`): the real
/// `systemd/desa-agent.service` with all its hardening, READY=1 and STATUS=, the
/// watchdog's restart of a wedged agent, a clean stop, health changes in the system
/// journal explained by the catalog (`journalctl -x`), drift repaired under the unit's
/// hardening, and desactl in production mode reloading nginx and php8.2-fpm through
/// systemctl. One container is booted for the suite and powered off when the test
/// process exits.
@Suite("Under a real systemd: desa-agent's unit, watchdog and journal; desactl's reloads", .serialized,
       .enabled(if: ContainerHarness.canBoot,
                "needs root, systemd-nspawn, and a Debian 12 root filesystem (built once with debootstrap); the reason is printed above"))
struct SystemdAgentTests {
    static let unit = "desa-agent.service"
    static let dropIn = "/etc/systemd/system/desa-agent.service.d/test.conf"
    static let wedgeFile = "/run/desa-test-wedge"
    static let config = """
    mode = "production"
    [regency]
    code = "32.04"
    domain = "bandungkab.go.id"
    [php]
    masters = "shared"

    """

    nonisolated(unsafe) private static var booted: ContainerHarness?

    /// The suite's container, with desa installed as the README's Production section says.
    static let box: Result<ContainerHarness, any Error> = Result {
        let h = try ContainerHarness(name: "desa-systemd")
        booted = h
        atexit { SystemdAgentTests.booted?.shutdown() }
        let build = URL(fileURLWithPath: Support.desactl).deletingLastPathComponent().path
        try h.copyIn(build + "/desactl", to: "/usr/sbin/desactl")
        try h.copyIn(build + "/desa-agent", to: "/usr/sbin/desa-agent")
        try h.copyIn(Support.templates, to: "/usr/share/desa/templates")
        try h.write("/etc/nginx/conf.d/desa.conf", "server_names_hash_bucket_size 128;\ninclude /etc/nginx/desa/*.conf;\n")
        try h.write("/etc/desa/desa.toml", config, mode: 0o600)
        try h.copyIn(Support.packageRoot.appendingPathComponent("systemd/desa-agent.service").path,
                     to: "/etc/systemd/system/desa-agent.service")
        try h.copyIn(catalog, to: "/usr/lib/systemd/catalog/desa.catalog")
        try h.run("/usr/bin/journalctl", "--update-catalog")
        try h.run("/usr/bin/systemctl", "daemon-reload")
        try h.run("/usr/bin/systemctl", "reload", "nginx")
        return h
    }

    func box() throws -> ContainerHarness { try Self.box.get() }

    /// Stops the agent and puts `dropIn` (a `[Service]` body) in place, or none.
    func resetAgent(_ h: ContainerHarness, dropIn: String? = nil) throws {
        try h.exec(["/usr/bin/systemctl", "stop", Self.unit])
        try h.exec(["/usr/bin/systemctl", "reset-failed", Self.unit])
        try h.exec(["/usr/bin/rm", "-f", Self.wedgeFile])
        if let dropIn { try h.write(Self.dropIn, "[Service]\n" + dropIn) } else { h.remove(Self.dropIn) }
        try h.run("/usr/bin/systemctl", "daemon-reload")
    }

    /// Sweeps every second instead of every health.interval.
    static let everySecond = "ExecStart=\nExecStart=/usr/sbin/desa-agent --config /etc/desa/desa.toml --interval 1\n"

    func seconds(_ body: () throws -> Void) rethrows -> Double {
        let t = Date()
        try body()
        return Date().timeIntervalSince(t)
    }

    func waitFor(_ seconds: Double, _ what: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try what() { return true }
            usleep(100_000)
        }
        return try what()
    }

    /// Creates a tenant with desactl in the container, unless it exists.
    func tenant(_ h: ContainerHarness, _ code: String, _ name: String, slug: String) throws -> ProcessResult {
        try h.exec(["/usr/sbin/desactl", "tenant", "create", code, "--name", name, "--district", "Cileunyi", "--slug", slug])
    }

    @Test("systemd-analyze verify passes for the unit, inside the container and on the host, without a warning")
    func verify() throws {
        let h = try box()
        let inside = try h.exec(["/usr/bin/systemd-analyze", "verify", "/etc/systemd/system/" + Self.unit])
        #expect(inside.ok, "\(inside.message)")
        #expect(inside.stdout.isEmpty && inside.stderr.isEmpty, "\(inside.stdout)\(inside.stderr)")
        // The host's systemd-analyze, on the container's tree (where the binary is installed).
        if access("/usr/bin/systemd-analyze", X_OK) == 0 {
            let host = try SystemProcessRunner().run(["/usr/bin/systemd-analyze", "verify", "--root=" + h.root,
                                                      "/etc/systemd/system/" + Self.unit])
            #expect(host.ok, "\(host.message)")
            #expect(host.stdout.isEmpty && host.stderr.isEmpty, "\(host.stdout)\(host.stderr)")
        }
    }

    @Test("systemctl start returns once the agent said READY=1: active (running), its STATUS shown, the hardening in force")
    func startsWhenReady() throws {
        let h = try box()
        // A first round that takes 2 s: start must wait for it.
        try resetAgent(h, dropIn: "Environment=DESA_TEST_SLOW_ROUND_SECONDS=2\n")
        let took = try seconds { try h.run("/usr/bin/systemctl", "start", Self.unit) }
        let s = try h.show(Self.unit, ["ActiveState", "SubState", "StatusText", "Type", "MainPID", "NRestarts", "WatchdogUSec"])
        #expect(took >= 2, "systemctl start returned after \(took) s, before the first round ended")
        #expect(s["Type"] == "notify")
        #expect(s["ActiveState"] == "active" && s["SubState"] == "running", "\(s)")
        #expect(s["WatchdogUSec"] == "1min")
        let status = s["StatusText"] ?? ""
        #expect(status.range(of: #"^\d+ tenants?: \d+ ok, \d+ degraded, \d+ down"#, options: .regularExpression) != nil, "StatusText=\(status)")

        // The hardening reached the process: no new privileges, a seccomp filter
        // (MemoryDenyWriteExecute, SystemCallArchitectures, RestrictNamespaces...), a
        // read-only / with the state directory writable, a /tmp of its own.
        let pid = try #require(s["MainPID"].flatMap { Int($0) }, "\(s)")
        let procStatus = try h.run("/usr/bin/cat", "/proc/\(pid)/status").stdout
        #expect(procStatus.contains("NoNewPrivs:\t1"))
        #expect(procStatus.contains("Seccomp:\t2"))
        let mounts = try h.run("/usr/bin/cat", "/proc/\(pid)/mountinfo").stdout.split(separator: "\n")
        func options(_ mountPoint: String) -> String? {
            mounts.map { $0.split(separator: " ") }.last { $0.count > 5 && $0[4] == mountPoint }.map { String($0[5]) }
        }
        #expect(options("/")?.hasPrefix("ro") == true, "/ is \(options("/") ?? "not mounted")")
        for dir in ["/var/lib/desa", "/var/log/desa", "/run/desa"] {
            #expect(options(dir)?.hasPrefix("rw") == true, "\(dir) is \(options(dir) ?? "not mounted")")
        }
        #expect(options("/tmp") != nil)
        // The agent's state database and lock exist, made by the agent itself.
        #expect(FileManager.default.fileExists(atPath: h.root + "/var/lib/desa/state.sqlite"))

        // More rounds pass under the hardening without a failure.
        try resetAgent(h, dropIn: Self.everySecond)
        let cursor = try h.cursor()
        try h.run("/usr/bin/systemctl", "start", Self.unit)
        sleep(3)
        let after = try h.show(Self.unit, ["ActiveState", "NRestarts", "StatusText"])
        #expect(after["ActiveState"] == "active" && after["NRestarts"] == "0", "\(after)")
        let failed = try h.journal(after: cursor, ["SYSLOG_IDENTIFIER=desa", "PRIORITY=3"])
        #expect(failed.isEmpty, "\(failed.map { $0["MESSAGE"] ?? "" })")
        let agentSaid = try h.journal(after: cursor, ["_SYSTEMD_UNIT=" + Self.unit])
            .compactMap { $0["MESSAGE"] as? String }
        #expect(!agentSaid.contains { $0.contains("Fatal error") || $0.contains("Read-only file system") || $0.contains("Operation not permitted") },
                "\(agentSaid)")
        try resetAgent(h)
    }

    @Test("a wedged agent stops its pings: systemd's watchdog kills it and starts a new one")
    func watchdogRestartsAWedgedAgent() throws {
        let h = try box()
        try resetAgent(h, dropIn: Self.everySecond + "Environment=DESA_TEST_WEDGE_FILE=\(Self.wedgeFile)\nWatchdogSec=3s\nRestartSec=1\n")
        defer { try? resetAgent(h) }
        let cursor = try h.cursor()
        try h.run("/usr/bin/systemctl", "start", Self.unit)
        let first = try h.show(Self.unit, ["MainPID", "NRestarts"])
        // Pinging, it outlives several watchdog periods.
        sleep(5)
        let still = try h.show(Self.unit, ["MainPID", "NRestarts", "ActiveState"])
        #expect(still["MainPID"] == first["MainPID"] && still["NRestarts"] == first["NRestarts"] && still["ActiveState"] == "active",
                "an agent that pings was restarted: \(first) then \(still)")

        try h.run("/usr/bin/touch", Self.wedgeFile)
        let before = Int(first["NRestarts"] ?? "") ?? -1
        var now: [String: String] = [:]
        let restarted = try waitFor(15) {
            now = try h.show(Self.unit, ["MainPID", "NRestarts", "ActiveState", "SubState"])
            return (Int(now["NRestarts"] ?? "") ?? -1) > before
        }
        // The next agent pings again.
        try h.run("/usr/bin/rm", "-f", Self.wedgeFile)
        #expect(restarted, "no restart within 15 s of the wedge: \(now)")
        let running = try waitFor(10) {
            now = try h.show(Self.unit, ["MainPID", "ActiveState", "SubState"])
            return now["ActiveState"] == "active" && now["SubState"] == "running"
        }
        #expect(running, "\(now)")
        #expect(now["MainPID"] != first["MainPID"] && now["MainPID"] != "0", "MainPID \(first["MainPID"] ?? "") then \(now["MainPID"] ?? "")")

        let said = try h.journal(after: cursor, ["_PID=1", "UNIT=" + Self.unit]).compactMap { $0["MESSAGE"] as? String }
        #expect(said.contains { $0.contains("Watchdog timeout (limit 3s)") }, "\(said)")
        #expect(said.contains { $0.contains("Killing process \(first["MainPID"] ?? "") (desa-agent) with signal SIGABRT") }, "\(said)")
    }

    @Test("systemctl stop ends the agent cleanly within 5 s, idle or in the middle of a round")
    func stopsCleanly() throws {
        let h = try box()
        for (what, dropIn) in [("idle", ""), ("mid-round", "Environment=DESA_TEST_SLOW_ROUND_SECONDS=60\n")] {
            try resetAgent(h, dropIn: Self.everySecond + dropIn)
            let cursor = try h.cursor()
            if dropIn.isEmpty {
                try h.run("/usr/bin/systemctl", "start", Self.unit)
            } else {
                // The first round never ends, so READY=1 never comes: do not wait for it.
                try h.run("/usr/bin/systemctl", "start", "--no-block", Self.unit)
                let started = try waitFor(10) { try h.show(Self.unit, ["MainPID"])["MainPID"] != "0" }
                #expect(started)
                sleep(1)
            }
            let pid = try h.show(Self.unit, ["MainPID"])["MainPID"] ?? ""
            let took = try seconds { try h.run("/usr/bin/systemctl", "stop", Self.unit) }
            #expect(took < 5, "\(what): systemctl stop took \(took) s")
            #expect(try h.show(Self.unit, ["ActiveState"])["ActiveState"] == "inactive")
            // A stopped unit that nothing references is unloaded at once (systemctl show
            // then gives defaults): what systemd said about it is in the journal. A main
            // process that exits 0 on SIGTERM is "Deactivated successfully"; one killed or
            // exiting non-zero gets "Main process exited, code=..." and "Failed with result".
            let said = try h.journal(after: cursor, ["_PID=1", "UNIT=" + Self.unit]).compactMap { $0["MESSAGE"] as? String }
            #expect(said.contains("desa-agent.service: Deactivated successfully."), "\(what) (pid \(pid)): \(said)")
            #expect(!said.contains { $0.contains("SIGKILL") || $0.contains("timed out") || $0.contains("Main process exited")
                        || $0.contains("Failed with result") }, "\(what) (pid \(pid)): \(said)")
        }
        try resetAgent(h)
    }

    @Test("a village's site going down: one entry in the system journal with its fields, explained by journalctl -x; one on recovery")
    func healthReachesTheSystemJournal() throws {
        let h = try box()
        let made = try tenant(h, "32.04.05.2003", "Cimekar", slug: "cimekar")
        #expect(made.ok || made.stderr.contains("already exists"), "\(made.message)")
        try resetAgent(h, dropIn: Self.everySecond)
        defer { try? resetAgent(h) }
        let cursor = try h.cursor()
        try h.run("/usr/bin/systemctl", "start", Self.unit)

        // Its vhost removed by hand and nginx reloaded: the village's name reaches nginx's default site.
        unlink(h.root + "/etc/nginx/desa/cimekar.conf")
        try h.run("/usr/bin/systemctl", "reload", "nginx")
        let match = ["SYSLOG_IDENTIFIER=desa", "_SYSTEMD_UNIT=" + Self.unit]
        var down: [[String: Any]] = []
        let found = try waitFor(15) {
            down = try h.journal(after: cursor, match + ["MESSAGE_ID=" + HealthMessageID.down, "DESA_TENANT=32.04.05.2003"])
            return !down.isEmpty
        }
        #expect(found, "no down entry in the system journal within 15 s")
        let e = try #require(down.first)
        #expect(down.count == 1, "\(down.map { $0["MESSAGE"] ?? "" })")
        #expect(e["DESA_SLUG"] as? String == "cimekar" && e["DESA_CHECK"] as? String == "http")
        #expect(e["DESA_STATE"] as? String == "down" && e["DESA_PREVIOUS_STATE"] as? String == "ok")
        #expect(e["PRIORITY"] as? String == "3")
        #expect((e["DESA_REASON"] as? String ?? "").hasPrefix("HTTP "), "\(e["DESA_REASON"] ?? "")")
        let drift = try h.journal(after: cursor, match + ["MESSAGE_ID=" + HealthMessageID.degraded, "DESA_CHECK=drift"])
        #expect(drift.contains { ($0["DESA_REASON"] as? String ?? "").contains("create-config /etc/nginx/desa/cimekar.conf") },
                "\(drift.map { $0["DESA_REASON"] ?? "" })")
        // The status line comes at the sweep's end, after its entries (and the portal's page).
        var status = ""
        _ = try waitFor(5) {
            status = try h.show(Self.unit, ["StatusText"])["StatusText"] ?? ""
            return status.hasSuffix(" 1 down")
        }
        #expect(status.hasSuffix(" 1 down"), "StatusText=\(status)")
        // The catalog explains it, the entry's fields filled in.
        let explained = try h.exec(["/usr/bin/journalctl", "-x", "--no-pager", "MESSAGE_ID=" + HealthMessageID.down, "DESA_TENANT=32.04.05.2003"]).stdout
        #expect(explained.contains("Subject: Village cimekar: the http check is down"), "\(explained)")
        #expect(explained.contains("desactl health cimekar"), "\(explained)")

        // desactl apply puts it back; the agent says so once per check.
        let applied = try h.exec(["/usr/sbin/desactl", "apply"])
        #expect(applied.ok, "\(applied.message)")
        var back: [[String: Any]] = []
        let recovered = try waitFor(15) {
            back = try h.journal(after: cursor, match + ["MESSAGE_ID=" + HealthMessageID.recovered, "DESA_TENANT=32.04.05.2003"])
            return back.count >= 2
        }
        #expect(recovered, "no recovery entries within 15 s: \(back.map { $0["MESSAGE"] ?? "" })")
        sleep(2)
        back = try h.journal(after: cursor, match + ["MESSAGE_ID=" + HealthMessageID.recovered, "DESA_TENANT=32.04.05.2003"])
        #expect(Set(back.compactMap { $0["DESA_CHECK"] as? String }) == ["http", "drift"] && back.count == 2, "\(back.map { $0["MESSAGE"] ?? "" })")
        #expect(back.allSatisfy { $0["PRIORITY"] as? String == "5" })
        // desactl health agrees, and exits 0.
        let health = try h.exec(["/usr/sbin/desactl", "health"])
        #expect(health.ok, "\(health.message)")
    }

    static let catalog = Support.packageRoot.appendingPathComponent("systemd/desa.catalog").path
    /// The health entries' MESSAGE_IDs (fixed forever) and a state each is written with.
    static let healthIDs = [("550a6e61861143fc81163ff47f653440", "down", "http"), ("652b5ffc46504f94bb1bc5b47890b9b0", "degraded", "http"),
                            ("0fb3bfa9ec9d403cb268ea3697577a43", "ok", "http"), ("274b339d46c74ab6a90ddba4fca3a296", "down", "nginx"),
                            ("253df0a7ca88424cb87cb8343a3f964e", "ok", "nginx"),
                            (QuotaMessageID.nearly, "degraded", "quota"), (QuotaMessageID.full, "down", "quota"),
                            (QuotaMessageID.ok, "ok", "quota")]

    /// Entries are written with util-linux's `logger --journald` (fields from a file): this
    /// checks every id of the catalog; the agent's own entries are checked above.
    @Test("systemd/desa.catalog installs cleanly and journalctl -x explains every health MESSAGE_ID with its fields filled in",
          )
    func catalogExplainsHealthEntries() throws {
        let h = try box()
        let update = try h.exec(["/usr/bin/journalctl", "--update-catalog"])
        #expect(update.ok && update.stderr.isEmpty, "\(update.message)")
        let listed = try h.run("/usr/bin/journalctl", "--list-catalog", "--no-pager").stdout
        for (id, state, check) in Self.healthIDs {
            #expect(listed.contains(id + " desa: "), "\(id) is not in the catalog")
            let fields = ["MESSAGE_ID=\(id)", "MESSAGE=catalog test \(id)", "SYSLOG_IDENTIFIER=desa-agent", "PRIORITY=4",
                          "DESA_TENANT=32.04.05.2009", "DESA_SLUG=catalog-test", "DESA_CHECK=\(check)", "DESA_STATE=\(state)",
                          "DESA_PREVIOUS_STATE=degraded", "DESA_REASON=connection refused on 127.0.0.1:80", "DESA_QUOTA_PERCENT=93"]
            try h.write("/var/tmp/desa-entry", fields.joined(separator: "\n") + "\n")
            try h.run("/usr/bin/logger", "--journald=/var/tmp/desa-entry")
            var text = ""
            let shown = try waitFor(5) {
                text = try h.exec(["/usr/bin/journalctl", "-x", "--no-pager", "MESSAGE_ID=" + id, "DESA_SLUG=catalog-test"]).stdout
                return text.contains("catalog test \(id)")
            }
            #expect(shown, "the entry \(id) did not reach the journal")
            #expect(text.contains("Subject: ") && text.contains("Defined-By: desa"), "\(id): \(text)")
            let subject = text.split(separator: "\n").first { $0.contains("Subject: ") } ?? ""
            #expect(subject.contains(check), "\(id): the subject does not name the check: \(subject)")
            #expect(!text.contains("@DESA_"), "\(id): a field the entry has is left unfilled: \(text)")
        }
    }

    @Test("with health.repair_drift the agent under its unit repairs a removed vhost and reloads nginx through systemd")
    func repairsUnderItsUnit() throws {
        let h = try box()
        let made = try tenant(h, "32.04.05.2004", "Cikemang", slug: "cikemang")
        #expect(made.ok || made.stderr.contains("already exists"), "\(made.message)")
        try h.write("/etc/desa/desa.toml", Self.config + "[health]\nrepair_drift = true\ninterval = 1\n", mode: 0o600)
        defer { try? h.write("/etc/desa/desa.toml", Self.config, mode: 0o600) }
        try resetAgent(h, dropIn: "ExecStart=\nExecStart=/usr/sbin/desa-agent --config /etc/desa/desa.toml\n")
        defer { try? resetAgent(h) }
        try h.run("/usr/bin/systemctl", "start", Self.unit)
        let cursor = try h.cursor()
        let vhost = h.root + "/etc/nginx/desa/cikemang.conf"
        let content = Support.read(vhost)
        #expect(!content.isEmpty)
        unlink(vhost)
        let back = try waitFor(20) { Support.read(vhost) == content }
        #expect(back, "the agent did not put the vhost back within 20 s")
        var repaired: [[String: Any]] = []
        _ = try waitFor(5) {
            repaired = try h.journal(after: cursor, ["_SYSTEMD_UNIT=" + Self.unit, "DESA_OP=reconcile"])
            return !repaired.isEmpty
        }
        #expect(repaired.first?["PRIORITY"] as? String == "5", "\(repaired.map { $0["MESSAGE"] ?? "" })")
        let reloads = try h.journal(after: cursor, ["_PID=1", "UNIT=nginx.service", "JOB_TYPE=reload", "JOB_RESULT=done"])
        #expect(!reloads.isEmpty, "nginx was not reloaded through systemd")
        let said = try h.journal(after: cursor, ["_SYSTEMD_UNIT=" + Self.unit]).compactMap { $0["MESSAGE"] as? String }
        #expect(!said.contains { $0.contains("Read-only file system") || $0.contains("reconcile failed") }, "\(said)")
        let page = try h.exec(["/usr/bin/curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: cikemang.bandungkab.go.id", "http://127.0.0.1/"])
        #expect(page.stdout == "200")
    }

    @Test("desactl in production reloads nginx and php8.2-fpm through systemctl, never restarts them; the villages answer")
    func desactlReloadsThroughSystemd() throws {
        let h = try box()
        let before = try ["nginx", "php8.2-fpm"].map { try h.show($0, ["ExecMainPID"])["ExecMainPID"] ?? "" }
        let cursor = try h.cursor()
        let villages = [("32.04.05.2001", "Cileunyi Kulon", "cileunyi-kulon"), ("32.04.05.2002", "Cileunyi Wetan", "cileunyi-wetan")]
        for (code, name, slug) in villages {
            let r = try tenant(h, code, name, slug: slug)
            #expect(r.ok, "\(r.message)")
            #expect(r.stdout.contains("reloaded nginx, php8.2-fpm"), "\(r.stdout)")
        }
        let after = try ["nginx", "php8.2-fpm"].map { try h.show($0, ["ExecMainPID"])["ExecMainPID"] ?? "" }
        #expect(after == before, "the masters were restarted: \(before) then \(after)")

        // systemd did the reloads: one job per command and service.
        for unit in ["nginx.service", "php8.2-fpm.service"] {
            let jobs = try h.journal(after: cursor, ["_PID=1", "UNIT=" + unit, "JOB_TYPE=reload", "JOB_RESULT=done"])
            #expect(jobs.count >= villages.count, "\(unit): \(jobs.count) reloads")
            let restarts = try h.journal(after: cursor, ["_PID=1", "UNIT=" + unit, "JOB_TYPE=restart"])
            #expect(restarts.isEmpty, "\(unit) restarted")
        }

        for (code, name, slug) in villages {
            let user = "desa" + code.replacingOccurrences(of: ".", with: "")
            // systemd-sysusers made the user, from desa's declaration.
            let pw = try h.exec(["/usr/bin/getent", "passwd", user])
            #expect(pw.ok && pw.stdout.contains(":/srv/desa/\(slug):"), "\(pw.message)")
            #expect(Support.read(h.root + "/etc/sysusers.d/desa.conf").contains("u \(user) "))

            let host = "Host: \(slug).bandungkab.go.id"
            let page = try h.exec(["/usr/bin/curl", "-s", "-w", "\n%{http_code}", "-H", host, "http://127.0.0.1/"])
            #expect(page.stdout.hasSuffix("\n200") && page.stdout.contains("<h1>Desa \(name)</h1>"), "\(page.stdout)")
            // PHP runs in the village's own pool, as its user.
            let script = "/srv/desa/\(slug)/public/who.php"
            try h.write(script, "<?php echo 'RAN-AS-' . posix_getpwuid(posix_geteuid())['name'];\n")
            try h.run("/usr/bin/chown", user + ":" + user, script)
            let php = try h.exec(["/usr/bin/curl", "-s", "-w", "\n%{http_code}", "-H", host, "http://127.0.0.1/who.php"])
            #expect(php.stdout == "RAN-AS-\(user)\n200", "\(php.stdout)")
            unlink(h.root + script)
        }
    }

    @Test("with quotas, desactl in production gives php8.2-fpm.service each tenant's process limit by a drop-in: systemd starts the master and its workers under it; applied again, nothing changes")
    func processLimitThroughSystemd() throws {
        let h = try box()
        // A config of its own (its own state, users, server blocks and pools, no tenants), so
        // the suite's other tenants are neither touched nor taken for unknown ones.
        let path = "/etc/desa/quota.toml"
        try h.write(path, Self.config + """
            [paths]
            state_dir = "/var/lib/desa-quota-test"
            [users]
            prefix = "dq"
            sysusers_file = "/etc/sysusers.d/desa-quota-test.conf"
            [nginx]
            sites_dir = "/var/lib/desa-quota-test/sites"
            [php.versions."8.2"]
            binary = "/usr/sbin/php-fpm8.2"
            main_conf = "/etc/php/8.2/fpm/php-fpm.conf"
            pool_dir = "/var/lib/desa-quota-test/pools"
            socket_dir = "/run/php"
            pid_file = "/run/php/php8.2-fpm.pid"
            service = "php8.2-fpm"
            [quota]
            backend = "kernel"
            processes = 37
            closed_dirs = []

            """, mode: 0o600)
        let dropIn = "/etc/systemd/system/php8.2-fpm.service.d/desa-processes.conf"
        defer {
            h.remove(dropIn)
            _ = try? h.exec(["/usr/bin/systemctl", "daemon-reload"])
            _ = try? h.exec(["/usr/bin/systemctl", "restart", "php8.2-fpm"])
        }
        let check = try h.exec(["/usr/sbin/desactl", "--config", path, "config", "check"])
        #expect(check.stdout.contains("processes: at most 37 per tenant (LimitNPROC= of php8.2-fpm.service"), "\(check.stdout)")
        let plan = try h.exec(["/usr/sbin/desactl", "--config", path, "plan"])
        #expect(plan.stdout.contains("limit-processes"), "\(plan.stdout)")
        let apply = try h.exec(["/usr/sbin/desactl", "--config", path, "apply"])
        #expect(apply.ok, "\(apply.message)")
        #expect(Support.read(h.root + dropIn).contains("LimitNPROC=37\n"))
        #expect(try h.show("php8.2-fpm", ["LimitNPROC"])["LimitNPROC"] == "37")
        let master = try h.show("php8.2-fpm", ["MainPID"])["MainPID"] ?? ""
        func limited(_ pid: String) throws -> Bool {
            try h.exec(["/usr/bin/cat", "/proc/\(pid)/limits"]).stdout.split(separator: "\n")
                .contains { $0.hasPrefix("Max processes") && $0.split(separator: " ").dropFirst(2).prefix(2) == ["37", "37"] }
        }
        let masterLimits = try h.exec(["/usr/bin/cat", "/proc/\(master)/limits"]).stdout
        #expect(try limited(master), "the master's limits: \(masterLimits)")
        // Its workers (www-data) inherit it.
        let workers = try h.exec(["/usr/bin/pgrep", "-P", master])
        let worker = try #require(workers.stdout.split(separator: "\n").first.map(String.init), "php8.2-fpm has no workers")
        #expect(try limited(worker))
        let again = try h.exec(["/usr/sbin/desactl", "--config", path, "plan"])
        #expect(!again.stdout.contains("limit-processes"), "\(again.stdout)")
    }
}
